"""Wire-level helpers for the MockServer tests: raw sockets and http.client, never promptkit's own client."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any, Dict, List, Tuple

from promptkit.testing import MockServer

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"


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
