"""Helpers the suites share for real servers and programs: free ports, raw HTTP requests,
third-party servers in a subprocess, and the examples run as programs."""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Mapping, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (nothing listens on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_request(conn: socket.socket) -> Optional[Tuple[str, bytes]]:
    """Read one HTTP request from a raw socket: its head (latin-1 text) and its body, or ``None`` at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return None
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    match = re.search(r"^content-length:\s*(\d+)", text, re.IGNORECASE | re.MULTILINE)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        more = conn.recv(65536)
        if not more:
            break
        body += more
    return text, body


def program_path(name: str) -> str:
    """The console script ``name`` installed beside this interpreter (the test extras), else on PATH."""
    found = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    assert found, f"{name} is a test dependency: pip install -e '.[test]'"
    return found


def _stop(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(signum)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def third_party_server(args: Sequence[str], port: int, *, env: Optional[Mapping[str, str]] = None,
                       startup: float = 60.0) -> Iterator[None]:
    """Run a server program until the block ends, once it accepts connections on 127.0.0.1:``port``.

    Its output goes to a temporary file (no pipe to drain), shown when it fails to start.
    """
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as log:
        proc = subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT, env=None if env is None else dict(env))
        try:
            deadline = time.monotonic() + startup
            tick = threading.Event()  # waits between connection attempts, never set
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise AssertionError(f"{Path(args[0]).name} did not start:\n{log.read()[-3000:]}")
                tick.wait(0.1)
            yield
        finally:
            _stop(proc)


@contextmanager
def example_program(*args: str, env: Dict[str, str]) -> Iterator[Tuple[subprocess.Popen, str, str]]:
    """Run an example web app as a user would; yield the process, the URL it printed and that banner line.

    Leaving the block presses Ctrl-C: the example shuts its servers down and exits.
    """
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(env, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8"), cwd=ROOT, encoding="utf-8")
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(60), "the example printed no URL within 60 s"
        line = proc.stdout.readline()
        match = re.search(r"http://[\d.]+:\d+", line)
        assert match, f"no URL in {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield proc, match.group(0), line
    finally:
        _stop(proc, signal.SIGINT)
