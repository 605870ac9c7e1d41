"""Python annotations <-> JSON: a tool's parameter schema, and argument values back into Python.

Private to :mod:`promptkit._tools`. Pure: no threads, no I/O.

* :func:`parameters_schema` builds the ``parameters`` object of a tool from a
  function's signature, resolving each annotation on its own (so an
  unresolvable name is pinned to its parameter).
* :func:`convert` turns the JSON values of a call's arguments into Enum
  members where the annotation asks for them; :func:`accepts_none` says
  whether an annotation takes ``None``.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import json
import sys
import types
import typing
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Tuple, Union

from ._errors import ToolError

__all__ = [
    "MISSING",
    "Unsupported",
    "schema_of",
    "strict_check",
    "nullable",
    "parameters_schema",
    "globals_of",
    "has_enum",
    "accepts_none",
    "convert",
    "hints",
    "json_fallback",
]

NONE_TYPE = type(None)
_SIMPLE = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))
_SEQUENCES = (list, tuple, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)
_UNIONS = (Union, getattr(types, "UnionType", Union))  # X | Y is 3.10+; setup.cfg allows 3.9
MISSING = object()


class Unsupported(Exception):
    """An annotation the schema cannot express; re-raised as ToolError naming the parameter."""


# ---------------------------------------------------------------- annotation -> schema


def _enum_schema(values: List[Any]) -> Dict[str, Any]:
    """The schema of a Literal or Enum: the values, with their JSON type when they share one."""
    if not values:
        raise Unsupported("an enum needs at least one value")
    for v in values:
        if not isinstance(v, (str, int, float, bool, NONE_TYPE)):
            raise Unsupported(f"enum value {v!r} is not a JSON string, number, boolean or null")
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
    return nullable(schema) if None in values and "type" in schema else schema


def nullable(schema: Dict[str, Any]) -> Dict[str, Any]:
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


def schema_of(ann: Any) -> Dict[str, Any]:
    """The JSON schema of one resolved annotation (raises :class:`Unsupported`)."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        schema = schema_of(args[0])
        text = next((m for m in ann.__metadata__ if isinstance(m, str)), None)
        return {**schema, "description": text} if text else schema
    if ann is Any:
        return {}
    if ann is None or ann is NONE_TYPE:
        return {"type": "null"}
    for cls, kind in _SIMPLE:
        if ann is cls:
            return {"type": kind}
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return _enum_schema([member.value for member in ann])
    if origin is Literal:
        return _enum_schema([a.value if isinstance(a, enum.Enum) else a for a in args])
    if origin in _UNIONS:
        members = [a for a in args if a is not NONE_TYPE]
        schema = schema_of(members[0]) if len(members) == 1 else {"anyOf": [schema_of(a) for a in members]}
        return nullable(schema) if len(members) < len(args) else schema
    if ann in _SEQUENCES or origin in _SEQUENCES:
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            raise Unsupported("fixed-length tuples are not supported; use tuple[X, ...] or list[X]")
        return {"type": "array", "items": schema_of(args[0])} if args else {"type": "array"}
    if ann in _MAPPINGS or origin in _MAPPINGS:
        if not args:
            return {"type": "object"}
        if args[0] is not str:
            raise Unsupported(f"dict keys must be str (JSON object keys), got {_name(args[0])}")
        return {"type": "object", "additionalProperties": schema_of(args[1])}
    raise Unsupported(
        f"unsupported annotation {_name(ann)} (supported: str, int, float, bool, None, Optional, unions, "
        "Literal, Enum, list/Sequence/tuple[X, ...], dict[str, X], Annotated, Any)"
    )


def strict_check(schema: Dict[str, Any]) -> None:
    """Raise :class:`Unsupported` for what OpenAI's strict mode rejects: untyped values, free-form objects."""
    if "anyOf" in schema:
        for sub in schema["anyOf"]:
            strict_check(sub)
        return
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if kinds == [None] and "enum" not in schema:
        raise Unsupported("strict mode needs a concrete type (Any is not allowed)")
    if "object" in kinds:
        raise Unsupported("strict mode does not allow free-form objects (dict)")
    if "array" in kinds:
        if "items" not in schema:
            raise Unsupported("strict mode needs the array's item type (list[X])")
        strict_check(schema["items"])


def _name(ann: Any) -> str:
    return ann.__name__ if isinstance(ann, type) else repr(ann).replace("typing.", "")


def globals_of(fn: Any) -> Dict[str, Any]:
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
    """``value`` as JSON (Enum members as their values), or MISSING when it has no JSON form."""
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return MISSING


def parameters_schema(
    fn: Any,
    signature: inspect.Signature,
    docs: Mapping[str, str],
    *,
    strict: bool,
    localns: Optional[Mapping[str, Any]],
    where: str,
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The ``parameters`` schema of ``fn`` and the resolved annotation of each parameter.

    Args:
        fn: the function (its module globals resolve the annotations).
        signature: its signature.
        docs: parameter descriptions from its docstring.
        strict: build an OpenAI strict-mode schema.
        localns: extra names for resolving annotations (the decorating scope's locals).
        where: the error message prefix naming the function.

    Raises:
        ToolError: ``*args``/``**kwargs``, positional-only, unannotated, unresolvable
            or unsupported parameters.
    """
    globalns = globals_of(fn)
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
            schema = schema_of(ann)
            if strict:
                strict_check(schema)
        except Unsupported as exc:
            raise ToolError(f"{at}: {exc}") from None
        if strict and has_default:
            schema = nullable(schema)  # strict mode requires every key; null stands for "the default"
        if docs.get(p.name) and "description" not in schema:
            schema["description"] = docs[p.name]
        if has_default and not strict:
            default = _json_value(p.default)
            if default is not MISSING:
                schema["default"] = default
        if strict or not has_default:
            required.append(p.name)
        properties[p.name] = schema
        arg_types[p.name] = ann
    parameters = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return parameters, arg_types


# ---------------------------------------------------------------- JSON value -> annotation


def has_enum(ann: Any) -> bool:
    """Whether ``ann`` mentions an Enum class anywhere (outside a Literal)."""
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return True
    return typing.get_origin(ann) is not Literal and any(has_enum(a) for a in typing.get_args(ann))


def accepts_none(ann: Any) -> bool:
    """Whether ``None`` is a valid value of ``ann``."""
    if ann is Any or ann is NONE_TYPE or ann is None:
        return True
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return accepts_none(args[0])
    return (origin in _UNIONS and any(accepts_none(a) for a in args)) or (origin is Literal and None in args)


def convert(ann: Any, value: Any) -> Any:
    """Turn Enum values (also inside Optional, unions, lists and dicts) into members (raises ValueError)."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return convert(args[0], value)
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        if isinstance(value, ann):
            return value
        try:
            return ann(value)
        except ValueError:
            raise ValueError(f"{value!r} is not one of {[m.value for m in ann]!r}") from None
    if origin in _UNIONS:
        if value is None and NONE_TYPE in args:
            return None
        error: Optional[ValueError] = None
        for member in (a for a in args if has_enum(a)):
            try:
                return convert(member, value)
            except ValueError as exc:
                error = error or exc
        if error is not None and all(has_enum(a) or a is NONE_TYPE for a in args):
            raise error
        return value  # a non-Enum member of the union may take it; no deeper validation
    if (ann in _SEQUENCES or origin in _SEQUENCES) and args and isinstance(value, list):
        return [convert(args[0], item) for item in value]
    if (ann in _MAPPINGS or origin in _MAPPINGS) and len(args) == 2 and isinstance(value, dict):
        return {key: convert(args[1], item) for key, item in value.items()}
    return value


def hints(handler: Callable[..., Any]) -> Mapping[str, Any]:
    """The resolved annotations of a plain handler, or ``{}`` when they cannot be resolved."""
    try:
        return typing.get_type_hints(handler, include_extras=True)
    except Exception:  # an unresolvable annotation on a plain handler: skip Enum conversion
        return {}


def json_fallback(value: Any) -> Any:
    """``json.dumps(default=...)`` for handler results: Enum values, sets as lists, else ``str``."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        # str() would send "b'...'": the text is the caller's to decode (or encode as base64).
        raise TypeError(f"{type(value).__name__} has no JSON form: decode it to str (or base64-encode it) first")
    return list(value) if isinstance(value, (set, frozenset)) else str(value)
