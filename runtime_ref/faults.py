"""A test hook: `RREF_FAULT=<step>` makes rref SIGKILL itself when it reaches that step.

The fault-injection tests name a step (`create.dir`, `commit.changeset`, ...)
and prove that whatever a process killed right there leaves behind is either
listed or reclaimed. `RREF_FAULT=<step>@<n>` kills at the n-th time the step
is reached (1 = the first). Unset, a step costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def point(step: str) -> None:
    want = os.environ.get("RREF_FAULT")
    if not want:
        return
    name, _, nth = want.partition("@")
    if name != step:
        return
    _counts[step] = _counts.get(step, 0) + 1
    if _counts[step] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
