"""The incremental chunked-transfer decoder under every split."""

from __future__ import annotations

import random

import pytest

from promptkit.chunked import ChunkedError, Dechunker


def encode(parts: list, trailers: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return body + b"0\r\n" + trailers + b"\r\n"


PARTS = [b"data: {\"a\": 1}\n\n", b"x" * 300, b"\xf0\x9f\x98", b"\x8a", b"data: [DONE]\n\n"]


def decode_in(pieces: list) -> tuple:
    d = Dechunker()
    out = b"".join(d.feed(p) for p in pieces)
    return out, d.done


def test_whole_and_byte_by_byte() -> None:
    wire = encode(PARTS)
    assert decode_in([wire]) == (b"".join(PARTS), True)
    assert decode_in([wire[i : i + 1] for i in range(len(wire))]) == (b"".join(PARTS), True)


@pytest.mark.parametrize("seed", range(20))
def test_random_splits_with_extensions_and_trailers(seed: int) -> None:
    rng = random.Random(seed)
    wire = encode(PARTS, trailers=b"X-Trailer: 1\r\n").replace(b"10\r\n", b"10;ext=1\r\n", 1)
    cuts = sorted(rng.sample(range(1, len(wire)), rng.randint(1, 30)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)])]
    assert decode_in(pieces) == (b"".join(PARTS), True)


def test_not_done_before_the_last_chunk() -> None:
    wire = encode(PARTS)
    out, done = decode_in([wire[:-3]])
    assert out == b"".join(PARTS) and not done


def test_bytes_after_the_end_are_ignored() -> None:
    assert decode_in([encode([b"abc"]) + b"garbage"]) == (b"abc", True)


@pytest.mark.parametrize("wire", [b"zz\r\nabc\r\n", b"3\r\nabcXY", b"-1\r\n"])
def test_malformed(wire: bytes) -> None:
    with pytest.raises(ChunkedError):
        Dechunker().feed(wire)
