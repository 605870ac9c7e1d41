"""Tools: define them from functions or OpenAI schemas, and run one call (pure: no threads, no I/O).

* An unannotated parameter is a ToolError at decoration time (a schema without
  types tells the model nothing); annotate it ``typing.Any`` for any JSON value.
* ``strict=True`` builds a schema OpenAI's strict mode accepts: every parameter
  required, those with defaults nullable (``null`` then means "the default"),
  no ``"default"`` keys, and no ``Any``/``dict`` parameters.
* Annotations resolve in the function's module globals, then in the locals of
  the scope applying ``@tool`` (local classes work under postponed annotations).
"""

from __future__ import annotations

import collections.abc
import copy
import enum
import inspect
import json
import logging
import math
import re
import sys
import types
import typing
from typing import Any, Callable, Dict, Iterator, List, Literal, Mapping, Optional, TypeVar, Union, overload

import attrs

from ._docstrings import parse_docstring
from .errors import ToolError
from .types import ToolCall, ToolResult

__all__ = ["Tool", "ToolRegistry", "tool", "execute"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NONE = type(None)
_SIMPLE = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))
_SEQUENCES = (list, tuple, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)
_UNIONS = (Union, getattr(types, "UnionType", Union))  # X | Y is 3.10+; setup.cfg allows 3.9
_MISSING = object()


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


# ---------------------------------------------------------------- schema generation


class _Unsupported(Exception):
    """An annotation the schema cannot express; re-raised as ToolError naming the parameter."""


def _enum_schema(values: List[Any]) -> Dict[str, Any]:
    """The schema of a Literal or Enum: the values, with their JSON type when they share one."""
    if not values:
        raise _Unsupported("an enum needs at least one value")
    for v in values:
        if not isinstance(v, (str, int, float, bool, _NONE)):
            raise _Unsupported(f"enum value {v!r} is not a JSON string, number, boolean or null")
    # Dedupe keyed by type too, so True and 1 both stay.
    values = [v for _, v in dict.fromkeys((type(v), v) for v in values)]
    kinds = set()
    for v in values:
        if v is not None:
            kinds.add(next(kind for cls, kind in _SIMPLE if isinstance(v, cls)))
    if kinds == {"integer", "number"}:
        kinds = {"number"}
    if not kinds:
        return {"type": "null"}
    schema: Dict[str, Any] = {"type": kinds.pop()} if len(kinds) == 1 else {}
    schema["enum"] = values
    return _nullable(schema) if None in values and "type" in schema else schema


def _nullable(schema: Dict[str, Any]) -> Dict[str, Any]:
    """``schema`` that also accepts null: ``"type": [t, "null"]`` when simple, else an ``anyOf``."""
    kind = schema.get("type")
    if not schema or kind == "null" or (isinstance(kind, list) and "null" in kind):
        return schema
    if "anyOf" in schema:
        extra = [] if {"type": "null"} in schema["anyOf"] else [{"type": "null"}]
        return {**schema, "anyOf": [*schema["anyOf"], *extra]}
    if isinstance(kind, str):
        out = {**schema, "type": [kind, "null"]}
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]  # JSON schema checks enum too: null must be listed
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def _schema(ann: Any) -> Dict[str, Any]:
    """The JSON schema of one resolved annotation."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        schema = _schema(args[0])
        text = next((m for m in ann.__metadata__ if isinstance(m, str)), None)
        return {**schema, "description": text} if text else schema
    if ann is Any:
        return {}
    if ann is None or ann is _NONE:
        return {"type": "null"}
    for cls, kind in _SIMPLE:
        if ann is cls:
            return {"type": kind}
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return _enum_schema([member.value for member in ann])
    if origin is Literal:
        return _enum_schema([a.value if isinstance(a, enum.Enum) else a for a in args])
    if origin in _UNIONS:
        members = [a for a in args if a is not _NONE]
        schema = _schema(members[0]) if len(members) == 1 else {"anyOf": [_schema(a) for a in members]}
        return _nullable(schema) if len(members) < len(args) else schema
    if ann in _SEQUENCES or origin in _SEQUENCES:
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            raise _Unsupported("fixed-length tuples are not supported; use tuple[X, ...] or list[X]")
        return {"type": "array", "items": _schema(args[0])} if args else {"type": "array"}
    if ann in _MAPPINGS or origin in _MAPPINGS:
        if not args:
            return {"type": "object"}
        if args[0] is not str:
            raise _Unsupported(f"dict keys must be str (JSON object keys), got {_name(args[0])}")
        return {"type": "object", "additionalProperties": _schema(args[1])}
    raise _Unsupported(
        f"unsupported annotation {_name(ann)} (supported: str, int, float, bool, None, Optional, unions, "
        "Literal, Enum, list/Sequence/tuple[X, ...], dict[str, X], Annotated, Any)"
    )


def _strict_check(schema: Dict[str, Any]) -> None:
    """Raise _Unsupported for what OpenAI's strict mode rejects: untyped values, free-form objects."""
    if "anyOf" in schema:
        for sub in schema["anyOf"]:
            _strict_check(sub)
        return
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if kinds == [None] and "enum" not in schema:
        raise _Unsupported("strict mode needs a concrete type (Any is not allowed)")
    if "object" in kinds:
        raise _Unsupported("strict mode does not allow free-form objects (dict)")
    if "array" in kinds:
        if "items" not in schema:
            raise _Unsupported("strict mode needs the array's item type (list[X])")
        _strict_check(schema["items"])


def _name(ann: Any) -> str:
    return ann.__name__ if isinstance(ann, type) else repr(ann).replace("typing.", "")


def _globals_of(fn: Any) -> Dict[str, Any]:
    """The namespace the function's annotations were written in."""
    for candidate in (inspect.unwrap(fn), getattr(fn, "func", None), getattr(type(fn), "__call__", None)):  # noqa: B004
        namespace = getattr(candidate, "__globals__", None)
        if isinstance(namespace, dict):
            return namespace
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    return vars(module) if module is not None else {}


def _resolve(raw: Any, globalns: Dict[str, Any], localns: Optional[Mapping[str, Any]]) -> Any:
    # One annotation at a time, so an unresolvable name is pinned to its parameter
    # and a bad *return* annotation cannot break the tool.
    holder = types.SimpleNamespace(__annotations__={"x": raw})
    locals_ = localns if isinstance(localns, dict) else dict(localns or {})
    return typing.get_type_hints(holder, globalns, locals_, include_extras=True)["x"]


def _json_value(value: Any) -> Any:
    """``value`` as JSON (Enum members as their values), or _MISSING when it has no JSON form."""
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return _MISSING


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
    globalns = _globals_of(fn)
    properties: Dict[str, Any] = {}
    required: List[str] = []
    arg_types: Dict[str, Any] = {}
    for p in signature.parameters.values():
        at = f"{where}: parameter {p.name!r}"
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolError(f"{at}: *args and **kwargs are not supported; declare each argument")
        if p.kind is p.POSITIONAL_ONLY:
            raise ToolError(f"{at} is positional-only; tool arguments are passed by keyword")
        if p.annotation is p.empty:
            raise ToolError(f"{at} has no type annotation (use typing.Any to accept any JSON value)")
        try:
            ann = _resolve(p.annotation, globalns, localns)
        except Exception as exc:  # NameError, SyntaxError, TypeError from a bad forward reference
            raise ToolError(f"{at}: cannot resolve annotation {p.annotation!r}: {exc}") from None
        has_default = p.default is not p.empty
        try:
            schema = _schema(ann)
            if strict:
                _strict_check(schema)
        except _Unsupported as exc:
            raise ToolError(f"{at}: {exc}") from None
        if strict and has_default:
            schema = _nullable(schema)  # strict mode requires every key; null stands for "the default"
        if docs.get(p.name) and "description" not in schema:
            schema["description"] = docs[p.name]
        if has_default and not strict:
            default = _json_value(p.default)
            if default is not _MISSING:
                schema["default"] = default
        if strict or not has_default:
            required.append(p.name)
        properties[p.name] = schema
        arg_types[p.name] = ann
    parameters = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
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
            namespace = _globals_of(item)
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

    def execute(self, call: ToolCall) -> ToolResult:
        """Run ``call`` with the tool of its name (see :func:`execute`)."""
        return execute(self._tools.get(call.name), call)

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


def _has_enum(ann: Any) -> bool:
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return True
    return typing.get_origin(ann) is not Literal and any(_has_enum(a) for a in typing.get_args(ann))


def _accepts_none(ann: Any) -> bool:
    if ann is Any or ann is _NONE or ann is None:
        return True
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _accepts_none(args[0])
    return (origin in _UNIONS and any(_accepts_none(a) for a in args)) or (origin is Literal and None in args)


def _convert(ann: Any, value: Any) -> Any:
    """Turn Enum values (also inside Optional, unions, lists and dicts) into members."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _convert(args[0], value)
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        if isinstance(value, ann):
            return value
        try:
            return ann(value)
        except ValueError:
            raise ValueError(f"{value!r} is not one of {[m.value for m in ann]!r}") from None
    if origin in _UNIONS:
        if value is None and _NONE in args:
            return None
        error: Optional[ValueError] = None
        for member in (a for a in args if _has_enum(a)):
            try:
                return _convert(member, value)
            except ValueError as exc:
                error = error or exc
        if error is not None and all(_has_enum(a) or a is _NONE for a in args):
            raise error
        return value  # a non-Enum member of the union may take it; no deeper validation
    if (ann in _SEQUENCES or origin in _SEQUENCES) and args and isinstance(value, list):
        return [_convert(args[0], item) for item in value]
    if (ann in _MAPPINGS or origin in _MAPPINGS) and len(args) == 2 and isinstance(value, dict):
        return {key: _convert(args[1], item) for key, item in value.items()}
    return value


def _hints(handler: Callable[..., Any]) -> Mapping[str, Any]:
    try:
        return typing.get_type_hints(handler, include_extras=True)
    except Exception:  # an unresolvable annotation on a plain handler: skip Enum conversion
        return {}


def _json_fallback(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    return list(value) if isinstance(value, (set, frozenset)) else str(value)


def _error(call: ToolCall, message: str) -> ToolResult:
    content = json.dumps({"error": message}, ensure_ascii=False)
    return ToolResult(call_id=call.id, name=call.name, content=content, is_error=True)


def execute(tool: Optional[Tool], call: ToolCall) -> ToolResult:
    """Run one tool call synchronously; never raises for the tool's or the model's mistakes.

    The parsed arguments are bound against the handler's signature (a missing,
    extra or misnamed one is an error result and the handler is not called),
    Enum values become members, and the rest pass as parsed from JSON. For a
    strict tool, a ``null`` for a defaulted parameter that does not accept
    ``None`` is dropped so the default applies.

    Args:
        tool: the tool named by the call, or ``None`` when there is none.
        call: the model's call.

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
        return _error(call, f"invalid arguments for tool {call.name!r}: {call.arguments_error}")
    handler = tool.handler
    arg_types = tool._arg_types if tool._arg_types is not None else _hints(handler)
    kwargs = dict(call.arguments)
    try:
        signature: Optional[inspect.Signature] = inspect.signature(handler)
    except (TypeError, ValueError):  # some builtins have none: call and let the handler complain
        signature = None
    if signature is not None:
        if tool.strict:
            for p in signature.parameters.values():
                no_none = p.name in arg_types and not _accepts_none(arg_types[p.name])
                if p.default is not p.empty and kwargs.get(p.name, _MISSING) is None and no_none:
                    del kwargs[p.name]
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            return _error(call, f"invalid arguments for tool {call.name!r}: {exc}")
    for key, value in kwargs.items():
        if key in arg_types and _has_enum(arg_types[key]):
            try:
                kwargs[key] = _convert(arg_types[key], value)
            except ValueError as exc:
                return _error(call, f"invalid value for argument {key!r} of tool {call.name!r}: {exc}")
    try:
        result = handler(**kwargs)
    except Exception as exc:
        logger.warning("tool %r (call %s) raised", call.name, call.id, exc_info=True)
        return _error(call, f"{type(exc).__name__}: {exc}")
    if isinstance(result, str):
        # str.__str__ gives the plain text of a str subclass (a str Enum's str() is "Color.RED").
        return ToolResult(call_id=call.id, name=call.name, content=str.__str__(result))
    try:
        content = json.dumps(result, ensure_ascii=False, default=_json_fallback)
    except (TypeError, ValueError) as exc:  # e.g. non-str dict keys or a circular reference
        logger.warning("tool %r (call %s) returned a value with no JSON form", call.name, call.id, exc_info=True)
        return _error(call, f"tool {call.name!r} returned a value that cannot be sent as JSON: {exc}")
    return ToolResult(call_id=call.id, name=call.name, content=content)
