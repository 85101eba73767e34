"""runtime_ref.jsonc gives what the json package gives: values, text, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime_ref import jsonc

DOCS = [
    {},
    [],
    {"ociVersion": "1.0.2", "id": "x", "pid": 0, "annotations": {}, "l": [1, 2.5, -3e-9]},
    {"nested": {"a": [{"b": None, "c": True, "d": False}, [], {}, 'é\u2028\n"\\']}},
    [1, [2, [3, []]], {"k": {"k": {}}}],
    {1: "int key", False: "bool key", None: "none key", 2.5: "float key"},
    "just a string",
    12345678901234567890,
    float("inf"),
]


@pytest.mark.parametrize("doc", DOCS, ids=range(len(DOCS)))
def test_dumps_and_loads_match_json(doc: object) -> None:
    assert jsonc.dumps(doc) == json.dumps(doc)
    assert jsonc.dumps(doc, indent=2) == json.dumps(doc, indent=2)
    text = json.dumps(doc, indent=2)
    assert jsonc.loads(text) == json.loads(text)
    assert jsonc.loads(text.encode()) == json.loads(text.encode())
    assert jsonc.loads(f" \n{text}\t\r\n ") == json.loads(text)


@pytest.mark.parametrize(
    "text", ["", " ", "{", '{"a": 1,}', "[1] x", "{} {}", "nul", '"\\x"', "\ufeff{}", "01"]
)
def test_errors_are_json_errors(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as want:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        jsonc.loads(text)
    assert str(got.value) == str(want.value)


def test_utf16_and_unserializable() -> None:
    assert jsonc.loads('{"a": [1]}'.encode("utf-16")) == {"a": [1]}
    assert jsonc.loads(b"NaN") != jsonc.loads(b"NaN")  # nan, as json gives
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        jsonc.dumps({"a": {1}})


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a new `python -I -S` (nothing imported yet) with runtime_ref.jsonc as j."""
    top = str(Path(jsonc.__file__).resolve().parents[1])
    prelude = f"import sys; sys.path.insert(0, {top!r}); import runtime_ref.jsonc as j\n"
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", prelude + code], capture_output=True, text=True
    )


def test_errors_without_the_json_package_loaded() -> None:
    """_json's C scanner imports json.decoder to raise: the error must still be json's."""
    out = _fresh(
        "for t in ['{', '[1,', '{\"a\" 1}', '']:\n"
        "    try: j.loads(t)\n"
        "    except ValueError as e: print(type(e).__name__, e)\n"
    )
    assert out.stdout.splitlines() == [
        "JSONDecodeError Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
        "JSONDecodeError Expecting value: line 1 column 4 (char 3)",
        "JSONDecodeError Expecting ':' delimiter: line 1 column 6 (char 5)",
        "JSONDecodeError Expecting value: line 1 column 1 (char 0)",
    ], out.stderr


def test_importing_it_imports_no_json_or_re() -> None:
    out = _fresh(
        "j.loads(j.dumps({'a': [1]})); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('json', 're', 'enum')))"
    )
    assert out.stdout.strip() == "[]", out.stderr
