#!/usr/bin/env python3
"""Container start-up wall time: rref and rref-oci vs runc vs podman, side by side in one run.

Why: rref is a Python, Docker-like runtime, and start-up latency is the cost
people feel first. A number for rref alone says little, so this benchmark
times it next to two reference points on the *same* busybox rootfs, on the
same machine, in the same run:

* `rref run --rm busybox true` -- the whole CLI path (interpreter start-up,
  image lookup, overlay, namespaces, monitor, auto-remove);
* `rref-oci run` of the same OCI bundle as runc -- rref's OCI runtime front,
  the like-for-like comparison with runc;
* `runc run` of an OCI bundle -- the low-level floor (namespaces + pivot_root,
  no image handling, no overlay);
* `podman run --rm ...` -- a production Docker-like CLI, when installed.

Rounds are interleaved (rref, rref-oci, runc, podman, rref, ...) so that machine noise
(other jobs, CPU frequency, page cache) hits every runtime alike. Wall time is
time.perf_counter() around subprocess.run, i.e. what a user waiting on the
command sees. Results: median, p10, p90 in ms, and the ratios of the medians
of rref and rref-oci to runc and to podman.

Everything this creates on the host has "rref" or "conform" in its name (a
private rref state root /tmp/rref-bench-*, a work dir /tmp/conform-bench-*
with the bundle, the runc and rref-oci states, container ids conform-bench-*,
podman image localhost/conform-bench-busybox and containers conform-bench-*)
and is removed in a finally block. This is a benchmark, not a test: it is not
collected by pytest. Run as root; stdlib only.

    .venv/bin/python bench/startup.py [--runs 30] [--warmup 3] [--json FILE]
                                      [--only rref,rref-oci,runc,podman]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNTIMES = ("rref", "rref-oci", "runc", "podman")
REQUIRED = ("rref", "rref-oci", "runc")  # failing these is an error; podman may be unavailable
PODMAN_IMAGE = "localhost/conform-bench-busybox:latest"
RUN_TIMEOUT = 120.0  # seconds per container run; a hang is a failure, not a wait forever
REPO = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """A runtime could not be set up or failed a run; the message is one line."""


@dataclass
class Runtime:
    """One runtime under test: how to run one container, and what it measured."""

    name: str
    run_once: Callable[[int], float]  # run container i, return ms; BenchError on failure
    samples_ms: list[float] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok" if self.error is None else "unavailable"}
        if self.error is not None:
            out["error"] = self.error
            return out
        out.update(n=len(self.samples_ms), **percentiles(self.samples_ms))
        out["samples_ms"] = [round(s, 3) for s in self.samples_ms]
        return out


def percentiles(samples: list[float]) -> dict[str, float]:
    """Median, p10 and p90 (inclusive method, so they stay within the observed range)."""
    if len(samples) == 1:
        return {"median_ms": samples[0], "p10_ms": samples[0], "p90_ms": samples[0]}
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return {"median_ms": statistics.median(samples), "p10_ms": deciles[0], "p90_ms": deciles[8]}


def first_line(text: str | bytes | None) -> str:
    """The line that says what went wrong: the first `Error...` line, else the first line."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith("error")]
    return (errors or lines or ["(no stderr)"])[0]


def run_cmd(argv: list[str], timeout: float = RUN_TIMEOUT, **kw: Any) -> str:
    """Run a setup/cleanup command; return stdout, raise BenchError with stderr's first line."""
    try:
        p = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError(f"{argv[0]}: {e}") from None
    if p.returncode != 0:
        raise BenchError(f"{' '.join(argv[:3])}... exited {p.returncode}: {first_line(p.stderr)}")
    return p.stdout


def timed(argv: list[str]) -> float:
    """Wall time of one container run in ms; the container's command must exit 0."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {RUN_TIMEOUT:.0f}s") from None
    except OSError as e:
        raise BenchError(str(e)) from None
    elapsed = (time.perf_counter() - t0) * 1000.0
    if p.returncode != 0:
        raise BenchError(f"exit {p.returncode}: {first_line(p.stderr)}")
    return elapsed


def find_tool(name: str, *candidates: str) -> str | None:
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    return shutil.which(name)


def mounts_under(path: str) -> list[str]:
    """Mount points at or below `path` in our mount namespace (never rmtree through one)."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4])
            if (mp + "/").startswith(prefix):
                found.append(mp)
    return found


def copy_tree(src: str, dst: str) -> None:
    """Copy a rootfs keeping hard links (busybox applets are ~400 links to one binary)."""
    seen: dict[tuple[int, int], str] = {}
    os.mkdir(dst)
    dirs = [(src, dst)]
    for dirpath, dirnames, filenames in os.walk(src):
        out_dir = os.path.normpath(os.path.join(dst, os.path.relpath(dirpath, src)))
        for name in dirnames + filenames:
            s, d = os.path.join(dirpath, name), os.path.join(out_dir, name)
            st = os.lstat(s)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISDIR(st.st_mode):
                os.mkdir(d)
                dirs.append((s, d))
            elif (st.st_dev, st.st_ino) in seen:
                os.link(seen[(st.st_dev, st.st_ino)], d)
                continue
            else:
                shutil.copy2(s, d, follow_symlinks=False)
                seen[(st.st_dev, st.st_ino)] = d
            os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
    for s, d in reversed(dirs):  # modes and times last, once nothing more is written in them
        st = os.lstat(s)
        os.chown(d, st.st_uid, st.st_gid)
        shutil.copystat(s, d)


def machine_info(runc: str | None, podman: str | None) -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    cpu = val.strip()
                    break
    except OSError:
        pass

    def version(argv: list[str]) -> str | None:
        try:
            return first_line(run_cmd(argv, timeout=30))
        except BenchError:
            return None

    info: dict[str, Any] = {
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "cgroup": "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1/hybrid",
        "git": version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "runc": version([runc, "--version"]) if runc else None,
        "podman": version([podman, "--version"]) if podman else None,
    }
    if podman:
        info["podman_setup"] = version(
            [
                podman,
                "info",
                "--format",
                "oci runtime {{.Host.OCIRuntime.Name}}, "
                "{{.Host.CgroupManager}} cgroups {{.Host.CgroupsVersion}}"
                ", {{.Store.GraphDriverName}} storage",
            ]
        )
    return info


class Bench:
    """Owns every host resource the benchmark creates, and removes them in cleanup()."""

    def __init__(
        self, rref: str, rref_oci: str | None, runc: str | None, podman: str | None
    ) -> None:
        self.rref, self.rref_oci, self.runc, self.podman = rref, rref_oci, runc, podman
        self.tag = f"{os.getpid()}"
        self.rref_root: str | None = None
        # /tmp/conform-bench-*: bundle/, conform-runc-state/ and conform-rref-oci-state/
        self.work: str | None = None
        self.podman_image_id: str | None = None
        self.warnings: list[str] = []

    # -- setup ---------------------------------------------------------------

    def rref_argv(self, *args: str) -> list[str]:
        assert self.rref_root
        return [self.rref, "--root", self.rref_root, *args]

    def setup_rref(self) -> str:
        """Private state root, one untimed run (builds busybox:latest); return its layer dir."""
        self.rref_root = tempfile.mkdtemp(prefix="rref-bench-", dir="/tmp")
        try:
            timed(self.rref_argv("run", "--rm", "busybox", "true"))
        except BenchError as e:
            raise BenchError(f"rref run: {e}") from None
        out = run_cmd(
            self.rref_argv(
                "inspect", "--type", "image", "-f", "{{json .GraphDriver.Data.LowerDir}}", "busybox"
            )
        )
        layer = json.loads(out)
        if not isinstance(layer, str) or ":" in layer or not os.path.isdir(layer):
            raise BenchError(f"unexpected busybox layer dir from rref inspect: {out.strip()!r}")
        return layer

    def rref_once(self, _i: int) -> float:
        return timed(self.rref_argv("run", "--rm", "busybox", "true"))

    def setup_bundle(self, layer: str) -> None:
        """The OCI bundle runc and rref-oci both run: runc spec's config.json, `true`."""
        if not self.runc:
            raise BenchError("runc not found (its `runc spec` writes the bundle's config)")
        self.work = tempfile.mkdtemp(prefix="conform-bench-", dir="/tmp")
        bundle = os.path.join(self.work, "bundle")
        os.mkdir(bundle)
        copy_tree(layer, os.path.join(bundle, "rootfs"))
        run_cmd([self.runc, "spec", "--bundle", bundle])
        path = os.path.join(bundle, "config.json")
        with open(path) as f:
            spec = json.load(f)
        spec["process"]["args"] = ["true"]
        spec["process"]["terminal"] = False  # foreground run, exit code returned
        spec["root"]["readonly"] = False  # like rref's and podman's writable rootfs
        # rref-oci refuses ambient capabilities; for a root process they add nothing
        spec["process"]["capabilities"].pop("ambient", None)
        # keep runc spec's namespaces (pid, network, ipc, uts, mount)
        with open(path, "w") as f:
            json.dump(spec, f, indent=2)
        os.mkdir(os.path.join(self.work, "conform-runc-state"), 0o700)
        os.mkdir(os.path.join(self.work, "conform-rref-oci-state"), 0o700)

    def setup_runc(self) -> None:
        if not self.work:
            raise BenchError("no bundle")
        self.runc_once(-1)  # untimed check that the bundle runs

    def setup_rref_oci(self) -> None:
        if not self.rref_oci:
            raise BenchError("rref-oci not found (run `make setup`)")
        if not self.work:
            raise BenchError("no bundle")
        self.rref_oci_once(-1)

    def _oci_run(self, binary: str, state: str, i: int) -> float:
        assert self.work
        cid = f"conform-bench-{self.tag}-{i if i >= 0 else 'check'}"
        return timed(
            [
                binary,
                "--root",
                os.path.join(self.work, state),
                "run",
                "-b",
                os.path.join(self.work, "bundle"),
                cid,
            ]
        )

    def rref_oci_once(self, i: int) -> float:
        assert self.rref_oci
        return self._oci_run(self.rref_oci, "conform-rref-oci-state", i)

    def runc_once(self, i: int) -> float:
        assert self.runc
        return self._oci_run(self.runc, "conform-runc-state", i)

    def setup_podman(self, layer: str) -> None:
        """Import the layer as an image (by id first, then tagged: no nameless leftovers)."""
        if not self.podman:
            raise BenchError("podman not installed")
        tar = subprocess.Popen(["tar", "-C", layer, "-c", "."], stdout=subprocess.PIPE)
        try:
            p = subprocess.run(
                [self.podman, "import", "--quiet", "-"],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BenchError(f"podman import: {e}") from None
        finally:
            assert tar.stdout
            tar.stdout.close()
            tar_rc = tar.wait()
        image_id = p.stdout.strip()
        if p.returncode == 0 and image_id:
            self.podman_image_id = image_id
        if p.returncode != 0 or not image_id:
            raise BenchError(f"podman import exited {p.returncode}: {first_line(p.stderr)}")
        if tar_rc != 0:
            raise BenchError(f"tar -C {layer} -c . exited {tar_rc}")
        run_cmd([self.podman, "tag", image_id, PODMAN_IMAGE])
        try:
            self.podman_once(-1)  # untimed: podman's very first run is slow
        except BenchError as e:
            raise BenchError(f"podman run: {e}") from None

    def podman_once(self, i: int) -> float:
        assert self.podman
        name = f"conform-bench-{self.tag}-{i if i >= 0 else 'check'}"
        return timed(
            [
                self.podman,
                "run",
                "--rm",
                "--name",
                name,
                "--network",
                "none",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
                PODMAN_IMAGE,
                "true",
            ]
        )

    # -- cleanup -------------------------------------------------------------

    def _step(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # cleanup goes on: report, never mask the other steps
            self.warnings.append(f"cleanup {what}: {e}")

    def _rmtree(self, path: str) -> None:
        left = mounts_under(path)
        if left:
            raise BenchError(f"not removing {path}: still mounted: {', '.join(left[:3])}")
        shutil.rmtree(path)

    def cleanup(self) -> None:
        if self.podman and self.podman_image_id:
            self._step("podman", self._cleanup_podman)
        if self.work:
            self._step("runc", self._cleanup_runc)
        if self.rref_root:
            self._step("rref", self._cleanup_rref)

    def _cleanup_podman(self) -> None:
        assert self.podman
        prefix = f"conform-bench-{self.tag}-"
        out = run_cmd([self.podman, "ps", "-a", "--format", "{{.Names}}"])
        leaked = [n for n in out.split() if n.startswith(prefix)]
        if leaked:
            self.warnings.append(f"podman containers left behind (removing): {leaked}")
            run_cmd([self.podman, "rm", "-f", *leaked])
        if self.podman_image_id:  # by id: removes our tag and the image itself
            run_cmd([self.podman, "rmi", "--force", self.podman_image_id])

    def _cleanup_runc(self) -> None:
        assert self.work
        for name, binary in (("runc", self.runc), ("rref-oci", self.rref_oci)):
            state = os.path.join(self.work, f"conform-{name}-state")
            if binary and os.path.isdir(state):
                leaked = run_cmd([binary, "--root", state, "list", "-q"]).split()
                if leaked:
                    self.warnings.append(f"{name} containers left behind (removing): {leaked}")
                    for cid in leaked:
                        run_cmd([binary, "--root", state, "delete", "-f", cid])
        self._rmtree(self.work)

    def _cleanup_rref(self) -> None:
        assert self.rref_root
        leaked = run_cmd(self.rref_argv("ps", "-aq")).split()
        if leaked:
            self.warnings.append(f"rref containers left behind (removing): {leaked}")
            run_cmd(self.rref_argv("rm", "-f", *leaked))
        self._rmtree(self.rref_root)


def measure(runtimes: list[Runtime], warmup: int, runs: int) -> None:
    """Round-robin: every round runs each still-working runtime once, in a fixed order."""
    for rnd in range(warmup + runs):
        for rt in runtimes:
            if rt.error is not None:
                continue
            try:
                ms = rt.run_once(rnd)
            except BenchError as e:
                phase = "warm-up" if rnd < warmup else "run"
                rt.error = f"{phase} {rnd + 1}: {e}"
                print(f"  {rt.name}: FAILED: {rt.error}", file=sys.stderr)
                continue
            if rnd >= warmup:
                rt.samples_ms.append(ms)
        done = rnd + 1
        if done == warmup or (done > warmup and (done - warmup) % 10 == 0) or done == warmup + runs:
            label = "warm-up" if done <= warmup else f"{done - warmup}/{runs} rounds"
            print(f"  ... {label} done", file=sys.stderr, flush=True)


def report(
    info: dict[str, Any], runtimes: list[Runtime], args: argparse.Namespace
) -> dict[str, Any]:
    print()
    print(
        f"machine : {info['kernel']}, {info['cpu']}, nproc {info['nproc']}, "
        f"cgroup {info['cgroup']}, Python {info['python']}"
        + (f", git {info['git']}" if info.get("git") else "")
    )
    print(f"runc    : {info.get('runc') or 'not found'}")
    podman = info.get("podman") or "not installed"
    if info.get("podman_setup"):
        podman += f" ({info['podman_setup']})"
    print(f"podman  : {podman}")
    order = " -> ".join(rt.name for rt in runtimes)
    print(f"rounds  : {args.runs} timed after {args.warmup} warm-up, round-robin {order}")
    print()
    print(f"{'runtime':<9} {'n':>4} {'median ms':>10} {'p10 ms':>9} {'p90 ms':>9}")
    results = {rt.name: rt.summary() for rt in runtimes}
    for rt in runtimes:
        r = results[rt.name]
        if r["status"] != "ok":
            print(f"{rt.name:<9} unavailable: {r['error']}")
        else:
            print(
                f"{rt.name:<9} {r['n']:>4} {r['median_ms']:>10.1f} {r['p10_ms']:>9.1f} "
                f"{r['p90_ms']:>9.1f}"
            )
    ratios: dict[str, float | None] = {}
    print()
    for mine in ("rref", "rref-oci"):
        for other in ("runc", "podman"):
            a, b = results.get(mine), results.get(other)
            if a is None or b is None:
                continue
            ok = a["status"] == "ok" and b["status"] == "ok"
            ratio = a["median_ms"] / b["median_ms"] if ok else None
            ratios[f"{mine}/{other}"] = ratio
            shown = f"{ratio:.2f}x" if ratio is not None else "n/a"
            print(f"{mine + '/' + other:<16} {shown:>7}  (ratio of medians)")
    return {
        "machine": info,
        "runs": args.runs,
        "warmup": args.warmup,
        "order": [rt.name for rt in runtimes],
        "results": results,
        "ratios": ratios,
        "commands": {
            "rref": "rref --root /tmp/rref-bench-* run --rm busybox true",
            "rref-oci": "rref-oci --root /tmp/conform-bench-*/conform-rref-oci-state "
            "run -b BUNDLE ID",
            "runc": "runc --root /tmp/conform-bench-*/conform-runc-state run -b BUNDLE ID",
            "podman": "podman run --rm --name ID --network none --ulimit nofile=1024:1024 "
            f"--ulimit nproc=1024:1024 {PODMAN_IMAGE} true",
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=30, help="timed rounds (default %(default)s)")
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed rounds before them (default %(default)s)"
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument(
        "--only", default=",".join(RUNTIMES), help="comma-separated subset of %(default)s"
    )
    a = p.parse_args(argv)
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in a.only if s not in RUNTIMES]
    if bad or not a.only:
        p.error(f"--only: unknown runtime(s) {bad}; choose from {','.join(RUNTIMES)}")
    if a.runs < 1 or a.warmup < 0:
        p.error("--runs must be >= 1 and --warmup >= 0")
    return a


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM/SIGHUP end the run like Ctrl-C does: through the finally that cleans up."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("startup.py: must run as root (rref and runc need it)", file=sys.stderr)
        return 2
    rref = find_tool(
        "rref", str(Path(sys.executable).parent / "rref"), str(REPO / ".venv" / "bin" / "rref")
    )
    if not rref:
        print("startup.py: rref not found (run `make setup`)", file=sys.stderr)
        return 2
    rref_oci = find_tool("rref-oci", str(Path(rref).with_name("rref-oci")))
    runc = find_tool("runc", "/usr/sbin/runc")
    podman = find_tool("podman", "/usr/bin/podman")
    bench = Bench(rref, rref_oci, runc, podman if "podman" in args.only else None)
    code = 0
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        info = machine_info(runc, podman)
        print(f"setup: rref state root, busybox image ({rref})", file=sys.stderr, flush=True)
        # rref always runs once: it builds the busybox layer the others use
        layer = bench.setup_rref()
        if {"runc", "rref-oci"} & set(args.only):
            print("setup: OCI bundle (runc spec)", file=sys.stderr, flush=True)
            bench.setup_bundle(layer)
        runtimes: list[Runtime] = []
        setups: dict[str, tuple[Callable[[], None], Callable[[int], float]]] = {
            "rref": (lambda: None, bench.rref_once),
            "rref-oci": (bench.setup_rref_oci, bench.rref_oci_once),
            "runc": (bench.setup_runc, bench.runc_once),
            "podman": (lambda: bench.setup_podman(layer), bench.podman_once),
        }
        for name in RUNTIMES:  # fixed order, whatever --only's order
            if name not in args.only:
                continue
            setup, once = setups[name]
            rt = Runtime(name, once)
            print(f"setup: {name}", file=sys.stderr, flush=True)
            try:
                setup()
            except BenchError as e:
                rt.error = str(e)
                print(f"  {name}: unavailable: {e}", file=sys.stderr)
            runtimes.append(rt)
        measure(runtimes, args.warmup, args.runs)
        result = report(info, runtimes, args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
                f.write("\n")
            print(f"\nJSON written to {args.json}")
        if any(rt.error is not None for rt in runtimes if rt.name in REQUIRED):
            code = 1
    except BenchError as e:
        print(f"startup.py: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt as e:
        print(f"startup.py: interrupted ({e or 'SIGINT'}), cleaning up", file=sys.stderr)
        code = 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let cleanup finish
        bench.cleanup()
        for w in bench.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if bench.warnings:
            code = code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
