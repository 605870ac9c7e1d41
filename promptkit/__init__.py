"""promptkit: stream LLM chat turns synchronously, with threads instead of asyncio.

>>> import promptkit
>>> client = promptkit.Client()                       # doctest: +SKIP
>>> conv = client.conversation(system_prompt="You are terse.")  # doctest: +SKIP
>>> for event in conv.send_stream("Hi"):              # doctest: +SKIP
...     if event.type == "content":
...         print(event.content, end="", flush=True)
"""

from ._version import __version__
from ._client import Client
from ._conversation import Conversation
from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    CallbackError,
    ClientClosedError,
    ConfigurationError,
    ConversationBusyError,
    NotFoundError,
    OutputValidationError,
    PromptKitError,
    RateLimitError,
    ServerError,
    StoreError,
    StreamError,
    StreamTruncatedError,
    ToolError,
    UsageError,
)
from ._limits import Limits
from ._stream import Stream
from ._tools import Tool, ToolRegistry, tool
from ._types import Choice, Response, StreamEvent, Timeout, ToolCall, ToolResult, Usage

__all__ = [
    "__version__",
    "Client",
    "Conversation",
    "Stream",
    "StreamEvent",
    "Response",
    "Usage",
    "ToolCall",
    "ToolResult",
    "Choice",
    "Timeout",
    "Limits",
    "Hooks",
    "LoggingHooks",
    "TurnStarted",
    "RequestSent",
    "FirstToken",
    "RoundFinished",
    "RetryScheduled",
    "ToolStarted",
    "ToolFinished",
    "TurnFinished",
    "Telemetry",
    "Tool",
    "ToolRegistry",
    "tool",
    "ConversationStore",
    "MemoryStore",
    "SQLiteStore",
    "RedisStore",
    "PromptKitError",
    "ConfigurationError",
    "ConversationBusyError",
    "CallbackError",
    "UsageError",
    "ClientClosedError",
    "ToolError",
    "BudgetExceededError",
    "StoreError",
    "StoreConflictError",
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
    "StreamError",
    "StreamTruncatedError",
    "OutputValidationError",
]

# The stores load on first use: sqlite3 and the store modules are not needed to stream.
_STORE_NAMES = frozenset(
    {"ConversationStore", "MemoryStore", "SQLiteStore", "RedisStore", "StoreConflictError"}
)
# So do the hooks and the telemetry options: a client without them never loads them.
_LAZY = {
    **{name: "_hooks" for name in (
        "Hooks", "LoggingHooks", "TurnStarted", "RequestSent", "FirstToken", "RoundFinished", "RetryScheduled",
        "ToolStarted", "ToolFinished", "TurnFinished",
    )},
    "Telemetry": "_telemetry",
}  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _STORE_NAMES:
        from . import stores

        return getattr(stores, name)
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module 'promptkit' has no attribute {name!r}")
