"""Dataclasses, attrs classes and TypedDicts <-> JSON for structured output (pure: no I/O).

Private to :mod:`promptkit._structured`.

* :func:`class_schema` derives the JSON schema of such a class: one object
  per class, nested classes in ``$defs`` (a class that refers back to the
  root uses ``"$ref": "#"``), the fields of the annotations that
  :mod:`promptkit._schema` knows (str, int, float, bool, None, Optional and
  unions, Literal, Enum, lists and ``tuple[X, ...]``, ``dict[str, X]``,
  ``Annotated[X, "description"]``, Any) plus nested classes. A field with a
  default is optional, with its ``default`` when that has a JSON form; a
  description comes from ``Annotated`` or ``metadata={"description": ...}``.
* :func:`build` turns a parsed JSON value into an instance, checking each
  value against its annotation (ints are not bools, a float with an integral
  value is an int, Enum values become members). Keys the class does not
  have are ignored. Errors name the path: ``$.address.zip: expected an
  integer, got the string '1x'``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import functools
import inspect
import json
import sys
import types
import typing
from typing import Any, Dict, List, Literal, NamedTuple, Optional, Tuple, Union

import attrs

from ._schema import MISSING, Unsupported, nullable, schema_of
from ._schema import _json_value as json_value  # a default's JSON form, as tools send it
from ._shapes import describe
from ._structured_schema import json_equal

__all__ = ["Invalid", "class_kind", "class_schema", "build"]

_NONE = type(None)
_UNIONS = (Union, getattr(types, "UnionType", Union))
_SEQUENCES = (list, tuple, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)
_MAX_ERRORS = 8  # errors quoted in one message


class Invalid(Exception):
    """The value does not fit the class; ``messages`` says where and why."""

    def __init__(self, messages: List[str]) -> None:
        super().__init__("; ".join(messages[:_MAX_ERRORS]) + ("; ..." if len(messages) > _MAX_ERRORS else ""))
        self.messages = messages


class _Field(NamedTuple):
    key: str  # the JSON key, which is also the constructor's argument
    annotation: Any
    has_default: bool
    default: Any  # MISSING when there is none, or when a factory makes it
    description: Optional[str]


def class_kind(spec: Any) -> Optional[str]:
    """``"pydantic"``, ``"dataclass"``, ``"attrs"``, ``"typeddict"``, or ``None`` for anything else."""
    if not isinstance(spec, type):
        return None
    pydantic = sys.modules.get("pydantic")  # a pydantic model implies pydantic was imported
    if pydantic is not None and issubclass(spec, pydantic.BaseModel):
        return "pydantic"
    if dataclasses.is_dataclass(spec):
        return "dataclass"
    if attrs.has(spec):
        return "attrs"
    if issubclass(spec, dict) and hasattr(spec, "__required_keys__"):
        return "typeddict"
    return None


def _hints(cls: type) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:  # NameError, TypeError from a forward reference that does not resolve
        raise Unsupported(f"cannot resolve the annotations of {cls.__name__}: {exc}") from None


@functools.lru_cache(maxsize=256)
def _fields(cls: type) -> Tuple[_Field, ...]:
    """The fields that the constructor takes (cached: parsing a reply looks them up again)."""
    kind, hints = class_kind(cls), _hints(cls)
    out: List[_Field] = []
    if kind == "dataclass":
        for f in dataclasses.fields(cls):
            if f.init:
                has_value = f.default is not dataclasses.MISSING
                has_default = has_value or f.default_factory is not dataclasses.MISSING
                default = f.default if has_value else MISSING
                out.append(_Field(f.name, hints.get(f.name, f.type), has_default, default, f.metadata.get("description")))
    elif kind == "attrs":
        for a in attrs.fields(cls):
            if a.init:
                has_default = a.default is not attrs.NOTHING
                factory = isinstance(a.default, attrs.Factory)  # type: ignore[arg-type]  # a class, typed as a function
                default = a.default if has_default and not factory else MISSING
                key = a.alias or a.name
                out.append(_Field(key, hints.get(a.name, a.type), has_default, default, a.metadata.get("description")))
    else:  # TypedDict
        required: typing.FrozenSet[str] = getattr(cls, "__required_keys__", frozenset())
        out = [_Field(k, ann, k not in required, MISSING, None) for k, ann in hints.items()]
    return tuple(out)


def _doc(cls: type) -> Optional[str]:
    doc = cls.__dict__.get("__doc__")
    # A dataclass without a docstring gets its signature as one: that describes nothing.
    if not doc or (dataclasses.is_dataclass(cls) and doc.startswith(cls.__name__ + "(")):
        return None
    return inspect.cleandoc(doc)


class _Deriver:
    """Builds one schema, with a ``$defs`` entry per nested class."""

    def __init__(self, root: type) -> None:
        self.refs: Dict[type, str] = {root: "#"}
        self.defs: Dict[str, Any] = {}

    def object_schema(self, cls: type) -> Dict[str, Any]:
        properties: Dict[str, Any] = {}
        required: List[str] = []
        for field in _fields(cls):
            try:
                    prop = self.type_schema(field.annotation)
            except Unsupported as exc:
                raise Unsupported(f"{cls.__name__}.{field.key}: {exc}") from None
            if field.description and "description" not in prop:
                prop = {**prop, "description": field.description}
            default = json_value(field.default) if field.default is not MISSING else MISSING
            if default is not MISSING:
                prop = {**prop, "default": default}
            properties[field.key] = prop
            if not field.has_default:
                required.append(field.key)
        schema: Dict[str, Any] = {"type": "object", "properties": properties, "required": required}
        doc = _doc(cls)
        return {**schema, "description": doc} if doc else schema

    def ref(self, cls: type) -> Dict[str, Any]:
        if cls not in self.refs:
            name, n = cls.__name__, 2
            while name in self.defs:
                name, n = f"{cls.__name__}{n}", n + 1
            self.refs[cls] = f"#/$defs/{name}"
            self.defs[name] = {}  # reserved first: the class may refer to itself
            self.defs[name] = self.object_schema(cls)
        return {"$ref": self.refs[cls]}

    def type_schema(self, ann: Any) -> Dict[str, Any]:
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        if origin is typing.Annotated:
            schema = self.type_schema(args[0])
            text = next((m for m in ann.__metadata__ if isinstance(m, str)), None)
            return {**schema, "description": text} if text else schema
        kind = class_kind(ann)
        if kind == "pydantic":
            raise Unsupported("a pydantic model inside a dataclass, attrs class or TypedDict is not supported")
        if kind is not None:
            return self.ref(ann)
        if origin in _UNIONS:
            members = [a for a in args if a is not _NONE]
            schema = self.type_schema(members[0]) if len(members) == 1 else {"anyOf": [self.type_schema(a) for a in members]}
            return nullable(schema) if len(members) < len(args) else schema
        if (ann in _SEQUENCES or origin in _SEQUENCES) and args and not (origin is tuple and args[-1] is not Ellipsis):
            return {"type": "array", "items": self.type_schema(args[0])}
        if (ann in _MAPPINGS or origin in _MAPPINGS) and len(args) == 2 and args[0] is str:
            return {"type": "object", "additionalProperties": self.type_schema(args[1])}
        return schema_of(ann)  # simple types, Enum, Literal, Any; raises Unsupported for the rest


def class_schema(cls: type) -> Dict[str, Any]:
    """The JSON schema of a dataclass, attrs class or TypedDict (raises :class:`Unsupported`)."""
    deriver = _Deriver(cls)
    schema = deriver.object_schema(cls)
    return {**schema, "$defs": deriver.defs} if deriver.defs else schema


# ---------------------------------------------------------------- JSON value -> instance


def _expected(ann: Any) -> str:
    for cls, text in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string")):
        if ann is cls:
            return text
    if ann is None or ann is _NONE:
        return "null"
    if typing.get_origin(ann) is Literal:
        return "one of " + ", ".join(json.dumps(a.value if isinstance(a, enum.Enum) else a) for a in typing.get_args(ann))
    return getattr(ann, "__name__", None) or repr(ann).replace("typing.", "")


def _scalar(ann: Any, value: Any, path: str) -> Any:
    if ann is bool and isinstance(value, bool):
        return value
    if ann is int and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    if ann is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if ann is str and isinstance(value, str):
        return value
    if (ann is None or ann is _NONE) and value is None:
        return None
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        for member in ann:
            if json_equal(member.value, value):
                return member
        choices = ", ".join(json.dumps(m.value) for m in ann)
        raise Invalid([f"{path}: expected one of {choices} ({ann.__name__}), got {describe(value)}"])
    raise Invalid([f"{path}: expected {_expected(ann)}, got {describe(value)}"])


def build(ann: Any, value: Any, path: str = "$") -> Any:
    """``value`` (parsed JSON) as ``ann`` says; raises :class:`Invalid` naming every path that does not fit."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return build(args[0], value, path)
    if ann is Any:
        return value
    if class_kind(ann) in ("dataclass", "attrs", "typeddict"):
        return _build_object(ann, value, path)
    if origin is Literal:
        for choice in args:
            if json_equal(choice.value if isinstance(choice, enum.Enum) else choice, value):
                return choice
        raise Invalid([f"{path}: expected {_expected(ann)}, got {describe(value)}"])
    if origin in _UNIONS:
        if value is None and _NONE in args:
            return None
        for member in (a for a in args if a is not _NONE):
            try:
                return build(member, value, path)
            except Invalid:
                continue
        raise Invalid([f"{path}: expected {' or '.join(_expected(a) for a in args)}, got {describe(value)}"])
    if ann in _SEQUENCES or origin in _SEQUENCES:
        if not isinstance(value, list):
            raise Invalid([f"{path}: expected an array, got {describe(value)}"])
        items = value if not args else _collect(args[0], enumerate(value), path, "[{}]")
        return tuple(items) if (origin or ann) is tuple else list(items)
    if ann in _MAPPINGS or origin in _MAPPINGS:
        if not isinstance(value, dict):
            raise Invalid([f"{path}: expected an object, got {describe(value)}"])
        if len(args) != 2:
            return dict(value)
        return dict(zip(value, _collect(args[1], value.items(), path, ".{}")))
    return _scalar(ann, value, path)


def _collect(ann: Any, pairs: Any, path: str, step: str) -> List[Any]:
    out: List[Any] = []
    errors: List[str] = []
    for key, item in pairs:
        try:
            out.append(build(ann, item, path + step.format(key)))
        except Invalid as exc:
            errors.extend(exc.messages)
    if errors:
        raise Invalid(errors)
    return out


def _build_object(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise Invalid([f"{path}: expected an object ({cls.__name__}), got {describe(value)}"])
    kwargs: Dict[str, Any] = {}
    errors: List[str] = []
    for field in _fields(cls):
        if field.key not in value:
            if not field.has_default:
                errors.append(f"{path}.{field.key}: missing (a required field of {cls.__name__})")
            continue
        try:
            kwargs[field.key] = build(field.annotation, value[field.key], f"{path}.{field.key}")
        except Invalid as exc:
            errors.extend(exc.messages)
    if errors:
        raise Invalid(errors)
    if class_kind(cls) == "typeddict":
        return kwargs
    try:
        return cls(**kwargs)
    except Exception as exc:  # the class's own validators, __post_init__ checks
        raise Invalid([f"{path}: {cls.__name__}(...) raised {type(exc).__name__}: {exc}"]) from None
