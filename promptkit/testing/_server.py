"""The mock server itself: a threaded HTTP/1.1 server; each wire protocol is rendered by its own module."""

from __future__ import annotations

import json
import selectors
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Deque, Dict, Iterator, List, Mapping, Optional, Set, Tuple, Union

from ._render import Context, Renderer, Streamed, Whole
from ._render_anthropic import AnthropicRenderer
from ._render_chat import ChatRenderer
from ._render_responses import ResponsesRenderer
from ._replies import (
    log,
    _SSE_TYPE,
    _FRAMINGS,
    _Item,
    _Stopped,
    Headers,
    RecordedRequest,
    MockReply,
    _merge,
    _story,
)

__all__ = ["MockServer"]

# The wire protocols, chosen by the request path (the first is also used for replies to unknown paths).
_RENDERERS: Tuple[Renderer, ...] = (ChatRenderer(), ResponsesRenderer(), AnthropicRenderer())


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
        headers = Headers(self.headers.items())
        mock._record(RecordedRequest(self.command, self.path, headers, body, raw))
        renderer = next((r for r in _RENDERERS if r.matches(self.path)), None)
        protocol = renderer or _RENDERERS[0]
        if mock.api_key is not None and not protocol.authorized(headers, mock.api_key):
            reply = MockReply.error(401, protocol.bad_key, code="invalid_api_key")
        elif self.command != "POST" or renderer is None:
            reply = MockReply.error(404, f"Unknown request URL: {self.command} {self.path}", code="unknown_url")
        elif not isinstance(body, dict):
            reply = MockReply.error(400, "We could not parse the JSON body of your request.")
        else:
            reply = mock._next_reply(body, renderer)
        try:
            self._render(reply, body if isinstance(body, dict) else {}, protocol)
        except _Stopped:
            self.close_connection = True
        except OSError as exc:  # BrokenPipe / ConnectionReset / EPIPE: the client left mid-reply
            self.close_connection = True
            if not mock._stop.is_set():
                mock._note_disconnect(exc)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _render(self, reply: MockReply, req: Dict[str, Any], renderer: Renderer) -> None:
        mock = self.server.mock
        ctx = Context(mock._next_seq(), mock.model, mock.framing)
        self._rid = ctx.request_id
        plan = renderer.render(reply, req, ctx)
        if isinstance(plan, Whole):
            self._whole(plan.status, plan.data, plan.content_type, plan.headers)
        elif isinstance(plan, Streamed):
            self._stream(plan.status, plan.headers, plan.framing or mock.framing, plan.items, plan.end, plan.bulk)
        else:
            self._block()

    def _whole(self, status: int, data: bytes, ctype: str, extra: Optional[Mapping[str, str]]) -> None:
        self.send_response(status)
        headers = _merge({"Content-Type": ctype, "Content-Length": str(len(data)), "x-request-id": self._rid}, extra)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, status: int, extra: Optional[Mapping[str, str]], framing: str, items: List[_Item],
                end: str = "done", bulk: bool = False) -> None:
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
        for batch in _batches(items, bulk):
            if isinstance(batch, float):
                self._pause(batch)
            elif chunked:  # each event its own HTTP chunk; a bulk batch repeats its events, so frame each once
                frames = {event: b"%X\r\n%s\r\n" % (len(event), event) for event in set(batch)}
                self.wfile.write(b"".join(map(frames.__getitem__, batch)))
            else:
                self.wfile.write(b"".join(batch))
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


def _batches(items: List[_Item], bulk: bool) -> Iterator[Union[List[bytes], float]]:
    """A reply script as writes: each event alone, or (``bulk``) the events between two pauses together."""
    batch: List[bytes] = []
    for item in items:
        if isinstance(item, bytes):
            if item:  # an empty HTTP chunk would end the body
                batch.append(item)
                if not bulk:
                    yield batch
                    batch = []
        elif item > 0:
            if batch:
                yield batch
                batch = []
            yield float(item)
    if batch:
        yield batch


class _Server(socketserver.TCPServer):
    # TCPServer, not HTTPServer: HTTPServer.server_bind does a (possibly slow) reverse DNS lookup.
    request_queue_size = 1024  # benchmarks connect hundreds of clients at once; a full backlog costs a 1 s SYN retry

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
    """A local LLM API server (OpenAI's and Anthropic's wire formats), serving in background threads.

    It answers ``POST .../chat/completions`` (Chat Completions), ``POST .../responses``
    (the Responses API) and ``POST .../messages`` (Anthropic's Messages API), each in its own
    wire format, and 404 elsewhere. Replies are consumed in FIFO order, one per request on any
    endpoint. When the queue is empty, ``responder`` chooses the reply, or else a
    deterministic short story derived from the last user message is streamed (the same
    conversation gets the same story on every endpoint: a Responses request's
    ``instructions`` and ``input`` items, and an Anthropic request's ``system`` and
    ``messages`` blocks, are read as the equivalent chat messages). The socket is bound at
    construction (so :attr:`url` is known at once); serving starts with :meth:`start` or
    ``with MockServer() as server:``.
    :meth:`close` stops everything and joins every thread it started (all named
    ``promptkit-mock-*``).

    Args:
        default_delay: seconds between deltas of the default (story) reply.
        model: the model reported when neither the reply nor the request names one.
        api_key: when set, requests without ``Authorization: Bearer <api_key>`` get a 401 (on
            ``.../messages``, ``x-api-key: <api_key>`` is accepted too).
        framing: the default framing of streamed replies: ``"chunked"``, ``"close"`` or ``"length"``.
        responder: a function from a request's parsed JSON body to the :class:`MockReply` to send
            when the queue is empty (called on the connection's thread; it may return ``None`` for
            the story). It lets each request pick its own reply, e.g. from a scenario the client put
            in its last message, when many clients share one server.

    Attributes:
        disconnected: a ``threading.Event`` set when a client disconnects while a reply is being sent.
    """

    def __init__(self, default_delay: float = 0.0, model: str = "gpt-4o-mini", api_key: Optional[str] = None,
                 framing: str = "chunked",
                 responder: Optional[Callable[[Dict[str, Any]], Optional[MockReply]]] = None) -> None:
        if framing not in _FRAMINGS:
            raise ValueError(f"framing must be one of {_FRAMINGS}, got {framing!r}")
        self.default_delay, self.model, self.api_key, self.framing = default_delay, model, api_key, framing
        self.responder = responder
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
        """Queue replies for the next requests, in order (a str means ``MockReply.text``)."""
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

    def wait_for_disconnects(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until clients disconnected mid-reply at least ``n`` times in all; return ``False`` on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._disconnects >= n, timeout)

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

    def _next_reply(self, body: Dict[str, Any], renderer: Renderer) -> MockReply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            try:
                reply = self.responder(body)
            except Exception as exc:  # a bug in the test: answer it visibly rather than drop the connection
                log.error("the MockServer responder raised", exc_info=True)
                return MockReply.error(500, f"the MockServer responder raised {exc!r}")
            if reply is not None:
                return reply
        return MockReply.text(_story(renderer.messages(body)), delay=self.default_delay)

    def _note_disconnect(self, exc: Optional[BaseException]) -> None:
        log.debug("client disconnected mid-reply: %r", exc)
        with self._cond:
            self._disconnects += 1
            self._cond.notify_all()
        self.disconnected.set()
