"""Cancel latency in every phase of a turn, for three kinds of session (promptkit only).

For each phase a turn runs (``conv.send_stream(...)`` iterated to its
terminal event on a consumer thread), the benchmark waits until the turn is
known to be in that phase, cancels it from another thread, and times the
cancel call until the consumer has the terminal event and ``close()`` has
joined the worker. The phases and how each one is reached:

=============  =================================================  ===============================================
phase          the server                                         known to be in the phase when
=============  =================================================  ===============================================
connecting     a listening socket that never accepts, its         ``CONNECT_SETTLE`` s after the turn started
               backlog full (the SYN is dropped)                  (nothing can signal a blocked ``connect()``)
headers        accepts and reads the request, never answers       the server recorded the request
backoff        a 500, then (if still asked) a text reply          promptkit logged the retry it scheduled
retry_after    a 429 with ``Retry-After: 30``, then a text reply  promptkit logged the retry it scheduled
streaming      a slow stream: a delta every 50 ms                 the consumer received the first content
tool           a tool call whose handler blocks on an Event       the handler started
=============  =================================================  ===============================================

Sessions: ``own`` (the session promptkit creates), ``session`` (a
user-supplied ``requests.Session()``, ``Client(session=...)``) and ``proxy``
(such a session with ``proxies = {"http": ...}`` pointing at a local
``proxy.py``; skipped when the ``proxy.py`` package is not installed).

The cancel is ``Conversation.cancel()`` where it exists, else the stream's
``cancel()`` once ``send_stream()`` has returned one; before that, with
neither, nothing can be called. A turn that has not ended ``bound`` seconds
after the cancel is reported "not cancellable" and abandoned: closing the
client, the server and the listener afterwards ends most such turns at once;
one sleeping for Retry-After ends by itself (its thread is a daemon).
A turn that ends without ``finish_reason == "cancelled"`` (a timeout, a
retry that succeeded) is reported with how it ended. Each run gets a fresh
``MockServer`` (in this process: it only waits), so no reply left over by a
cancelled run reaches the next one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from benchmarks.mock import MODEL
from promptkit.testing import MockReply, MockServer

__all__ = ["PHASES", "SESSIONS", "CONNECT_SETTLE", "cancel_phases", "proxy_server", "full_backlog"]

PHASES = ("connecting", "headers", "backoff", "retry_after", "streaming", "tool")
SESSIONS = ("own", "session", "proxy")
CONNECT_SETTLE = 0.2  # seconds: long enough for the SYN to be sent and dropped; the turn then waits in connect()
_HANDSHAKE_TIMEOUT = 5.0  # the longest wait for a turn to reach its phase
_MAX_RETRIES = {"backoff": 1, "retry_after": 1}  # the other phases: 0

_mono = time.monotonic


# -- the servers ----------------------------------------------------------------------


@contextlib.contextmanager
def full_backlog() -> Iterator[str]:
    """A base URL whose listening socket never accepts and whose backlog is full: ``connect()`` hangs."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: List[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(16):  # connect until one connection no longer completes: its SYN was dropped
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            fillers.append(filler)
            filler.setblocking(False)
            filler.connect_ex(address)
            if not select.select([], [filler], [], 0.2)[1]:
                break
        else:
            raise RuntimeError("could not fill the listen backlog")
        yield f"http://127.0.0.1:{address[1]}/v1"
    finally:
        for sock in [*fillers, listener]:
            sock.close()


@contextlib.contextmanager
def proxy_server(start_timeout: float = 20.0) -> Iterator[Optional[str]]:
    """A local ``proxy.py`` (``proxy --hostname 127.0.0.1 --port ...``) in a child process: its URL, or None."""
    if importlib.util.find_spec("proxy") is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        command = [
            sys.executable,
            "-m",
            "proxy",
            "--hostname",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--num-workers",
            "1",
            "--num-acceptors",
            "1",
            "--log-level",
            "ERROR",
        ]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = _mono() + start_timeout
            while not (port_file.exists() and port_file.read_text().strip()):
                if process.poll() is not None or _mono() > deadline:
                    error = process.stderr.read().decode(errors="replace")[-500:] if process.stderr else ""
                    raise RuntimeError(f"proxy.py did not start: {error}")
                time.sleep(0.05)  # polling a file the child writes: there is nothing else to wait on
            port = int(port_file.read_text().strip())
            with socket.create_connection(("127.0.0.1", port), timeout=start_timeout):
                pass  # the port file is written before the acceptor listens on some versions
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            if process.stderr is not None:
                process.stderr.close()


# -- one turn -----------------------------------------------------------------------------


class _RetryLog(logging.Handler):
    """Sets ``seen`` when promptkit logs that it scheduled a retry after the error whose message holds ``tag``."""

    def __init__(self, tag: str) -> None:
        super().__init__(logging.DEBUG)
        self.tag = tag
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.tag in message and "retry" in message.lower():
            self.seen.set()


class _Turn:
    """``conv.send_stream(...)`` iterated to its terminal event on a thread of its own."""

    def __init__(self, conv: Any, max_retries: int) -> None:
        self.conv = conv
        self.max_retries = max_retries
        self.stream: Any = None
        self.opened = threading.Event()  # send_stream() returned (the worker may already be further on)
        self.first_content = threading.Event()
        self.ended = threading.Event()
        self.ended_at = 0.0
        self.outcome: Dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, name="bench-phase-consumer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            stream = self.conv.send_stream("go", max_retries=self.max_retries)
            self.stream = stream
            self.opened.set()
            last = None
            for event in stream:
                last = event
                if event.type == "content":
                    self.first_content.set()
            stream.close()
            error = getattr(last, "error", None)
            self.outcome = {
                "ended_by": getattr(last, "type", None),
                "finish_reason": getattr(getattr(last, "final", None), "finish_reason", None),
                "error": None if error is None else repr(error)[:300],
            }
        except BaseException as exc:  # recorded: an uncancellable turn may end in a timeout
            self.outcome = {"ended_by": "raised", "finish_reason": None, "error": repr(exc)[:300]}
        finally:
            self.ended_at = _mono()
            self.ended.set()

    def cancel(self) -> str:
        """Cancel with what exists now; returns what was called."""
        cancel = getattr(self.conv, "cancel", None)
        if callable(cancel):
            cancel()
            return "Conversation.cancel"
        stream = self.stream
        if stream is not None:
            stream.cancel()
            return "Stream.cancel"
        return "nothing to call"


def _client(base_url: str, kind: str, proxy_url: Optional[str], bound: float, stack: contextlib.ExitStack) -> Any:
    import requests

    import promptkit

    session = None
    if kind != "own":
        session = requests.Session()
        stack.callback(session.close)
        if kind == "proxy":
            assert proxy_url is not None
            session.proxies = {"http": proxy_url}
    # Timeouts well past the bound, so that a turn ended by a timeout is never taken for a cancel.
    timeout = promptkit.Timeout(connect=bound + 5, idle=bound + 5, total=None)
    client = promptkit.Client(
        base_url=base_url, api_key="x", model=MODEL, timeout=timeout, max_retries=0, session=session
    )
    stack.callback(client.close)
    return client


def _run_once(phase: str, kind: str, proxy_url: Optional[str], bound: float) -> Dict[str, Any]:
    """One turn brought to ``phase`` and cancelled; what happened and how long it took."""
    import promptkit

    tag = f"bench-{uuid.uuid4().hex[:12]}"
    release = threading.Event()
    entered = threading.Event()
    retry_log = _RetryLog(tag)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(MockServer(model=MODEL))
        base_url = stack.enter_context(full_backlog()) if phase == "connecting" else server.url
        client = _client(base_url, kind, proxy_url, bound, stack)
        stack.callback(release.set)  # before the client closes: a blocked handler lets its worker go
        tools: List[Any] = []
        if phase == "headers":
            server.enqueue(MockReply.stall(before_headers=True))
        elif phase == "backoff":
            server.enqueue(MockReply.error(500, f"overloaded {tag}"), MockReply.text("late"))
        elif phase == "retry_after":
            server.enqueue(
                MockReply.error(429, f"slow down {tag}", headers={"Retry-After": "30"}), MockReply.text("late")
            )
        elif phase == "streaming":
            server.enqueue(MockReply.text("word " * 2000, delay=0.05))
        elif phase == "tool":

            def wait_for_release() -> str:
                """Block until the benchmark releases the handler."""
                entered.set()
                release.wait(60)
                return "released"

            tools.append(promptkit.tool(wait_for_release))
            server.enqueue(
                MockReply.tool_calls([{"name": "wait_for_release", "arguments": {}}]), MockReply.text("done")
            )
        if phase in ("backoff", "retry_after"):
            logger = logging.getLogger("promptkit")
            level = logger.level
            logger.setLevel(logging.INFO)  # the retry line is logged at INFO
            logger.addHandler(retry_log)
            stack.callback(logger.setLevel, level)
            stack.callback(logger.removeHandler, retry_log)
        turn = _Turn(client.conversation(tools=tools or None), _MAX_RETRIES.get(phase, 0))
        reached: Callable[[], bool] = {
            "connecting": lambda: not turn.ended.wait(CONNECT_SETTLE),
            "headers": lambda: server.wait_for_requests(1, _HANDSHAKE_TIMEOUT),
            "backoff": lambda: retry_log.seen.wait(_HANDSHAKE_TIMEOUT),
            "retry_after": lambda: retry_log.seen.wait(_HANDSHAKE_TIMEOUT),
            "streaming": lambda: turn.first_content.wait(_HANDSHAKE_TIMEOUT),
            "tool": lambda: entered.wait(_HANDSHAKE_TIMEOUT) and turn.opened.wait(_HANDSHAKE_TIMEOUT),
        }[phase]
        in_phase = reached() and not turn.ended.is_set()
        t0 = _mono()
        method = turn.cancel()
        ended = turn.ended.wait(bound)
        latency = (turn.ended_at - t0) * 1000.0 if ended else None
    if not ended:
        turn.thread.join(1.0)  # closing the client and servers releases most blocked turns at once
    cancelled = ended and turn.outcome.get("finish_reason") == "cancelled"
    return {
        "in_phase": in_phase,
        "method": method,
        "ended": ended,
        "cancelled": cancelled,
        "latency_ms": latency,
        "outcome": turn.outcome or {"ended_by": None, "note": f"still running {bound:g} s after the cancel"},
        "abandoned": turn.thread.is_alive(),
    }


# -- the measurement -------------------------------------------------------------------------


def _summary(samples: List[Dict[str, Any]], bound: float) -> Dict[str, Any]:
    latencies = [s["latency_ms"] for s in samples if s["cancelled"]]
    ok = all(s["cancelled"] and s["in_phase"] for s in samples)
    failed = next((s for s in samples if not (s["cancelled"] and s["in_phase"])), None)
    if failed is None:
        note = ""
    elif not failed["in_phase"]:
        note = "the turn never reached the phase"
    elif not failed["ended"]:
        note = f"not cancellable (still running {bound:g} s after {failed['method']})"
    else:
        how = (
            failed["outcome"].get("finish_reason")
            or failed["outcome"].get("error")
            or failed["outcome"].get("ended_by")
        )
        note = f"not cancelled: the turn ended by itself ({how}) after {failed['latency_ms']:.0f} ms"
    return {
        "runs": len(samples),
        "all_cancelled": ok,
        "methods": sorted({s["method"] for s in samples}),
        "latency_ms": statistics.median(latencies) if latencies else None,
        "latency_max_ms": max(latencies) if ok and latencies else None,
        "note": note,
        "abandoned": sum(s["abandoned"] for s in samples),
        "samples": samples,
    }


def cancel_phases(
    *, runs: int, bound: float, phases: Sequence[str] = PHASES, sessions: Sequence[str] = SESSIONS
) -> Dict[str, Any]:
    """Cancel latency per phase and session kind: ``{"phases": {phase: {session: summary}}}``.

    ``runs`` turns per cell; a cell stops after its first run that was not
    cancelled (one bounded wait is enough to know).
    """
    out: Dict[str, Any] = {
        "runs": runs,
        "bound_s": bound,
        "connect_settle_s": CONNECT_SETTLE,
        "phases": {},
        "skipped_sessions": {},
    }
    with contextlib.ExitStack() as stack:
        proxy_url = stack.enter_context(proxy_server()) if "proxy" in sessions else None
        if "proxy" in sessions and proxy_url is None:
            out["skipped_sessions"]["proxy"] = "proxy.py is not installed (pip install proxy.py)"
        kinds = [k for k in sessions if k not in out["skipped_sessions"]]
        _run_once("streaming", "own", None, bound)  # warm-up: the first cancelled turn loads the token counter
        for phase in phases:
            out["phases"][phase] = {}
            for kind in kinds:
                samples: List[Dict[str, Any]] = []
                for _ in range(runs):
                    samples.append(_run_once(phase, kind, proxy_url, bound))
                    if not samples[-1]["cancelled"]:
                        break
                out["phases"][phase][kind] = _summary(samples, bound)
    return out
