"""A local OpenAI-compatible streaming server for the benchmarks, run in its own process.

Start it with :class:`BenchServer` (a context manager that always stops the
process) or directly with ``python -m benchmarks.server`` (it prints
``PORT <n>`` on its first stdout line).

Every request is a ``POST .../chat/completions`` whose *last message* is a
JSON :class:`Scenario`: the benchmark tells the server what to send through
the request itself, so promptkit, openai-python and the raw floor loop all
hit the same code path with the same bytes. The server uses raw sockets, one
thread per connection, and ``TCP_NODELAY``, and it

* streams ``n`` content deltas of ``text`` as fast as it can (the whole body
  is rendered once, cached, and written with one ``sendall``), or paced
  ``pace`` seconds apart;
* frames the body ``chunked`` (each SSE event its own HTTP chunk, as real
  servers flush them; keep-alive) or ``close``-delimited (no length; the
  connection closes at the end);
* optionally waits ``first_delay`` seconds after the headers before the
  first delta (the role chunk and the first content delta go together);
* or, with ``silent``, sends the headers and then nothing, holding the
  connection until the client closes it (or ``hold`` seconds pass) and
  recording when it saw EOF.

For a request with an ``id`` the server records when it wrote the first
delta (``first``) and, for a silent one, when the client hung up (``eof``);
``GET /_bench/wait?kind=<kind>&id=<id>&timeout=<s>`` returns the record
(waiting for it up to ``timeout``) or ``null``.

Timestamps are ``time.monotonic()``, which on Linux is one clock for every
process, so the parent can compare them with its own.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlparse

from benchmarks._env import REPO_ROOT, child_env

__all__ = ["Scenario", "BenchServer", "render_body", "serve"]

MODEL = "gpt-4o-mini"
_CREATED = 1_700_000_000


@dataclass(frozen=True)
class Scenario:
    """What the server sends for one request (carried as JSON in the last message).

    Attributes:
        n: number of content deltas.
        text: the text of each delta.
        framing: ``"chunked"`` or ``"close"``.
        first_delay: seconds between the headers and the first delta.
        pace: seconds between deltas (0: as fast as possible, in one write).
        silent: send the headers, then nothing until the client hangs up.
        hold: how long a silent response waits for the client before closing.
        id: a tag for ``/_bench/wait`` look-ups.
    """

    n: int = 1
    text: str = "abcd"
    framing: str = "chunked"
    first_delay: float = 0.0
    pace: float = 0.0
    silent: bool = False
    hold: float = 10.0
    id: str = ""

    def message(self) -> str:
        """The user message that carries this scenario."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_message(cls, text: str) -> "Scenario":
        """Parse the scenario out of a request's last message."""
        return cls(**json.loads(text))


# -- rendering -------------------------------------------------------------------


def _chunk(choices: List[Dict[str, Any]], usage: Optional[Dict[str, int]] = None) -> bytes:
    body: Dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def _delta(delta: Dict[str, Any], finish: Optional[str] = None) -> bytes:
    return _chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])


def sse_events(n: int, text: str, include_usage: bool) -> Tuple[bytes, List[bytes], bytes]:
    """The SSE events of a reply: (role chunk, ``n`` content chunks, the tail after them)."""
    role = _delta({"role": "assistant", "content": ""})
    content = _delta({"content": text})
    tail = _delta({}, "stop")
    if include_usage:
        usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
        tail += _chunk([], usage)
    tail += b"data: [DONE]\n\n"
    return role, [content] * n, tail


def frame(event: bytes, framing: str) -> bytes:
    """One write's bytes in the given framing (an HTTP chunk when chunked)."""
    if framing == "chunked":
        return b"%x\r\n%s\r\n" % (len(event), event)
    return event


def render_body(n: int, text: str, framing: str, include_usage: bool = True) -> bytes:
    """The whole body of an unpaced reply, each SSE event framed on its own."""
    role, content, tail = sse_events(n, text, include_usage)
    parts = [frame(role, framing)]
    parts.extend(frame(c, framing) for c in content)
    parts.append(frame(tail, framing))
    if framing == "chunked":
        parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def _headers(framing: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Cache-Control: no-cache", "x-request-id: req_bench"]
    if framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- serving ---------------------------------------------------------------------


class _State:
    """What the server remembers across connections: cached bodies and tagged records."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.bodies: Dict[Tuple[int, str, str, bool], bytes] = {}
        self.records: Dict[Tuple[str, str], Dict[str, Any]] = {}

    def body(self, n: int, text: str, framing: str, include_usage: bool) -> bytes:
        key = (n, text, framing, include_usage)
        with self.lock:
            cached = self.bodies.get(key)
        if cached is None:
            cached = render_body(n, text, framing, include_usage)
            with self.lock:
                if len(self.bodies) > 32:
                    self.bodies.clear()
                self.bodies[key] = cached
        return cached

    def record(self, kind: str, tag: str, at: float, **fields: Any) -> None:
        if not tag:
            return
        with self.lock:
            self.records[(kind, tag)] = {"at": at, **fields}
            self.lock.notify_all()

    def wait(self, kind: str, tag: str, timeout: float) -> Optional[Dict[str, Any]]:
        key = (kind, tag)
        with self.lock:
            self.lock.wait_for(lambda: key in self.records, timeout)
            return self.records.pop(key, None)


def _read_request(conn: socket.socket, buf: bytes) -> Optional[Tuple[str, str, Dict[str, str], bytes, bytes]]:
    """Read one request: (method, target, headers, body, leftover bytes), or None at EOF."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            return None
        rest += data
    return method, target, headers, rest[:length], rest[length:]


def _wait_for_hangup(conn: socket.socket, hold: float) -> str:
    """Block until the client closes the connection: ``"eof"``, ``"reset"`` or ``"timeout"``."""
    deadline = time.monotonic() + hold
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        conn.settimeout(remaining)
        try:
            data = conn.recv(65536)
        except socket.timeout:
            return "timeout"
        except OSError:
            return "reset"
        if not data:
            return "eof"


def _stream(conn: socket.socket, state: _State, scenario: Scenario, include_usage: bool) -> None:
    framing = scenario.framing
    conn.sendall(_headers(framing))
    if scenario.silent:
        outcome = _wait_for_hangup(conn, scenario.hold)
        state.record("eof", scenario.id, time.monotonic(), outcome=outcome)
        return
    if scenario.first_delay > 0:
        time.sleep(scenario.first_delay)
    if scenario.pace <= 0:
        body = state.body(scenario.n, scenario.text, framing, include_usage)
        if scenario.id:  # the first delta alone first, so its time is exact
            cut = body.index(b"\n\n", body.index(b'"content":"' + scenario.text.encode())) + 2
            cut += 2 if framing == "chunked" else 0  # the chunk's CRLF
            conn.sendall(body[:cut])
            state.record("first", scenario.id, time.monotonic())
            body = body[cut:]
        conn.sendall(body)
        return
    role, content, tail = sse_events(scenario.n, scenario.text, include_usage)
    start = time.monotonic()
    for i, event in enumerate(content):
        if i == 0:
            event = role + event
        else:
            delay = start + i * scenario.pace - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        conn.sendall(frame(event, framing))
        if i == 0:
            state.record("first", scenario.id, time.monotonic())
    end = frame(tail, framing)
    conn.sendall(end + b"0\r\n\r\n" if framing == "chunked" else end)


def _reply_json(conn: socket.socket, payload: Any, status: str = "200 OK") -> None:
    body = json.dumps(payload).encode()
    conn.sendall(
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )


def _handle(conn: socket.socket, state: _State) -> None:
    """Serve one connection: requests until the client hangs up or a close-delimited body ends."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    try:
        while True:
            request = _read_request(conn, buf)
            if request is None:
                return
            method, target, _headers_in, body, buf = request
            url = urlparse(target)
            if method == "GET" and url.path == "/_bench/wait":
                query = parse_qs(url.query)
                timeout = float(query.get("timeout", ["5"])[0])
                _reply_json(conn, state.wait(query["kind"][0], query["id"][0], timeout))
                continue
            if method != "POST" or not url.path.endswith("/chat/completions"):
                _reply_json(conn, {"error": {"message": f"no route {method} {url.path}"}}, "404 Not Found")
                continue
            payload = json.loads(body)
            scenario = Scenario.from_message(payload["messages"][-1]["content"])
            include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            _stream(conn, state, scenario, include_usage)
            if scenario.framing != "chunked" or scenario.silent:
                return
    except (ConnectionError, BrokenPipeError, socket.timeout):
        return  # the client went away mid-reply (a cancel): nothing to clean up but the socket
    finally:
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()


def _watch_parent(parent: int) -> None:
    """Exit when the parent process is gone, so a killed benchmark never leaves a server behind."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def serve(host: str = "127.0.0.1", port: int = 0, parent: Optional[int] = None) -> None:
    """Run the server forever, printing ``PORT <n>`` once it listens."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1024)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    if parent is not None:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    state = _State()
    threading.stack_size(256 * 1024)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_handle, args=(conn, state), daemon=True).start()


class BenchServer:
    """The server in a child process; ``with BenchServer() as server: server.base_url``.

    The process is stopped on exit from the block whatever happened (and it
    exits by itself if this process dies).
    """

    def __init__(self, start_timeout: float = 15.0) -> None:
        self.start_timeout = start_timeout
        self.process: Optional[subprocess.Popen[str]] = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """The ``/v1`` base URL both clients are given."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def url(self) -> str:
        """The full chat-completions URL (for the raw floor loop)."""
        return f"{self.base_url}/chat/completions"

    def start(self) -> "BenchServer":
        """Start the process and wait for its port."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.server", "--parent", str(os.getpid())],
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(REPO_ROOT),
            env=child_env(),
        )
        try:
            assert self.process.stdout is not None
            ready = threading.Event()
            line: List[str] = []

            def read_port() -> None:
                assert self.process is not None and self.process.stdout is not None
                line.append(self.process.stdout.readline())
                ready.set()

            threading.Thread(target=read_port, daemon=True).start()
            if not ready.wait(self.start_timeout) or not line[0].startswith("PORT "):
                raise RuntimeError(f"the benchmark server did not start: {line!r}")
            self.port = int(line[0].split()[1])
        except BaseException:
            self.stop()
            raise
        return self

    def wait_eof(self, tag: str, timeout: float = 5.0) -> Optional[Dict[str, Any]]:
        """When the server saw the silent request ``tag`` hang up: ``{"outcome", "at"}`` or None."""
        return self.wait("eof", tag, timeout)

    def first_sent(self, tag: str, timeout: float = 5.0) -> Optional[float]:
        """When the server finished writing the first delta of request ``tag`` (``time.monotonic``)."""
        record = self.wait("first", tag, timeout)
        return None if record is None else float(record["at"])

    def wait(self, kind: str, tag: str, timeout: float = 5.0) -> Optional[Dict[str, Any]]:
        """The server's ``kind`` record of request ``tag``, waiting up to ``timeout`` for it."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout + 5)
        try:
            conn.request("GET", f"/_bench/wait?kind={kind}&id={tag}&timeout={timeout}")
            result: Optional[Dict[str, Any]] = json.loads(conn.getresponse().read())
            return result
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the process (terminate, then kill)."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()
        self.process = None

    def __enter__(self) -> "BenchServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def main(argv: Optional[List[str]] = None) -> None:
    """``python -m benchmarks.server [--port N] [--parent PID]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent", type=int, default=None, help="exit when this process is gone")
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port, args.parent)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
