"""Tests for promptkit._structured (with _structured_types and _structured_schema): OutputFormat.

Every accepted ``response_format`` kind and the errors for the rest; the strict
schema, compared with openai-python's own ``to_strict_json_schema`` for
pydantic models; parsing and validation; the three dialect forms.

This module uses postponed annotations on purpose: the dataclasses and attrs
classes below have string annotations that must resolve in this module.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import subprocess
import sys
from typing import Annotated, Any, Dict, List, Literal, Optional, Tuple, TypedDict

import attrs
import pydantic
import pytest

from promptkit._errors import ConfigurationError, OutputValidationError, PromptKitError
from promptkit._structured import OutputFormat

# openai-python's own strict-schema function: what promptkit must produce for a pydantic model.
openai_pydantic = pytest.importorskip("openai.lib._pydantic")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


# ---------------------------------------------------------------- pydantic models


class Address(pydantic.BaseModel):
    street: str
    zip_code: Optional[int] = None


class Person(pydantic.BaseModel):
    """A person in the story."""

    name: str = pydantic.Field(description="the full name")
    age: int = 30
    color: Color
    tags: List[str] = []
    home: Address
    previous: Optional[Address] = None
    kind: Literal["hero", "villain"] = "hero"
    pair: Tuple[int, str] = (1, "a")


class Tree(pydantic.BaseModel):
    value: int
    children: List[Tree] = []


class WithDict(pydantic.BaseModel):
    counts: Dict[str, int]


class Anything(pydantic.BaseModel):
    payload: Any


@pytest.mark.parametrize("model", [Person, Tree, Address], ids=lambda m: m.__name__)
def test_pydantic_strict_schema_is_openai_pythons(model: Any) -> None:
    fmt = OutputFormat.create(model)
    assert fmt.name == model.__name__
    assert fmt.strict is True
    assert fmt.schema == openai_pydantic.to_strict_json_schema(model)
    assert fmt.json_object_only is False


@pytest.mark.parametrize("model", [WithDict, Anything], ids=lambda m: m.__name__)
def test_pydantic_schema_that_cannot_be_strict_is_sent_as_is(model: Any) -> None:
    # openai-python would send strict: true here, and the server rejects the schema (a
    # dict becomes an object that allows no keys at all, Any has no type).
    fmt = OutputFormat.create(model)
    assert fmt.strict is False
    assert fmt.schema == model.model_json_schema()


def test_pydantic_parse() -> None:
    fmt = OutputFormat.create(Person)
    text = json.dumps({"name": "Ada", "color": "blue", "home": {"street": "Main", "zip_code": 1}, "pair": [2, "b"]})
    person = fmt.parse(text)
    assert isinstance(person, Person)
    assert person.color is Color.BLUE and person.home.zip_code == 1 and person.age == 30
    assert fmt.parse("```json\n" + text + "\n```") == person


def test_pydantic_validation_errors_name_every_path() -> None:
    fmt = OutputFormat.create(Person)
    with pytest.raises(OutputValidationError) as info:
        fmt.parse('{"name": 3, "color": "green", "home": {}, "tags": ["a", 1]}')
    err = info.value
    for path in ("$.name", "$.color", "$.home.street", "$.tags[1]"):
        assert path in err.errors
    assert str(err).startswith("the reply does not match Person: $.name")
    assert "(the reply starts: '{\"name\": 3, " in str(err)
    with pytest.raises(OutputValidationError, match="the reply is not valid JSON: .*EOF") as info:
        fmt.parse('{"name": "Ad')
    assert info.value.raw == '{"name": "Ad'


def test_pydantic_generic_names_are_made_valid() -> None:
    T = pydantic.create_model("Page[int]", items=(List[int], ...))
    assert OutputFormat.create(T).name == "Page_int_"


# ---------------------------------------------------------------- dataclasses, attrs, TypedDict


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


@dataclasses.dataclass
class Shape:
    """A shape on the canvas."""

    name: Annotated[str, "what to call it"]
    corners: List[Point]
    color: Color = Color.RED
    label: Optional[str] = None
    kind: Literal["polygon", "curve"] = "polygon"
    scale: Tuple[float, ...] = (1.0,)
    children: List[Shape] = dataclasses.field(default_factory=list)
    note: str = dataclasses.field(default="", metadata={"description": "a remark"})
    cache: int = dataclasses.field(default=0, init=False)


SHAPE_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "description": "A shape on the canvas.",
    "properties": {
        "name": {"type": "string", "description": "what to call it"},
        "corners": {"type": "array", "items": {"$ref": "#/$defs/Point"}},
        "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
        "label": {"type": ["string", "null"]},
        "kind": {"type": "string", "enum": ["polygon", "curve"], "default": "polygon"},
        "scale": {"type": "array", "items": {"type": "number"}, "default": [1.0]},
        "children": {"type": "array", "items": {"$ref": "#"}},
        "note": {"type": "string", "description": "a remark", "default": ""},
    },
    "required": ["name", "corners", "color", "label", "kind", "scale", "children", "note"],
    "additionalProperties": False,
    "$defs": {
        "Point": {
            "type": "object",
            "properties": {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}},
            "required": ["x", "y"],
            "additionalProperties": False,
        }
    },
}


def test_dataclass_schema() -> None:
    fmt = OutputFormat.create(Shape)
    assert (fmt.name, fmt.strict) == ("Shape", True)
    assert fmt.schema == SHAPE_SCHEMA


def test_dataclass_parse() -> None:
    fmt = OutputFormat.create(Shape)
    value = {
        "name": "tri",
        "corners": [{"x": 0, "y": 0}, {"x": 1.5, "y": 2}],
        "color": "blue",
        "label": None,
        "kind": "curve",
        "scale": [2, 3.5],
        "children": [{"name": "dot", "corners": [{"x": 1}]}],  # defaults fill what a lax server left out
        "note": "n",
        "unknown": "ignored",
    }
    shape = fmt.parse(json.dumps(value))
    assert shape == Shape(
        name="tri",
        corners=[Point(0.0, 0.0), Point(1.5, 2.0)],
        color=Color.BLUE,
        label=None,
        kind="curve",
        scale=(2.0, 3.5),
        children=[Shape(name="dot", corners=[Point(1.0)])],
        note="n",
    )
    assert isinstance(shape.corners[0].x, float) and isinstance(shape.scale, tuple)


def test_dataclass_errors_name_every_path() -> None:
    fmt = OutputFormat.create(Shape)
    bad = {"name": 1, "corners": [{"x": "1"}, {}], "color": "green", "label": 3, "kind": "line", "scale": "x"}
    with pytest.raises(OutputValidationError) as info:
        fmt.parse(json.dumps(bad))
    assert info.value.errors == (
        "$.name: expected a string, got int 1; "
        "$.corners[0].x: expected a number, got the string '1'; "
        "$.corners[1].x: missing (a required field of Point); "
        '$.color: expected one of "red", "blue" (Color), got the string \'green\'; '
        "$.label: expected a string or null, got int 3; "
        '$.kind: expected one of "polygon", "curve", got the string \'line\'; '
        "$.scale: expected an array, got the string 'x'"
    )
    with pytest.raises(OutputValidationError, match=r"\$: expected an object \(Shape\), got a list of 0 items"):
        fmt.parse("[]")


@dataclasses.dataclass
class Checked:
    count: int
    flag: bool = False

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must not be negative")


def test_dataclass_scalars_are_checked_exactly() -> None:
    fmt = OutputFormat.create(Checked)
    assert fmt.parse('{"count": 3.0, "flag": true}') == Checked(3, True)  # an integral float is an int
    for text, message in [
        ('{"count": true}', "$.count: expected an integer, got bool True"),
        ('{"count": 1.5}', "$.count: expected an integer, got float 1.5"),
        ('{"count": 1, "flag": 1}', "$.flag: expected a boolean, got int 1"),
        ('{"count": -1}', "$: Checked(...) raised ValueError: count must not be negative"),
    ]:
        with pytest.raises(OutputValidationError) as info:
            fmt.parse(text)
        assert info.value.errors == message


@attrs.define
class Item:
    """An item."""

    title: str = attrs.field(metadata={"description": "the title"})
    _secret: str = "s"
    quantity: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    labels: Dict[str, str] = attrs.Factory(dict)


def test_attrs_class() -> None:
    fmt = OutputFormat.create(Item)
    assert fmt.strict is False  # a dict[str, str] field is a free-form object
    assert fmt.schema == {
        "type": "object",
        "description": "An item.",
        "properties": {
            "title": {"type": "string", "description": "the title"},
            "secret": {"type": "string", "default": "s"},  # the constructor's name for _secret
            "quantity": {"type": "integer", "default": 1},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["title"],
    }
    assert fmt.parse('{"title": "t", "secret": "x", "labels": {"a": "b"}}') == Item("t", "x", 1, {"a": "b"})
    with pytest.raises(OutputValidationError, match=r"\$: Item\(\.\.\.\) raised ValueError: 'quantity' must be >= 1"):
        fmt.parse('{"title": "t", "quantity": 0}')
    with pytest.raises(OutputValidationError, match=r"\$\.labels\.a: expected a string, got int 1"):
        fmt.parse('{"title": "t", "labels": {"a": 1}}')


class Movie(TypedDict, total=False):
    title: str
    year: int


class Review(TypedDict):
    movie: Movie
    stars: Literal[1, 2, 3]


def test_typeddict() -> None:
    fmt = OutputFormat.create(Review)
    assert fmt.strict is True
    assert fmt.schema["required"] == ["movie", "stars"]
    assert fmt.schema["$defs"]["Movie"]["required"] == ["title", "year"]  # strict: all required
    assert fmt.parse('{"movie": {"title": "M"}, "stars": 2}') == {"movie": {"title": "M"}, "stars": 2}
    with pytest.raises(OutputValidationError, match=r"\$\.stars: expected one of 1, 2, 3, got bool True"):
        fmt.parse('{"movie": {}, "stars": true}')


@dataclasses.dataclass
class HasSet:
    items: set  # type: ignore[type-arg]


@dataclasses.dataclass
class HasPydantic:
    address: Address


@dataclasses.dataclass
class HasBadName:
    other: "NoSuchClass"  # type: ignore[name-defined]  # noqa: F821


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (HasSet, r"response_format=HasSet: no JSON schema: HasSet\.items: unsupported annotation set"),
        (HasPydantic, r"HasPydantic\.address: a pydantic model inside a dataclass"),
        (HasBadName, r"cannot resolve the annotations of HasBadName: name 'NoSuchClass' is not defined"),
    ],
)
def test_classes_that_have_no_schema(spec: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        OutputFormat.create(spec)


def test_name_of_a_class_is_made_valid() -> None:
    Über = dataclasses.make_dataclass("Über" + "x" * 70, [("a", int)])
    assert OutputFormat.create(Über).name == "_ber" + "x" * 60


# ---------------------------------------------------------------- JSON schema dicts


PLAIN = {
    "type": "object",
    "title": "Weather report",
    "properties": {
        "city": {"type": "string"},
        "temps": {"type": "array", "items": {"type": "number"}},
        "sky": {"enum": ["clear", "cloudy"]},
    },
    "required": ["city", "temps", "sky"],
}


def test_schema_dict_that_requires_everything_becomes_strict() -> None:
    fmt = OutputFormat.create(PLAIN)
    assert (fmt.name, fmt.strict) == ("Weather_report", True)
    assert fmt.schema == {**PLAIN, "additionalProperties": False}
    assert "additionalProperties" not in PLAIN  # the user's dict is not changed
    assert fmt.parse('{"city": "Oslo", "temps": [1, 2.5], "sky": "clear"}') == {
        "city": "Oslo", "temps": [1, 2.5], "sky": "clear",
    }  # fmt: skip


def test_schema_dict_with_optional_properties_is_sent_as_written() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["a"]}
    fmt = OutputFormat.create(schema)
    assert (fmt.name, fmt.strict, fmt.schema) == ("response", False, schema)
    assert fmt.parse('{"a": 1, "extra": true}') == {"a": 1, "extra": True}


def validation_errors(schema: Dict[str, Any], value: Any) -> str:
    with pytest.raises(OutputValidationError) as info:
        OutputFormat.create(schema).parse(json.dumps(value))
    return info.value.errors


NESTED = {
    "type": "object",
    "properties": {
        "user": {"$ref": "#/$defs/User"},
        "mode": {"anyOf": [{"type": "integer"}, {"const": "auto"}]},
    },
    "required": ["user", "mode"],
    "additionalProperties": False,
    "$defs": {
        "User": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "role": {"enum": ["admin", "guest"]}},
            "required": ["id", "role"],
            "additionalProperties": False,
        }
    },
}


@pytest.mark.parametrize("backend", ["jsonschema", "fallback"])
def test_schema_dict_validation(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "fallback":
        monkeypatch.setitem(sys.modules, "jsonschema", None)  # as if jsonschema were not installed
    else:
        pytest.importorskip("jsonschema")
    fmt = OutputFormat.create(NESTED)
    assert fmt.parse('{"user": {"id": 1.0, "role": "guest"}, "mode": "auto"}') == {
        "user": {"id": 1.0, "role": "guest"}, "mode": "auto",
    }  # fmt: skip
    for value, path in [
        ({"user": {"id": "1", "role": "admin"}, "mode": 1}, "$.user.id"),
        ({"user": {"id": True, "role": "admin"}, "mode": 1}, "$.user.id"),  # a boolean is not an integer
        ({"user": {"id": 1, "role": "root"}, "mode": 1}, "$.user.role"),
        ({"user": {"id": 1, "role": "admin"}, "mode": "manual"}, "$.mode"),
        ({"user": {"id": 1, "role": "admin", "x": 1}, "mode": 1}, "$.user"),
        ({"user": {"id": 1, "role": "admin"}}, "$"),
    ]:
        assert validation_errors(NESTED, value).startswith(path), value


def test_fallback_check_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    assert validation_errors(NESTED, {"user": {"id": "1", "role": "root", "x": 0}}) == (
        "$.mode: missing (required); $.user.id: expected integer, got the string '1'; "
        "$.user.role: the string 'root' is not one of [\"admin\", \"guest\"]; "
        "$.user.x: not allowed (additionalProperties is false)"
    )
    tuple_schema = {
        "type": "object",
        "properties": {"p": {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "null"}}},
        "allOf": [{"required": ["p"]}],
    }
    assert validation_errors(tuple_schema, {"p": [1, None, 2]}) == (
        "$.p[0]: expected string, got int 1; $.p[2]: expected null, got int 2"
    )
    assert validation_errors(tuple_schema, {}) == "$.p: missing (required)"


def test_invalid_schema_is_a_configuration_error() -> None:
    pytest.importorskip("jsonschema")
    with pytest.raises(ConfigurationError, match="not a valid JSON schema: 'nope' is not valid"):
        OutputFormat.create({"type": "object", "properties": {"a": {"type": "nope"}}})


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"type": "object", "properties": {"m": {"type": "object"}}, "required": ["m"]}, "free-form object"),
        ({"type": "object", "properties": {"m": {"type": "object", "additionalProperties": {"type": "string"}}}, "required": ["m"]}, "dict"),
        ({"type": "object", "properties": {"m": {"description": "anything"}}, "required": ["m"]}, "any type"),
        ({"type": "object", "properties": {"m": {"type": "string"}}}, "optional"),
    ],
)
def test_schemas_that_cannot_be_strict(schema: Dict[str, Any], reason: str) -> None:
    fmt = OutputFormat.create(schema)
    assert fmt.strict is False and fmt.schema == schema, reason


# ---------------------------------------------------------------- OpenAI response_format dicts


def test_chat_completions_response_format_is_taken_as_is() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}  # not strict-compatible: the user's call
    spec = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    fmt = OutputFormat.create(spec)
    assert (fmt.name, fmt.schema, fmt.strict) == ("answer", schema, True)
    assert fmt.chat_format() == spec
    assert fmt.responses_format() == {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
    flat = OutputFormat.create({"type": "json_schema", "name": "answer", "schema": schema})  # the Responses form
    assert (flat.name, flat.strict) == ("answer", False)
    assert flat.parse('{"a": "b"}') == {"a": "b"}


def test_json_object() -> None:
    fmt = OutputFormat.create({"type": "json_object"})
    assert (fmt.name, fmt.json_object_only, fmt.strict) == ("json_object", True, False)
    assert fmt.chat_format() == fmt.responses_format() == {"type": "json_object"}
    assert fmt.anthropic_tool()["input_schema"] == {"type": "object"}
    assert fmt.parse('{"any": ["thing"]}') == {"any": ["thing"]}
    with pytest.raises(OutputValidationError, match=r"\$: expected an object, got a list of 1 items"):
        fmt.parse("[1]")
    with pytest.raises(ConfigurationError, match="output_config needs a strict schema"):
        fmt.anthropic_output_config()


ACCEPTED = "must be a pydantic model class, a dataclass, an attrs class, a TypedDict, a JSON schema dict"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (int, ACCEPTED + r".*; got the class int"),
        ("json", ACCEPTED + r".*; got the string 'json'"),
        (Point(1, 2), ACCEPTED + r".*; got Point"),
        ({"name": "x"}, r"got a dict with keys \['name'\] and no type"),
        ({"type": "xml"}, r"got a dict with type 'xml'"),
        ({"type": "text"}, r"asks for no structure: leave response_format out"),
        ({"type": "array", "items": {"type": "string"}}, r"the schema's root must be an object"),
        ({"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}}, r"name must match"),
        ({"type": "json_schema", "json_schema": {"name": "ok"}}, r"json_schema needs a schema dict"),
        ({"type": "json_schema", "json_schema": {"name": "ok", "schema": {}, "strict": "yes"}}, r"strict, if given, a bool"),
        ({"type": "object", "properties": {"a": {"$ref": "http://example.com/s"}}, "required": ["a"]}, r"only local \$ref"),
    ],
)
def test_what_is_not_accepted(spec: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        OutputFormat.create(spec)


def test_create_is_idempotent() -> None:
    fmt = OutputFormat.create(Point)
    assert OutputFormat.create(fmt) is fmt
    assert OutputFormat.create(Point) == fmt


# ---------------------------------------------------------------- the dialects' forms


def test_dialect_forms() -> None:
    fmt = OutputFormat.create(Point)
    schema = {
        "type": "object",
        "properties": {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}},
        "required": ["x", "y"],
        "additionalProperties": False,
    }
    assert fmt.chat_format() == {"type": "json_schema", "json_schema": {"name": "Point", "schema": schema, "strict": True}}
    assert fmt.responses_format() == {"type": "json_schema", "name": "Point", "schema": schema, "strict": True}
    tool = fmt.anthropic_tool()
    assert tool == {"name": "Point", "description": tool["description"], "input_schema": schema}
    assert "tool's input" in tool["description"]
    assert fmt.anthropic_output_config() == {"format": {"type": "json_schema", "schema": schema}}
    # A class's docstring describes the tool.
    assert OutputFormat.create(Shape).anthropic_tool()["description"] == "A shape on the canvas."
    with pytest.raises(ConfigurationError, match="Item is not one: use the forced tool"):
        OutputFormat.create(Item).anthropic_output_config()


# ---------------------------------------------------------------- the error


def test_output_validation_error() -> None:
    fmt = OutputFormat.create(Point)
    raw = '{"x": "far", "comment": "' + "z" * 100 + '"}'
    with pytest.raises(OutputValidationError) as info:
        fmt.parse(raw)
    err = info.value
    assert isinstance(err, PromptKitError) and isinstance(err, ValueError)
    assert err.raw == raw and err.partial is None
    assert err.errors == "$.x: expected a number, got the string 'far'"
    assert str(err) == (
        "the reply does not match Point: $.x: expected a number, got the string 'far' "
        f"(the reply starts: {raw[:80] + '...'!r})"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the reply is empty"),
        ("  \n", "the reply is empty"),
        ('{"x": NaN}', "NaN is not valid JSON"),
        ('{"x": 1} and more', "Extra data"),
        ("Sure! {}", "Expecting value"),
    ],
)
def test_not_json(text: str, message: str) -> None:
    with pytest.raises(OutputValidationError, match="the reply is not valid JSON: " + message):
        OutputFormat.create(Point).parse(text)


def test_importing_the_module_imports_no_optional_package() -> None:
    code = (
        "import sys, promptkit._structured\n"
        "loaded = [m for m in ('pydantic', 'jiter', 'jsonschema') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
