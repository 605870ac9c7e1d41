"""Wire-level helpers for the MockServer tests: raw sockets and http.client, never promptkit's own client."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any, Dict, List, Optional, Tuple

import pytest

from promptkit.testing import MockServer

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"
Event = Tuple[str, Dict[str, Any]]


def port_of(srv: MockServer) -> int:
    return int(srv.url.rsplit(":", 1)[1].split("/")[0])


def open_stream(srv: MockServer, body: Dict[str, Any],
                path: str = CHAT) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """POST ``body`` and return once the response headers are in (the body is left to read)."""
    conn = http.client.HTTPConnection("127.0.0.1", port_of(srv), timeout=10)
    conn.request("POST", path, json.dumps(body))
    return conn, conn.getresponse()


def raw_request(srv: MockServer, body: Dict[str, Any], path: str = CHAT) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(srv)), timeout=10)
    data = json.dumps(body).encode()
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
    return sock


def read_until_eof(sock: socket.socket) -> bytes:
    data = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece


def read_until(sock: socket.socket, end: bytes) -> bytes:
    """Read until what was received ends with ``end`` (e.g. the terminating chunk ``0\\r\\n\\r\\n``)."""
    data = b""
    while not data.endswith(end):
        piece = sock.recv(65536)
        assert piece, f"the connection closed before {end!r}"
        data += piece
    return data


def http_chunks(body: bytes) -> List[bytes]:
    """The payloads of a chunked body, one per HTTP chunk, up to the terminating zero-size chunk."""
    out = []
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return out
        out.append(rest[:n])
        assert rest[n:n + 2] == b"\r\n"
        body = rest[n + 2:]


def post(srv: MockServer, body: Dict[str, Any], path: str, method: str = "POST",
         headers: Optional[Dict[str, str]] = None) -> Tuple[http.client.HTTPResponse, bytes]:
    """Send ``body`` as JSON and read the whole reply."""
    conn = http.client.HTTPConnection("127.0.0.1", port_of(srv), timeout=10)
    conn.request(method, path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def parse(body: bytes) -> List[Event]:
    """(event name, data) of each SSE event; comments dropped. Every event here has both lines."""
    out = []
    for block in body.decode("utf-8").split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
            out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


def types(events: List[Event]) -> List[str]:
    return [name for name, _ in events]


def only(events: List[Event], name: str) -> Dict[str, Any]:
    """The payload of the one event named ``name``."""
    [payload] = [p for n, p in events if n == name]
    return payload


def check_keys(real: Dict[str, Tuple[str, str]], what: str, obj: Dict[str, Any]) -> None:
    """``obj`` has every key that ``real[what]`` says each real one has, and none that no real one has."""
    always, sometimes = (frozenset(s.split()) for s in real[what])
    keys = frozenset(obj)
    assert always <= keys <= always | sometimes, (what, sorted(keys))


def read_event(resp: http.client.HTTPResponse) -> Event:
    """Read one SSE event from a streaming response; blocks until it arrives."""
    block = b""
    while not block.endswith(b"\n\n"):
        line = resp.readline()
        assert line, "body ended before the event was complete"
        block += line
    [event] = parse(block)
    return event


def stalled(srv: MockServer, body: Dict[str, Any], path: str, marker: bytes) -> bytes:
    """Read a stalling reply up to the event holding ``marker``, close the server, and return what came."""
    sock = raw_request(srv, body, path)
    received = b""
    while marker not in received:  # headers, the opening events and after_text were flushed
        received += read_until(sock, b"\n\n\r\n")  # up to the end of an event (and of its HTTP chunk)
    srv.close(timeout=5)  # the stall never ends by itself
    read_until_eof(sock)
    sock.close()
    return received


def expect_reset(srv: MockServer, body: Dict[str, Any], path: str) -> None:
    """The reply to ``body`` ends with a TCP reset."""
    sock = raw_request(srv, body, path)
    with pytest.raises(ConnectionResetError):
        read_until_eof(sock)
    sock.close()


def bulk_events(srv: MockServer, body: Dict[str, Any], path: str) -> List[Event]:
    """The events of a chunked reply, each checked to be alone in its HTTP chunk."""
    sock = raw_request(srv, body, path)
    data = read_until(sock, b"\r\n0\r\n\r\n")
    sock.close()
    pieces = http_chunks(data.partition(b"\r\n\r\n")[2])
    assert all(p.count(b"\n\n") == 1 and p.endswith(b"\n\n") for p in pieces)
    return parse(b"".join(pieces))


def close_mid_reply(srv: MockServer, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
    """Close the server while ``resp`` waits in a pause: the body ends incomplete."""
    srv.close(timeout=5)  # releases the pause
    with pytest.raises((http.client.IncompleteRead, OSError)):
        resp.read()
    conn.close()
