"""Naming a store in one string: for command-line options and environment variables."""

from __future__ import annotations

import os

from .._errors import ConfigurationError
from ._memory_store import MemoryStore
from ._protocol import ConversationStore
from ._redis_store import RedisStore
from ._sqlite_store import SQLiteStore

__all__ = ["open_store", "STORE_SPEC_HELP"]

STORE_SPEC_HELP = "'memory', 'sqlite:PATH' or a redis:// URL"
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")  # what redis-py's from_url accepts


def open_store(spec: str) -> ConversationStore:
    """Open the store ``spec`` names.

    Args:
        spec: ``"memory"`` (this process only), ``"sqlite:PATH"`` (``~`` is
            expanded) or a Redis URL (``redis://``, ``rediss://``, ``unix://``;
            needs ``promptkit[redis]``).

    Raises:
        ConfigurationError: ``spec`` names no store.
    """
    if spec == "memory":
        return MemoryStore()
    if spec.startswith("sqlite:") and len(spec) > len("sqlite:"):
        return SQLiteStore(os.path.expanduser(spec[len("sqlite:") :]))
    if spec.startswith(_REDIS_SCHEMES):
        return RedisStore(spec)
    raise ConfigurationError(f"a store is {STORE_SPEC_HELP}, got {spec!r}")
