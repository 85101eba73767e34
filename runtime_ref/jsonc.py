"""JSON through CPython's C accelerator (`_json`) alone, for the start-up path.

Why: importing the `json` package imports `re` (and with it enum, functools and
collections) and compiles its regular expressions: about a third of the imports
of an `rref-oci run` or `rref run`, while the parsing and the compact encoding are
done by `_json` in either case. This module drives `_json` directly; results are
the json package's: same values, same compact text, `indent` laid out as
json.dumps lays it out. Invalid text raises json's own JSONDecodeError (a
ValueError, same message): the json package is imported only then.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}
_SPACE = " \t\n\r"


class _Context:
    """The attributes `_json.make_scanner` reads from a json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]


def _error(message: str, doc: str, pos: int) -> ValueError:
    from json import JSONDecodeError

    return JSONDecodeError(message, doc, pos)


def loads(s: str | bytes | bytearray) -> Any:
    if not isinstance(s, str):
        try:
            s = bytes(s).decode()
        except UnicodeDecodeError:  # UTF-16/32: json.loads detects those
            import json

            return json.loads(s)
    if s.startswith("\ufeff"):
        import json

        return json.loads(s)  # its "Unexpected UTF-8 BOM" error
    start = len(s) - len(s.lstrip(_SPACE))
    try:
        obj, end = _scan(s, start)
    except StopIteration as e:
        raise _error("Expecting value", s, e.value) from None
    except Exception:  # _json imports json.decoder to raise its error, not always cleanly
        import json

        return json.loads(s)  # raises json's own error for this text
    rest = len(s) - len(s[end:].lstrip(_SPACE))
    if rest != len(s):
        raise _error("Extra data", s, rest)
    return obj


def load(f: IO[str]) -> Any:
    return loads(f.read())


def _not_serializable(o: object) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def _encoder() -> Any:
    return _json.make_encoder(
        {}, _not_serializable, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )


def dumps(obj: Any, indent: int | None = None) -> str:
    if indent is None:
        return "".join(_encoder()(obj, 0))
    return _indented(obj, " " * indent, "\n")


def _indented(obj: Any, step: str, pad: str) -> str:
    """json.dumps(obj, indent=len(step)): nested containers one item a line."""
    inner = pad + step
    if isinstance(obj, dict) and obj:
        items = [f"{_key(k)}: {_indented(v, step, inner)}" for k, v in obj.items()]
        return "{" + inner + ("," + inner).join(items) + pad + "}"
    if isinstance(obj, (list, tuple)) and obj:
        return "[" + inner + ("," + inner).join(_indented(v, step, inner) for v in obj) + pad + "]"
    return dumps(obj)


def _key(k: object) -> str:
    return dumps(k if isinstance(k, str) else dumps(k))


def dump(obj: Any, f: IO[str], indent: int | None = None) -> None:
    f.write(dumps(obj, indent))
