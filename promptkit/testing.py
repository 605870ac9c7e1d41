"""An embedded OpenAI-compatible chat-completions server for tests and offline examples.

A real HTTP/1.1 server on ``127.0.0.1`` (stdlib only), so clients go through the
same sockets, framing, keep-alive and timeouts as with a remote API::

    with MockServer() as server:
        server.enqueue(MockReply.text("Hello there!"), MockReply.error(429, "slow down"))
        ...  # point a client at base_url=server.url
        assert server.requests[0].body["stream"] is True
"""

from __future__ import annotations

import json
import logging
import random
import re
import selectors
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

__all__ = ["MockServer", "MockReply", "RecordedRequest", "Headers"]

log = logging.getLogger("promptkit.testing")

_SSE_TYPE = "text/event-stream; charset=utf-8"
_JSON_TYPE = "application/json"
_FRAMINGS = ("chunked", "close", "length")
_Item = Union[bytes, float]  # a reply script: bytes are written and flushed as one event, floats are pauses
_Usage = Union[bool, Mapping[str, Any], None]


class _Stopped(Exception):
    """The server is closing: abandon the reply."""


class Headers(Dict[str, str]):
    """A dict of header values whose keys compare case-insensitively (they are stored lower-case)."""

    def __init__(self, items: Iterable[Tuple[str, str]] = ()) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """The value of header ``key`` (any case), or ``default``."""
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received.

    Attributes:
        method: the HTTP method, e.g. ``"POST"``.
        path: the request target, e.g. ``"/v1/chat/completions"``.
        headers: the request headers (case-insensitive keys).
        body: the parsed JSON body, or ``None`` when it was empty or not JSON.
        raw: the body bytes as received.
    """

    method: str
    path: str
    headers: Headers
    body: Any
    raw: bytes


@dataclass(frozen=True)
class MockReply:
    """An immutable description of one reply; build it with a factory classmethod.

    The server renders it when a request consumes it, so one MockReply can be enqueued
    many times. Options shared by :meth:`text` and :meth:`tool_calls`:

    * ``delay``: seconds between two deltas; ``first_delay``: seconds before the first
      content delta, after the headers and the role chunk were flushed.
    * ``usage``: ``True`` computes plausible counts, a dict overrides fields, ``None``
      sends none. Streamed usage is only sent when the request set
      ``stream_options.include_usage`` (like OpenAI).
    * ``model``: the reported model (default: the request's, else the server's).
    * ``finish_reason``: ``None`` omits the finish chunk. ``reasoning``: text streamed
      as ``reasoning_content`` deltas before the content.
    * ``framing``: ``"chunked"``, ``"close"`` (no length, ``Connection: close``, the body
      ends when the socket closes) or ``"length"`` (``Content-Length``, whole body at
      once); default: the server's.
    * ``keepalive_comments``: ``: keep-alive`` lines sent before the first chunk;
      ``include_done``: end with ``data: [DONE]``; ``headers``: extra response headers.

    Without ``"stream": true`` in the request, these replies are sent as one
    ``chat.completion`` JSON object instead.
    """

    kind: str
    options: Mapping[str, Any]

    @classmethod
    def _of(cls, kind: str, options: Dict[str, Any]) -> "MockReply":
        options = {k: v for k, v in options.items() if k != "cls"}
        if options.get("framing") not in (None, *_FRAMINGS):
            raise ValueError(f"framing must be one of {_FRAMINGS}, got {options['framing']!r}")
        return cls(kind, MappingProxyType(options))

    @classmethod
    def text(cls, text: str, *, chunk_size: Optional[int] = None, delay: float = 0.0, first_delay: float = 0.0,
             usage: _Usage = True, model: Optional[str] = None, finish_reason: Optional[str] = "stop",
             reasoning: Optional[str] = None, framing: Optional[str] = None, keepalive_comments: int = 0,
             include_done: bool = True, headers: Optional[Mapping[str, str]] = None) -> "MockReply":
        """An assistant text reply.

        Args:
            text: the content, streamed as word-sized deltas (long words in ~4-character pieces).
            chunk_size: split the content into deltas of exactly this many characters instead.
            delay, first_delay, usage, model, finish_reason, reasoning, framing, keepalive_comments,
                include_done, headers: see the class docstring.
        """
        return cls._of("text", dict(locals()))

    @classmethod
    def tool_calls(cls, calls: Sequence[Mapping[str, Any]], *, content: Optional[str] = None,
                   split_arguments: int = 8, delay: float = 0.0, first_delay: float = 0.0, usage: _Usage = True,
                   model: Optional[str] = None, finish_reason: Optional[str] = "tool_calls",
                   reasoning: Optional[str] = None, framing: Optional[str] = None, keepalive_comments: int = 0,
                   include_done: bool = True, headers: Optional[Mapping[str, str]] = None) -> "MockReply":
        """A reply calling tools, streamed as standard ``tool_calls`` deltas.

        Args:
            calls: dicts ``{"name", "arguments": dict or JSON str, "id" (optional)}``.
            content: text streamed before the calls.
            split_arguments: the arguments text is sent in fragments of this many characters.
            delay, first_delay, usage, model, finish_reason, reasoning, framing, keepalive_comments,
                include_done, headers: see the class docstring.
        """
        calls = tuple(dict(c) for c in calls)
        return cls._of("tool_calls", dict(locals(), text=content or "", chunk_size=None))

    @classmethod
    def error(cls, status: int, message: str, *, type: Optional[str] = None, code: Optional[str] = None,
              headers: Optional[Mapping[str, str]] = None, body: Union[str, bytes, None] = None,
              content_type: Optional[str] = None) -> "MockReply":
        """A whole (not streamed) reply, normally an OpenAI error ``{"error": {"message", "type", "code"}}``.

        Args:
            status: the HTTP status (200 is allowed, to test that a client rejects the body).
            message: the error message.
            type: the error type (default derived from the status).
            code: the error code.
            headers: extra response headers, e.g. ``{"Retry-After": "0"}``.
            body: a raw body sent instead of the JSON error (e.g. an HTML page).
            content_type: the Content-Type (default JSON, or HTML/plain text for a raw body).
        """
        return cls._of("error", dict(locals()))

    @classmethod
    def in_band_error(cls, message: str, *, after_text: str = "", code: Optional[str] = None,
                      event: Optional[str] = None) -> "MockReply":
        """A 200 event stream: ``after_text`` deltas, then ``data: {"error": {...}}`` and no ``[DONE]``.

        Args:
            message: the error message.
            after_text: content streamed before the error.
            code: the error code.
            event: an SSE event name for the error (``"error"`` sends ``event: error`` like Groq).
        """
        return cls._of("in_band_error", dict(locals()))

    @classmethod
    def stall(cls, *, after_text: str = "", before_headers: bool = False) -> "MockReply":
        """Send headers, the role chunk and ``after_text``, then nothing until the client leaves or the server closes.

        Args:
            after_text: content streamed before stalling.
            before_headers: read the request and send nothing at all, not even the status line.
        """
        return cls._of("stall", dict(locals()))

    @classmethod
    def reset(cls, *, after_text: str = "") -> "MockReply":
        """Stream ``after_text``, then abort the TCP connection with a RST."""
        return cls._of("reset", dict(locals()))

    @classmethod
    def truncate(cls, *, after_text: str = "...") -> "MockReply":
        """Stream ``after_text``, then end the body cleanly with no finish_reason and no ``[DONE]``."""
        return cls._of("truncate", dict(locals()))

    @classmethod
    def keepalive_only(cls, seconds: float, *, interval: float = 0.05) -> "MockReply":
        """Send headers, then only ``: keep-alive`` comments every ``interval`` for ``seconds``, then close."""
        return cls._of("keepalive_only", dict(locals()))

    @classmethod
    def raw(cls, chunks: Sequence[bytes], *, status: int = 200, headers: Optional[Mapping[str, str]] = None,
            delay: float = 0.0, framing: str = "chunked") -> "MockReply":
        """Send arbitrary body bytes, one flushed write (one HTTP chunk) per item.

        Args:
            chunks: the body pieces, e.g. a UTF-8 character split across two writes.
            status: the HTTP status.
            headers: response headers (Content-Type defaults to ``text/event-stream``).
            delay: seconds between two writes.
            framing: ``"chunked"``, ``"close"`` or ``"length"``.
        """
        chunks = tuple(bytes(c) for c in chunks)
        return cls._of("raw", dict(locals()))

    @classmethod
    def json(cls, body: Mapping[str, Any], status: int = 200) -> "MockReply":
        """A whole JSON reply, e.g. a hand-written ``chat.completion``."""
        return cls._of("json", dict(locals()))

    @classmethod
    def sse_file(cls, path: Union[str, Path], *, delay: float = 0.0, chunk_size: Optional[int] = None) -> "MockReply":
        """Replay a recorded ``.sse`` body, one write per event (or per ``chunk_size`` bytes).

        The file is read now, so a missing file fails here rather than in the server thread.
        """
        data = Path(path).read_bytes()
        if chunk_size:
            return cls.raw([data[i:i + chunk_size] for i in range(0, len(data), chunk_size)], delay=delay)
        return cls.raw(re.findall(rb"(?s).+?(?:\r\n\r\n|\n\n|\r\r|\Z)", data), delay=delay)


def _dumps(obj: Any) -> bytes:
    # Compact separators and raw UTF-8, the way OpenAI writes its chunks.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _sse(obj: Any, event: Optional[str] = None) -> bytes:
    return (f"event: {event}\n".encode() if event else b"") + b"data: " + _dumps(obj) + b"\n\n"


def _pieces(text: str, size: Optional[int]) -> List[str]:
    """Token-ish deltas: words with their leading whitespace, long words in ~4-character pieces."""
    if size:
        return [text[i:i + size] for i in range(0, len(text), size)]
    out: List[str] = []
    for word in re.findall(r"\s*\S+|\s+", text):
        out.extend([word[i:i + 4] for i in range(0, len(word), 4)] if len(word) > 8 else [word])
    return out


def _merge(base: Dict[str, str], extra: Optional[Mapping[str, str]]) -> Dict[str, str]:
    for key, value in (extra or {}).items():  # header names are case-insensitive: replace, never duplicate
        for old in [k for k in base if k.lower() == key.lower()]:
            del base[old]
        base[key] = value
    return base


_OPENERS = ("Once upon a time, {s} lived at the edge of a quiet harbor town.",
            "Long ago, in a valley full of morning fog, there was {s} who never stopped wondering.",
            "On the first warm day of spring, {s} set out to find something nobody had seen before.",
            "In a city of humming towers, {s} woke up with a strange and wonderful idea.")
_MIDDLES = ("Each day brought a small puzzle, and each puzzle taught a patient lesson.",
            "Along the way came a lost kitten, a broken lantern and a friend who needed help.",
            "The neighbors laughed at first, but slowly they began to listen.",
            "There were wrong turns and rainy afternoons, yet curiosity always won.")
_ENDINGS = ("By sunset, everyone agreed it had been the most remarkable day in years.",
            "In the end, the greatest discovery was how much a little kindness could change.",
            "From then on, a light always burned in the window, just in case.",
            "It was only the beginning, but what a beginning it was.")
_HEROES = ("a curious inventor", "a retired lighthouse keeper", "a wandering cartographer", "a small brave fox")


def _story(messages: Any) -> str:
    """The default reply: 2-4 deterministic story sentences seeded by the last user message."""
    messages = messages if isinstance(messages, list) else []
    text = ""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            parts = content if isinstance(content, list) else [{"text": content}]
            text = " ".join(str(p.get("text") or "") for p in parts if isinstance(p, dict))
            break
    # The message count is part of the seed so that a repeated question still gets a new answer.
    rng = random.Random(f"{len(messages)}|{text}")
    about = re.search(r"\babout\s+([^.?!\n]{1,60})", text, re.I)
    hero = about.group(1).strip() if about else rng.choice(_HEROES)
    middles = rng.sample(_MIDDLES, rng.randint(0, 2))
    return " ".join([rng.choice(_OPENERS).format(s=hero), *middles, rng.choice(_ENDINGS)])


def _usage(o: Mapping[str, Any], req: Dict[str, Any], completion: int, reasoning: int) -> Optional[Dict[str, Any]]:
    if not o["usage"]:
        return None
    prompt = max(1, len(json.dumps(req.get("messages", []))) // 4)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": reasoning}}
    if isinstance(o["usage"], Mapping):
        usage.update(o["usage"])
        if "total_tokens" not in o["usage"]:
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless a reply or the client says otherwise
    server: "_Server"
    _rid = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("%s " + format, self.address_string(), *args)

    def do_POST(self) -> None:
        mock = self.server.mock
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        mock._record(RecordedRequest(self.command, self.path, Headers(self.headers.items()), body, raw))
        if mock.api_key is not None and self.headers.get("Authorization") != f"Bearer {mock.api_key}":
            reply = MockReply.error(401, "Incorrect API key provided.", code="invalid_api_key")
        elif self.command != "POST" or not self.path.split("?", 1)[0].rstrip("/").endswith("/chat/completions"):
            reply = MockReply.error(404, f"Unknown request URL: {self.command} {self.path}", code="unknown_url")
        elif not isinstance(body, dict):
            reply = MockReply.error(400, "We could not parse the JSON body of your request.")
        else:
            reply = mock._next_reply(body)
        try:
            self._render(reply, body if isinstance(body, dict) else {})
        except _Stopped:
            self.close_connection = True
        except OSError as exc:  # BrokenPipe / ConnectionReset / EPIPE: the client left mid-reply
            self.close_connection = True
            if not mock._stop.is_set():
                mock._note_disconnect(exc)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _render(self, reply: MockReply, req: Dict[str, Any]) -> None:
        o, kind, mock = reply.options, reply.kind, self.server.mock
        seq = mock._next_seq()
        self._rid = f"req_mock{seq:08d}"
        if kind == "error":
            data = o["body"]
            ctype = o["content_type"] or _JSON_TYPE
            if data is None:
                etype = o["type"] or ("server_error" if o["status"] >= 500 else
                                      "rate_limit_error" if o["status"] == 429 else "invalid_request_error")
                data = _dumps({"error": {"message": o["message"], "type": etype, "param": None, "code": o["code"]}})
            else:
                data = data.encode() if isinstance(data, str) else data
                html = data.lstrip()[:1] == b"<"
                ctype = o["content_type"] or ("text/html; charset=utf-8" if html else "text/plain; charset=utf-8")
            return self._whole(o["status"], data, ctype, o["headers"])
        if kind == "json":
            return self._whole(o["status"], _dumps(o["body"]), _JSON_TYPE, None)
        if kind == "raw":
            items: List[_Item] = []
            for piece in o["chunks"]:
                items += [o["delay"], piece] if items else [piece]
            return self._stream(o["status"], o["headers"], o["framing"], items)
        if kind == "stall" and o["before_headers"]:
            return self._block()
        options = req.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        base = {"id": f"chatcmpl-mock{seq:08d}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": o.get("model") or req.get("model") or mock.model, "system_fingerprint": "fp_mock"}

        def chunk(delta: Dict[str, Any], finish: Optional[str] = None) -> bytes:
            out = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
            if include_usage:  # OpenAI sends "usage": null on every chunk once usage was requested
                out["usage"] = None
            return _sse(out)

        if kind in ("text", "tool_calls"):
            return self._chat(o, req, base, chunk, include_usage, seq)
        # The failure modes: the role chunk and some content, then the kind's own ending.
        items = [chunk({"role": "assistant", "content": ""})]
        items += [chunk({"content": p}) for p in _pieces(o.get("after_text", ""), None)]
        end = "done"
        if kind == "in_band_error":
            error = {"message": o["message"], "type": "server_error", "param": None, "code": o["code"]}
            items.append(_sse({"error": error}, o["event"]))
        elif kind in ("stall", "reset"):
            end = kind
        elif kind == "keepalive_only":
            count = max(1, round(o["seconds"] / o["interval"])) if o["interval"] > 0 else 1
            items, end = [b": keep-alive\n\n", o["interval"]] * count, "close"
        # "length" framing cannot stall or reset half-way, so these fall back to chunked.
        self._stream(200, None, "close" if mock.framing == "close" else "chunked", items, end)

    def _chat(self, o: Mapping[str, Any], req: Dict[str, Any], base: Dict[str, Any],
              chunk: Callable[..., bytes], include_usage: bool, seq: int) -> None:
        """Render a text or tool_calls reply, streamed or as one ``chat.completion`` object."""
        reasoning = [{"reasoning_content": p} for p in _pieces(o["reasoning"] or "", None)]
        deltas = reasoning + [{"content": p} for p in _pieces(o["text"], o["chunk_size"])]
        calls = []
        for i, call in enumerate(o.get("calls", ())):
            args = call.get("arguments", {})
            args = args if isinstance(args, str) else json.dumps(args)
            calls.append({"id": call.get("id") or f"call_mock{seq}_{i}", "type": "function",
                          "function": {"name": call["name"], "arguments": args}})
            first = {"index": i, **calls[-1], "function": {"name": call["name"], "arguments": ""}}
            step = max(1, o["split_arguments"])
            deltas += [{"tool_calls": [first]}] + [{"tool_calls": [{"index": i, "function": {
                "arguments": args[j:j + step]}}]} for j in range(0, len(args), step)]
        usage = _usage(o, req, len(deltas), len(reasoning))
        if not req.get("stream"):
            message: Dict[str, Any] = {"role": "assistant", "content": o["text"] or None, "refusal": None}
            if o["reasoning"]:
                message["reasoning_content"] = o["reasoning"]
            if calls:
                message["tool_calls"] = calls
            body = dict(base, object="chat.completion", choices=[
                {"index": 0, "message": message, "logprobs": None, "finish_reason": o["finish_reason"]}])
            if usage is not None:
                body["usage"] = usage
            return self._whole(200, _dumps(body), _JSON_TYPE, o["headers"])
        items: List[_Item] = [b": keep-alive\n\n"] * o["keepalive_comments"]
        items += [chunk({"role": "assistant", "content": ""}), o["first_delay"]]
        for i, delta in enumerate(deltas):
            items += [o["delay"], chunk(delta)] if i else [chunk(delta)]
        if o["finish_reason"] is not None:
            items.append(chunk({}, o["finish_reason"]))
        if include_usage and usage is not None:
            items.append(_sse(dict(base, choices=[], usage=usage)))
        if o["include_done"]:
            items.append(b"data: [DONE]\n\n")
        self._stream(200, o["headers"], o["framing"] or self.server.mock.framing, items)

    def _whole(self, status: int, data: bytes, ctype: str, extra: Optional[Mapping[str, str]]) -> None:
        self.send_response(status)
        headers = _merge({"Content-Type": ctype, "Content-Length": str(len(data)), "x-request-id": self._rid}, extra)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, status: int, extra: Optional[Mapping[str, str]], framing: str, items: List[_Item],
                end: str = "done") -> None:
        if framing == "length":
            return self._whole(status, b"".join(i for i in items if isinstance(i, bytes)), _SSE_TYPE, extra)
        chunked = framing == "chunked"
        self.send_response(status)
        headers = _merge({"Content-Type": _SSE_TYPE, "Cache-Control": "no-cache", "x-request-id": self._rid}, extra)
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        if not chunked or self.close_connection:
            headers["Connection"] = "close"  # send_header also sets self.close_connection
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()  # wfile is unbuffered: each write below is one sendall, seen by the client at once
        for item in items:
            if isinstance(item, bytes):
                if item:  # an empty HTTP chunk would end the body
                    self.wfile.write(b"%X\r\n%s\r\n" % (len(item), item) if chunked else item)
            elif item > 0:
                self._pause(item)
        if end == "stall":
            return self._block()
        if end == "reset":
            sock, self.close_connection = self.connection, True
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.server.mock._forget(sock)
            socket.close(sock.detach())  # linger 0 + close sends a RST; detached, so no later shutdown() sends a FIN
            return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        if end == "close":
            self.close_connection = True

    def _pause(self, seconds: float) -> None:
        """Wait, waking at once when the server closes or the client hangs up (so a cancel is seen promptly)."""
        stop = self.server.mock._stop
        if stop.is_set():
            raise _Stopped
        with selectors.DefaultSelector() as selector:
            # close() sets stop and then shuts the socket down, which makes it readable: no polling needed.
            selector.register(self.connection, selectors.EVENT_READ)
            readable = selector.select(seconds)
        if stop.is_set():
            raise _Stopped
        if readable and not self.connection.recv(1, socket.MSG_PEEK):
            raise ConnectionResetError("the client closed the connection")
        if readable and stop.wait(seconds):  # the client sent more bytes (pipelining): just wait
            raise _Stopped

    def _block(self) -> None:
        """Send nothing until the client disconnects or close() shuts the socket down (a blocking recv)."""
        self.close_connection = True
        try:
            while self.connection.recv(65536):
                pass
        except OSError:
            pass
        if not self.server.mock._stop.is_set():
            self.server.mock._note_disconnect(None)


class _Server(socketserver.TCPServer):
    # TCPServer, not HTTPServer: HTTPServer.server_bind does a (possibly slow) reverse DNS lookup.
    request_queue_size = 128  # benchmarks connect many clients at once; a full backlog costs a 1 s SYN retry

    def __init__(self, mock: "MockServer") -> None:
        self.mock = mock
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.mock._spawn(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.mock._stop.is_set():
            log.debug("connection from %s ended: %r", client_address, exc)
        else:
            log.error("error handling a request from %s", client_address, exc_info=True)


class MockServer:
    """A local OpenAI-compatible chat-completions server, serving in background threads.

    Replies are consumed in FIFO order, one per ``POST .../chat/completions``. When the
    queue is empty, a deterministic short story derived from the last user message is
    streamed. The socket is bound at construction (so :attr:`url` is known at once);
    serving starts with :meth:`start` or ``with MockServer() as server:``. :meth:`close`
    stops everything and joins every thread it started (all named ``promptkit-mock-*``).

    Args:
        default_delay: seconds between deltas of the default (story) reply.
        model: the model reported when neither the reply nor the request names one.
        api_key: when set, requests without ``Authorization: Bearer <api_key>`` get a 401.
        framing: the default framing of streamed replies: ``"chunked"``, ``"close"`` or ``"length"``.

    Attributes:
        disconnected: a ``threading.Event`` set when a client disconnects while a reply is being sent.
    """

    def __init__(self, default_delay: float = 0.0, model: str = "gpt-4o-mini", api_key: Optional[str] = None,
                 framing: str = "chunked") -> None:
        if framing not in _FRAMINGS:
            raise ValueError(f"framing must be one of {_FRAMINGS}, got {framing!r}")
        self.default_delay, self.model, self.api_key, self.framing = default_delay, model, api_key, framing
        self.disconnected = threading.Event()
        self._stop = threading.Event()  # one Event releases every delay and stall
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: Deque[MockReply] = deque()
        self._requests: List[RecordedRequest] = []
        self._sockets: Set[socket.socket] = set()
        self._threads: List[threading.Thread] = []
        self._opened = self._disconnects = self._seq = 0
        self._serve_thread: Optional[threading.Thread] = None
        self._closed = False
        self._server = _Server(self)

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``"http://127.0.0.1:54321/v1"``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "MockServer":
        """Start serving in a background thread (idempotent) and return the server.

        Raises:
            RuntimeError: the server was closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("this MockServer is closed")
            if self._serve_thread is None:
                self._serve_thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                                      name="promptkit-mock-server", daemon=True)
                self._serve_thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, release stalled and delayed replies, shut client sockets down and join all threads.

        Idempotent.

        Args:
            timeout: the longest total wait for the threads to finish (a warning is logged if one survives).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
        if self._serve_thread is not None:
            self._server.shutdown()  # returns once serve_forever has stopped: no new connection after this
            self._serve_thread.join(timeout)
        self._server.server_close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            try:  # wakes the threads blocked in recv, readline, select or sendall on this socket
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            log.warning("MockServer.close: threads still alive after %.1f s: %s", timeout, alive)

    def __enter__(self) -> "MockServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def enqueue(self, *replies: Union[MockReply, str]) -> None:
        """Queue replies for the next chat-completions requests, in order (a str means ``MockReply.text``)."""
        with self._lock:
            self._queue.extend(MockReply.text(r) if isinstance(r, str) else r for r in replies)

    @property
    def requests(self) -> List[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def connections_opened(self) -> int:
        """How many TCP connections were accepted so far."""
        with self._lock:
            return self._opened

    @property
    def disconnects(self) -> int:
        """How many times a client disconnected while a reply was being sent."""
        with self._lock:
            return self._disconnects

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` requests were received; return ``False`` on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._requests) >= n, timeout)

    # Internals, called from the connection threads.

    def _spawn(self, sock: socket.socket, address: Any) -> None:
        with self._lock:
            if self._stop.is_set():
                sock.close()
                return
            self._opened += 1
            self._sockets.add(sock)
            self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(target=self._serve_connection, args=(sock, address),
                                      name=f"promptkit-mock-conn-{self._opened}", daemon=True)
            self._threads.append(thread)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay: each event leaves at once
        thread.start()

    def _serve_connection(self, sock: socket.socket, address: Any) -> None:
        try:
            self._server.finish_request(sock, address)
        except Exception:
            self._server.handle_error(sock, address)
        finally:
            self._forget(sock)
            self._server.shutdown_request(sock)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _next_reply(self, body: Dict[str, Any]) -> MockReply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return MockReply.text(_story(body.get("messages")), delay=self.default_delay)

    def _note_disconnect(self, exc: Optional[BaseException]) -> None:
        log.debug("client disconnected mid-reply: %r", exc)
        with self._lock:
            self._disconnects += 1
        self.disconnected.set()
