"""Tools: define them from functions or OpenAI schemas, and run one call (pure: no threads, no I/O).

* An unannotated parameter is a ToolError at decoration time (a schema without
  types tells the model nothing); annotate it ``typing.Any`` for any JSON value.
* ``strict=True`` builds a schema OpenAI's strict mode accepts: every parameter
  required, those with defaults nullable (``null`` then means "the default"),
  no ``"default"`` keys, and no ``Any``/``dict`` parameters.
* Annotations resolve in the function's module globals, then in the locals of
  the scope applying ``@tool`` (local classes work under postponed annotations).

The annotation <-> JSON code (schemas, Enum conversion) is in :mod:`promptkit._schema`.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import re
import sys
import typing
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, TypeVar, Union, overload

import attrs

from ._docstrings import parse_docstring
from ._validate import unicode_problem
from ._schema import MISSING, accepts_none, convert, globals_of, has_enum, hints, json_fallback, parameters_schema
from ._errors import ToolError
from ._types import ToolCall, ToolResult

__all__ = ["Tool", "ToolRegistry", "tool", "execute"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_RAW_LIMIT = 500  # characters of unparseable arguments quoted back to the model


def _copy_schema(value: Any) -> Any:
    # A private deep copy: the caller mutating its dict later must not change the tool.
    return copy.deepcopy(dict(value)) if isinstance(value, Mapping) else value


@attrs.frozen
class Tool:
    """A tool the model may call.

    Attributes:
        name: the function name the model sees (``^[a-zA-Z0-9_-]{1,64}$``).
        description: what the tool does, for the model.
        parameters: the JSON schema of the arguments (``"type": "object"``).
        handler: the callable run with the arguments as keywords, or ``None``
            when the caller handles the calls itself.
        timeout: the most seconds a call may take (the loop enforces it), or ``None``.
        strict: send ``"strict": true`` (OpenAI structured-outputs mode).

    Calling the tool calls the handler, so a ``@tool`` function still works as a function.

    Raises:
        ToolError: on construction, for an invalid name, parameters schema or timeout.
    """

    name: str
    description: str = ""
    parameters: Dict[str, Any] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}, converter=_copy_schema
    )
    handler: Optional[Callable[..., Any]] = None
    timeout: Optional[float] = None
    strict: bool = False
    # Resolved annotations of the handler's parameters (set by @tool); None means "resolve lazily".
    _arg_types: Optional[Mapping[str, Any]] = attrs.field(default=None, eq=False, repr=False, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ToolError(f"invalid tool name {self.name!r}: use 1-64 characters from a-z, A-Z, 0-9, '_' and '-'")
        params, where = self.parameters, f"tool {self.name!r}"
        if not isinstance(params, Mapping) or params.get("type") != "object":
            raise ToolError(f"{where}: parameters must be a JSON schema with \"type\": \"object\", got {params!r}")
        required = params.get("required", [])
        if not isinstance(params.get("properties", {}), Mapping) or not isinstance(required, list):
            raise ToolError(f"{where}: parameters \"properties\" must be an object and \"required\" a list")
        t = self.timeout
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf):
            raise ToolError(f"{where}: timeout must be a positive number of seconds or None, got {t!r}")
        if not isinstance(self.description, str) or not isinstance(self.strict, bool):
            raise ToolError(f"{where}: description must be a str and strict a bool")
        if self.handler is not None and not callable(self.handler):
            raise ToolError(f"{where}: handler must be callable or None, got {self.handler!r}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.handler is None:
            raise ToolError(f"tool {self.name!r} has no handler")
        return self.handler(*args, **kwargs)

    def to_openai(self) -> Dict[str, Any]:
        """The entry for a request's ``tools`` list: ``{"type": "function", "function": {...}}``."""
        parameters = copy.deepcopy(self.parameters)
        function: Dict[str, Any] = {"name": self.name, "description": self.description, "parameters": parameters}
        if self.strict:
            function["strict"] = True
        return {"type": "function", "function": function}

    @classmethod
    def from_openai(cls, data: Mapping[str, Any]) -> "Tool":
        """Parse an OpenAI tool dict into a Tool without a handler.

        Args:
            data: ``{"type": "function", "function": {...}}``, the bare function
                object ``{"name", "description", "parameters"[, "strict"]}``, or
                the flat Responses-API form ``{"type": "function", "name", ...}``.

        Raises:
            ToolError: the dict is not a function tool, or its name or parameters are invalid.
        """
        if not isinstance(data, Mapping):
            raise ToolError(f"a tool must be given as a dict, got {data!r}")
        if data.get("type", "function") != "function":
            raise ToolError(f"unsupported tool type {data.get('type')!r}: only \"function\" tools are supported")
        function = data.get("function", data)
        if not isinstance(function, Mapping) or "name" not in function:
            raise ToolError(f"tool dict has no function name: {dict(data)!r}")
        parameters = function.get("parameters")
        return cls(
            name=function["name"],
            description=function.get("description") or "",
            parameters={"type": "object", "properties": {}} if parameters is None else parameters,
            strict=bool(function.get("strict") or False),
        )


# ---------------------------------------------------------------- @tool


def _build(fn: Any, name: Optional[str], description: Optional[str], timeout: Optional[float], strict: bool,
           localns: Optional[Mapping[str, Any]]) -> Tool:
    """Make a Tool from a function: the schema from its signature, the texts from its docstring."""
    if isinstance(fn, Tool) or not callable(fn):
        raise ToolError(f"@tool needs a function, got {fn!r}")
    fname: str = getattr(fn, "__name__", None) or ""
    if name is None and not fname:
        raise ToolError(f"cannot name a tool for {fn!r}: pass name=")
    where = f"cannot make a tool from function {fname or name!r}"
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ToolError(f"{where}: cannot read its signature: {exc}") from None
    summary, docs = parse_docstring(getattr(fn, "__doc__", None))
    parameters, arg_types = parameters_schema(fn, signature, docs, strict=strict, localns=localns, where=where)
    tool_name = name if name is not None else fname
    text = description if description is not None else (summary or fname or tool_name)
    return Tool(name=tool_name, description=text, parameters=parameters, handler=fn,
                timeout=timeout, strict=strict, arg_types=arg_types)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(*, name: Optional[str] = ..., description: Optional[str] = ..., timeout: Optional[float] = ...,
         strict: bool = ...) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(fn: Optional[Callable[..., Any]] = None, /, *, name: Optional[str] = None, description: Optional[str] = None,
         timeout: Optional[float] = None, strict: bool = False) -> Union[Tool, Callable[[Callable[..., Any]], Tool]]:
    """Make a :class:`Tool` from a function, as ``@tool`` or ``@tool(name=..., ...)``.

    The parameters' JSON schema comes from the annotations, their descriptions
    from ``typing.Annotated[X, "text"]`` or the docstring (Google, NumPy or
    Sphinx style), and the tool's description from the docstring's text
    before its sections (the function name when there is none).

    Args:
        fn: the function (when used as a bare ``@tool``).
        name: the tool name; defaults to the function's ``__name__``.
        description: overrides the docstring's description.
        timeout: the most seconds a call may take, or ``None``.
        strict: build a strict-mode schema and send ``"strict": true``.

    Returns:
        The Tool (which is callable like the function), or a decorator making one.

    Raises:
        ToolError: at decoration time, for ``*args``/``**kwargs``, positional-only,
            unannotated or unsupported parameters, or a bad name or timeout.
    """
    if fn is None:
        def decorate(f: Callable[..., Any]) -> Tool:
            return _build(f, name, description, timeout, strict, sys._getframe(1).f_locals)
        return decorate
    return _build(fn, name, description, timeout, strict, sys._getframe(1).f_locals)


# ---------------------------------------------------------------- registry


ToolLike = Union[Tool, Callable[..., Any], Mapping[str, Any]]


class ToolRegistry:
    """Tools by name, in the order they were added.

    Not locked: build it before the turn starts; the tool loop only reads it.
    """

    def __init__(self, tools: Optional[typing.Iterable[ToolLike]] = None) -> None:
        self._tools: Dict[str, Tool] = {}
        for item in tools or ():
            self._add(item, sys._getframe(1).f_locals)

    def add(self, item: ToolLike) -> Tool:
        """Add a Tool, a function (wrapped with :func:`tool`) or an OpenAI tool dict.

        Returns:
            The Tool added.

        Raises:
            ToolError: a tool with that name exists already, or the item is not a valid tool.
        """
        return self._add(item, sys._getframe(1).f_locals)

    def _add(self, item: ToolLike, localns: Mapping[str, Any]) -> Tool:
        if isinstance(item, Tool):
            new = item
        elif isinstance(item, Mapping):
            new = Tool.from_openai(item)
        elif callable(item):
            # The caller's scope may be unrelated to the function (e.g. a Conversation), so its
            # locals only fill names the function's module lacks.
            namespace = globals_of(item)
            new = _build(item, None, None, None, False, {k: v for k, v in localns.items() if k not in namespace})
        else:
            raise ToolError(f"cannot add {item!r} as a tool: give a Tool, a function or an OpenAI tool dict")
        if new.name in self._tools:
            raise ToolError(f"duplicate tool name {new.name!r}")
        self._tools[new.name] = new
        return new

    @overload
    def on_tool(self, name: str) -> Callable[[F], F]: ...
    @overload
    def on_tool(self, name: str, handler: Callable[..., Any]) -> Tool: ...
    def on_tool(self, name: str, handler: Optional[Callable[..., Any]] = None) -> Union[Tool, Callable[[F], F]]:
        """Attach (or replace) the handler of a tool already added, e.g. from an OpenAI dict.

        Usable directly or as ``@registry.on_tool("name")`` (which returns the function unchanged).
        A name with no schema is an error rather than a silent handler-only tool,
        since the model would never see such a tool.

        Raises:
            ToolError: no tool has that name (the message lists the known ones),
                or the handler is not callable.
        """
        if handler is None:
            def decorate(fn: F) -> F:
                self.on_tool(name, fn)
                return fn
            return decorate
        current = self._tools.get(name)
        if current is None:
            known = ", ".join(repr(n) for n in self._tools) or "none"
            raise ToolError(f"unknown tool {name!r}: add its schema first (known tools: {known})")
        if not callable(handler):
            raise ToolError(f"the handler for tool {name!r} must be callable, got {handler!r}")
        # The old handler's resolved annotations do not describe the new one.
        self._tools[name] = attrs.evolve(current, handler=handler, arg_types=None)
        return self._tools[name]

    def get(self, name: str) -> Optional[Tool]:
        """The tool with that name, or ``None``."""
        return self._tools.get(name)

    def has_handler(self, name: str) -> bool:
        """Whether a tool with that name exists and has a handler."""
        found = self._tools.get(name)
        return found is not None and found.handler is not None

    def execute(self, call: ToolCall, raised: Optional[List[BaseException]] = None) -> ToolResult:
        """Run ``call`` with the tool of its name (see :func:`execute`)."""
        return execute(self._tools.get(call.name), call, raised)

    def to_openai(self) -> List[Dict[str, Any]]:
        """The request's ``tools`` list (``[]`` when empty)."""
        return [t.to_openai() for t in self._tools.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))


# ---------------------------------------------------------------- execution


def _error(call: ToolCall, message: str) -> ToolResult:
    content = json.dumps({"error": message}, ensure_ascii=False)
    return ToolResult(call_id=call.id, name=call.name, content=content, is_error=True)


def execute(tool: Optional[Tool], call: ToolCall, raised: Optional[List[BaseException]] = None) -> ToolResult:
    """Run one tool call synchronously; never raises for the tool's or the model's mistakes.

    The parsed arguments are bound against the handler's signature (a missing,
    extra or misnamed one is an error result and the handler is not called),
    Enum values become members, and the rest pass as parsed from JSON.
    Arguments that are not a JSON object give an error quoting the text sent
    (up to 500 characters), since the history replays them as ``{}``. For a
    strict tool, a ``null`` for a defaulted parameter that does not accept
    ``None`` is dropped so the default applies.

    Args:
        tool: the tool named by the call, or ``None`` when there is none.
        call: the model's call.
        raised: when given, the handler's exception is appended to it (it still becomes
            an error result).

    Returns:
        The result; ``content`` is a returned ``str`` as is, else JSON (``None``
        gives ``"null"``). Failures give ``{"error": "..."}`` with
        ``is_error=True``; a handler's exception is ``"<Type>: <message>"`` and
        is logged with its traceback at WARNING. Only ``Exception`` is caught.
    """
    if tool is None:
        return _error(call, f"unknown tool {call.name!r}")
    if tool.handler is None:
        return _error(call, f"tool {call.name!r} has no handler")
    if call.arguments_error is not None:
        # The history replays such arguments as "{}" (servers reject invalid JSON there), so this
        # message is where the model sees what it actually sent.
        raw = call.arguments_json
        sent = raw if len(raw) <= _RAW_LIMIT else raw[:_RAW_LIMIT] + "..."
        return _error(call, f"invalid arguments for tool {call.name!r}: {call.arguments_error}; you sent: {sent}")
    handler = tool.handler
    arg_types = tool._arg_types if tool._arg_types is not None else hints(handler)
    kwargs = dict(call.arguments)
    try:
        signature: Optional[inspect.Signature] = inspect.signature(handler)
    except (TypeError, ValueError):  # some builtins have none: call and let the handler complain
        signature = None
    if signature is not None:
        if tool.strict:
            for p in signature.parameters.values():
                no_none = p.name in arg_types and not accepts_none(arg_types[p.name])
                if p.default is not p.empty and kwargs.get(p.name, MISSING) is None and no_none:
                    del kwargs[p.name]
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            return _error(call, f"invalid arguments for tool {call.name!r}: {exc}")
    for key, value in kwargs.items():
        if key in arg_types and has_enum(arg_types[key]):
            try:
                kwargs[key] = convert(arg_types[key], value)
            except ValueError as exc:
                return _error(call, f"invalid value for argument {key!r} of tool {call.name!r}: {exc}")
    try:
        result = handler(**kwargs)
    except Exception as exc:
        logger.warning("tool %r (call %s) raised", call.name, call.id, exc_info=True)
        if raised is not None:
            raised.append(exc)  # for the hooks (a tracing span records it); the model gets the message
        return _error(call, f"{type(exc).__name__}: {exc}")
    if isinstance(result, str):
        # str.__str__ gives the plain text of a str subclass (a str Enum's str() is "Color.RED").
        content = str.__str__(result)
    else:
        try:
            content = json.dumps(result, ensure_ascii=False, allow_nan=False, default=json_fallback)
        except (TypeError, ValueError, RecursionError) as exc:  # bytes, NaN, non-str keys, a cycle
            logger.warning("tool %r (call %s) returned a value with no JSON form: %s", call.name, call.id, exc)
            return _error(call, f"tool {call.name!r} returned a value that cannot be sent as JSON: {exc}")
    problem = unicode_problem(content)
    if problem is not None:
        logger.warning("tool %r (call %s) returned text with %s", call.name, call.id, problem)
        return _error(call, f"tool {call.name!r} returned text that cannot be sent: it holds {problem}")
    return ToolResult(call_id=call.id, name=call.name, content=content)
