"""Incremental Server-Sent Events parser.

Implements the WHATWG HTML "event stream interpretation" algorithm
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
for raw bytes that arrive from a socket split at arbitrary points. The parser
is pure: no I/O, no threads, standard library only. It neither knows nor cares
about OpenAI: ``data: [DONE]`` and ``event: error`` are ordinary events here.

Conformance notes:

* Lines end with CRLF, LF or CR. A CR at the end of one read followed by an LF
  at the start of the next is one line ending. Nothing else (U+2028, U+0085,
  VT, FF, ...) ends a line, which is why ``splitlines()`` is never used.
* The stream is always UTF-8 (any ``charset`` is ignored); invalid bytes become
  U+FFFD. Decoding happens per field *after* line framing, so a multi-byte
  character split across reads is never mangled.
* One leading UTF-8 BOM is stripped, even when it arrives split across reads.
* Nothing is dispatched at EOF; :meth:`SSEParser.close` only *reports* what
  a final blank line would have dispatched.
* Memory is bounded (:class:`~promptkit.Limits`): a line longer than
  ``max_line_bytes`` (comments and ``event:``/``id:`` fields included) or an
  event whose data outgrows ``max_event_bytes`` raises
  :class:`~promptkit.StreamError` as soon as the read that crosses the bound
  arrives, never after buffering the rest (events that read completed are
  not returned). The bounds are exact: the same bytes fail, or not, under
  every split. After that error the parser is spent until
  :meth:`SSEParser.close`. A line's length excludes its line ending.
* A ``retry`` value of more than 20 digits (beyond any 64-bit time) is
  ignored, like any other invalid ``retry``: parsing a huge decimal is slow.

Usage::

    parser = SSEParser()
    for chunk in response_chunks:
        for event in parser.feed(chunk):
            handle(event)
    leftover = parser.close()
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Union

from ._errors import StreamError
from ._limits import DEFAULT_LIMITS, Limits, exceeded

__all__ = ["ServerSentEvent", "SSEParser"]

_BOM = b"\xef\xbb\xbf"
_TAIL_PIECES = 8  # a line arriving in more reads than this grows one bytearray instead
_RETRY_DIGITS = 20


class ServerSentEvent(NamedTuple):
    """One dispatched event.

    ``event`` is the event type (``"message"`` when the block had no or an
    empty ``event`` field), ``data`` the joined ``data`` lines, ``id`` the
    last-event-ID at dispatch time (``""`` if never set) and ``retry`` the
    reconnection time in milliseconds set so far by the stream (``None`` if
    never set).
    """

    event: str
    data: str
    id: str = ""
    retry: Optional[int] = None


# NamedTuple's generated __new__ is a Python function; tuple.__new__ with a
# ready-made tuple is the same object built several times faster.
_new_event = tuple.__new__


class SSEParser:
    """Incremental, chunking-independent Server-Sent Events parser.

    Feed it the raw response body with :meth:`feed` as reads arrive and call
    :meth:`close` at EOF. The result is identical for every way of splitting
    the same bytes into reads, including one byte at a time.

    Args:
        limits: ``max_line_bytes`` and ``max_event_bytes`` bound what the
            parser buffers (default: :class:`~promptkit.Limits` ()).

    Attributes:
        last_event_id: the last-event-ID string, committed when a blank line
            is seen (also when no event is dispatched), as the spec requires.
        retry: reconnection time in milliseconds from the last valid
            ``retry`` field, or ``None``.
        comments: number of comment lines (keep-alives such as
            ``: OPENROUTER PROCESSING``) seen so far.
    """

    __slots__ = (
        "_tail",
        "_bom",
        "_skip_lf",
        "_data",
        "_event",
        "_id",
        "last_event_id",
        "retry",
        "comments",
        "_max_line",
        "_max_event",
        "_piece",
    )

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        # Pieces of the current unterminated line. A list rather than a growing
        # bytes object so that a huge line arriving in many reads costs O(n).
        self._tail: List[Union[bytes, bytearray]] = []  # a bytearray only as the last piece
        # Bytes of a possible leading BOM seen so far; None once decided.
        self._bom: Optional[bytes] = b""
        # Previous read ended with CR: an LF opening the next read belongs to it.
        self._skip_lf = False
        self._data: List[Union[bytes, bytearray]] = []  # a bytearray only as the head
        self._event = ""
        self._id = ""  # the spec's "last event ID buffer"
        self.last_event_id = ""
        self.retry: Optional[int] = None
        self.comments = 0
        self._max_line = limits.max_line_bytes
        self._max_event = limits.max_event_bytes
        self._piece = min(self._max_line, self._max_event)

    def feed(self, data: bytes) -> List[ServerSentEvent]:
        """Parse one read of the body and return the events it completed.

        Most reads complete zero or one event; an empty list is normal. An
        incomplete trailing line or event is kept for the next call.

        Raises:
            StreamError: a line or an event exceeded its limit.
        """
        if len(data) > self._piece:
            # Only a caller feeding huge blocks gets here (reads are 64 KiB). Fed in
            # pieces no longer than either limit, a line or an event can only outgrow
            # its bound across reads, where the checks below look. The split does
            # not change the result.
            step = self._piece
            return [event for i in range(0, len(data), step) for event in self.feed(data[i : i + step])]
        if self._bom is not None:
            data = self._strip_bom(data)
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 10:
                data = data[1:]
        # Integer membership (13 is CR, 10 is LF) is a bare memchr; testing for
        # a one-byte bytes needle is several times slower on short reads.
        if 13 in data:
            # Slow path, rare in practice: fold CRLF and lone CR into LF. A CR
            # ending this read may be the first half of a CRLF split in two.
            self._skip_lf = data[-1] == 13
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        tail = self._tail
        # Only an event open before this read can outgrow max_event_bytes here:
        # any later one lies within this read, which is no longer than the bound.
        spans = False
        if tail:
            spans = True
            if 10 not in data:
                if data:
                    self._grow_tail(data)
                return []
            tail.append(data)
            data = b"".join(tail)
            tail.clear()
            # Only the first line joins earlier reads; any other is within this read.
            if len(data) > self._max_line and data.index(10) > self._max_line:
                raise self._line_error("a line of the event stream is longer")
        lines = data.split(b"\n")
        last = lines.pop()
        if last:
            tail.append(last)
        if not lines:
            return []

        # Hot loop: state lives in locals and is written back once at the end.
        events: List[ServerSentEvent] = []
        buf = self._data
        event = self._event
        last_id = self._id
        committed = self.last_event_id
        retry = self.retry
        if buf:
            spans = True
        for line in lines:
            if not line:
                # Blank line: commit the id even when nothing is dispatched.
                committed = last_id
                if buf:
                    payload = b"\n".join(buf)
                    if spans:  # the first event of this read may have begun earlier: check it
                        spans = False
                        if len(payload) > self._max_event:
                            raise self._event_error(len(payload))
                    events.append(
                        _new_event(
                            ServerSentEvent,
                            (event or "message", payload.decode("utf-8", "replace"), last_id, retry),
                        )
                    )
                    buf.clear()
                event = ""
            elif line[:6] == b"data: ":  # the hot case; a slice compare beats startswith()
                buf.append(line[6:])
            elif line[0] == 58:  # ':'
                self.comments += 1
            else:
                colon = line.find(b":")
                if colon < 0:
                    name = line
                    value = b""
                else:
                    name = line[:colon]
                    value = line[colon + 1 :]
                    if value[:1] == b" ":
                        value = value[1:]
                # Field names are compared exactly (case-sensitive) as bytes;
                # any non-UTF-8 byte in a name would decode to U+FFFD and
                # not match either, so comparing before decoding is exact.
                if name == b"data":
                    buf.append(value)
                elif name == b"event":
                    event = value.decode("utf-8", "replace")
                elif name == b"id":
                    if b"\x00" not in value:
                        last_id = value.decode("utf-8", "replace")
                elif name == b"retry":
                    # bytes.isdigit() is ASCII-only, exactly the spec's rule
                    # ("+5", " 5", "1_000" and non-ASCII digits are ignored).
                    if value.isdigit() and len(value) <= _RETRY_DIGITS:
                        retry = int(value)
                # Unknown fields are ignored.
        if buf:  # an event stays open past this read: measure it
            self._measure()
        self._event = event
        self._id = last_id
        self.last_event_id = committed
        self.retry = retry
        return events

    def close(self) -> Optional[ServerSentEvent]:
        """End the stream; return what a final blank line would have dispatched.

        Per the spec nothing is dispatched at EOF: the incomplete event and
        an unterminated last line are discarded, and ``last_event_id``,
        ``retry`` and ``comments`` are left as they were. The return value is
        the event that *would* have resulted had the body ended with a blank
        line now (after processing any unterminated last line), or ``None``.
        It lets callers be lenient about a body ending right after
        ``data: [DONE]`` without the final newline(s).

        Afterwards the parser is reset for a new stream (e.g. after a
        reconnect), keeping ``last_event_id``, ``retry`` and ``comments``.
        """
        saved = (self.last_event_id, self.retry, self.comments)
        # Two CRs end any unterminated line and then form a blank line. CR
        # (not LF) so that a pending "skip the LF of a split CRLF" cannot eat
        # the first one. At most one event can come out: the second blank
        # line always sees an empty data buffer.
        events = self.feed(b"\r\r")
        self.last_event_id, self.retry, self.comments = saved
        self._tail.clear()
        self._data.clear()
        self._bom = b""
        self._skip_lf = False
        self._event = ""
        # Like browsers, a new stream starts from the committed ID rather than
        # forgetting it, so a resumed stream without ids keeps the old one.
        self._id = self.last_event_id
        return events[0] if events else None

    def _grow_tail(self, data: bytes) -> None:
        """Add a read without a newline to the unterminated line, within max_line_bytes."""
        tail = self._tail
        if sum(map(len, tail)) + len(data) > self._max_line:
            raise self._line_error("a line grew past it without a newline")
        last = tail[-1]
        if last.__class__ is bytearray:
            last += data
        elif len(tail) < _TAIL_PIECES:
            tail.append(data)
        else:
            # Many small reads of one line: one growing buffer, not an object per read.
            tail.append(bytearray(data))

    def _measure(self) -> None:
        """Check the data of an event still open after a read against max_event_bytes.

        The lines measured so far are kept joined in one bytearray at the head
        of the buffer (a line is never a bytearray otherwise), so each read
        only measures what it added, and a flood of tiny ``data:`` lines costs
        one growing buffer instead of an object per line.
        """
        buf = self._data
        head = buf[0]
        if head.__class__ is bytearray:
            if len(buf) == 1:
                return  # no data line came in this read
            head += b"\n"
            head += b"\n".join(buf[1:])
        else:
            head = bytearray(b"\n".join(buf))
        del buf[:]
        if len(head) > self._max_event:
            raise self._event_error(len(head))
        buf.append(head)

    def _event_error(self, size: int) -> StreamError:
        return exceeded("max_event_bytes", self._max_event, "bytes", f"an event's data reached {size} bytes")

    def _line_error(self, what: str) -> StreamError:
        return exceeded("max_line_bytes", self._max_line, "bytes", what)

    def _strip_bom(self, data: bytes) -> bytes:
        head = self._bom + data if self._bom else data
        if len(head) < 3 and _BOM.startswith(head):
            self._bom = head  # could still become a BOM: wait for more bytes
            return b""
        self._bom = None
        return head[3:] if head.startswith(_BOM) else head
