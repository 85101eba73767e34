"""pytest plugin of the conformance suite (loaded in every pytest run through pytest11).

Why it is built this way: it must cost nothing in runs that are not conformance runs, so
it only registers its options and markers until ``--runtime``/``--results`` is given or a
collected test carries ``@pytest.mark.behaviour``. Then it:

* parametrises every behaviour test by runtime (``--runtime ref,runc,podman``; the id is
  the runtime name, also an Allure parameter);
* selects by exact behaviour ID with ``--behaviour ID[,ID]`` (repeatable; ``RUNTIME:ID,...``
  for one runtime only) and deselects everything else -- unlike ``-k``, which matches
  substrings of test names too (``-k INIT`` selects test_init_is_pid_1);
* checks markers at collection: a behaviour ID not in the catalogue or a ``requires``
  token nobody defines is a collection error;
* before each test, skips with ``unsupported: <reason>`` when the runtime is not installed
  or a required host/adapter capability is missing; turns known deviations into strict
  xfails; labels tests for Allure (epic = area title, feature = area, story = ID,
  severity from level, tag = runtime);
* records a verdict per test (pass, fail, broken, unsupported, xfail) and writes
  ``summary.json``, ``junit.xml`` and ``allure-results/`` under ``--results``;
* at session end, lists host resources the session left behind, as an error.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
import pytest

from conformance.errors import RuntimeFailure, Unsupported

if TYPE_CHECKING:
    from conformance.adapters.base import ContainerSpec, Runtime
    from conformance.catalogue import Behaviour
    from conformance.containers import Containers
    from conformance.launcher import Record
    from conformance.session import State
    from conformance.workspace import Workspace

RESULTS_DEFAULT = "reports/out/latest"
_STATE = pytest.StashKey["State"]()
#: Set at collection on every behaviour test: its behaviour IDs and its runtime's name.
_BEHAVIOURS = pytest.StashKey[list[str]]()
_RUNTIME = pytest.StashKey[str]()


def _skip(e: Unsupported) -> BaseException:
    """The pytest skip an `Unsupported` becomes; it keeps the Unsupported as its cause, so
    the verdict comes from that type (see `_unsupported`), never from the text."""
    skip = pytest.skip.Exception(str(e))
    skip.__cause__ = e
    return skip


def _unsupported(exc: BaseException | None) -> bool:
    return isinstance(exc, pytest.skip.Exception) and isinstance(exc.__cause__, Unsupported)


# ------------------------------------------------------------------------------ options


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("conformance", "container runtime conformance suite")
    g.addoption(
        "--runtime",
        dest="conform_runtime",
        default=None,
        metavar="LIST",
        help="runtimes to test, comma separated: ref, ref-oci, runc, crun, youki, "
        "podman, docker, oci:/path, each optionally NAME=... (default: ref)",
    )
    g.addoption(
        "--results",
        dest="conform_results",
        default=None,
        metavar="DIR",
        help=f"where summary.json, junit.xml and allure-results go "
        f"(default {RESULTS_DEFAULT} when --runtime is given)",
    )
    g.addoption(
        "--behaviour",
        dest="conform_behaviour",
        action="append",
        default=None,
        metavar="[RUNTIME:]ID[,ID]",
        help="run only the tests of these behaviour IDs (exact IDs, not substrings like -k); "
        "repeatable; RUNTIME:ID,... restricts one runtime of --runtime, the others then run "
        "only unscoped IDs",
    )
    g.addoption(
        "--runner-label",
        dest="conform_runner_label",
        default=None,
        metavar="LABEL",
        help="name of this runner in merged reports (default $CONFORM_RUNNER_LABEL or the "
        "hostname); written to <results>/runner.json with the host's facts",
    )
    g.addoption(
        "--probe",
        dest="conform_probe",
        default=None,
        choices=["auto", "bcc", "ptrace", "none"],
        help="trace every runtime command with this probe backend and attach the traces; "
        "auto: bcc, else ptrace (default none; `conform run` defaults to auto)",
    )
    g.addoption(
        "--deviations",
        dest="conform_deviations",
        default=None,
        metavar="DIR",
        help="directory of <runtime>.toml known-deviation files, searched before the packaged ones",
    )


@pytest.hookimpl(tryfirst=True)  # before junitxml's and allure's read their options
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "behaviour(*ids): the catalogue behaviour IDs a conformance test checks"
    )
    config.addinivalue_line(
        "markers",
        "requires(*tokens): host/adapter capability tokens a "
        "conformance test needs (else: unsupported)",
    )
    opt = config.option
    if opt.conform_runtime is None and opt.conform_results is None and not opt.conform_behaviour:
        return  # inert until a behaviour test shows up (see _state)
    results = Path(opt.conform_results or RESULTS_DEFAULT).absolute()
    _activate(config, opt.conform_runtime or "ref", str(results))
    worker = hasattr(config, "workerinput")
    if not worker:  # the controller (or a single process) owns the results directory
        results.mkdir(parents=True, exist_ok=True)
        for stale in ("summary.json", "junit.xml", "runner.json"):
            with contextlib.suppress(FileNotFoundError):
                (results / stale).unlink()
        if getattr(opt, "xmlpath", None) is None:
            opt.xmlpath = str(results / "junit.xml")
    if (
        importlib.util.find_spec("allure_pytest")
        and getattr(opt, "allure_report_dir", None) is None
    ):
        allure_dir = results / "allure-results"
        if not worker:
            shutil.rmtree(allure_dir, ignore_errors=True)
        opt.allure_report_dir = str(allure_dir)


def _activate(config: pytest.Config, runtime_option: str, results: str | None) -> State:
    from conformance.adapters import ChoiceError
    from conformance.session import State

    try:
        state = State(runtime_option, results, config.option.conform_deviations)
    except ChoiceError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[_STATE] = state
    config.pluginmanager.register(_Recorder(state, config), "conformance-recorder")
    from conformance import launcher

    launcher.set_tracing(config.option.conform_probe or "none")
    return state


def _state(config: pytest.Config) -> State:
    """The session state; behaviour tests without --runtime activate the suite for `ref`."""
    state = config.stash.get(_STATE, None)
    if state is None:
        state = _activate(config, "ref", None)
    return state


def _active(config: pytest.Config) -> bool:
    return config.stash.get(_STATE, None) is not None


# ------------------------------------------------------------------------------ collection


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marks = list(metafunc.definition.iter_markers("behaviour"))
    if not marks:
        return
    from conformance import catalogue, tokens

    where = metafunc.definition.nodeid
    ids = [a for m in marks for a in m.args]
    if not ids or not all(isinstance(i, str) for i in ids):
        raise pytest.Collector.CollectError(f"{where}: @pytest.mark.behaviour needs IDs")
    cat = catalogue.load()
    unknown = [i for i in ids if i not in cat]
    if unknown:
        raise pytest.Collector.CollectError(
            f"{where}: unknown behaviour ID(s) {', '.join(unknown)} (not in behaviours.toml)"
        )
    required = [a for m in metafunc.definition.iter_markers("requires") for a in m.args]
    bad = tokens.unknown(required)
    if bad:
        raise pytest.Collector.CollectError(
            f"{where}: unknown requires token(s) {', '.join(bad)} (see conformance.tokens "
            "and hostinfo.KNOWN_TOKENS)"
        )
    if "runtime" not in metafunc.fixturenames:
        raise pytest.Collector.CollectError(
            f"{where}: a behaviour test must take the `runtime` fixture"
        )
    state = _state(metafunc.config)
    metafunc.parametrize("runtime", state.names, ids=state.names, indirect=True, scope="session")


def _behaviours(item: pytest.Item) -> list[str]:
    return [a for m in item.iter_markers("behaviour") for a in m.args]


def _runtime_param(item: pytest.Item) -> str | None:
    """The runtime parameter given at collection (read once, into the item's stash)."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("runtime") if callspec else None


def parse_behaviour_option(
    values: list[str], runtimes: list[str], known: set[str]
) -> tuple[set[str], dict[str, set[str]]]:
    """``--behaviour`` values -> (IDs for every runtime, runtime -> IDs for it alone).
    Unknown IDs or runtimes are usage errors."""
    everywhere: set[str] = set()
    scoped: dict[str, set[str]] = {}
    for value in values:
        scope, sep, ids_text = value.rpartition(":")
        ids = {i.strip() for i in ids_text.split(",") if i.strip()}
        if not ids:
            raise pytest.UsageError(f"--behaviour {value!r}: no behaviour ID")
        unknown = sorted(ids - known)
        if unknown:
            raise pytest.UsageError(
                f"--behaviour {value!r}: unknown behaviour ID(s) {', '.join(unknown)} "
                "(see `conform list`)"
            )
        if not sep:
            everywhere |= ids
        elif scope in runtimes:
            scoped.setdefault(scope, set()).update(ids)
        else:
            raise pytest.UsageError(
                f"--behaviour {value!r}: {scope!r} is not a runtime of --runtime "
                f"({', '.join(runtimes)})"
            )
    return everywhere, scoped


def _select_behaviours(config: pytest.Config, items: list[pytest.Item], state: State) -> None:
    """--behaviour: keep the behaviour tests of the chosen IDs, deselect everything else."""
    values = config.option.conform_behaviour
    if not values:
        return
    everywhere, scoped = parse_behaviour_option(values, state.names, set(state.catalogue.ids()))
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        if _BEHAVIOURS in item.stash:
            ids: list[str] = item.stash[_BEHAVIOURS]
            wanted = everywhere | scoped.get(item.stash[_RUNTIME], set())
            (keep if wanted.intersection(ids) else drop).append(item)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselect: `-k CG-02` selects by behaviour ID
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _active(config):
        return
    from conformance import catalogue

    cat = catalogue.load()
    state = _state(config)
    for item in items:
        ids, name = _behaviours(item), _runtime_param(item)
        if ids and name is not None:
            item.stash[_BEHAVIOURS] = ids
            item.stash[_RUNTIME] = name
    _select_behaviours(config, items, state)
    allure = importlib.util.find_spec("allure_pytest") is not None
    for item in items:
        if _BEHAVIOURS not in item.stash:
            continue
        ids, name = item.stash[_BEHAVIOURS], item.stash[_RUNTIME]
        item.extra_keyword_matches.update(ids)
        if allure:
            _allure_labels(item, cat[ids[0]], ids, name)
        item.user_properties.append(("behaviour", ",".join(ids)))
        item.user_properties.append(("runtime", name))
        test_name = getattr(item, "originalname", item.name)
        try:
            known = state.deviations_for(name)
        except ValueError as e:  # a malformed deviations file: say so before running anything
            raise pytest.UsageError(f"known deviations of {name}: {e}") from None
        for dev in known:
            if dev.applies(ids, test_name):
                item.add_marker(
                    pytest.mark.xfail(strict=True, reason=dev.text(), raises=AssertionError)
                )
                break


def _allure_labels(item: pytest.Item, first: Behaviour, ids: list[str], runtime: str) -> None:
    """allure-pytest reads these marks: epic = area title, feature = area, story = IDs."""
    from conformance import catalogue

    cat = catalogue.load()
    label = pytest.mark.allure_label
    item.add_marker(label(first.area_title, label_type="epic"))
    item.add_marker(label(first.area, label_type="feature"))
    item.add_marker(label(*(f"{i} {cat[i].title}" for i in ids), label_type="story"))
    item.add_marker(label(first.severity, label_type="severity"))
    item.add_marker(label(first.level, label_type="level"))
    item.add_marker(label(*ids, label_type="behaviour"))
    item.add_marker(label(item.nodeid, label_type="nodeid"))
    item.add_marker(label(runtime, label_type="tag"))
    item.add_marker(label(f"basis: {first.basis}", label_type="tag"))
    item.add_marker(
        pytest.mark.allure_link(first.clause, name=f"{first.basis} clause", link_type="link")
    )
    for link in first.links[:3]:
        item.add_marker(pytest.mark.allure_link(link, name=link, link_type="link"))


# ------------------------------------------------------------------------------ running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Skip as unsupported before any fixture runs; a fixture's Unsupported is a skip too."""
    if _BEHAVIOURS not in item.stash:
        return (yield)
    try:
        _check_supported(item)
        return (yield)
    except Unsupported as e:
        raise _skip(e) from e


def _check_supported(item: pytest.Item) -> None:
    state = _state(item.config)
    name = item.stash[_RUNTIME]
    state.transcript.clear()
    _reset_evidence()
    if importlib.util.find_spec("allure"):
        import allure

        with contextlib.suppress(Exception):
            allure.dynamic.parameter("runtime", name)
    required = [a for m in item.iter_markers("requires") for a in m.args]
    missing = state.unsupported(name, required)
    if missing is not None:
        raise missing


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """An adapter's Unsupported (e.g. a spec it cannot express) is a skip, not an error."""
    try:
        return (yield)
    except Unsupported as e:
        if _BEHAVIOURS not in item.stash:
            raise
        raise _skip(e) from e


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    if _BEHAVIOURS not in item.stash:
        return
    from conformance.verdicts import classify

    rep: pytest.TestReport = outcome.get_result()
    exc = call.excinfo.value if call.excinfo else None
    skip_reason = ""
    if rep.skipped and isinstance(rep.longrepr, tuple):
        skip_reason = rep.longrepr[2].removeprefix("Skipped: ")
    wasxfail = getattr(rep, "wasxfail", None)
    verdict = classify(
        rep.when,
        rep.outcome,
        runtime_failure=isinstance(exc, RuntimeFailure),
        assertion=isinstance(exc, AssertionError | pytest.fail.Exception),
        wasxfail=wasxfail,
        unsupported=_unsupported(exc),
    )
    reason = skip_reason or (wasxfail or "")
    if rep.failed:
        reason = _reason(exc) if exc is not None else str(rep.longrepr)
        if rep.when != "call":
            reason = f"{rep.when}: {reason}"
    # An attribute of the report (not user_properties): xdist ships it to the controller.
    rep.conform = {  # type: ignore[attr-defined]
        "runtime": item.stash[_RUNTIME],
        "behaviours": item.stash[_BEHAVIOURS],
        "verdict": verdict,
        "reason": reason[:2000],
    }
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        from conformance import launcher

        launcher.finish_traces()
        _attach_transcript(item, rep)
        _attach_evidence(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """Traced processes still open (held runtimes) end with the test's containers."""
    try:
        return (yield)
    finally:
        if _active(item.config):
            from conformance import launcher

            launcher.finish_traces(running=True)


def _reason(exc: BaseException) -> str:
    """`Type: message`, without pytest's assertion introspection that follows it."""
    text = str(exc).split("\nassert ", 1)[0].strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _attach_transcript(item: pytest.Item, rep: pytest.TestReport) -> None:
    """The runtime commands of this test, for failure output and the Allure report."""
    state = _state(item.config)
    if not state.transcript:
        return
    lines = []
    for r in state.transcript:
        lines.append(f"$ {' '.join(r.argv)[:400]}")
        lines.append(f"  -> exit {r.returncode} in {r.seconds:.2f}s")
        if r.returncode not in (0, None) and r.stderr.strip():
            lines.append("  stderr: " + r.stderr.strip()[-1500:].replace("\n", "\n          "))
    text = "\n".join(lines)
    if not rep.passed:
        rep.sections.append(("runtime commands", text))
    if getattr(item.config.option, "allure_report_dir", None):
        import allure

        with contextlib.suppress(Exception):
            allure.attach(
                text, name="runtime commands", attachment_type=allure.attachment_type.TEXT
            )


def _reset_evidence() -> None:
    from conformance import evidence

    evidence.clear()


def _attach_evidence(item: pytest.Item) -> None:
    """Per test, for the Allure report: each runtime command's full stdout/stderr, the OCI
    config.json documents, the inspector's JSON and the host-side facts read."""
    if not getattr(item.config.option, "allure_report_dir", None):
        return
    import allure

    from conformance import evidence

    state = _state(item.config)
    text, jsn = allure.attachment_type.TEXT, allure.attachment_type.JSON
    parts = []
    for n, r in enumerate(state.transcript, 1):
        parts.append(f"### {n}. $ {' '.join(r.argv)}\nexit {r.returncode} in {r.seconds:.2f}s")
        parts.append(f"--- stdout\n{r.stdout.rstrip()}\n--- stderr\n{r.stderr.rstrip()}")
    attachments = [("runtime stdout and stderr", "\n".join(parts), text)] if parts else []
    for nt in evidence.notes("oci-config"):
        attachments.append((f"OCI config {nt.name}", nt.text, jsn))
    for nt in evidence.notes("inspector"):
        attachments.append(("inspector JSON", nt.text, jsn))
    host = evidence.notes("host")
    if host:
        attachments.append(("host facts read", evidence.render_host(host), text))
    traced = [(r.argv, r.trace) for r in state.transcript if r.trace is not None]
    if traced:
        from probes.report import commands_jsonl, commands_timeline

        attachments.append(("syscall trace", commands_timeline(traced), text))
        attachments.append(("syscall trace (JSONL)", commands_jsonl(traced), text))
    for name, body, kind in attachments:
        with contextlib.suppress(Exception):
            allure.attach(body, name=name, attachment_type=kind)


def _write_runner_facts(config: pytest.Config, state: Any) -> None:
    """<results>/runner.json: the runner's label, kernel, cgroups, distro, versions."""
    from conformance import runfacts

    doc = runfacts.collect(state.choices, config.option.conform_runner_label, state.probe_backend)
    runfacts.write(Path(state.results), doc)


class _Recorder:
    """Registered when the suite activates: folds reports into verdict records (on the
    xdist controller too) and keeps the transcript of runtime commands."""

    def __init__(self, state: State, config: pytest.Config) -> None:
        from conformance import launcher

        self.state = state
        launcher.add_observer(self.keep)
        config.add_cleanup(lambda: launcher.remove_observer(self.keep))

    def keep(self, record: Record) -> None:
        self.state.transcript.append(record)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        info = getattr(report, "conform", None)
        if not info:
            return
        from conformance.verdicts import TestRecord

        rec = self.state.records.get(report.nodeid)
        if rec is None:
            rec = self.state.records[report.nodeid] = TestRecord(
                report.nodeid, info["runtime"], list(info["behaviours"])
            )
        rec.add(report.when, info["verdict"], info["reason"], report.duration)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: collect each worker's leftovers."""
        out = getattr(node, "workeroutput", {}) or {}
        self.state.leftovers.extend(out.get("conform_leftovers", []))
        if out.get("conform_probe_backend"):
            self.state.probe_backend = out["conform_probe_backend"]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    found = state.finish()
    from conformance import launcher

    used, _why = launcher.tracing(resolve=False)
    if used:
        state.probe_backend = used
    if hasattr(config, "workerinput"):
        config.workeroutput["conform_leftovers"] = found  # type: ignore[attr-defined]
        config.workeroutput["conform_probe_backend"] = used or ""  # type: ignore[attr-defined]
        return
    state.leftovers.extend(found)
    state.leftovers.extend(state.renamed_host())  # the controller saw the name before workers
    if state.results:
        from conformance import verdicts

        records = list(state.records.values())
        doc = verdicts.summary(
            records,
            runtimes=state.names,
            catalogue=state.catalogue,
            host=_host_summary(state),
            leftovers=state.leftovers,
            started=state.started,
        )
        verdicts.write_summary(Path(state.results) / "summary.json", doc)
        _write_runner_facts(config, state)
    if state.leftovers:
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_sep("=", "conformance: host resources left behind", red=True)
            for line in state.leftovers:
                tr.write_line(f"LEFTOVER {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the probe backend (its poller thread, the attached tracepoints) before exit."""
    if _active(config):
        from probes import backend as probe_backend

        probe_backend.close_all()


def _host_summary(state: State) -> dict[str, Any]:
    with contextlib.suppress(Exception):
        state.host_tokens()
        return state.host_summary()
    return {}


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or hasattr(config, "workerinput") or not state.records:
        return
    from conformance.verdicts import counts

    tr = terminalreporter
    tr.write_sep("-", "conformance verdicts (tests per runtime)")
    for rt, c in counts(state.records.values()).items():
        tr.write_line(f"{rt:>10}: " + "  ".join(f"{k} {v}" for k, v in c.items() if v))
    if state.results:
        tr.write_line(f"results: {state.results}")


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def runtime(request: pytest.FixtureRequest) -> Runtime:
    """The prepared adapter of this test's runtime (see conformance.adapters.base.Runtime)."""
    name = getattr(request, "param", None)
    if name is None:
        raise pytest.UsageError("the `runtime` fixture is for @pytest.mark.behaviour tests")
    return _state(request.config).prepared(name)


@pytest.fixture
def syscalls(request: pytest.FixtureRequest) -> Any:
    """The syscall traces of this test's runtime commands (a `conformance.traced.TraceLog`);
    unsupported when no probe backend traces this run (`--probe`)."""
    from conformance import launcher
    from conformance.traced import TraceLog

    name, why = launcher.tracing()
    if name is None:
        raise Unsupported(f"no syscall trace: {why}")
    return TraceLog(_state(request.config).transcript, name)


@pytest.fixture
def workspace(request: pytest.FixtureRequest) -> Workspace:
    """The session's Workspace (scratch dir whose names carry "conform")."""
    return _state(request.config).workspace


@pytest.fixture
def spec_factory() -> Callable[..., Any]:
    """`spec_factory(argv=[...], hostname=..., ...)` -> ContainerSpec with suite defaults."""
    from conformance.adapters.base import ContainerSpec

    def make(**kw: Any) -> ContainerSpec:
        return ContainerSpec(**kw)

    return make


@pytest.fixture
def container(runtime: Runtime, workspace: Workspace) -> Iterator[Containers]:
    """`container(spec)` starts a detached container (`container.remove(c)` removes one
    early); everything still there is removed at teardown, even when the test failed."""
    from conformance.containers import Containers

    factory = Containers(runtime, workspace)
    yield factory
    factory.cleanup()


@pytest.fixture
def inspect_inside(runtime: Any) -> Callable[..., Any]:
    """`inspect_inside(spec=None, **kw)` runs the inspector as the container's command
    (foreground) and returns the parsed `Inside` view."""
    from conformance.adapters.base import ContainerSpec
    from conformance.inspector import inspector_argv, parse

    def run(spec: Any = None, **kw: Any) -> Any:
        if spec is None:
            spec = ContainerSpec(**kw)
        spec.argv = inspector_argv()
        res = runtime.run(spec)
        res.check(f"{runtime.name} run (inspector)")
        return parse(res.stdout)

    return run


@pytest.fixture
def observe(runtime: Any, container: Callable[..., Any]) -> Callable[..., Any]:
    """`observe(spec=None, **kw)` -> Observed(container, pid, inside): a detached container
    whose init saved the inspector's view and then sleeps (inside + outside checks)."""
    from conformance.adapters.base import ContainerSpec
    from conformance.observed import observe as _observe

    def run(spec: Any = None, **kw: Any) -> Any:
        if spec is None:
            spec = ContainerSpec(**kw)
        return _observe(runtime, container, spec)

    return run
