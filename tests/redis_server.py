"""A real redis-server for the tests: started on a free loopback port, stopped at the end.

Use the session-scoped ``redis_url`` fixture (import it into a test module).
When the ``redis-server`` binary or redis-py is missing, tests that use it are
skipped, except under CI (``CI=true``), where that is a failure: CI installs
redis-server (see ``.ci/run``) and redis-py (the ``test`` extra).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

logger = logging.getLogger(__name__)

START_TIMEOUT = 15.0  # seconds for the server to answer PING
STOP_TIMEOUT = 10.0
_ATTEMPTS = 3  # a free port can be taken between our probe and the server's bind


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason}; CI must provide it (.ci/run installs redis-server, the test extra redis-py)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class RedisServer:
    """One redis-server subprocess without persistence, in its own directory.

    Args:
        binary: the redis-server executable.
        directory: its working directory (its log goes there too).
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = 0
        self.log_path = directory / "redis.log"
        self._proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        """The server's version, from INFO."""
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()

    def start(self) -> None:
        """Start the server and wait until it answers PING; raises RuntimeError with its log if it does not."""
        failures = []
        for _ in range(_ATTEMPTS):
            self.port = _free_port()
            if self._start_once():
                logger.info("redis-server on port %d", self.port)
                return
            failures.append(self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else "(no log)")
        raise RuntimeError(f"redis-server did not start after {_ATTEMPTS} attempts; last log:\n{failures[-1]}")

    def _start_once(self) -> bool:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT
        pause = threading.Event()  # never set: a bounded wait between polls
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:  # exited: e.g. the port was taken
                self._proc = None
                return False
            if _answers_ping(self.port):
                return True
            pause.wait(0.02)
        self.stop()
        return False

    @property
    def pid(self) -> int:
        """The running server's process id."""
        assert self._proc is not None, "the server is not running"
        return self._proc.pid

    def kill(self) -> None:
        """SIGKILL the server and reap it (for tests of a store whose server dies)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        """Start the server again on the same port (empty: it keeps no data); RuntimeError if it cannot."""
        if not self._start_once():
            raise RuntimeError(f"redis-server did not restart on port {self.port}")

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit in time)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    """Run a redis-server in ``directory`` for the ``with`` block; skip (or fail in CI) if unavailable."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not installed (apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable("redis-py is not installed (pip install -e '.[test]')")
    server = RedisServer(str(binary), directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the whole test session."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """The session redis-server's URL."""
    return redis_server.url
