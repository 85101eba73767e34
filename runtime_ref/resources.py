"""Every resource limit rref knows, named once: flag, OCI place, checks, cgroup files.

One `Resource` row per limit says everything the rest of rref needs: the
docker flag(s) (`cli` builds its options from them), how the flag's text
becomes a value and where it goes in OCI `linux.resources` (`limits`), the
docker HostConfig field it shows as (`containers`), docker's refusal messages
(`validate`, byte-for-byte), and the file it is written to on cgroup v1 and
v2 (the drivers). Adding a limit is one row here plus its tests; only a limit
whose files must be written in a careful order (memory with swap, cpu
quota with period) also needs code in the drivers.

Only `errors` is imported: the table must stay cheap for `rref run` and for
the conformance suite, and the cgroup package reads it without a loop.
"""

from __future__ import annotations

from .errors import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Check = Callable[[Any, dict[str, Any], "int | None"], None]

MIN_MEMORY = 6 * 1024 * 1024  # docker's linuxMinMemory
CPU_ONLINE = "/sys/devices/system/cpu/online"
NODE_ONLINE = "/sys/devices/system/node/online"


class Resource:
    """One limit. `name` is the flag's argparse dest (and ContainerSpec's field).

    kind: how the flag's text is read: "bytes" (512m), "int", "str", or
    "switch" (a flag without a value, true when given). v1/v2: the file in the
    container's cgroup (None: no such file on that version); `to_v1`/`to_v2`
    convert the OCI value to what the file takes when the two differ.
    """

    __slots__ = (
        "check",
        "controller",
        "flags",
        "host",
        "key",
        "kind",
        "name",
        "section",
        "to_v1",
        "to_v2",
        "v1",
        "v2",
        "what",
    )

    def __init__(
        self,
        name: str,
        flags: tuple[str, ...],
        path: str,
        kind: str,
        what: str,
        host: tuple[str, object],
        controller: str,
        v1: str | None,
        v2: str | None,
        to_v1: Callable[[Any], object] | None = None,
        to_v2: Callable[[Any], object] | None = None,
        check: Check | None = None,
    ) -> None:
        self.name = name
        self.flags = flags
        self.section, _, self.key = path.partition(".")
        self.kind = kind
        self.what = what  # the noun in "invalid <what>: ..." messages
        self.host = host  # docker HostConfig field and its value when unset
        self.controller = controller  # v1 hierarchy's controller name
        self.v1, self.v2, self.to_v1, self.to_v2 = v1, v2, to_v1, to_v2
        self.check = check

    @property
    def path(self) -> str:
        """Where the value lives under OCI `linux.resources` ("memory.limit")."""
        return f"{self.section}.{self.key}"

    def get(self, resources: dict[str, Any]) -> Any:
        """This limit's value in `resources`, or None when it is not set."""
        section = resources.get(self.section)
        return section.get(self.key) if isinstance(section, dict) else None

    def file(self, version: int) -> str | None:
        return self.v1 if version == 1 else self.v2

    def file_value(self, version: int, value: Any) -> object:
        """The OCI value as the cgroup `version` file takes it."""
        conv = self.to_v1 if version == 1 else self.to_v2
        return conv(value) if conv is not None else value

    def __repr__(self) -> str:
        return f"Resource({self.name}, {self.path})"


# -- docker's checks, one per limit (run after every value's type is checked) -----------


def _check_memory(limit: int, res: dict[str, Any], ncpus: int | None) -> None:
    if limit != 0 and limit < MIN_MEMORY:
        raise CgroupError("Minimum memory limit allowed is 6MB")


def _check_swap(swap: int, res: dict[str, Any], ncpus: int | None) -> None:
    limit = MEMORY.get(res) or 0
    if swap < -1:
        raise CgroupError(f"invalid memory swap limit: {swap} (-1 means unlimited)")
    if limit > 0 and swap > 0 and swap < limit:
        raise CgroupError("Minimum memoryswap limit should be larger than memory limit, see usage")


def _check_reservation(reservation: int, res: dict[str, Any], ncpus: int | None) -> None:
    limit = MEMORY.get(res) or 0
    if reservation < 0:
        raise CgroupError(f"invalid memory reservation: {reservation} (must not be negative)")
    if 0 < reservation < MIN_MEMORY:
        raise CgroupError("Minimum memory reservation allowed is 6MB")
    if limit > 0 and reservation > 0 and limit < reservation:
        raise CgroupError(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )


def _check_oom(value: object, res: dict[str, Any], ncpus: int | None) -> None:
    if not isinstance(value, bool):
        raise CgroupError(f"invalid disableOOMKiller: {value!r}")


def _check_period(period: int, res: dict[str, Any], ncpus: int | None) -> None:
    if period != 0 and not 1000 <= period <= 1000000:
        raise CgroupError(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )


def _check_quota(quota: int, res: dict[str, Any], ncpus: int | None) -> None:
    if quota < -1:
        raise CgroupError(f"invalid cpu quota: {quota} (-1 means unlimited)")
    if 0 < quota < 1000:
        raise CgroupError("CPU cfs quota can not be less than 1ms (i.e. 1000)")


def _check_shares(shares: int, res: dict[str, Any], ncpus: int | None) -> None:
    if shares < 0:
        raise CgroupError(f"invalid cpu shares: {shares} (must not be negative)")


def _check_cpus(cpus: object, res: dict[str, Any], ncpus: int | None) -> None:
    if cpus != "":
        have = (f"0-{ncpus - 1}" if ncpus > 1 else "0") if ncpus else _online(CPU_ONLINE, "0")
        _check_list(cpus, "cpus", have)


def _check_mems(mems: object, res: dict[str, Any], ncpus: int | None) -> None:
    if mems != "":
        _check_list(mems, "mems", _online(NODE_ONLINE, "0"))


def _check_weight(weight: int, res: dict[str, Any], ncpus: int | None) -> None:
    if weight != 0 and not 10 <= weight <= 1000:
        raise CgroupError("Range of blkio weight is from 10 to 1000")


# -- v1 value -> v2 value -------------------------------------------------------------


def cpu_weight(shares: int) -> int:
    """v1 cpu.shares (2..262144) -> v2 cpu.weight (1..10000), as runc/crun convert."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def pids_max(limit: int) -> object:
    """OCI pids.limit -> pids.max (both versions): 0 or -1 mean no limit."""
    return "max" if limit <= 0 else limit


# -- the table ------------------------------------------------------------------------

MEMORY = Resource(
    "memory",
    ("-m", "--memory"),
    "memory.limit",
    "bytes",
    "memory limit",
    ("Memory", 0),
    "memory",
    "memory.limit_in_bytes",
    "memory.max",
    check=_check_memory,
)
ROWS: tuple[Resource, ...] = (
    MEMORY,
    # OCI's swap is memory+swap (docker's --memory-swap); v2's swap.max is swap alone:
    # the v2 driver converts (swap_max), knowing the memory limit
    Resource(
        "memory_swap",
        ("--memory-swap",),
        "memory.swap",
        "bytes",
        "memory swap limit",
        ("MemorySwap", 0),
        "memory",
        "memory.memsw.limit_in_bytes",
        "memory.swap.max",
        check=_check_swap,
    ),
    Resource(
        "memory_reservation",
        ("--memory-reservation",),
        "memory.reservation",
        "bytes",
        "memory reservation",
        ("MemoryReservation", 0),
        "memory",
        "memory.soft_limit_in_bytes",
        "memory.low",
        check=_check_reservation,
    ),
    Resource(
        "oom_kill_disable",
        ("--oom-kill-disable",),
        "memory.disableOOMKiller",
        "switch",
        "disableOOMKiller",
        ("OomKillDisable", False),
        "memory",
        "memory.oom_control",
        None,  # cgroup v2 has no way to turn the OOM killer off
        check=_check_oom,
    ),
    Resource(
        "cpu_shares",
        ("-c", "--cpu-shares"),
        "cpu.shares",
        "int",
        "cpu shares",
        ("CpuShares", 0),
        "cpu",
        "cpu.shares",
        "cpu.weight",
        to_v2=cpu_weight,
        check=_check_shares,
    ),
    Resource(
        "cpu_period",
        ("--cpu-period",),
        "cpu.period",
        "int",
        "cpu period",
        ("CpuPeriod", 0),
        "cpu",
        "cpu.cfs_period_us",
        "cpu.max",  # "<quota> <period>", with the quota
        check=_check_period,
    ),
    Resource(
        "cpu_quota",
        ("--cpu-quota",),
        "cpu.quota",
        "int",
        "cpu quota",
        ("CpuQuota", 0),
        "cpu",
        "cpu.cfs_quota_us",
        "cpu.max",
        check=_check_quota,
    ),
    Resource(
        "cpuset_cpus",
        ("--cpuset-cpus",),
        "cpu.cpus",
        "str",
        "cpuset cpus",
        ("CpusetCpus", ""),
        "cpuset",
        "cpuset.cpus",
        "cpuset.cpus",
        check=_check_cpus,
    ),
    Resource(
        "cpuset_mems",
        ("--cpuset-mems",),
        "cpu.mems",
        "str",
        "cpuset mems",
        ("CpusetMems", ""),
        "cpuset",
        "cpuset.mems",
        "cpuset.mems",
        check=_check_mems,
    ),
    Resource(
        "pids_limit",
        ("--pids-limit",),
        "pids.limit",
        "int",
        "pids limit",
        ("PidsLimit", 0),
        "pids",
        "pids.max",
        "pids.max",
        to_v1=pids_max,
        to_v2=pids_max,
    ),
    # the weight file depends on the I/O scheduler (CFQ's blkio.weight is gone since
    # 5.0, BFQ's is blkio.bfq.weight); the drivers try both names
    Resource(
        "blkio_weight",
        ("--blkio-weight",),
        "blockIO.weight",
        "int",
        "blkio weight",
        ("BlkioWeight", 0),
        "blkio",
        "blkio.weight",
        "io.weight",
        check=_check_weight,
    ),
)
BY_NAME = {r.name: r for r in ROWS}
V2_CONTROLLER = {"blkio": "io"}  # v1 controller name -> v2's, where they differ

# docker's --cpus is shorthand for a quota over a 100 ms period (NanoCPUs)
CPUS_FLAG = ("cpus", ("--cpus",))
CPUS_PERIOD = 100000


def cli_flags() -> list[tuple[str, tuple[str, ...], str]]:
    """(argparse dest, flags, kind) of every resource flag, --cpus with the cpu rows."""
    out = [(r.name, r.flags, r.kind) for r in ROWS]
    at = next(i for i, r in enumerate(ROWS) if r.controller == "cpu")
    out.insert(at, (CPUS_FLAG[0], CPUS_FLAG[1], "float"))
    return out


def flag_names() -> tuple[str, ...]:
    """Every resource flag's argparse dest, --cpus included (CreateOptions.resources keys)."""
    return tuple(dest for dest, _, _ in cli_flags())


def by_controller(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The set limits grouped by the controller that enforces them, in table order."""
    out: dict[str, dict[str, Any]] = {}
    for r in ROWS:
        value = r.get(resources)
        if value is not None:
            out.setdefault(r.controller, {})[r.key] = value
    return list(out.items())


def host_config(resources: dict[str, Any]) -> dict[str, Any]:
    """docker's HostConfig resource fields (the unset value when a limit is not set)."""
    out: dict[str, Any] = {}
    for r in ROWS:
        field, unset = r.host
        value = r.get(resources)
        out[field] = unset if value is None else value
    out["OomKillDisable"] = bool(out["OomKillDisable"])
    return out


# -- validation -----------------------------------------------------------------------


def validate(resources: dict[str, Any], ncpus: int | None = None) -> None:
    """Refuse bad limits with docker's messages: every integer's type first, then the values."""
    given = [(r, r.get(resources)) for r in ROWS]
    given = [(r, v) for r, v in given if v is not None]
    for r, v in given:
        if r.kind in ("bytes", "int") and (isinstance(v, bool) or not isinstance(v, int)):
            raise CgroupError(f"invalid {r.what}: {v!r} is not an integer")
    for r, v in given:
        if r.check is not None:
            r.check(v, resources, ncpus)


def parse_cpuset(text: str) -> set[int]:
    """Parse a kernel cpu/node list ("0-2,5"); ValueError if it is not one."""
    out: set[int] = set()
    text = text.strip()
    if not text:
        return out
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"invalid cpuset list {text!r}")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"invalid cpuset range {part!r} in {text!r}")
        out.update(range(a, b + 1))
    return out


def _online(path: str, default: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _check_list(value: object, kind: str, available: str) -> None:
    if not isinstance(value, str):
        raise CgroupError(f"Invalid value {value!r} for cpuset {kind}")
    try:
        wanted, have = parse_cpuset(value), parse_cpuset(available)
    except ValueError:
        raise CgroupError(f"Invalid value {value} for cpuset {kind}") from None
    if not wanted <= have:
        noun = "CPUs" if kind == "cpus" else "memory nodes"
        raise CgroupError(
            f"Requested {noun} are not available - requested {value}, available: {available}"
        )
