"""The public surface: pinned names, docstrings, the error hierarchy."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import promptkit
import promptkit.errors as errors

PUBLIC = [
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
]


def test_all_is_pinned() -> None:
    assert promptkit.__all__ == PUBLIC
    for name in PUBLIC:
        assert hasattr(promptkit, name), name


PUBLIC_MODULES = [
    "promptkit",
    "promptkit.web",
    "promptkit.stores",
    "promptkit.testing",
    "promptkit.pricing",
    "promptkit.tokens",
    "promptkit.relay",
    "promptkit.prompts",
    "promptkit.tools",
    "promptkit.stores.spec",
]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert inspect.getdoc(module), f"{module_name} has no module docstring"
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if name == "__version__" or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants document themselves in the module docstring
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, (property, classmethod, staticmethod))):
                    continue
                target = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                if not inspect.getdoc(target):
                    missing.append(f"{name}.{attr}")
    assert not missing, f"public names of {module_name} without a docstring: {missing}"


def test_error_hierarchy() -> None:
    expected = {
        "ConfigurationError": "PromptKitError",
        "ConversationBusyError": "PromptKitError",
        "CallbackError": "PromptKitError",
        "UsageError": "PromptKitError",
        "ClientClosedError": "UsageError",
        "APIError": "PromptKitError",
        "APIStatusError": "APIError",
        "BadRequestError": "APIStatusError",
        "AuthenticationError": "APIStatusError",
        "NotFoundError": "APIStatusError",
        "RateLimitError": "APIStatusError",
        "ServerError": "APIStatusError",
        "APIConnectionError": "APIError",
        "APITimeoutError": "APIConnectionError",
        "StreamError": "APIError",
        "StreamTruncatedError": "StreamError",
    }
    for child, parent in expected.items():
        assert issubclass(getattr(errors, child), getattr(errors, parent)), (child, parent)
        assert getattr(promptkit, child) is getattr(errors, child)
    # Misuse was a plain RuntimeError before UsageError existed: it still is one.
    assert issubclass(errors.UsageError, RuntimeError) and issubclass(errors.ClientClosedError, RuntimeError)


def test_import_is_light() -> None:
    code = "import sys, promptkit; bad = [m for m in ('tiktoken', 'openai') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_py_typed_is_shipped() -> None:
    from importlib import resources

    assert resources.files("promptkit").joinpath("py.typed").is_file()
