"""Structured output: what ``response_format=`` asks for, how each dialect sends it, and the checked result.

Pure: no threads, no I/O. :meth:`OutputFormat.create` turns what a user
passes into a frozen :class:`OutputFormat`; the dialects send
:meth:`~OutputFormat.chat_format`, :meth:`~OutputFormat.responses_format` or
:meth:`~OutputFormat.anthropic_tool`; :meth:`~OutputFormat.parse` turns the
finished reply into the validated value; :class:`PartialParser` gives the
value so far while the reply streams.

**Strict mode.** OpenAI's strict structured outputs need every object to
list all its properties as required and to have ``additionalProperties:
false``. A pydantic model's schema is made strict as openai-python's
``to_strict_json_schema`` does (the same output), and so is the schema
derived from a dataclass, attrs class or TypedDict: all fields become
required (a field with a default keeps it as a ``default`` hint; the model
sends a value). A plain JSON-schema dict is made strict only when it already
requires every property (``additionalProperties: false`` is added); its
optional properties are not forced. Strict mode is off (``strict`` is
``False``) when the schema has a free-form object (``dict[str, X]``, an
object without ``properties``) or a value of any type, which strict mode
cannot express.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any, Callable, Dict, List, cast

import attrs

from ._errors import ConfigurationError, OutputValidationError
from ._partial_json import PartialParser, strip_fence
from ._shapes import describe
from ._structured_schema import TYPED_KEYS, check_refs, resolve, schema_validator, strict_form
from ._structured_types import Invalid, build, class_kind, class_schema

__all__ = ["OutputFormat", "PartialParser"]

_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}
_ACCEPTED = (
    "a pydantic model class, a dataclass, an attrs class, a TypedDict, a JSON schema dict "
    '({"type": "object", "properties": {...}}), or an OpenAI response_format dict '
    '({"type": "json_schema", "json_schema": {"name": ..., "schema": ...}} or {"type": "json_object"})'
)
_TOOL_DESCRIPTION = "Give your answer as this tool's input, which must match its schema."


def _safe_name(text: Any) -> str:
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(text or ""))[:64]
    return name or "response"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load(text: str) -> Any:
    """The JSON value of a reply (a surrounding ```json fence is allowed); raises ValueError."""
    body = strip_fence(text)
    if not body:
        raise ValueError("the reply is empty")
    return json.loads(body, parse_constant=_reject_constant)


def _path(loc: Any) -> str:
    """A pydantic error location as a path: ``("tags", 1)`` is ``$.tags[1]``."""
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def _pydantic_validator(model: Any) -> Callable[[str], Any]:
    pydantic = importlib.import_module("pydantic")

    def validate(text: str) -> Any:
        try:
            return model.model_validate_json(strip_fence(text))
        except pydantic.ValidationError as exc:
            problems = exc.errors(include_url=False)
            if problems and problems[0]["type"] == "json_invalid":
                raise ValueError(problems[0]["msg"]) from None
            raise Invalid([f"{_path(e['loc'])}: {e['msg']}" for e in problems]) from None

    return validate


def _value_validator(convert: Callable[[Any], Any]) -> Callable[[str], Any]:
    def validate(text: str) -> Any:
        return convert(_load(text))

    return validate


def _schema_validate(schema: Dict[str, Any]) -> Callable[[str], Any]:
    return _value_validator(_check_with(schema_validator(schema)))


def _check_with(check: Callable[[Any], List[str]]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        errors = check(value)
        if errors:
            raise Invalid(errors)
        return value

    return convert


@attrs.frozen
class OutputFormat:
    """A structured output format: the schema sent to the server and the check of the reply.

    Make one with :meth:`create`. Attributes:

    * ``name``: the schema's name (``^[a-zA-Z0-9_-]{1,64}$``), from the class
      name, the schema's ``title``, or the response_format dict.
    * ``schema``: the JSON schema sent (its strict form when ``strict``).
    * ``strict``: whether the server is asked to enforce the schema exactly.
    * ``json_object_only``: ``{"type": "json_object"}``: any JSON object, no schema.
    * ``spec``: what the user passed.
    """

    name: str
    schema: Dict[str, Any] = attrs.field(hash=False)
    strict: bool
    json_object_only: bool = False
    spec: Any = attrs.field(default=None, eq=False, hash=False, repr=False)
    _validate: Callable[[str], Any] = attrs.field(kw_only=True, eq=False, hash=False, repr=False, alias="validate")

    @classmethod
    def create(cls, spec: Any) -> "OutputFormat":
        """The format for ``response_format=spec``; raises :class:`~promptkit.ConfigurationError` before any I/O.

        ``spec`` is a pydantic (v2) model class, a dataclass, an attrs class,
        a TypedDict, a JSON schema dict, or an OpenAI ``response_format`` dict
        (``{"type": "json_schema", "json_schema": {...}}``, the Responses API's
        flat ``{"type": "json_schema", "name": ..., "schema": ...}``, or
        ``{"type": "json_object"}``), which is sent as given.
        """
        if isinstance(spec, OutputFormat):
            return spec
        if isinstance(spec, dict):
            return cls._from_dict(spec)
        kind = class_kind(spec)
        if kind is None or not isinstance(spec, type):
            got = f"the class {spec.__name__}" if isinstance(spec, type) else describe(spec)
            raise ConfigurationError(f"response_format must be {_ACCEPTED}; got {got}")
        try:
            schema: Dict[str, Any] = cast(Any, spec).model_json_schema() if kind == "pydantic" else class_schema(spec)
        except Exception as exc:  # Unsupported, or pydantic's PydanticSchemaGenerationError and kin
            raise ConfigurationError(f"response_format={spec.__name__}: no JSON schema: {exc}") from None
        if kind == "pydantic":
            validate = _pydantic_validator(spec)
        else:
            validate = _value_validator(lambda value: build(spec, value))
        strict = strict_form(schema, all_required=False)
        return cls._checked(_safe_name(spec.__name__), strict or schema, strict is not None, spec, validate)

    @classmethod
    def _from_dict(cls, spec: Dict[str, Any]) -> "OutputFormat":
        kind = spec.get("type")
        if kind == "json_object" and set(spec) == {"type"}:
            check = _check_with(lambda value: [] if isinstance(value, dict) else [f"$: expected an object, got {describe(value)}"])
            return cls("json_object", {"type": "object"}, False, True, spec=spec, validate=_value_validator(check))
        if kind == "json_schema":
            wrapped = spec.get("json_schema", spec)
            wrapped = wrapped if isinstance(wrapped, dict) else {}
            name, schema, strict = wrapped.get("name"), wrapped.get("schema"), wrapped.get("strict") or False
            if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
                raise ConfigurationError(f"response_format: the json_schema name must match {_NAME_RE.pattern}, got {name!r}")
            if not isinstance(schema, dict) or not isinstance(strict, bool):
                raise ConfigurationError("response_format: json_schema needs a schema dict (and strict, if given, a bool)")
            return cls._checked(name, schema, strict, spec, _schema_validate(schema))
        if kind == "text":
            raise ConfigurationError('response_format={"type": "text"} asks for no structure: leave response_format out')
        kinds = kind if isinstance(kind, list) else [kind]
        known = all(isinstance(k, str) and k in _TYPES for k in kinds)
        if not known and not any(key in spec for key in TYPED_KEYS[1:] + ("properties",)):
            got = f"type {kind!r}" if "type" in spec else f"keys {sorted(map(str, spec))[:5]} and no type"
            raise ConfigurationError(f"response_format must be {_ACCEPTED}; got a dict with {got}")
        strict = strict_form(spec, all_required=True)
        # Checked against the user's own schema: a server that ignores strict may add keys it allows.
        name = _safe_name(spec.get("title"))
        return cls._checked(name, strict or spec, strict is not None, spec, _schema_validate(spec))

    @classmethod
    def _checked(
        cls, name: str, schema: Dict[str, Any], strict: bool, spec: Any, validate: Callable[[str], Any]
    ) -> "OutputFormat":
        """The format, once the schema's references resolve and its root is an object."""
        check_refs(schema, schema)
        root = resolve(schema, schema["$ref"]) if isinstance(schema.get("$ref"), str) else schema
        if not isinstance(root, dict) or root.get("type") != "object":
            raise ConfigurationError(
                'response_format: the schema\'s root must be an object ("type": "object"), as OpenAI and Anthropic '
                "require; put a list or a single value in a property of an object"
            )
        return cls(name, schema, strict, spec=spec, validate=validate)

    def parse(self, text: str) -> Any:
        """The validated value of a finished reply: a model, dataclass or attrs instance, or a dict.

        A Markdown fence around the JSON (```` ```json ````) is allowed. A
        pydantic model validates with ``model_validate_json``; a dataclass,
        attrs class or TypedDict is built field by field, each value checked
        against its annotation; a JSON schema dict is checked with
        ``jsonschema`` when it is installed, else with a structural check of
        types, required and extra keys, enums and ``anyOf``/``allOf``
        (formats, patterns and numeric bounds are not checked).

        Raises:
            OutputValidationError: the reply is not JSON or does not fit.
        """
        try:
            return self._validate(text)
        except Invalid as exc:
            raise OutputValidationError(f"the reply does not match {self.name}", raw=text, errors=str(exc)) from None
        except ValueError as exc:
            raise OutputValidationError("the reply is not valid JSON", raw=text, errors=str(exc)) from None

    def chat_format(self) -> Dict[str, Any]:
        """The Chat Completions ``response_format``."""
        if self.json_object_only:
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.schema, "strict": self.strict}}

    def responses_format(self) -> Dict[str, Any]:
        """The Responses API's ``text.format``."""
        if self.json_object_only:
            return {"type": "json_object"}
        return {"type": "json_schema", "name": self.name, "schema": self.schema, "strict": self.strict}

    def anthropic_tool(self) -> Dict[str, Any]:
        """An Anthropic tool whose input is the answer; force it with ``{"type": "tool", "name": name}``.

        Works with every Claude model and Anthropic-compatible server, but not
        with extended thinking (which allows only ``tool_choice`` auto or none).
        """
        description = self.schema.get("description") or _TOOL_DESCRIPTION
        return {"name": self.name, "description": description, "input_schema": self.schema}

    def anthropic_output_config(self) -> Dict[str, Any]:
        """Anthropic's native structured output: the ``output_config`` of a Messages request.

        Generally available (no beta header) on Claude Sonnet 4.5, Opus 4.5,
        Haiku 4.5 and later; older models reject it. Needs a strict schema.

        Raises:
            ConfigurationError: a json_object format, or a schema that cannot be strict.
        """
        if self.json_object_only or not self.strict:
            raise ConfigurationError(
                f"Anthropic's output_config needs a strict schema, and {self.name} is not one: use the forced tool"
            )
        return {"format": {"type": "json_schema", "schema": self.schema}}
