"""Fast launchers for `rref` and `rref-oci`, written over pip's console scripts.

Why: pip's console script starts the interpreter with `site` (every .pth file of
the venv and of the system's dist-packages, setuptools' distutils hack) and then
imports `re` to tidy argv[0]: about 10 ms before rref's first line, on every
`rref run` and on every runtime call an engine makes. The launcher runs
`python -I -S` (no site, no user site, no PYTHON* variables) with the sys.path
that site computed when it was written, so every module is found exactly as
before. `make setup` writes them after installing (`python -m runtime_ref.launcher
BIN_DIR`); a reinstall by pip puts the slow scripts back until then.
"""

from __future__ import annotations

import os
import sys

ENTRIES = {"rref": "runtime_ref.cli", "rref-oci": "runtime_ref.oci.cli"}

TEMPLATE = """\
#!{python} -IS
# Written by `python -m runtime_ref.launcher` (make setup): {name} without site's start-up.
import sys

sys.path[:] = {path!r}
from {module} import entry

entry()
"""


def search_path() -> list[str]:
    """This interpreter's module path, without the script directory or the cwd."""
    return [p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p)]


def text(name: str, python: str | None = None) -> str:
    return TEMPLATE.format(
        python=python or sys.executable, name=name, path=search_path(), module=ENTRIES[name]
    )


def write(bin_dir: str) -> list[str]:
    """Replace (atomically) the console scripts in `bin_dir`; return the paths written."""
    written = []
    for name in ENTRIES:
        path = os.path.join(bin_dir, name)
        tmp = f"{path}.rref-tmp"
        with open(tmp, "w") as f:
            f.write(text(name))
        os.chmod(tmp, 0o755)
        os.rename(tmp, path)
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m runtime_ref.launcher BIN_DIR")
    for p in write(sys.argv[1]):
        print(f"launcher: {p}")
