"""Tests for promptkit._partial_json: PartialParser on both backends, fed every kind of split.

The central property: the values a parser returns are monotone (each refines
the one before) and the last one equals ``json.loads`` of the whole text. The
two backends must return the very same sequence of values for the same deltas.
"""

from __future__ import annotations

import copy
import json
import random
import sys
from typing import Any, List, Optional

import pytest

from promptkit._partial_json import PartialParser, jiter_module, strip_fence

HAVE_JITER = jiter_module() is not None
BACKENDS = ["python", pytest.param("jiter", marks=pytest.mark.skipif(not HAVE_JITER, reason="jiter is not installed"))]


def refines(old: Any, new: Any, path: str = "$") -> Optional[str]:
    """Why ``new`` is not a prefix-consistent refinement of ``old`` (``None`` when it is).

    Strings only grow; an object's keys and an array's items keep their order
    and only append; every member but the last is complete and equal; the last
    one refines; numbers, booleans and null never change.
    """
    if old is None and path == "$":
        return None
    if type(old) is not type(new):
        return f"{path}: {type(old).__name__} became {type(new).__name__}"
    if isinstance(old, str):
        return None if new.startswith(old) else f"{path}: {old!r} is not a prefix of {new!r}"
    if isinstance(old, list):
        if len(new) < len(old):
            return f"{path}: the array shrank from {len(old)} to {len(new)} items"
        for i, item in enumerate(old[:-1]):
            if new[i] != item:
                return f"{path}[{i}]: a completed item changed"
        return refines(old[-1], new[len(old) - 1], f"{path}[{len(old) - 1}]") if old else None
    if isinstance(old, dict):
        keys = list(old)
        if list(new)[: len(keys)] != keys:
            return f"{path}: keys {keys} are not a prefix of {list(new)}"
        for key in keys[:-1]:
            if new[key] != old[key]:
                return f"{path}.{key}: a completed value changed"
        return refines(old[keys[-1]], new[keys[-1]], f"{path}.{keys[-1]}") if keys else None
    return None if old == new else f"{path}: {old!r} became {new!r}"


def test_refines_catches_what_it_must() -> None:
    assert refines(None, {"a": 1}) is None
    assert refines({"a": "x"}, {"a": "xy", "b": 1}) is None
    assert refines({"a": "x"}, {"a": "y"})  # a string that is not a prefix
    assert refines({"a": 1}, {"a": 12})  # a number shown before it was complete
    assert refines({"a": 1, "b": 2}, {"b": 2, "a": 1})  # key order
    assert refines([1, "a"], [1])  # shrank
    assert refines(["ab", "c"], ["abc", "c"])  # a completed item changed
    assert refines({"a": []}, {"a": {}})  # a type change
    assert refines("", None)


def split(text: str, rng: random.Random, max_size: int) -> List[str]:
    pieces, i = [], 0
    while i < len(text):
        size = rng.randint(1, max_size)
        pieces.append(text[i : i + size])
        i += size
    return pieces


def run(pieces: List[str], backend: str) -> List[Any]:
    parser = PartialParser(backend=backend)
    values, copies = [], []
    for piece in pieces:
        values.append(parser.feed(piece))
        copies.append(copy.deepcopy(values[-1]))
    assert parser.error is None, parser.error
    assert parser.complete
    assert values == copies, "a value returned earlier changed later (shared parts must stay as they were)"
    return values


def check_monotone(values: List[Any], final: Any) -> None:
    previous = None
    for i, value in enumerate(values):
        problem = refines(previous, value)
        assert problem is None, f"delta {i}: {problem}"
        previous = value
    assert values[-1] == final


DOCUMENTS = [
    '{"name": "Ada", "age": 36, "tags": ["math", "engines"], "address": {"city": "London", "zip": null}}',
    '{"text": "line\\nbreak \\"quoted\\" back\\\\slash \\/ tab\\t \\u00e9 \\ud83d\\ude00 end", "k\\u00e9y": "v"}',
    '{"unicode": "caf\u00e9 \u4e2d\u6587 \U0001f600", "empty": "", "braces": "{[\\"]}", "colon": "a:b,c"}',
    '{"numbers": [0, -1, 1.5, -2.5E-3, 1e10, 12345678901234567890, 3.0], "flags": [true, false, null]}',
    '[{"a": []}, {"b": {}}, [[[]]], "", [1, [2, [3, {"deep": [4]}]]]]',
    '{\n  "pretty": {\n    "list": [\n      1,\n      "two"\n    ],\n    "x": true\n  },\n  "y": -0.5\n}',
    '"a top-level string \\u0041\\n"',
    '{"a":1,"b":[true,false],"c":{"d":"e"},"f":null}',
    '{"escapes": "\\\\\\\\\\"\\\\u0041\\\\", "after": "\\\\"}',
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("doc", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_monotone_over_random_splits(doc: str, backend: str) -> None:
    final = json.loads(doc)
    check_monotone(run(list(doc), backend), final)  # character by character
    for seed in range(12):
        rng = random.Random(seed)
        check_monotone(run(split(doc, rng, 1 + seed * 2), backend), final)


@pytest.mark.skipif(not HAVE_JITER, reason="jiter is not installed")
@pytest.mark.parametrize("doc", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_both_backends_give_the_same_values(doc: str) -> None:
    for seed in range(6):
        pieces = split(doc, random.Random(seed), 1 + seed)
        assert run(pieces, "python") == run(pieces, "jiter")


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(["dict", "list", "str", "int", "float", "lit"] if depth < 4 else ["str", "int", "float", "lit"])
    if kind == "dict":
        return {random_string(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "str":
        return random_string(rng)
    if kind == "int":
        return rng.choice([0, -7, 42, 10**rng.randint(0, 25)])
    if kind == "float":
        return rng.choice([0.5, -1.25e-7, 3.14159, 6.02e23])
    return rng.choice([True, False, None])


def random_string(rng: random.Random) -> str:
    alphabet = 'ab {}[]":,\\/\n\t\u00e9\u4e2d\U0001f600\u0001'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_documents(backend: str) -> None:
    rng = random.Random(2024)
    for _ in range(60):
        value = {"root": random_value(rng)}
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2]))
        check_monotone(run(split(text, rng, rng.randint(1, 12)), backend), value)


@pytest.mark.skipif(not HAVE_JITER, reason="jiter is not installed")
def test_random_documents_same_on_both_backends() -> None:
    rng = random.Random(7)
    for _ in range(40):
        text = json.dumps({"root": random_value(rng)}, ensure_ascii=rng.random() < 0.5)
        pieces = split(text, rng, rng.randint(1, 6))
        assert run(pieces, "python") == run(pieces, "jiter"), text


# ---------------------------------------------------------------- what shows and what waits


def steps(backend: str, *pieces: str) -> List[Any]:
    parser = PartialParser(backend=backend)
    return [parser.feed(piece) for piece in pieces]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_incomplete_number_or_literal_is_left_out(backend: str) -> None:
    assert steps(backend, '{"n": 1', "2", "3", ",") == [{}, {}, {}, {"n": 123}]
    assert steps(backend, "[tr", "ue", "]") == [[], [], [True]]
    assert steps(backend, "[nul", "l ", "]") == [[], [None], [None]]
    assert steps(backend, '{"x": -', "0.5e", "-3}") == [{}, {}, {"x": -0.0005}]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_key_shows_only_once_its_value_starts(backend: str) -> None:
    assert steps(backend, '{"a": 1, "b', '"', ":", " ", '"', "x") == [
        {"a": 1}, {"a": 1}, {"a": 1}, {"a": 1}, {"a": 1, "b": ""}, {"a": 1, "b": "x"},
    ]  # fmt: skip
    assert steps(backend, '{"a": {', '"b": [') == [{"a": {}}, {"a": {"b": []}}]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_partial_escape_waits(backend: str) -> None:
    assert steps(backend, '["a\\', "n", '"]') == [["a"], ["a\n"], ["a\n"]]
    assert steps(backend, '["a\\u00', "e9", '"]') == [["a"], ["a\u00e9"], ["a\u00e9"]]
    # A high surrogate waits for its low half, even when the low half arrives in pieces.
    assert steps(backend, '["a\\ud83d', "\\u", "de00", "!") == [["a"], ["a"], ["a\U0001f600"], ["a\U0001f600!"]]
    assert steps(backend, '["\\\\', "u0041") == [["\\"], ["\\u0041"]]  # an escaped backslash starts nothing


@pytest.mark.parametrize("backend", BACKENDS)
def test_fences_and_leading_whitespace_are_skipped(backend: str) -> None:
    assert steps(backend, "  \n", "``", "`js", "on\n", '{"a"', ': "b"}', "\n```\n") == [
        None, None, None, None, {}, {"a": "b"}, {"a": "b"},
    ]  # fmt: skip
    parser = PartialParser(backend=backend)
    parser.feed('```\n{"a": [1]}\n```')
    assert parser.value == {"a": [1]} and parser.complete and parser.error is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_after_the_value_is_ignored(backend: str) -> None:
    parser = PartialParser(backend=backend)
    assert parser.feed('{"a": 1}') == {"a": 1}
    assert parser.complete
    assert parser.feed(" and some prose {") == {"a": 1}
    assert parser.error is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_top_level_scalars(backend: str) -> None:
    assert steps(backend, '"ab', 'c"', " ") == ["ab", "abc", "abc"]
    assert steps(backend, "12", "3", " ") == [None, None, 123]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "text",
    [
        "Sure! Here is the JSON: {}", '{"a": 1 x}', '{"a" 1}', '{"a": 1,}', "[1,]", '{"a":}', '{"a": 1]', "[01]",
        '["a\\q"]', '["raw\nnewline"]', "[NaN]", '["\\ud83d"]', "`x\n{}",
    ],
)
def test_not_json_keeps_the_last_value_and_says_why(backend: str, text: str) -> None:
    parser = PartialParser(backend=backend)
    values = [parser.feed(c) for c in text]
    assert parser.error, values
    check_monotone(values, values[-1])  # what was shown is never taken back


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    # The incremental parser is the default: jiter re-parses the whole prefix at every delta.
    assert PartialParser().backend == "python"
    assert PartialParser(backend="python").backend == "python"
    with pytest.raises(ValueError, match="backend must be"):
        PartialParser(backend="rust")
    monkeypatch.setitem(sys.modules, "jiter", None)  # as if jiter were not installed
    with pytest.raises(ImportError, match="pip install jiter"):
        PartialParser(backend="jiter")


@pytest.mark.skipif(not HAVE_JITER, reason="jiter is not installed")
def test_jiter_on_request() -> None:
    parser = PartialParser(backend="jiter")
    assert parser.backend == "jiter"
    assert parser.feed('{"a": "b') == {"a": "b"}


@pytest.mark.parametrize(
    ("text", "body"),
    [
        ('  {"a": 1}\n', '{"a": 1}'),
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ('```\n{"a": 1}\n```\n', '{"a": 1}'),
        ('```json\n{"a": 1}', '{"a": 1}'),  # a fence the reply never closed
        ('```json {"a": 1}```', '```json {"a": 1}```'),  # not a fence line: left for the parser to reject
    ],
)
def test_strip_fence(text: str, body: str) -> None:
    assert strip_fence(text) == body
