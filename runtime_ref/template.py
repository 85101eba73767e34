"""The subset of Go templates that `--format` users type: `{{.A.B}}` and `{{json .A}}`."""

from __future__ import annotations

import json
import re

from .errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ACTION = re.compile(r"\{\{\s*(json\s+)?(\.[A-Za-z0-9_.]*)\s*\}\}")


def _go_str(v: Any) -> str:
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v)


def lookup(obj: Any, path: str) -> Any:
    cur = obj
    for part in [p for p in path.split(".") if p]:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise UsageError(f"template: can't evaluate field {part} in {path}")
    return cur


def render(fmt: str, obj: Any) -> str:
    if "{{" in _ACTION.sub("", fmt):
        raise UsageError(
            f"template: unsupported action in {fmt!r} (use {{{{.Field}}}} or {{{{json .Field}}}})"
        )

    def sub(m: re.Match[str]) -> str:
        v = lookup(obj, m.group(2))
        return json.dumps(v) if m.group(1) else _go_str(v)

    return _ACTION.sub(sub, fmt).replace("\\n", "\n").replace("\\t", "\t")
