"""The three contestants, behind one small interface.

* ``promptkit``: the public iterator, ``for ev in conv.send_stream(...)``.
* ``openai``: openai-python's ``client.chat.completions.create(stream=True)``,
  every chunk read.
* ``floor``: one thread, urllib3 ``read1`` + split on ``b"\\n\\n"`` +
  ``json.loads``: the least any Python client can do on the same bytes.
* ``floor_2t``: the same parsing on a worker thread per stream, each content
  event handed to the consumer through ``queue.Queue(maxsize=10)``: the
  least a client can do with a background thread and a bounded queue
  (promptkit's design until a stream's consumer ran its turn itself); the
  concurrent-streams CPU target compares with it.

Each client measures itself the same way: the clock starts just before the
request is made, the first-content time is taken when the first non-empty
content delta reaches the consuming code, and the end time when the stream
is exhausted.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from benchmarks.mock import MODEL, Scenario

__all__ = ["CLIENTS", "BenchClient", "Cancellable", "RunResult", "make_client"]

_END = object()  # the two-thread floor's end-of-stream marker

# time.monotonic: the server's clock too (one CLOCK_MONOTONIC for every process on Linux).
_perf = time.monotonic


@dataclass
class RunResult:
    """One streamed reply as the consumer saw it (``time.monotonic`` seconds)."""

    start: float
    first: Optional[float]
    end: float
    chars: int
    events: int

    @property
    def elapsed(self) -> float:
        """Request start to the end of the stream."""
        return self.end - self.start


class Cancellable:
    """A stream opened and being consumed on its own thread, for the cancel benchmark.

    The benchmark calls :meth:`stop` (the client's own way to cancel), waits
    for the consumer thread to end, then calls :meth:`finish` (whatever
    waits for the client's own threads and sockets).
    """

    def __init__(
        self,
        consume: Callable[[], Any],
        stop: Callable[[], None],
        finish: Callable[[], None] = lambda: None,
        handle: Any = None,
    ) -> None:
        self._stop = stop
        self._finish = finish
        self.handle = handle  # the client's stream object
        self.outcome: Dict[str, Any] = {}
        self.started = threading.Event()

        def run() -> None:
            self.started.set()
            try:
                self.outcome["result"] = consume()
            except BaseException as exc:  # recorded: a cancelled read may end in an error
                self.outcome["error"] = repr(exc)

        self.thread = threading.Thread(target=run, name="bench-consumer", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Cancel the way the client's users do; returns when the client's call returns."""
        self._stop()

    def finish(self) -> None:
        """After the consumer ended: wait for the client's own threads and sockets."""
        self._finish()


class BenchClient:
    """Interface: stream one scenario, or open one for cancelling."""

    name = ""

    def run(self, scenario: Scenario) -> RunResult:
        """Stream a whole reply, consuming every event."""
        raise NotImplementedError

    def open_cancellable(self, scenario: Scenario) -> Cancellable:
        """Open a (silent) stream and start consuming it on another thread."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection pool."""


class PromptkitClient(BenchClient):
    """promptkit through its public iterator."""

    name = "promptkit"
    buffer_size = 10  # send_stream's default; the profile's what-ifs change it

    def __init__(self, base_url: str, pool_size: int = 10) -> None:
        import promptkit

        self._client = promptkit.Client(
            base_url=base_url,
            api_key="x",
            model=MODEL,
            timeout=promptkit.Timeout(idle=30, total=None),
            max_retries=0,
            pool_size=pool_size,
        )

    def run(self, scenario: Scenario) -> RunResult:
        conv = self._client.conversation()  # fresh: the history would grow by the whole reply each run
        message = scenario.message()
        first = None
        chars = events = 0
        start = _perf()
        for event in conv.send_stream(message, buffer_size=self.buffer_size):
            events += 1
            if event.type == "content":
                if first is None:
                    first = _perf()
                chars += len(event.content)
            elif event.type == "error":
                raise event.error  # type: ignore[misc]
        return RunResult(start, first, _perf(), chars, events)

    def open_cancellable(self, scenario: Scenario) -> Cancellable:
        stream = self._client.conversation().send_stream(scenario.message())

        def consume() -> Any:
            last = None
            for event in stream:
                last = event
            assert last is not None
            return {"type": last.type, "finish_reason": last.final.finish_reason if last.final else None}

        # close() right after cancel() would race the consumer for the terminal event
        # (see measure.close_race): cancel, let the consumer see `done`, then close().
        return Cancellable(consume, stream.cancel, stream.close, handle=stream)

    def close(self) -> None:
        self._client.close()


class OpenAIClient(BenchClient):
    """openai-python, reading every chunk of ``chat.completions.create(stream=True)``."""

    name = "openai"

    def __init__(self, base_url: str, pool_size: int = 10) -> None:
        import openai

        self._client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=30.0)

    def _create(self, scenario: Scenario) -> Any:
        return self._client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": scenario.message()}],
            stream=True,
            stream_options={"include_usage": True},
        )

    def run(self, scenario: Scenario) -> RunResult:
        first = None
        chars = events = 0
        start = _perf()
        for chunk in self._create(scenario):
            events += 1
            if chunk.choices:
                text = chunk.choices[0].delta.content
                if text:
                    if first is None:
                        first = _perf()
                    chars += len(text)
        return RunResult(start, first, _perf(), chars, events)

    def open_cancellable(self, scenario: Scenario) -> Cancellable:
        stream = self._create(scenario)

        def consume() -> Any:
            for _ in stream:
                pass
            return {"type": "eof"}

        return Cancellable(consume, stream.close, handle=stream)

    def close(self) -> None:
        self._client.close()


def _socket_of(response: Any) -> Optional[socket.socket]:
    conn = getattr(response, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        fp = getattr(getattr(response, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock


class FloorClient(BenchClient):
    """The floor: one thread, urllib3 ``read1``, split on blank lines, ``json.loads``."""

    name = "floor"

    def __init__(self, base_url: str, pool_size: int = 10) -> None:
        import urllib3

        self._url = base_url + "/chat/completions"
        self._pool = urllib3.PoolManager(maxsize=pool_size, retries=False, timeout=urllib3.Timeout(connect=10, read=30))
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
        }

    def _open(self, scenario: Scenario) -> Any:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": scenario.message()}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return self._pool.request(
            "POST", self._url, body=json.dumps(body).encode(), headers=self._headers, preload_content=False
        )

    def run(self, scenario: Scenario) -> RunResult:
        loads = json.loads
        first = None
        chars = events = 0
        start = _perf()
        response = self._open(scenario)
        read1 = response.read1
        buf = b""
        done = False
        while not done:
            data = read1(65536)
            if not data:
                break
            buf += data
            if b"\n\n" not in buf:
                continue
            *blocks, buf = buf.split(b"\n\n")
            for block in blocks:
                payload = block[6:]  # b"data: "
                if payload == b"[DONE]":
                    done = True
                    break
                events += 1
                choices = loads(payload)["choices"]
                if choices:
                    text = choices[0]["delta"].get("content")
                    if text:
                        if first is None:
                            first = _perf()
                        chars += len(text)
        response.drain_conn()
        response.release_conn()
        return RunResult(start, first, _perf(), chars, events)

    def open_cancellable(self, scenario: Scenario) -> Cancellable:
        response = self._open(scenario)
        sock = _socket_of(response)

        def consume() -> Any:
            try:
                while response.read1(65536):
                    pass
            finally:
                response.close()
            return {"type": "eof"}

        def stop() -> None:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)

        return Cancellable(consume, stop, handle=response)

    def close(self) -> None:
        self._pool.clear()


class FloorTwoThreadClient(FloorClient):
    """The two-thread floor: the floor's parsing on a worker thread, each content event through ``Queue(10)``."""

    name = "floor_2t"

    def run(self, scenario: Scenario) -> RunResult:
        start = _perf()
        response = self._open(scenario)
        events: "queue.Queue[Any]" = queue.Queue(maxsize=10)  # send_stream's buffer_size default
        put = events.put

        def work() -> None:
            loads = json.loads
            read1 = response.read1
            buf = b""
            try:
                while True:
                    data = read1(65536)
                    if not data:
                        break
                    buf += data
                    if b"\n\n" not in buf:
                        continue
                    *blocks, buf = buf.split(b"\n\n")
                    for block in blocks:
                        payload = block[6:]  # b"data: "
                        if payload == b"[DONE]":
                            break
                        choices = loads(payload)["choices"]
                        if choices:
                            text = choices[0]["delta"].get("content")
                            if text:
                                put(text)
                response.drain_conn()
                response.release_conn()
                put(_END)
            except BaseException as exc:  # handed to the consumer, which raises it
                put(exc)

        worker = threading.Thread(target=work, name="floor-2t-worker", daemon=True)
        worker.start()
        get = events.get
        first = None
        chars = count = 0
        while True:
            item = get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            if first is None:
                first = _perf()
            count += 1
            chars += len(item)
        end = _perf()
        worker.join()
        return RunResult(start, first, end, chars, count)


CLIENTS: Dict[str, Callable[..., BenchClient]] = {
    "promptkit": PromptkitClient,
    "openai": OpenAIClient,
    "floor": FloorClient,
    "floor_2t": FloorTwoThreadClient,
}


def make_client(name: str, base_url: str, pool_size: int = 10) -> BenchClient:
    """Create the named client for ``base_url``."""
    return CLIENTS[name](base_url, pool_size=pool_size)
