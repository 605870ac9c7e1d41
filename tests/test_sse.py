"""Tests for promptkit._sse against the WHATWG conformance cases and real recordings.

The data under tests/data was copied from the shared corpus (see tests/data/README.md
for provenance; licences in tests/data/LICENSES). Every check is repeated for many
ways of splitting the same bytes into reads, because a conforming parser must give
the same result for any chunking.
"""

from __future__ import annotations

import base64
import itertools
import json
import pathlib
import random
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import pytest

from promptkit._sse import ServerSentEvent, SSEParser

DATA = pathlib.Path(__file__).parent / "data"
RECORDINGS = DATA / "recordings"

CASES: List[Dict[str, Any]] = json.loads((DATA / "sse_conformance.json").read_text("utf-8"))
CASE_IDS = [c["name"] for c in CASES]
RECORDING_NAMES = sorted(p.name[: -len(".sse")] for p in RECORDINGS.glob("*.sse"))


# --------------------------------------------------------------------------- helpers


def run(chunks: Iterable[bytes]) -> Tuple[List[ServerSentEvent], SSEParser, Optional[ServerSentEvent]]:
    """Feed the reads, then close; return the dispatched events, the parser and close()'s result."""
    parser = SSEParser()
    events: List[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    leftover = parser.close()
    return events, parser, leftover


def split_at(data: bytes, offsets: Sequence[int]) -> List[bytes]:
    bounds = [0, *offsets, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def random_chunks(data: bytes, seed: int, max_size: int) -> List[bytes]:
    rng = random.Random(seed)
    chunks, pos = [], 0
    while pos < len(data):
        size = rng.randint(1, max_size)
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


def as_triples(events: Iterable[ServerSentEvent]) -> List[Dict[str, str]]:
    return [{"type": e.event, "data": e.data, "id": e.id} for e in events]


def case_input(case: Dict[str, Any]) -> bytes:
    return base64.b64decode(case["input_b64"])


def check_case(case: Dict[str, Any], chunks: List[bytes], label: str = "") -> None:
    assert b"".join(chunks) == case_input(case)
    events, parser, _ = run(chunks)
    assert as_triples(events) == case["expected_events"], label
    assert parser.last_event_id == case["expected_last_event_id"], label
    assert parser.retry == case["expected_reconnection_time"], label


def bytewise(data: bytes) -> List[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# --------------------------------------------------------------------------- conformance cases


def test_corpus_is_present() -> None:
    # Guards against the parametrised tests silently collecting nothing.
    assert len(CASES) == 81
    assert len(RECORDING_NAMES) == 42


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_conformance_whole_input(case: Dict[str, Any]) -> None:
    check_case(case, [case_input(case)])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_conformance_designated_chunks(case: Dict[str, Any]) -> None:
    check_case(case, [base64.b64decode(c) for c in case["chunks_b64"]])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_conformance_byte_by_byte(case: Dict[str, Any]) -> None:
    check_case(case, bytewise(case_input(case)))


@pytest.mark.parametrize("case", [c for c in CASES if len(case_input(c)) <= 160], ids=lambda c: c["name"])
def test_conformance_every_two_way_split(case: Dict[str, Any]) -> None:
    data = case_input(case)
    # Includes the empty first/last read: empty reads must be harmless.
    for i in range(len(data) + 1):
        check_case(case, split_at(data, [i]), f"split at {i}")


@pytest.mark.parametrize("case", [c for c in CASES if len(case_input(c)) <= 60], ids=lambda c: c["name"])
def test_conformance_every_three_way_split(case: Dict[str, Any]) -> None:
    data = case_input(case)
    for i, j in itertools.combinations_with_replacement(range(len(data) + 1), 2):
        check_case(case, split_at(data, [i, j]), f"split at {i}, {j}")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_conformance_random_splits(case: Dict[str, Any]) -> None:
    data = case_input(case)
    for seed in range(8):
        check_case(case, random_chunks(data, seed, max_size=1 + seed * 3), f"seed {seed}")


# --------------------------------------------------------------------------- recordings


def load_recording(name: str) -> Tuple[bytes, Dict[str, Any]]:
    body = (RECORDINGS / f"{name}.sse").read_bytes()
    meta = json.loads((RECORDINGS / f"{name}.meta.json").read_text("utf-8"))
    return body, meta


def check_recording(events: List[ServerSentEvent], parser: SSEParser, meta: Dict[str, Any]) -> None:
    expected = meta["expected"]
    summary = meta["sse_summary"]
    assert len(events) == expected["sse_event_count"]
    assert {e.event for e in events} == set(expected["sse_event_types"])
    # The summary stores event data cut to 400 characters (only one last event is that long).
    assert events[-1].data[:400] == summary["last_event_data"]
    assert events[0].data[:400] == summary["first_event_data"]
    if summary.get("comment_lines") is not None:
        assert parser.comments == summary["comment_lines"]
    assert {e.id for e in events} == set(summary["ids_seen"])


@pytest.mark.parametrize("name", RECORDING_NAMES)
def test_recording_whole_body(name: str) -> None:
    body, meta = load_recording(name)
    events, parser, leftover = run([body])
    check_recording(events, parser, meta)
    # Every recording ends with a blank line, so nothing is pending at EOF.
    assert leftover is None


@pytest.mark.parametrize("name", RECORDING_NAMES)
def test_recording_random_splits(name: str) -> None:
    body, meta = load_recording(name)
    reference, _, _ = run([body])
    for seed, max_size in [(1, 7), (2, 40), (3, 150), (4, 300), (5, 300)]:
        events, parser, _ = run(random_chunks(body, seed, max_size))
        assert events == reference, f"seed {seed}"
        check_recording(events, parser, meta)


@pytest.mark.parametrize("name", [n for n in RECORDING_NAMES if (RECORDINGS / f"{n}.sse").stat().st_size < 20_000])
def test_recording_byte_by_byte(name: str) -> None:
    body, meta = load_recording(name)
    reference, _, _ = run([body])
    events, parser, _ = run(bytewise(body))
    assert events == reference
    check_recording(events, parser, meta)


def test_recording_one_event_per_read() -> None:
    # The common live shape: each read is exactly one "data: ...\n\n" block.
    body, meta = load_recording("openrouter__o3_non_ascii")
    reads = [block + b"\n\n" for block in body.split(b"\n\n")[:-1]]
    assert b"".join(reads) == body
    parser = SSEParser()
    per_read = [parser.feed(r) for r in reads]
    # A comment-only block dispatches nothing; every data block exactly one event.
    assert all(len(ev) == (0 if r.startswith(b":") else 1) for ev, r in zip(per_read, reads))
    assert parser.close() is None
    check_recording([e for ev in per_read for e in ev], parser, meta)


# --------------------------------------------------------------------------- close() semantics


@pytest.mark.parametrize(
    "ending",
    [b"data: [DONE]", b"data: [DONE]\n", b"data: [DONE]\r", b"data: [DONE]\r\n", b"data:[DONE]"],
    ids=["no-newline", "lf", "cr", "crlf", "no-space"],
)
def test_close_reports_done_without_final_blank_line(ending: bytes) -> None:
    body = b'data: {"a":1}\n\n' + ending
    for chunks in ([body], bytewise(body), split_at(body, [len(body) - 1])):
        parser = SSEParser()
        dispatched = [e for c in chunks for e in parser.feed(c)]
        # feed() must not dispatch the incomplete event...
        assert [e.data for e in dispatched] == ['{"a":1}']
        # ...close() only reports it.
        leftover = parser.close()
        assert leftover is not None
        assert leftover.event == "message"
        assert leftover.data == "[DONE]"


def test_close_returns_none_after_complete_event() -> None:
    parser = SSEParser()
    assert [e.data for e in parser.feed(b"data: [DONE]\n\n")] == ["[DONE]"]
    assert parser.close() is None


def test_close_returns_none_for_empty_and_comment_only_bodies() -> None:
    assert SSEParser().close() is None
    parser = SSEParser()
    assert parser.feed(b": keep-alive\n\n: keep-alive") == []
    assert parser.close() is None
    assert parser.comments == 1  # the unterminated comment is discarded, not counted


def test_close_does_not_commit_pending_state() -> None:
    parser = SSEParser()
    assert [e.id for e in parser.feed(b"id: 1\nretry: 100\ndata: a\n\n")] == ["1"]
    assert parser.feed(b"id: 2\nevent: x\ndata: b\nretry: 200") == []
    leftover = parser.close()
    # The hypothetical event reflects the pending lines, including the unterminated one...
    assert leftover == ServerSentEvent("x", "b", "2", 200)
    # ...but per spec nothing pending is applied at EOF.
    assert parser.last_event_id == "1"
    assert parser.retry == 100
    assert parser.close() is None  # the pending event was discarded


def test_close_resets_for_a_new_stream() -> None:
    parser = SSEParser()
    parser.feed(b"id: 7\ndata: a\n\ndata: partial")
    parser.close()
    # A new stream may start with its own BOM; the committed id carries over.
    assert parser.feed(b"\xef\xbb\xbfdata: b\n\n") == [ServerSentEvent("message", "b", "7", None)]


def test_event_carries_retry_and_id_at_dispatch_time() -> None:
    events, parser, _ = run([b"data: a\n\nretry: 1500\nid: x\ndata: b\n\nid: y\n\n"])
    assert events == [ServerSentEvent("message", "a", "", None), ServerSentEvent("message", "b", "x", 1500)]
    assert parser.last_event_id == "y"


# --------------------------------------------------------------------------- UTF-8


@pytest.mark.parametrize("text", ["é", "😊", "€豆腐", "⚡️"])
def test_multibyte_character_split_across_reads(text: str) -> None:
    body = f'data: {{"content":"{text}"}}\n\n'.encode("utf-8")
    start = body.index(text.encode("utf-8"))
    end = start + len(text.encode("utf-8"))
    for cut in range(start + 1, end):
        events, _, _ = run(split_at(body, [cut]))
        assert [e.data for e in events] == [f'{{"content":"{text}"}}'], f"cut at {cut}"
    events, _, _ = run(bytewise(body))
    assert [e.data for e in events] == [f'{{"content":"{text}"}}']


def test_multibyte_character_in_event_and_id_split_across_reads() -> None:
    body = "event: ünï\nid: 😊\ndata: x\n\n".encode("utf-8")
    events, parser, _ = run(bytewise(body))
    assert events == [ServerSentEvent("ünï", "x", "😊", None)]
    assert parser.last_event_id == "😊"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"data: a\xffb\n\n", "a\ufffdb"),
        (b"data: \xe2\x82\n\n", "\ufffd"),  # truncated 3-byte sequence at end of line
        (b"data: \xe2\x82\ndata: \xac\n\n", "\ufffd\n\ufffd"),  # a line break is not a continuation
        (b"data: \xc0\xaf\n\n", "\ufffd\ufffd"),  # overlong encoding
    ],
)
def test_invalid_utf8_is_replaced(raw: bytes, expected: str) -> None:
    for chunks in ([raw], bytewise(raw)):
        events, _, _ = run(chunks)
        assert [e.data for e in events] == [expected]


def test_line_separators_other_than_cr_lf_are_data() -> None:
    text = "data: a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei\n\n"
    events, _, _ = run([text.encode("utf-8")])
    assert [e.data for e in events] == [text[6:-2]]


def test_comment_counter_counts_each_comment_line() -> None:
    events, parser, _ = run([b": a\r:\r\n: b\ndata: x\n:c\n\n"])
    assert [e.data for e in events] == ["x"]
    assert parser.comments == 4


def test_huge_line_in_many_reads() -> None:
    payload = b"x" * 200_000
    chunks = [b"data: "] + [payload[i : i + 1000] for i in range(0, len(payload), 1000)] + [b"\n\n"]
    events, _, _ = run(chunks)
    assert len(events) == 1 and events[0].data == payload.decode()


# --------------------------------------------------------------------------- limits

from promptkit import Limits, StreamError  # noqa: E402


def splits(data: bytes) -> Dict[str, List[bytes]]:
    out = {"whole": [data], "bytewise": bytewise(data)}
    for seed in (1, 2, 3):
        out[f"random-{seed}"] = random_chunks(data, seed, 40)
    return out


def limited_run(chunks: Iterable[bytes], limits: Limits) -> Tuple[List[ServerSentEvent], Optional[StreamError], int]:
    """Feed until done or an error; return the events, the error and how many bytes were fed when it came."""
    parser = SSEParser(limits)
    events: List[ServerSentEvent] = []
    fed = 0
    for chunk in chunks:
        fed += len(chunk)
        try:
            events.extend(parser.feed(chunk))
        except StreamError as exc:
            return events, exc, fed
    parser.close()
    return events, None, fed


@pytest.mark.parametrize("field", [b"data: ", b": ", b"event: ", b"id: ", b"retry: ", b"unknown: "])
def test_line_limit_is_exact_under_every_split(field: bytes) -> None:
    limits = Limits(max_line_bytes=60)
    fits = field + b"7" * (60 - len(field))
    for label, chunks in splits(b"data: a\n\n" + fits + b"\n\ndata: b\n\n").items():
        events, error, _ = limited_run(chunks, limits)
        assert error is None, label
        assert [e.data for e in events][-1] == "b", label
    for label, chunks in splits(b"data: a\n\n" + fits + b"7\n\ndata: b\n\n").items():
        events, error, _ = limited_run(chunks, limits)
        assert error is not None, label
        assert str(error).startswith("the server exceeded Limits.max_line_bytes (60 bytes)"), label
        assert [e.data for e in events] == ["a"][: len(events)], label


def test_an_unterminated_line_fails_at_the_read_that_crosses_the_limit() -> None:
    # One byte at a time: the error comes with byte 101 of the line, not at EOF or at a newline.
    prefix = b"data: ok\n\n"
    line = b": " + b"c" * 10_000
    events, error, fed = limited_run(bytewise(prefix + line), Limits(max_line_bytes=100))
    assert [e.data for e in events] == ["ok"]
    assert error is not None and "a line grew past it without a newline" in str(error)
    assert fed == len(prefix) + 101


def test_a_long_line_in_many_small_reads_keeps_few_objects() -> None:
    parser = SSEParser(Limits(max_line_bytes=10_000))
    parser.feed(b"data: ")
    for _ in range(5000):
        parser.feed(b"x")
    assert len(parser._tail) <= 9  # a growing bytearray, not one object per read
    assert parser.feed(b"\n\n")[0].data == "x" * 5000


@pytest.mark.parametrize("line", [b"data: 12345678", b"data:", b"data: 1"])
def test_event_limit_is_exact_under_every_split(line: bytes) -> None:
    value = line[6:] if line.startswith(b"data: ") else line[5:]
    per_line = len(value) + 1  # the line and the newline that joins it to the next
    count = 40
    limit = per_line * count - 1  # exactly the data of `count` lines
    body = b"data: first\n\n" + (line + b"\n") * count + b"\ndata: last\n\n"
    for label, chunks in splits(body).items():
        events, error, _ = limited_run(chunks, Limits(max_event_bytes=limit))
        assert error is None, label
        assert [len(e.data) for e in events] == [5, limit, 4], label
    over = b"data: first\n\n" + (line + b"\n") * (count + 1) + b"\ndata: last\n\n"
    for label, chunks in splits(over).items():
        events, error, _ = limited_run(chunks, Limits(max_event_bytes=limit))
        assert error is not None, label
        assert str(error).startswith(f"the server exceeded Limits.max_event_bytes ({limit} bytes)"), label
        assert [e.data for e in events] in ([], ["first"]), label  # a failing read delivers nothing


def test_a_data_flood_keeps_one_buffer_per_event() -> None:
    parser = SSEParser(Limits(max_event_bytes=1_000_000))
    for _ in range(200):
        parser.feed(b"data: x\n" * 100)
    assert len(parser._data) == 1  # 20 000 lines in one growing buffer
    (event,) = parser.feed(b"\n")
    assert event.data == "\n".join(["x"] * 20_000)


def test_big_feeds_are_split_without_changing_the_result() -> None:
    body = b"".join(f"id: {i}\ndata: {'y' * i}\n\n".encode() for i in range(300))
    want, _, _ = run([body])
    events, error, _ = limited_run([body], Limits(max_line_bytes=400, max_event_bytes=350))
    assert error is None
    assert events == want


@pytest.mark.parametrize("digits", [20, 21, 4301, 100_000])
def test_a_huge_retry_value_is_ignored_not_an_error(digits: int) -> None:
    events, parser, _ = run([b"retry: " + b"9" * digits + b"\ndata: x\n\n"])
    assert events[0].data == "x"
    assert parser.retry == (int("9" * digits) if digits <= 20 else None)
