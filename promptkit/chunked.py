"""HTTP/1.1 chunked transfer decoding, incremental and pure.

http.client's ``read1`` on a chunked body returns at most one HTTP chunk per
call, and servers write one chunk per event: a fast stream would cost one
Python-level read per event. Decoding here turns whatever the socket buffer
holds (many chunks) into one payload slice, so a read yields all the events
that have arrived.
"""

from __future__ import annotations

from typing import List

__all__ = ["Dechunker", "ChunkedError"]

_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class ChunkedError(ValueError):
    """The body is not valid chunked transfer encoding."""


class Dechunker:
    """Feed raw body bytes, get payload bytes; :attr:`done` once the last chunk and trailers are in."""

    __slots__ = ("_state", "_left", "_buf", "done")

    def __init__(self) -> None:
        self._state = _SIZE
        self._left = 0
        self._buf = b""
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """Decode ``data`` (any split); return the payload bytes it completes.

        Raises:
            ChunkedError: a malformed chunk size line or chunk terminator.
        """
        buf = self._buf + data if self._buf else data
        size = len(buf)
        pos = 0
        out: List[bytes] = []
        state = self._state
        while pos < size and not self.done:
            if state == _DATA:
                take = min(self._left, size - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    state = _DATA_END
            elif state == _SIZE or state == _TRAILER:
                end = buf.find(b"\n", pos)
                if end < 0:
                    if size - pos > 4096:
                        raise ChunkedError("chunk size line too long")
                    break
                line = buf[pos:end].rstrip(b"\r")
                pos = end + 1
                if state == _TRAILER:
                    if not line:
                        self.done = True  # the empty line after the last chunk (and any trailers)
                    continue
                try:
                    self._left = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ChunkedError(f"bad chunk size line {line[:40]!r}") from None
                if self._left < 0:
                    raise ChunkedError(f"bad chunk size line {line[:40]!r}")
                state = _DATA if self._left else _TRAILER
            else:  # _DATA_END: the CRLF closing a chunk's data
                if buf[pos : pos + 1] == b"\n":
                    pos += 1
                    state = _SIZE
                elif size - pos < 2:
                    break
                elif buf[pos : pos + 2] == b"\r\n":
                    pos += 2
                    state = _SIZE
                else:
                    raise ChunkedError("chunk data not followed by CRLF")
        self._state = state
        self._buf = buf[pos:] if pos < size and not self.done else b""
        return b"".join(out) if len(out) != 1 else out[0]
