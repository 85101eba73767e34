"""`conform`: the command-line front end of the conformance harness.

Why this module exists: it is the one entry point (`conform = "conformance.cli:main"`) that
people and CI type.  It only parses arguments and dispatches; the work lives in other modules
(`conformance.hostinfo` for `doctor`, pytest with the suite's plugin for `run`,
`conformance.coverage` for `list`).

Adding a subcommand: write ``_add_<name>(subparsers)`` that creates the parser and sets
``func=<handler>``, where the handler takes the parsed ``argparse.Namespace`` and returns an
exit status; then append ``_add_<name>`` to ``SUBCOMMANDS``.

Exit statuses: 0 success, 1 failure, 2 bad usage (one line on stderr, no traceback),
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable
from typing import Any, NoReturn

PROG = "conform"


class UsageError(Exception):
    """Bad command-line usage; reported as one line on stderr with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(" ".join(message.split()))


# --------------------------------------------------------------------------------------------
# doctor
# --------------------------------------------------------------------------------------------

_MARKS = {True: "ok", False: "missing", None: "unknown"}


def _add_doctor(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="report what this host can do (kernel features, privileges, runtimes)",
        description="Probe this host and report the kernel features, privileges and tools "
        "that conformance tests depend on.",
    )
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from conformance import hostinfo  # imported here to keep `conform --help` fast
    from probes import backend as probe_backend

    info = hostinfo.get_host_info()
    probes = probe_backend.availability()
    probe_backend.close_all()
    auto = next((name for name, (ok, _) in probes.items() if ok), "none")
    if args.json:
        from conformance.runfacts import lane

        doc = hostinfo.host_dict(info)
        doc["lane"] = {"name": lane(), "cgroup_mode": info.cgroups.mode}
        doc["probes"] = {
            **{name: {"ok": ok, "detail": detail} for name, (ok, detail) in probes.items()},
            "auto": auto,
        }
        print(json.dumps(doc, indent=2, sort_keys=False))
    else:
        print(render_doctor(info, _probe_rows(probes, auto)))
    return 0


def _probe_rows(probes: dict[str, tuple[bool, str]], auto: str) -> list[Row]:
    """What each syscall tracer does here (started for real) and what --probe auto takes."""
    rows: list[Row] = [("ok" if ok else "missing", name, d) for name, (ok, d) in probes.items()]
    rows.append(("ok" if auto != "none" else "missing", "--probe auto", auto))
    return rows


Row = tuple[str, str, str]  # (mark, label, text)


def _check_row(label: str, check: Any, ok_text: str | None = None) -> Row:
    if check.error:
        return ("error", label, f"{check.detail}: {check.error}" if check.detail else check.error)
    text = check.detail
    if check.ok and ok_text is not None:
        text = ok_text
    return (_MARKS[check.ok], label, text)


def _doctor_sections(info: Any) -> list[tuple[str, list[Row]]]:
    """The doctor report as (section, rows).  ``info`` is a hostinfo.HostInfo."""
    k, priv, cg = info.kernel, info.privileges, info.cgroups
    sections: list[tuple[str, list[Row]]] = []

    rows: list[Row] = [
        ("ok" if k.release else "error", "release", k.release or "unknown"),
        ("info", "version", k.version),
        ("info", "architecture", k.machine),
        ("info", "kernel config", k.config_source or "not readable"),
    ]
    sections.append(("Kernel", rows))

    rows = [
        ("ok" if priv.is_root else "missing", "root", f"uid {priv.uid}, euid {priv.euid}"),
    ]
    if priv.cap_eff is None:
        rows.append(("unknown", "capabilities", "CapEff not readable"))
    elif priv.missing:
        n = len(priv.effective)
        rows.append(
            ("missing", "capabilities", f"{n} effective; missing {', '.join(priv.missing)}")
        )
    else:
        rows.append(("ok", "capabilities", f"all {len(priv.effective)} effective"))
    sections.append(("Privileges", rows))

    from conformance.runfacts import lane

    rows = [("ok" if cg.mode != "none" else "missing", "mode", cg.mode)]
    rows.append(("info", "lane", f"{lane()}: results of this run are cgroup {cg.mode}"))
    for m in cg.mounts:
        what = ",".join(m.controllers) or (f"name={m.name}" if m.name else "")
        if m.version == 2:
            what = " ".join(cg.v2_controllers) or "no controllers"
        rows.append(("info", f"v{m.version} mount", f"{m.mount_point} ({what})"))
    for ctrl, where in cg.controllers.items():
        rows.append(("ok", ctrl, f"{where.version} at {where.mount_point}"))
    for ctrl, enabled in cg.kernel_controllers.items():
        if ctrl not in cg.controllers:
            state = "not mounted" if enabled else "disabled"
            rows.append(("missing", ctrl, f"{state} (in /proc/cgroups)"))
    for key, path in cg.self_paths.items():
        rows.append(("info", f"self {key}", path))
    sections.append(("Cgroups", rows))

    rows = []
    for name, ns in info.namespaces.items():
        rows.append(_check_row(name, ns.unshare))
    u = info.userns
    rows.append(("info", "max_user_namespaces", str(u.max_user_namespaces)))
    for key, value in u.sysctls.items():
        rows.append(("info", key, value))
    rows.append(_check_row("unprivileged userns", u.unprivileged))
    sections.append(("Namespaces", rows))

    fs = info.filesystems
    rows = [
        ("ok" if fs.overlay_listed else "missing", "overlay listed", "/proc/filesystems"),
        _check_row("overlay mount", fs.overlay_mount),
        ("info", "idmapped mounts", fs.idmapped_mounts.detail),
    ]
    sections.append(("Filesystems", rows))

    sec = info.security
    mode = {0: "disabled", 1: "strict", 2: "filter"}.get(sec.seccomp_mode, str(sec.seccomp_mode))
    rows = [
        (
            "ok" if sec.seccomp_field else "missing",
            "seccomp",
            f"supported (this process: {mode})" if sec.seccomp_field else "no Seccomp field",
        ),
        _check_row("seccomp filter", sec.seccomp_filter),
        _check_row("python seccomp", sec.python_seccomp, "import seccomp works"),
    ]
    sections.append(("Security", rows))

    b = info.bpf
    rows = [
        _check_row("bpf syscall", b.bpf_syscall),
        _check_row("btf", b.btf),
        _check_row("tracefs", b.tracefs),
        _check_row("syscall tracepoints", b.syscall_tracepoints),
        _check_row("kprobes", b.kprobes),
        _check_row("kernel headers", b.kernel_headers),
        _check_row("bcc", b.bcc, f"import bcc works ({b.bcc.detail})"),
    ]
    sections.append(("BPF", rows))

    rows = []
    for name, tool in info.tools.items():
        if tool.path is None:
            rows.append(("missing", name, "not on PATH"))
        elif tool.error:
            rows.append(("error", name, f"{tool.path}: {tool.error}"))
        else:
            rows.append(("ok", name, f"{tool.path}: {tool.version}"))
        if tool.engine is not None:
            rows.append(_check_row(f"{name} engine", tool.engine))
    rows.append(("ok" if info.rref_path else "missing", "rref", info.rref_path or "not installed"))
    sections.append(("Runtimes", rows))

    if info.errors:
        sections.append(("Probe errors", [("error", k, v) for k, v in info.errors.items()]))
    return sections


def render_doctor(info: Any, probe_rows: list[Row] | None = None) -> str:
    """The human-readable doctor report: sections of aligned ``mark  label  text`` rows."""
    from conformance.hostinfo import capability_tokens

    sections = _doctor_sections(info)
    if probe_rows:
        sections.insert(len(sections) - (1 if info.errors else 0), ("Probes", probe_rows))
    width = max((len(label) for _, rows in sections for _, label, _ in rows), default=0)
    mark_width = max(len(m) for m in ("ok", "missing", "error", "unknown", "info")) + 2
    lines: list[str] = []
    for title, rows in sections:
        lines.append(title)
        for mark, label, text in rows:
            lines.append(f"  {'[' + mark + ']':<{mark_width}}  {label:<{width}}  {text}".rstrip())
        lines.append("")
    tokens = sorted(capability_tokens(info))
    lines.append(f"Tokens ({len(tokens)})")
    lines.extend(textwrap.wrap(" ".join(tokens), 98, initial_indent="  ", subsequent_indent="  "))
    lines.append(f"(probed in {info.probe_seconds:.2f}s)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------


def _add_run(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the behaviour tests against runtimes (a thin wrapper over pytest)",
        description="Run the conformance suite (conformance/tests) with pytest. Arguments "
        "conform does not know are passed to pytest (-k, -x, --lf, test paths...).",
    )
    p.add_argument(
        "--runtime",
        default="ref",
        metavar="LIST",
        help="comma list: ref, ref-oci, runc, crun, youki, podman, docker, "
        "oci:/path, each optionally NAME=... (default: ref)",
    )
    p.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="summary.json, junit.xml, allure-results (default reports/out/latest)",
    )
    p.add_argument(
        "-n",
        dest="workers",
        default=None,
        metavar="N",
        help="parallel workers (pytest-xdist), e.g. 2 or auto",
    )
    p.add_argument(
        "--probe",
        default="auto",
        choices=["auto", "bcc", "ptrace", "none"],
        help="trace every runtime command (attached to each test; TRACE behaviours need it): "
        "bcc, ptrace, auto (bcc, else ptrace; the default) or none",
    )
    p.set_defaults(func=cmd_run, passthrough=True)


def pytest_args(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """The pytest command line for `conform run` (the behaviour tests unless paths given)."""
    from conformance.coverage import tests_dir
    from conformance.plugin import RESULTS_DEFAULT

    extra = [a for a in extra if a != "--"]
    targets = [a for a in extra if not a.startswith("-") and ("::" in a or os.path.exists(a))]
    argv = [] if targets else [str(tests_dir())]
    argv += ["--runtime", args.runtime, "--results", args.results or RESULTS_DEFAULT]
    argv += ["--probe", args.probe]
    if args.workers:
        argv += ["-n", str(args.workers)]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        argv += ["-p", "conformance.plugin"]
    return argv + extra


def cmd_run(args: argparse.Namespace) -> int:
    """exec pytest (a fresh interpreter: the suite's modules are imported, and assertion-
    rewritten, by pytest itself); pytest's exit status is conform's."""
    argv = [sys.executable, "-m", "pytest", *pytest_args(args, args.extra)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
    return 1  # not reached


# --------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------


def _add_list(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "list",
        help="print the behaviour catalogue and the tests covering each ID",
        description="Print every behaviour (ID, level, title, basis and clause) with the "
        "behaviour tests that check it (collect-only: no container starts).",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--uncovered", action="store_true", help="only IDs without a test")
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from conformance import catalogue, coverage

    code, by_id, output = coverage.collect()
    if code not in (0, 5):  # 5: no tests collected
        print(output, file=sys.stderr)
        print(
            f"{PROG}: collecting the behaviour tests failed (pytest exit {code})", file=sys.stderr
        )
        return 1
    rows = coverage.table(catalogue.load(), by_id)
    covered, total = sum(1 for r in rows if r["tests"]), len(rows)
    if args.uncovered:
        rows = [r for r in rows if not r["tests"]]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        tests = ", ".join(r["tests"]) or "-"
        level = r["level"] + ("*" if r["derived"] else "")
        print(f"{r['id']:<9} {level:<7} {r['title']}")
        print(f"{'':<17} basis: {r['basis']}  {r['clause']}")
        print(f"{'':<17} tests: {tests}")
    print(
        f"({covered} of {total} behaviours covered; * a level derived from the behaviour "
        "the evidence is for; basis policy: stricter than any reference)"
    )
    return 0


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _add_report(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="merge results of runs into one Allure report and one behaviour matrix",
        description="Merge the results directories of `conform run` (any runtimes, runners, "
        "kernels) into one Allure 3 report and one behaviour x runtime@runner matrix "
        "(matrix.html/.json/.md), compared with the previous report in OUT/history; print "
        "their paths.",
    )
    p.add_argument(
        "dirs",
        nargs="*",
        metavar="RESULTS_DIR",
        help="results of `conform run` (default reports/out/latest)",
    )
    p.add_argument(
        "--results",
        action="append",
        default=[],
        metavar="DIR",
        help="a results directory (repeatable; same as a RESULTS_DIR argument)",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="OUT",
        help="report directory (default <results>/html for one input, else reports/out/report)",
    )
    p.add_argument(
        "--history",
        default=None,
        metavar="DIR",
        help="history of an earlier report (its OUT/history) to compare with and extend",
    )
    p.add_argument(
        "--compare",
        default=None,
        metavar="RUN",
        help="compare with this run instead of the last one: a history id or a matrix.json",
    )
    p.add_argument(
        "--last", type=int, default=14, metavar="N", help="runs in trends and flaky checks"
    )
    p.add_argument("--no-allure", action="store_true", help="write only the matrix")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from conformance.plugin import RESULTS_DEFAULT
    from reports.allure import ReportError
    from reports.build import build_report
    from reports.model import ResultsError

    dirs = [*args.dirs, *args.results] or [RESULTS_DEFAULT]
    out = args.output or (
        os.path.join(dirs[0], "html")
        if len(dirs) == 1
        else os.path.join("reports", "out", "report")
    )
    if args.last < 1:
        raise UsageError(f"--last {args.last}: must be 1 or more")
    try:
        built = build_report(
            dirs,
            out,
            history_dir=args.history,
            compare=args.compare,
            last=args.last,
            with_allure=not args.no_allure,
        )
    except (ReportError, ResultsError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    if built.allure_index:
        print(f"report: {built.allure_index}")
    print(f"matrix: {built.matrix_html}")
    return 0


# --------------------------------------------------------------------------------------------
# trace
# --------------------------------------------------------------------------------------------


def _add_trace(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "trace",
        help="run a command and print the container syscalls its process tree made",
        description="Run COMMAND traced from its first syscall (clone, unshare, setns, mount, "
        "pivot_root, sethostname, mknod, cgroup writes, ...) and print the timeline, one "
        "block per process. Exit status: the command's own; 124 when it timed out, 127 when "
        "it could not start, 1 when no probe backend works here.",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "bcc", "ptrace"],
        help="tracer: bcc (eBPF on tracepoints), ptrace, or auto (bcc, else ptrace)",
    )
    p.add_argument("--json", default=None, metavar="FILE", help="also write the trace as JSONL")
    p.add_argument(
        "--timeout", type=float, default=300.0, metavar="S", help="kill COMMAND after S seconds"
    )
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    p.set_defaults(func=cmd_trace)


def cmd_trace(args: argparse.Namespace) -> int:
    from probes import backend as probe_backend
    from probes.timeline import render

    argv = list(args.command)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise UsageError("trace: no command given (conform trace [OPTIONS] -- COMMAND...)")
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout:g}: must be more than 0")
    tracer, why = probe_backend.select(args.backend)
    if tracer is None:
        print(f"{PROG}: trace: {why}", file=sys.stderr)
        return 1
    print(f"{PROG}: tracing with the {why}", file=sys.stderr)
    sys.stderr.flush()
    timed_out = False
    try:
        done, trace = tracer.trace(argv, timeout=args.timeout)
        code = done.returncode
    except probe_backend.CommandTimeout as e:
        trace, code, timed_out = e.trace, 124, True
    except OSError as e:
        print(f"{PROG}: trace: cannot run {argv[0]}: {e.strerror or e}", file=sys.stderr)
        return 127
    finally:
        probe_backend.close_all()
    sys.stdout.write(render(trace))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(trace.to_jsonl())
    if timed_out:
        print(f"{PROG}: trace: {argv[0]} did not finish within {args.timeout:g}s", file=sys.stderr)
    return code if code >= 0 else 128 - code


# --------------------------------------------------------------------------------------------
# lane
# --------------------------------------------------------------------------------------------


def _add_lane(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "lane",
        help="run the tests on another kernel: v2 boots a pure cgroup v2 guest (qemu)",
        description="Boot Debian's 6.1 kernel under qemu with only cgroup2 mounted, the host's "
        "root shared read-only, and run there the project's cgroup v2 tests and the suite's "
        "CG, CGNS, USR, PID, LIFE and SEC-03 behaviours against ref and runc (runner label "
        "cgroup-v2). Results (junit.xml, summary.json, allure-results) come back to OUT.",
    )
    p.add_argument("lane", choices=["v2"], help="which lane (v2: pure cgroup v2)")
    p.add_argument("--out", default="reports/out/v2", metavar="DIR", help="results directory")
    p.add_argument(
        "--only", default="all", choices=["all", "project", "conformance"], help="which step"
    )
    p.add_argument(
        "--timeout", type=float, default=1500.0, metavar="S", help="the whole guest's deadline"
    )
    p.set_defaults(func=cmd_lane)


def cmd_lane(args: argparse.Namespace) -> int:
    from lanes import v2
    from lanes.kernel import LaneError

    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout:g}: must be more than 0")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        outcome = v2.run(args.out, repo, only=args.only, timeout=args.timeout)
    except LaneError as e:
        print(f"{PROG}: lane v2: {e}", file=sys.stderr)
        return 1
    print(
        f"lane v2: guest up in {outcome.boot_seconds:.1f}s, "
        f"whole guest {outcome.wall_seconds:.0f}s; results in {args.out}"
    )
    for s in outcome.steps:
        state = "passed" if s.code == 0 else f"FAILED (exit {s.code})"
        print(f"  {s.name}: {state} in {s.seconds}s ({args.out}/{s.name}/output.log)")
    if not outcome.steps:
        print(f"{PROG}: lane v2: no step finished (see {args.out}/console.log)", file=sys.stderr)
    return 0 if outcome.ok else 1


# --------------------------------------------------------------------------------------------
# Parser and entry point
# --------------------------------------------------------------------------------------------

#: One function per subcommand; each registers its parser on the subparsers action.
SUBCOMMANDS: list[Callable[[Any], None]] = [
    _add_doctor,
    _add_run,
    _add_list,
    _add_trace,
    _add_report,
    _add_lane,
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Conformance harness for Linux container runtimes.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "passthrough", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra = extra
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help / --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`conform doctor | head`): stop quietly, and point stdout at
        # /dev/null so the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # last resort: one line, no traceback
        print(f"{PROG}: {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
