"""`rm -rf` for rref's own trees (layers, volumes, stages, container dirs).

A leaf module: images, volumes, build and containers all remove trees, and
none of them should need another to do it.
"""

from __future__ import annotations

import os


def remove_tree(top: str) -> None:
    """rm -rf without importing shutil on the `run --rm` path; never follows symlinks."""
    stack = [top]
    dirs: list[str] = []
    while stack:
        d = stack.pop()
        dirs.append(d)
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    os.unlink(e.path)
    for d in reversed(dirs):
        os.rmdir(d)
