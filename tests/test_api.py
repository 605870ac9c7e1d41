"""The public surface: derived from the package and the README, docstrings, the error hierarchy."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

import promptkit
import promptkit._errors as errors

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _all_modules() -> List[str]:
    names = ["promptkit"]
    for info in pkgutil.walk_packages(promptkit.__path__, "promptkit."):
        names.append(info.name)
    return sorted(names)


# Derived, not listed: a module is public when no part of its dotted name starts with "_".
PUBLIC_MODULES = [name for name in _all_modules() if not any(part.startswith("_") for part in name.split("."))]


def test_public_modules_are_the_ones_the_readme_documents() -> None:
    # The README names each public module (``promptkit.web``, ``promptkit.pricing.PRICES_AS_OF``, ...);
    # every other module is private by name.
    documented = {name for name in _all_modules() if name == "promptkit" or re.search(rf"\b{re.escape(name)}\b", README)}
    assert set(PUBLIC_MODULES) == documented


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_lists_exactly_the_public_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), f"{module_name}.__all__ repeats a name"
    for name in exported:
        assert not name.startswith("_") or name == "__version__", name
        getattr(module, name)  # every listed name resolves (lazily loaded ones included)
    # A package exports every public promptkit class and function it binds (it gathers them from
    # private modules); a module, every public class and function it defines.
    is_package = hasattr(module, "__path__")
    bound = {
        name for name, obj in vars(module).items()
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
        and (obj.__module__.startswith("promptkit") if is_package else obj.__module__ == module_name)
    }  # fmt: skip
    assert bound <= set(exported), f"{module_name} binds public names it does not export: {sorted(bound - set(exported))}"


def test_every_name_promptkit_exports_is_in_the_readme() -> None:
    undocumented = [name for name in promptkit.__all__ if name != "__version__" and not re.search(rf"\b{name}\b", README)]
    assert not undocumented, f"exported but not in the README: {undocumented}"


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
