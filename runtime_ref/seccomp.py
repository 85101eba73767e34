"""Seccomp: docker's JSON profiles, the OCI `linux.seccomp` dict, and the loaded filter.

The work is split so that container start-up does the slow part early:

- `load_profile(path)` reads and checks a profile in docker's JSON format;
  `to_oci(profile, caps)` resolves it for one container (its capabilities, this
  machine's architecture and kernel) into the OCI runtime-spec `linux.seccomp`
  dict. `default_profile(caps)` does both for rref's own profile
  (data/seccomp-default.json), and `profile_for(option, caps)` follows docker's
  `--security-opt seccomp=...`.
- `prepare(oci)` builds the libseccomp filter. It imports the `seccomp` C
  extension, so call it before pivot_root: afterwards the host's Python tree is
  out of reach.
- `load(prepared)` loads the filter into the calling process and imports
  nothing: call it last, just before execve. `install(oci)` does both steps.

Like docker (runc), names that libseccomp does not know are skipped rather than
refused: a profile may name syscalls newer than the library. Syscalls that exist
only on another architecture resolve to libseccomp's pseudo-numbers and cost
nothing. The `seccomp` module itself is imported lazily, inside `prepare`.
"""

from __future__ import annotations

import json
import os

from .errors import EXIT_RUNTIME, RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Bad = Callable[[str], Exception]

EPERM = 1
MAX_ERRNO = 4095
U64_MAX = (1 << 64) - 1
NR_SCMP_ERROR = -1  # what libseccomp resolves an unknown syscall name to

ACTIONS = (
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRACE",
)
# SCMP_ACT_NOTIFY needs a listener process (docker's listenerPath): rref has none.
WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
OPS = {
    "SCMP_CMP_NE": "NE",
    "SCMP_CMP_LT": "LT",
    "SCMP_CMP_LE": "LE",
    "SCMP_CMP_EQ": "EQ",
    "SCMP_CMP_GE": "GE",
    "SCMP_CMP_GT": "GT",
    "SCMP_CMP_MASKED_EQ": "MASKED_EQ",
}
# Every architecture the OCI runtime spec names; the local libseccomp may lack some.
ARCHES = tuple(
    "SCMP_ARCH_" + a
    for a in (
        "X86",
        "X86_64",
        "X32",
        "ARM",
        "AARCH64",
        "MIPS",
        "MIPS64",
        "MIPS64N32",
        "MIPSEL",
        "MIPSEL64",
        "MIPSEL64N32",
        "PPC",
        "PPC64",
        "PPC64LE",
        "S390",
        "S390X",
        "PARISC",
        "PARISC64",
        "RISCV64",
        "LOONGARCH64",
        "M68K",
        "SH",
        "SHEB",
    )
)
# OCI filter flags -> libseccomp filter attributes.
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": "CTL_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG": "CTL_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": "CTL_SSB",
}
# Go (docker's `arches`), uname and Debian spellings -> libseccomp's, lower case.
_ARCH_ALIASES = {
    "amd64": "x86_64",
    "386": "x86",
    "i386": "x86",
    "i486": "x86",
    "i586": "x86",
    "i686": "x86",
    "arm64": "aarch64",
    "armv6l": "arm",
    "armv7l": "arm",
    "armv8l": "arm",
    "armel": "arm",
    "armhf": "arm",
    "mipsle": "mipsel",
    "mips64le": "mipsel64",
    "mips64p32": "mips64n32",
    "mips64p32le": "mipsel64n32",
    "loong64": "loongarch64",
}

DEFAULT_PROFILE = os.path.join(os.path.dirname(__file__), "data", "seccomp-default.json")
_default_cache: dict[str, Any] = {}


class SeccompError(RrefError):
    """A bad profile or a filter the kernel refused; docker exits 125 for these."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_RUNTIME)


class Prepared:
    """A filter built by `prepare`, ready for `load`.

    `skipped` lists the syscall names libseccomp did not know (left out, as docker does).
    """

    __slots__ = ("filter", "skipped")

    def __init__(self, flt: Any, skipped: list[str]) -> None:
        self.filter = flt
        self.skipped = skipped


# -- profiles -------------------------------------------------------------------------------


def load_profile(path: str) -> dict[str, Any]:
    """Read a docker-format seccomp profile; SeccompError names the file and the problem."""
    where = f"seccomp profile {path}"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SeccompError(f"{where}: {e.strerror or e}") from None
    try:
        profile = json.loads(data)
    except json.JSONDecodeError as e:
        raise SeccompError(
            f"{where}: invalid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except UnicodeDecodeError:
        raise SeccompError(f"{where}: invalid JSON: not UTF-8 text") from None
    check(profile, where)
    return profile


def to_oci(
    profile: dict[str, Any], caps: list[str], *, arch: str | None = None, kernel: str | None = None
) -> dict[str, Any]:
    """The OCI `linux.seccomp` dict of a docker profile, for a container with `caps`.

    Rules whose `includes`/`excludes` (caps, arches, minKernel) do not fit this
    container are dropped: every cap in includes.caps must be held, any cap in
    excludes.caps drops the rule, as docker does. `arch` (default: this
    machine's, as `uname -m`, a Go arch or an SCMP_ARCH_ name) picks the
    archMap entry; `kernel` (default: this one's release) is for minKernel.
    """
    check(profile, "seccomp profile")
    native = _arch(arch or os.uname().machine)
    held = {_cap(c) for c in caps}
    kver = _kernel_version(kernel or os.uname().release)

    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if _arch(entry["architecture"]) == native:
            arches = [entry["architecture"], *(entry.get("subArchitectures") or [])]
            break
    out["architectures"] = arches
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])

    syscalls = []
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, native, held, kver):
            continue
        names = _names(rule)
        if not names:
            continue
        oci: dict[str, Any] = {"names": names, "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            oci["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            oci["args"] = [
                {
                    "index": a["index"],
                    "value": a.get("value", 0),
                    "valueTwo": a.get("valueTwo", 0),
                    "op": a["op"],
                }
                for a in rule["args"]
            ]
        syscalls.append(oci)
    out["syscalls"] = syscalls
    return out


def default_profile(caps: list[str], *, arch: str | None = None) -> dict[str, Any]:
    """The OCI seccomp dict of rref's default profile for a container with `caps`."""
    profile = _default_cache.get("profile")
    if profile is None:
        # rref's own file: its validity is a test (test_seccomp_profile), not a start-up cost
        with open(DEFAULT_PROFILE, "rb") as f:
            profile = _default_cache["profile"] = json.loads(f.read())
    return to_oci(profile, caps, arch=arch)


def profile_for(option: str | None, caps: list[str]) -> dict[str, Any] | None:
    """docker's `--security-opt seccomp=OPTION`: the OCI dict, or None for no filter.

    None, "builtin" and "default" give rref's default profile, "unconfined" none
    at all; anything else is the path of a docker-format JSON profile.
    """
    if option is None or option in ("builtin", "default"):
        return default_profile(caps)
    if option == "unconfined":
        return None
    return to_oci(load_profile(option), caps)


# -- the filter -----------------------------------------------------------------------------


def prepare(oci: dict[str, Any], *, no_new_privs: bool = True) -> Prepared:
    """Build (not load) the filter of an OCI `linux.seccomp` dict.

    Imports the `seccomp` C extension: call it while the host's Python tree is
    still reachable. With `no_new_privs` (libseccomp's default) loading sets
    PR_SET_NO_NEW_PRIVS; without it the process loading the filter must already
    have no_new_privs or hold CAP_SYS_ADMIN.
    """
    import seccomp  # the C extension; nothing is imported after this point

    check(oci, "seccomp")
    default = _action(seccomp, oci["defaultAction"], oci.get("defaultErrnoRet"))
    flt = seccomp.SyscallFilter(default)
    try:
        flt.set_attr(seccomp.Attr.CTL_NNP, 1 if no_new_privs else 0)
        raw_rc = getattr(seccomp.Attr, "API_SYSRAWRC", None)  # libseccomp >= 2.5
        if raw_rc is not None:
            flt.set_attr(raw_rc, 1)  # report the kernel's errno, not ECANCELED
        for flag in oci.get("flags") or []:
            flt.set_attr(getattr(seccomp.Attr, FLAGS[flag]), 1)
        for name in oci.get("architectures") or []:
            arch = getattr(seccomp.Arch, name[len("SCMP_ARCH_") :], None)
            if arch is not None and not flt.exist_arch(arch):
                flt.add_arch(arch)
    except (RuntimeError, ValueError) as e:
        raise SeccompError(
            f"seccomp: libseccomp refused the filter setup ({_library_error(e)})"
        ) from None

    skipped: list[str] = []
    for i, rule in enumerate(oci.get("syscalls") or []):
        action = _action(seccomp, rule["action"], rule.get("errnoRet"))
        if action == default:
            continue  # libseccomp refuses rules that repeat the default action
        args = rule.get("args") or []
        conds = [_condition(seccomp, a) for a in args]
        indexes = {a["index"] for a in args}
        if len(indexes) == len(args):
            groups = [conds]  # one rule: all conditions must hold
        elif len(indexes) == 1:
            groups = [[c] for c in conds]  # one argument tested several ways: any may hold (runc)
        else:
            raise SeccompError(
                f"seccomp: syscalls[{i}]: several conditions on one argument "
                "mixed with conditions on others"
            )
        for name in _names(rule):
            try:
                nr = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
            except (ValueError, UnicodeError):
                nr = NR_SCMP_ERROR
            if nr == NR_SCMP_ERROR:
                if name not in skipped:
                    skipped.append(name)
                continue
            for group in groups:
                try:
                    flt.add_rule(action, nr, *group)
                except (RuntimeError, ValueError) as e:
                    raise SeccompError(
                        f"seccomp: syscalls[{i}]: libseccomp refused the rule "
                        f"for {name} ({_library_error(e)})"
                    ) from None
    return Prepared(flt, skipped)


def load(prepared: Prepared) -> None:
    """Load a prepared filter into the calling process (and its future children)."""
    try:
        prepared.filter.load()
    except RuntimeError as e:
        why = _library_error(e)
        if why == os.strerror(13):
            why += ": the process needs no_new_privs or CAP_SYS_ADMIN"
        raise SeccompError(f"seccomp: cannot load the filter ({why})") from None


def install(oci: dict[str, Any], *, no_new_privs: bool = True) -> None:
    """`prepare` and `load` in one step."""
    load(prepare(oci, no_new_privs=no_new_privs))


# -- checking -------------------------------------------------------------------------------


def check(profile: Any, where: str) -> None:
    """Raise SeccompError("<where>: <problem>") unless `profile` is a well-formed profile.

    Accepts docker's format and the OCI one (a subset). Syscall names are not
    checked against libseccomp: unknown ones are skipped when the filter is built.
    """

    def bad(what: str) -> SeccompError:
        return SeccompError(f"{where}: {what}")

    if not isinstance(profile, dict):
        raise bad("not a JSON object")
    if "defaultAction" not in profile:
        raise bad("no defaultAction")
    _check_action(profile["defaultAction"], "defaultAction", bad)
    _check_errno(profile, "defaultErrnoRet", profile["defaultAction"], "", bad)
    if profile.get("listenerPath"):
        raise bad("listenerPath: seccomp notify listeners are not supported")

    arches = profile.get("architectures")
    if arches is not None:
        _check_arches(arches, "architectures", bad)
    archmap = profile.get("archMap")
    if archmap is not None:
        if arches:
            raise bad("use either architectures or archMap, not both")
        if not isinstance(archmap, list):
            raise bad("archMap is not a list")
        for j, entry in enumerate(archmap):
            if not isinstance(entry, dict):
                raise bad(f"archMap[{j}] is not an object")
            _check_arches([entry.get("architecture")], f"archMap[{j}].architecture", bad)
            if entry.get("subArchitectures") is not None:
                _check_arches(entry["subArchitectures"], f"archMap[{j}].subArchitectures", bad)

    flags = profile.get("flags")
    if flags is not None:
        if not isinstance(flags, list):
            raise bad("flags is not a list")
        for flag in flags:
            if flag not in FLAGS:
                raise bad(f"unsupported flag {flag!r}")

    syscalls = profile.get("syscalls")
    if syscalls is None:
        return
    if not isinstance(syscalls, list):
        raise bad("syscalls is not a list")
    for i, rule in enumerate(syscalls):
        _check_rule(rule, f"syscalls[{i}]", bad)


def _check_rule(rule: Any, at: str, bad: Bad) -> None:
    if not isinstance(rule, dict):
        raise bad(f"{at} is not an object")
    names, name = rule.get("names"), rule.get("name")
    if names and name:
        raise bad(f"{at}: use either name or names, not both")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) and n for n in names)
    ):
        raise bad(f"{at}: names must be a list of syscall names")
    if name is not None and not isinstance(name, str):
        raise bad(f"{at}: name must be a string")
    if "action" not in rule:
        raise bad(f"{at}: no action")
    _check_action(rule["action"], f"{at}.action", bad)
    _check_errno(rule, "errnoRet", rule["action"], f"{at}.", bad)

    args = rule.get("args")
    if args is not None:
        if not isinstance(args, list):
            raise bad(f"{at}.args is not a list")
        for k, a in enumerate(args):
            aat = f"{at}.args[{k}]"
            if not isinstance(a, dict):
                raise bad(f"{aat} is not an object")
            if not _uint(a.get("index"), 5):
                raise bad(f"{aat}: index must be 0 to 5, not {a.get('index')!r}")
            for key in ("value", "valueTwo"):
                if key in a and not _uint(a[key], U64_MAX):
                    raise bad(f"{aat}: {key} must be an unsigned 64-bit integer, not {a[key]!r}")
            if a.get("op") not in OPS:
                raise bad(f"{aat}: unknown op {a.get('op')!r}")

    for key in ("includes", "excludes"):
        sel = rule.get(key)
        if sel is None:
            continue
        if not isinstance(sel, dict):
            raise bad(f"{at}.{key} is not an object")
        for field in ("caps", "arches"):
            vals = sel.get(field)
            if vals is not None and not (
                isinstance(vals, list) and all(isinstance(v, str) for v in vals)
            ):
                raise bad(f"{at}.{key}.{field} must be a list of strings")
        mk = sel.get("minKernel")
        if mk is not None and (not isinstance(mk, str) or _parse_kernel(mk) is None):
            raise bad(f'{at}.{key}.minKernel: not a kernel version like "4.8": {mk!r}')


def _check_action(action: Any, at: str, bad: Bad) -> None:
    if action == "SCMP_ACT_NOTIFY":
        raise bad(f"{at}: SCMP_ACT_NOTIFY is not supported")
    if action not in ACTIONS:
        raise bad(f"{at}: unknown action {action!r}")


def _check_errno(obj: dict[str, Any], key: str, action: str, at: str, bad: Bad) -> None:
    value = obj.get(key)
    if value is None:
        return
    if action not in WITH_ERRNO:
        raise bad(f"{at}{key} is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
    limit = MAX_ERRNO if action == "SCMP_ACT_ERRNO" else 0xFFFF
    if not _uint(value, limit):
        raise bad(f"{at}{key} must be an integer from 0 to {limit}, not {value!r}")


def _check_arches(arches: Any, at: str, bad: Bad) -> None:
    if not isinstance(arches, list):
        raise bad(f"{at} is not a list")
    for a in arches:
        if a not in ARCHES:
            raise bad(f"{at}: unknown architecture {a!r}")


def _uint(value: Any, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


# -- helpers --------------------------------------------------------------------------------


def _names(rule: dict[str, Any]) -> list[str]:
    if rule.get("names"):
        return list(rule["names"])
    return [rule["name"]] if rule.get("name") else []


def _cap(name: str) -> str:
    up = name.strip().upper()
    return up if up.startswith("CAP_") else "CAP_" + up


def _arch(name: str) -> str:
    n = name.strip().lower()
    if n.startswith("scmp_arch_"):
        n = n[len("scmp_arch_") :]
    return _ARCH_ALIASES.get(n, n)


def _parse_kernel(text: str) -> tuple[int, int] | None:
    parts = text.strip().split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def _kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a release like "6.18.0-1-amd64"."""
    nums = []
    for part in release.split(".")[:2]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        nums.append(int(digits or 0))
    while len(nums) < 2:
        nums.append(0)
    return nums[0], nums[1]


def _applies(rule: dict[str, Any], native: str, held: set[str], kver: tuple[int, int]) -> bool:
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if native in {_arch(a) for a in exc.get("arches") or []}:
        return False
    if any(_cap(c) in held for c in exc.get("caps") or []):
        return False
    if exc.get("minKernel") and kver >= (_parse_kernel(exc["minKernel"]) or (0, 0)):
        return False
    if inc.get("arches") and native not in {_arch(a) for a in inc["arches"]}:
        return False
    if not all(_cap(c) in held for c in inc.get("caps") or []):
        return False
    return not (inc.get("minKernel") and kver < (_parse_kernel(inc["minKernel"]) or (0, 0)))


def _action(seccomp: Any, name: str, errno_ret: int | None) -> Any:
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return seccomp.TRACE(EPERM if errno_ret is None else errno_ret)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return seccomp.KILL
    if name == "SCMP_ACT_KILL_PROCESS":
        return seccomp.KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return seccomp.TRAP
    if name == "SCMP_ACT_LOG":
        return seccomp.LOG
    raise SeccompError(f"seccomp: unknown action {name!r}")  # check() stops these earlier


def _condition(seccomp: Any, arg: dict[str, Any]) -> Any:
    """seccomp.Arg of an OCI arg; for MASKED_EQ, value is the mask and valueTwo the datum."""
    op = getattr(seccomp, OPS[arg["op"]])
    return seccomp.Arg(arg["index"], op, arg.get("value", 0), arg.get("valueTwo", 0))


def _library_error(e: Exception) -> str:
    """`Library error (errno = -13)` -> `Permission denied`; other messages as they are."""
    text = str(e)
    tail = text.rpartition("=")[2].strip(" )")
    if tail.lstrip("-").isdigit():
        return os.strerror(abs(int(tail)))
    return text
