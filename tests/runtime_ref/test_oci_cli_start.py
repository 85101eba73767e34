"""The start-up path of rref-oci and rref: the -I -S launchers and the verbs that are read
without argparse (their namespace must be argparse's own, else argparse decides)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtime_ref import launcher
from runtime_ref.oci.cli import build_parser, fast_parse

SAME = [
    "run -b /x c1",
    "--root /r run --bundle=/x -d --pid-file p c1",
    "--root=/r --log l --log-format json --systemd-cgroup create --bundle /b --pid-file /p "
    "--console-socket /s --no-pivot --no-new-keyring c2",
    "--debug create -b /b c2 --preserve-fds 0",
    "run --keep -d c -b /z",
    "--rootless false state c",
    "start c",
    "state c",
    "pause c",
    "resume c",
    "kill c",
    "kill c KILL",
    "kill --all c 9",
    "kill -a c",
    "delete c",
    "delete -f c",
    "delete --force c",
]
TO_ARGPARSE = [
    "run",
    "run a b",
    "state",
    "--help",
    "state --help",
    "run --bund /x c",
    "kill c -9",
    "--log-format xml state c",
    "delete -fx c",
    "exec c ls",
    "list",
    "--root",
    "run -b",
    "run --preserve-fds x c",
    "-v",
    "state -- c",
    "--root /r --version",
]


@pytest.mark.parametrize("argv", SAME)
def test_fast_parse_gives_argparse_namespace(argv: str) -> None:
    fast = fast_parse(argv.split())
    assert fast is not None
    assert vars(fast) == vars(build_parser().parse_args(argv.split()))


@pytest.mark.parametrize("argv", TO_ARGPARSE)
def test_anything_unusual_goes_to_argparse(argv: str) -> None:
    assert fast_parse(argv.split()) is None


def test_launchers_start_without_site(tmp_path: Path) -> None:
    written = launcher.write(str(tmp_path))
    assert sorted(Path(p).name for p in written) == ["rref", "rref-oci"]
    oci = tmp_path / "rref-oci"
    assert oci.read_text().splitlines()[0] == f"#!{sys.executable} -IS"
    p = subprocess.run([str(oci), "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("rref-oci version"), p.stderr
    probe = oci.read_text().replace(
        "entry()\n",
        "print(sorted(m for m in ('site', 'argparse', 'json', 're') if m in sys.modules))\n",
    )
    (tmp_path / "probe").write_text(probe)
    p = subprocess.run(
        [sys.executable, "-IS", str(tmp_path / "probe")], capture_output=True, text=True
    )
    assert p.stdout.strip() == "[]", p.stderr
    installed = Path(sys.executable).with_name("rref-oci")
    assert installed.read_text().splitlines()[0].endswith(" -IS"), "make setup writes launchers"
