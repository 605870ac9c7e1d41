"""Finding the socket of a request that has no response yet, so that a cancel can shut it down.

requests and urllib3 hand out nothing for a request before its response
headers arrive, and a caller's ``Session``, adapter or proxy may put any
connection under it. Python's audit events (PEP 578, public and documented)
name the socket for every one of them, on the thread doing the work:
``socket.connect`` (the socket being connected) and ``http.client.send`` (the
connection sending a request, whose socket then waits for the headers; a
reused keep-alive connection included). One process-wide hook, installed with
the first Transport, reports those sockets to the :class:`StreamControl` the
current thread is opening a request for, if any; every other event costs one
string comparison.

Shutting a socket down (``SHUT_RDWR``) wakes a thread blocked in ``connect``,
``send`` or ``recv`` on it at once; closing it from another thread would not.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from typing import Any, Iterator, Optional, Protocol, Tuple

__all__ = ["SocketAbort", "watching"]

_EVENTS = frozenset({"socket.connect", "http.client.send"})


class _Attachable(Protocol):
    def attach(self, http: Any) -> None: ...


class SocketAbort:
    """Aborts a request still connecting or waiting for its headers, by shutting its socket down."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def abort(self) -> None:
        """Shut the socket down, failing the pending request at once. Never raises."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # not connected (yet, or any more): nothing is blocked on it


class _Watch:
    __slots__ = ("_local", "_lock", "_installed")

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._installed = False

    def install(self) -> None:
        with self._lock:
            if not self._installed:
                sys.addaudithook(self._hook)
                self._installed = True

    @contextlib.contextmanager
    def watching(self, control: Optional[_Attachable]) -> Iterator[None]:
        if control is None:
            yield
            return
        self.install()
        local = self._local
        local.control, local.sock = control, None
        try:
            yield
        finally:
            local.control = local.sock = None

    def _hook(self, event: str, args: Tuple[Any, ...]) -> None:
        if event not in _EVENTS:
            return
        try:
            local = self._local
            control = getattr(local, "control", None)
            if control is None:
                return
            sock = args[0] if event == "socket.connect" else getattr(args[0], "sock", None)
            if isinstance(sock, socket.socket) and sock is not local.sock:
                local.sock = sock
                control.attach(SocketAbort(sock))
        except Exception:  # an audit hook must never break the program it watches
            pass


_WATCH = _Watch()


def watching(control: Optional[_Attachable]) -> "contextlib.AbstractContextManager[None]":
    """While the block runs, every socket this thread connects or sends a request on is
    attached to ``control`` (its ``attach(SocketAbort(sock))``), so that a cancel shuts it down."""
    return _WATCH.watching(control)
