"""End to end, seen in a real browser: real runs on two runner labels with two runtimes,
merged into one report whose history shows a change, rendered by headless Chromium.

The runs are real (`conform run` of a few behaviours against rref and runc); the change is
real too: the second run of runner lab-a uses runc behind tests/defects/faulty_runc.py with
the rw-rootfs defect, so MNT-05 turns from pass to fail there. The page is read as Chromium
renders it (--dump-dom) and screenshots are saved under the report directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FAULTY_RUNC = HERE.parent / "defects" / "faulty_runc.py"
CONFORM = str(Path(sys.executable).with_name("conform"))
IDS = "PID-01,MNT-05,LIFE-05,UTS-01"
#: Chromium without a sandbox, GPU or any network service of its own.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--allow-file-access-from-files",  # the Allure page loads its data files
]

pytestmark = pytest.mark.slow


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup-host.sh installs it)")
    return found


def browse(url: str, profile: Path, *args: str, budget_ms: int = 15000) -> str:
    """Chromium's output for ``url`` (``--dump-dom`` prints the DOM after scripts ran)."""
    profile.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(
        [
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def conform_run(results: Path, label: str, runtimes: str) -> None:
    argv = [CONFORM, "run", "--runtime", runtimes, "--results", str(results)]
    argv += ["--runner-label", label, "--behaviour", IDS, "-p", "no:cacheprovider"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=400)
    # exit 1: the faulty run fails MNT-05, as it should
    assert p.returncode in (0, 1), p.stdout[-3000:] + p.stderr[-2000:]
    assert (results / "runner.json").is_file()


def report(out: Path, *dirs: Path) -> None:
    p = subprocess.run(
        [CONFORM, "report", *map(str, dirs), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert f"report: {out / 'allure' / 'index.html'}" in p.stdout
    assert f"matrix: {out / 'matrix.html'}" in p.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (real containers)")
def test_merged_report_in_chromium(tmp_path: Path) -> None:
    chromium()
    work = tmp_path / "conform-e2e"
    work.mkdir()
    wrapper = work / "runc-rw-rootfs"
    runc = shutil.which("runc") or "/usr/sbin/runc"
    wrapper.write_text(
        f'#!/bin/sh\nexec {sys.executable} {FAULTY_RUNC} --runc {runc} rw-rootfs "$@"\n'
    )
    wrapper.chmod(0o755)
    a1, a2, b1 = work / "results-a1", work / "results-a2", work / "results-b1"
    conform_run(a1, "lab-a", "ref,runc")
    conform_run(a2, "lab-a", f"ref,runc=oci:{wrapper}")
    conform_run(b1, "lab-b", "ref,runc")
    out = work / "report"
    report(out, a1)  # yesterday
    report(out, a2, b1)  # today: two runner labels, compared with yesterday

    doc = json.loads((out / "matrix.json").read_text())
    keys = [c["key"] for c in doc["columns"]]
    assert sorted(keys) == ["ref@lab-a", "ref@lab-b", "runc@lab-a", "runc@lab-b"]
    changes = {(i["kind"], i["id"], i["column"]) for i in doc["changes"]["items"]}
    assert ("new failure", "MNT-05", "runc@lab-a") in changes

    # the matrix as Chromium renders it
    dom = browse((out / "matrix.html").as_uri(), work / "profile", "--dump-dom", budget_ms=2000)
    for c in doc["columns"]:
        assert f'data-col="{c["key"]}"' in dom
        row = re.search(rf'<tr data-col="{re.escape(c["key"])}">(.*?)</tr>', dom, re.S)
        assert row, c["key"]
        shown = [int(n) for n in re.findall(r'<td class="n-\w+">(\d+)</td>', row.group(1))]
        assert shown == list(c["counts"].values())
    mnt05 = re.search(r'<tr id="MNT-05">(.*?)</tr>', dom, re.S)
    assert mnt05 and 'class="c fail chg"' in mnt05.group(1)
    assert "new failure" in dom and "<script" not in (out / "matrix.html").read_text()

    # the Allure report: both runners as environments, every test of both runs
    total = sum(len(json.loads((d / "summary.json").read_text())["tests"]) for d in (a2, b1))
    allure_dom = browse((out / "allure" / "index.html").as_uri(), work / "profile", "--dump-dom")
    assert "lab-a" in allure_dom and "lab-b" in allure_dom
    assert re.search(rf">\s*{total}\s*<", allure_dom), f"{total} tests not shown"

    shots = out / "screenshots"
    shots.mkdir()
    for name, page, size in [
        ("matrix.png", out / "matrix.html", "1280,1400"),
        ("matrix-phone.png", out / "matrix.html", "390,844"),
        ("allure.png", out / "allure" / "index.html", "1280,1100"),
    ]:
        browse(
            page.as_uri(), work / "profile", f"--window-size={size}", f"--screenshot={shots / name}"
        )
        assert (shots / name).stat().st_size > 10_000, name
    print(f"screenshots: {shots}")
