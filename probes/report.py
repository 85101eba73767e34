"""The traces of a test's runtime commands, as one text and one JSONL, for its report.

Why one of each per test, not per command: a behaviour test makes a handful of runtime calls
(create, start, exec, rm) and a reader wants them in order, each under its command line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from probes.timeline import render
from probes.trace import Trace

Traced = Sequence[tuple[Sequence[str], Trace]]


def commands_timeline(traced: Traced) -> str:
    """`$ argv` then the command's timeline, for each traced command in order."""
    return "\n".join(f"$ {' '.join(argv)}\n{render(trace)}" for argv, trace in traced)


def commands_jsonl(traced: Traced) -> str:
    """Each command's trace as JSONL (`Trace.to_jsonl`), its header line carrying argv."""
    return "".join(trace.to_jsonl(argv=list(argv)) for argv, trace in traced)


def split_jsonl(text: str) -> list[tuple[list[str], Trace]]:
    """`commands_jsonl` read back: (argv, Trace) per command."""
    out: list[tuple[list[str], Trace]] = []
    block: list[str] = []
    argv: list[str] = []

    def flush() -> None:
        if block:
            out.append((argv, Trace.from_jsonl(block)))

    for line in text.splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        if "trace" in d:
            flush()
            block, argv = [line], [str(a) for a in d["trace"].get("argv", [])]
        else:
            block.append(line)
    flush()
    return out
