"""The benchmarks' server: ``promptkit.testing.MockServer``, each reply chosen by the request.

Every request is a ``POST .../chat/completions`` whose *last message* is a
JSON :class:`Scenario`, so promptkit, openai-python and the floors send the
same request and get the same bytes; :func:`respond` (the server's
``responder``) turns it into a :class:`~promptkit.testing.MockReply`.

:class:`ServerProcess` runs the server in a child process (``python -m
benchmarks.mock``), so that its threads never compete with a client's for
the GIL: throughput, time to first token and the concurrent streams use it.
The cancel measurements, whose server only waits, run a ``MockServer`` in
process with the same :func:`respond` and watch it directly
(``wait_for_requests``, ``wait_for_disconnects``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

from benchmarks._env import REPO_ROOT, child_env
from promptkit.testing import MockReply, MockServer

__all__ = ["MODEL", "Scenario", "respond", "ServerProcess", "main"]

MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Scenario:
    """What the server sends for one request (carried as JSON in the last message).

    Attributes:
        n: number of content deltas, each ``text``.
        text: the text of each delta.
        framing: ``"chunked"`` (each event its own HTTP chunk) or ``"close"`` (the body ends when the socket closes).
        first_delay: seconds between the role chunk and the first delta.
        pace: seconds between deltas; 0 sends them back to back in one write (``MockReply(bulk=True)``).
        silent: if > 0: the headers and one comment, then nothing for this many seconds (or until the
            client hangs up), then the end of the body.
        stall: the ``n`` deltas (word-split: give ``text`` a leading or trailing space), then nothing
            more until the client hangs up or the server closes (``MockReply.stall``).
    """

    n: int = 1
    text: str = "abcd"
    framing: str = "chunked"
    first_delay: float = 0.0
    pace: float = 0.0
    silent: float = 0.0
    stall: bool = False

    def message(self) -> str:
        """The user message that carries this scenario."""
        return json.dumps(asdict(self), separators=(",", ":"))

    def reply(self) -> MockReply:
        """The MockReply the server sends for this scenario."""
        if self.silent > 0:
            return MockReply.keepalive_only(self.silent, interval=self.silent)
        if self.stall:
            return MockReply.stall(after_text=self.text * self.n)
        return MockReply.text(
            self.text * self.n,
            chunk_size=len(self.text),
            delay=self.pace,
            first_delay=self.first_delay,
            framing=self.framing,
            bulk=self.pace <= 0,
        )


def respond(body: Dict[str, Any]) -> MockReply:
    """The server's responder: the reply of the Scenario in the request's last message."""
    return Scenario(**json.loads(body["messages"][-1]["content"])).reply()


class ServerProcess:
    """The MockServer in a child process; ``with ServerProcess() as server: server.base_url``.

    The child serves until its stdin closes, so it also ends if this process dies.
    """

    def __init__(self, start_timeout: float = 15.0) -> None:
        self.start_timeout = start_timeout
        self.process: Optional["subprocess.Popen[str]"] = None
        self.base_url = ""

    def start(self) -> "ServerProcess":
        """Start the child and wait for its URL."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.mock"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(REPO_ROOT),
            env=child_env(),
        )
        try:
            line: List[str] = []
            reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
            reader.start()
            reader.join(self.start_timeout)
            if not line or not line[0].startswith("URL "):
                raise RuntimeError(f"the benchmark server did not start: {line!r}")
            self.base_url = line[0].split()[1]
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close the child's stdin (it closes the server and exits); kill it if it does not."""
        process, self.process = self.process, None
        if process is None:
            return
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def main() -> None:
    """The child: serve until stdin closes; the first stdout line is ``URL <base_url>``."""
    with MockServer(model=MODEL, responder=respond) as server:
        print(f"URL {server.url}", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
