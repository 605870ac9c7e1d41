"""Tests for promptkit._tools: schema generation, Tool, ToolRegistry and execute().

This module uses postponed annotations on purpose: every ``@tool`` below has
string annotations that promptkit must resolve in this module's globals (or
in the defining function's locals).
"""

from __future__ import annotations

import enum
import json
import logging
from typing import Annotated, Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import pytest

from promptkit._docstrings import parse_docstring
from promptkit._errors import ToolError
from promptkit._tools import Tool, ToolRegistry, execute, tool
from promptkit._types import ToolCall


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


class Custom:
    pass


def call(name: str, arguments: Any = None, raw: Optional[str] = None) -> ToolCall:
    text = raw if raw is not None else json.dumps(arguments if arguments is not None else {})
    return ToolCall.create("call_1", name, text)


def error_of(result: Any) -> str:
    assert result.is_error is True
    return json.loads(result.content)["error"]


# ---------------------------------------------------------------- schema table

_NO = object()

# (id, annotation, default, expected property schema, required?)
SCHEMA_ROWS = [
    ("str", str, _NO, {"type": "string"}, True),
    ("int", int, _NO, {"type": "integer"}, True),
    ("float", float, _NO, {"type": "number"}, True),
    ("bool", bool, _NO, {"type": "boolean"}, True),
    ("none", None, _NO, {"type": "null"}, True),
    ("optional-no-default", Optional[int], _NO, {"type": ["integer", "null"]}, True),
    ("pipe-none-default", "int | None", None, {"type": ["integer", "null"], "default": None}, False),
    ("str-default", str, "hi", {"type": "string", "default": "hi"}, False),
    ("literal-str", Literal["a", "b"], _NO, {"type": "string", "enum": ["a", "b"]}, True),
    ("literal-int", Literal[1, 2], _NO, {"type": "integer", "enum": [1, 2]}, True),
    ("literal-number", Literal[1, 2.5], _NO, {"type": "number", "enum": [1, 2.5]}, True),
    ("literal-bool", Literal[True], _NO, {"type": "boolean", "enum": [True]}, True),
    ("literal-mixed", Literal["a", 1], _NO, {"enum": ["a", 1]}, True),
    ("literal-none", Literal["a", None], _NO, {"type": ["string", "null"], "enum": ["a", None]}, True),
    ("list", list[int], _NO, {"type": "array", "items": {"type": "integer"}}, True),
    ("List", List[str], _NO, {"type": "array", "items": {"type": "string"}}, True),
    ("Sequence", Sequence[float], _NO, {"type": "array", "items": {"type": "number"}}, True),
    ("tuple-ellipsis", Tuple[int, ...], _NO, {"type": "array", "items": {"type": "integer"}}, True),
    ("bare-list", list, _NO, {"type": "array"}, True),
    ("list-default", list[int], [1, 2], {"type": "array", "items": {"type": "integer"}, "default": [1, 2]}, False),
    ("tuple-default", tuple[int, ...], (1, 2), {"type": "array", "items": {"type": "integer"}, "default": [1, 2]},
     False),
    ("dict", dict[str, int], _NO, {"type": "object", "additionalProperties": {"type": "integer"}}, True),
    (
        "Dict-nested",
        Dict[str, List[str]],
        _NO,
        {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        True,
    ),
    ("bare-dict", dict, _NO, {"type": "object"}, True),
    ("enum", Color, _NO, {"type": "string", "enum": ["red", "green"]}, True),
    ("int-enum", Size, _NO, {"type": "integer", "enum": [1, 2]}, True),
    ("enum-default", Color, Color.GREEN, {"type": "string", "enum": ["red", "green"], "default": "green"}, False),
    (
        "optional-enum",
        Optional[Color],
        None,
        {"type": ["string", "null"], "enum": ["red", "green", None], "default": None},
        False,
    ),
    ("union", Union[int, str], _NO, {"anyOf": [{"type": "integer"}, {"type": "string"}]}, True),
    (
        "union-nested-none",
        Union[int, List[Color], None],
        _NO,
        {
            "anyOf": [
                {"type": "integer"},
                {"type": "array", "items": {"type": "string", "enum": ["red", "green"]}},
                {"type": "null"},
            ]
        },
        True,
    ),
    ("optional-list", Optional[List[int]], _NO, {"type": ["array", "null"], "items": {"type": "integer"}}, True),
    ("annotated", Annotated[int, "how many"], _NO, {"type": "integer", "description": "how many"}, True),
    (
        "annotated-optional",
        Annotated[Optional[str], 42, "the label"],
        None,
        {"type": ["string", "null"], "description": "the label", "default": None},
        False,
    ),
    ("annotated-no-text", Annotated[int, 42], _NO, {"type": "integer"}, True),
    (
        "list-annotated",
        list[Annotated[str, "an id"]],
        _NO,
        {"type": "array", "items": {"type": "string", "description": "an id"}},
        True,
    ),
    ("any", Any, _NO, {}, True),
    ("any-default", Any, 3, {"default": 3}, False),
    ("unserialisable-default", int, object(), {"type": "integer"}, False),
    ("nan-default", float, float("nan"), {"type": "number"}, False),
]


@pytest.mark.parametrize(
    "annotation, default, expected, required", [r[1:] for r in SCHEMA_ROWS], ids=[r[0] for r in SCHEMA_ROWS]
)
def test_schema_table(annotation: Any, default: Any, expected: Any, required: bool) -> None:
    if default is _NO:

        def fn(x):  # type: ignore[no-untyped-def]
            return x

    else:

        def fn(x=default):  # type: ignore[no-untyped-def]
            return x

    # Real objects (or a string, for "int | None") in __annotations__, resolved like any annotation.
    fn.__annotations__ = {"x": annotation}
    made = tool(fn)
    assert made.parameters == {
        "type": "object",
        "properties": {"x": expected},
        "required": ["x"] if required else [],
        "additionalProperties": False,
    }


# ---------------------------------------------------------------- docstrings

GOOGLE = '''Look up the weather.

    Uses the cached forecast
    when it is fresh.

    Args:
        city (str): The city name,
            e.g. "Paris".
        days: How many days.
        unit (str, optional): Either "c" or "f".

    Returns:
        dict: The forecast.
    '''

NUMPY = '''Look up the weather.

    Parameters
    ----------
    city : str
        The city name,
        e.g. "Paris".
    days : int, optional
        How many days.
    unit
        Either "c" or "f".

    Returns
    -------
    dict
        The forecast.
    '''

SPHINX = '''Look up the weather.

    :param str city: The city name,
        e.g. "Paris".
    :param days: How many days.
    :type days: int
    :param unit: Either "c" or "f".
    :returns: The forecast.
    '''

EXPECTED_DOCS = {"city": 'The city name, e.g. "Paris".', "days": "How many days.", "unit": 'Either "c" or "f".'}


@pytest.mark.parametrize("doc", [GOOGLE, NUMPY, SPHINX], ids=["google", "numpy", "sphinx"])
def test_docstring_styles_give_descriptions(doc: str) -> None:
    def weather(city: str, days: int = 1, unit: Literal["c", "f"] = "c") -> dict:
        return {}

    weather.__doc__ = doc
    made = tool(weather)
    summary = "Look up the weather."
    if doc is GOOGLE:
        summary += "\n\nUses the cached forecast\nwhen it is fresh."
    assert made.description == summary
    assert made.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": EXPECTED_DOCS["city"]},
            "days": {"type": "integer", "description": EXPECTED_DOCS["days"], "default": 1},
            "unit": {"type": "string", "enum": ["c", "f"], "description": EXPECTED_DOCS["unit"], "default": "c"},
        },
        "required": ["city"],
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    "doc, expected",
    [
        (None, ("", {})),
        ("   ", ("", {})),
        ("Just text.", ("Just text.", {})),
        ("Args:\n    x: the x", ("", {"x": "the x"})),
        ("Sum.\n\nArgs:\n    *args: values\n    **kw: options", ("Sum.", {"args": "values", "kw": "options"})),
        ("Sum.\n\nParameters\n----------\nx, y : int\n    Operands.", ("Sum.", {"x": "Operands.", "y": "Operands."})),
        ("Sum.\n\nReturns:\n    int\n\nArgs:\n    x: the x", ("Sum.", {"x": "the x"})),
        ("Sum.\n\nNote: plain text line\nmore", ("Sum.\n\nNote: plain text line\nmore", {})),
        ("Sum.\n\nArgs:\n    x:\n        on the next line", ("Sum.", {"x": "on the next line"})),
        # Header on the opening line: cleandoc leaves the entries and the next header at one indent.
        ("Args:\n        x: the x\n          more\n        Returns:\n          int", ("", {"x": "the x more"})),
    ],
)
def test_parse_docstring_edges(doc: Optional[str], expected: Any) -> None:
    assert parse_docstring(doc) == expected


def test_annotated_text_wins_over_docstring() -> None:
    def f(x: Annotated[int, "from Annotated"]) -> int:
        """F.

        Args:
            x: from the docstring
        """
        return x

    assert tool(f).parameters["properties"]["x"] == {"type": "integer", "description": "from Annotated"}


def test_description_defaults_to_function_name() -> None:
    def no_doc(x: int) -> int:
        return x

    def only_sections(x: int) -> int:
        """Args:
        x: the x
        """
        return x

    assert tool(no_doc).description == "no_doc"
    assert tool(only_sections).description == "only_sections"
    assert tool(only_sections).parameters["properties"]["x"]["description"] == "the x"


# ---------------------------------------------------------------- decorator forms


@tool
def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


@tool(name="mul-2", description="Multiply.", timeout=1.5, strict=True)
def multiply(a: int, b: int = 2) -> int:
    return a * b


def test_bare_decorator() -> None:
    assert isinstance(add, Tool)
    assert add.name == "add" and add.description == "Add two numbers."
    assert add.timeout is None and add.strict is False
    assert add(3) == 5 and add(a=1, b=1) == 2  # still works as the function


def test_decorator_with_options_and_strict_schema() -> None:
    assert multiply.name == "mul-2" and multiply.description == "Multiply."
    assert multiply.timeout == 1.5 and multiply.strict is True
    assert multiply(3, 3) == 9
    assert multiply.to_openai() == {
        "type": "function",
        "function": {
            "name": "mul-2",
            "description": "Multiply.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": ["integer", "null"]}},
                "required": ["a", "b"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }


def test_decorator_with_empty_parentheses() -> None:
    @tool()
    def ping() -> str:
        """Ping."""
        return "pong"

    assert ping.name == "ping" and ping.parameters["properties"] == {} and ping.parameters["required"] == []
    assert ping() == "pong"


def test_local_enum_resolves_under_postponed_annotations() -> None:
    class Mood(enum.Enum):
        HAPPY = "happy"

    @tool
    def feel(mood: Mood) -> str:
        return mood.name

    assert feel.parameters["properties"]["mood"] == {"type": "string", "enum": ["happy"]}
    assert execute(feel, call("feel", {"mood": "happy"})).content == "HAPPY"


def test_unresolvable_return_annotation_is_ignored() -> None:
    @tool
    def f(x: int) -> NotDefinedAnywhere:  # type: ignore[name-defined]  # noqa: F821
        return x

    assert f.parameters["required"] == ["x"]


def test_tool_of_bound_method_skips_self() -> None:
    class Counter:
        def bump(self, by: int) -> int:
            return by + 1

    made = tool(Counter().bump)
    assert made.name == "bump" and list(made.parameters["properties"]) == ["by"]
    assert execute(made, call("bump", {"by": 1})).content == "2"


def _raises(fn: Any, *parts: str, **options: Any) -> str:
    with pytest.raises(ToolError) as info:
        tool(**options)(fn) if options else tool(fn)
    message = str(info.value)
    for part in parts:
        assert part in message, message
    return message


def test_decoration_errors_name_function_and_parameter() -> None:
    def star_args(*values: int) -> None: ...
    def star_kwargs(**options: int) -> None: ...
    def pos_only(x: int, /) -> None: ...
    def unannotated(x) -> None: ...  # type: ignore[no-untyped-def]
    def with_set(tags: set[str]) -> None: ...
    def with_bytes(data: bytes) -> None: ...
    def with_class(obj: Custom) -> None: ...
    def forward(obj: Missing) -> None: ...  # type: ignore[name-defined]  # noqa: F821
    def fixed_tuple(pair: tuple[int, str]) -> None: ...
    def int_keys(m: dict[int, str]) -> None: ...
    def nested_bad(xs: list[Optional[Custom]]) -> None: ...

    _raises(star_args, "'star_args'", "'values'", "*args and **kwargs")
    _raises(star_kwargs, "'star_kwargs'", "'options'", "*args and **kwargs")
    _raises(pos_only, "'pos_only'", "'x'", "positional-only")
    _raises(unannotated, "'unannotated'", "'x'", "no type annotation", "typing.Any")
    _raises(with_set, "'with_set'", "'tags'", "unsupported annotation set[str]")
    _raises(with_bytes, "'with_bytes'", "'data'", "unsupported annotation bytes")
    _raises(with_class, "'with_class'", "'obj'", "unsupported annotation Custom")
    _raises(forward, "'forward'", "'obj'", "cannot resolve annotation 'Missing'", "Missing")
    _raises(fixed_tuple, "'fixed_tuple'", "'pair'", "fixed-length tuples")
    _raises(int_keys, "'int_keys'", "'m'", "dict keys must be str")
    _raises(nested_bad, "'nested_bad'", "'xs'", "unsupported annotation Custom")


def test_strict_mode_decoration_errors() -> None:
    def any_arg(x: Any) -> None: ...
    def dict_arg(x: dict[str, int]) -> None: ...
    def bare_list(x: list) -> None: ...  # type: ignore[type-arg]

    _raises(any_arg, "'any_arg'", "'x'", "strict mode needs a concrete type", strict=True)
    _raises(dict_arg, "'dict_arg'", "'x'", "free-form objects", strict=True)
    _raises(bare_list, "'bare_list'", "'x'", "item type", strict=True)


def test_decorator_rejects_bad_options_and_non_functions() -> None:
    def f(x: int) -> None: ...

    _raises(f, "invalid tool name 'has space'", name="has space")
    _raises(f, "timeout must be a positive number", timeout=0)
    with pytest.raises(ToolError, match="needs a function"):
        tool("not a function")  # type: ignore[call-overload]


# ---------------------------------------------------------------- Tool


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_from_openai_round_trip() -> None:
    parsed = Tool.from_openai(WEATHER)
    assert parsed.name == "get_weather" and parsed.handler is None and parsed.strict is False
    assert parsed.to_openai() == WEATHER
    assert Tool.from_openai(WEATHER["function"]) == parsed  # the bare function object
    flat = {"type": "function", **WEATHER["function"], "strict": True}  # the Responses-API form
    strict = Tool.from_openai(flat)
    assert strict.strict is True and strict.to_openai()["function"]["strict"] is True
    assert add.to_openai() == Tool.from_openai(add.to_openai()).to_openai()


def test_from_openai_defaults_and_errors() -> None:
    bare = Tool.from_openai({"name": "noop"})
    assert bare.description == "" and bare.parameters == {"type": "object", "properties": {}}
    with pytest.raises(ToolError, match="unsupported tool type 'code_interpreter'"):
        Tool.from_openai({"type": "code_interpreter"})
    with pytest.raises(ToolError, match="no function name"):
        Tool.from_openai({"type": "function", "function": {"description": "x"}})
    with pytest.raises(ToolError, match="must be given as a dict"):
        Tool.from_openai(["nope"])  # type: ignore[arg-type]
    with pytest.raises(ToolError, match="invalid tool name"):
        Tool.from_openai({"name": "bad name"})
    with pytest.raises(ToolError, match='"type": "object"'):
        Tool.from_openai({"name": "t", "parameters": {"type": "array"}})


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "trailing\n", "dot.name", 7])
def test_invalid_names(name: Any) -> None:
    with pytest.raises(ToolError, match="invalid tool name"):
        Tool(name=name)


def test_valid_edge_names_and_other_validation() -> None:
    assert Tool(name="x" * 64).name == "x" * 64
    assert Tool(name="a-B_9").name == "a-B_9"
    with pytest.raises(ToolError, match="timeout"):
        Tool(name="t", timeout=-1)
    with pytest.raises(ToolError, match="timeout"):
        Tool(name="t", timeout=True)
    with pytest.raises(ToolError, match="handler must be callable"):
        Tool(name="t", handler="nope")  # type: ignore[arg-type]
    with pytest.raises(ToolError, match='"required" a list'):
        Tool(name="t", parameters={"type": "object", "required": "x"})
    with pytest.raises(ToolError, match="has no handler"):
        Tool(name="t")()


def test_schema_is_copied_in_and_out() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    made = Tool(name="t", parameters=schema)
    schema["properties"]["b"] = {}
    made.to_openai()["function"]["parameters"]["properties"]["c"] = {}
    assert made.parameters == {"type": "object", "properties": {"a": {"type": "string"}}}


# ---------------------------------------------------------------- registry


def test_registry_add_and_lookup() -> None:
    def search(query: str) -> str:
        """Search."""
        return query

    registry = ToolRegistry([add])
    assert registry.to_openai() == [add.to_openai()]
    assert registry.add(search).name == "search"
    assert registry.add(WEATHER).name == "get_weather"
    assert len(registry) == 3
    assert [t.name for t in registry] == ["add", "search", "get_weather"]
    assert "search" in registry and "nope" not in registry
    assert registry.get("add") is add and registry.get("nope") is None
    assert registry.has_handler("add") and not registry.has_handler("get_weather") and not registry.has_handler("x")
    assert [d["function"]["name"] for d in registry.to_openai()] == ["add", "search", "get_weather"]
    assert ToolRegistry().to_openai() == []


def _add_from_unrelated_scope(registry: ToolRegistry, fn: Any) -> Tool:
    Color = int  # noqa: N806, F841 -- a local of the calling scope, unrelated to fn's annotations
    return registry.add(fn)


def test_registry_add_resolves_caller_locals_after_module_globals() -> None:
    class Shade(enum.Enum):
        DARK = "dark"

    def shade(value: Shade) -> str:
        return value.value

    def paint(color: Color) -> str:
        return color.value

    registry = ToolRegistry()
    assert registry.add(shade).parameters["properties"]["value"] == {"type": "string", "enum": ["dark"]}
    # The module's Color wins over the adding scope's unrelated local "Color".
    made = _add_from_unrelated_scope(registry, paint)
    assert made.parameters["properties"]["color"] == {"type": "string", "enum": ["red", "green"]}


def test_registry_duplicates_and_bad_items() -> None:
    registry = ToolRegistry([add])
    with pytest.raises(ToolError, match="duplicate tool name 'add'"):
        registry.add({"name": "add"})
    with pytest.raises(ToolError, match="cannot add 42"):
        registry.add(42)  # type: ignore[arg-type]
    assert len(registry) == 1


def test_on_tool_attaches_and_replaces() -> None:
    registry = ToolRegistry([WEATHER, add])
    made = registry.on_tool("get_weather", lambda city: f"sunny in {city}")
    assert made.handler is not None and registry.get("get_weather") is made
    assert registry.has_handler("get_weather")
    assert registry.execute(call("get_weather", {"city": "Oslo"})).content == "sunny in Oslo"

    @registry.on_tool("add")
    def add_strings(a: str, b: str = "!") -> str:
        return a + b

    assert add_strings("x") == "x!"  # the decorator form returns the function
    assert registry.execute(call("add", {"a": "hi"})).content == "hi!"
    assert registry.get("add").parameters == add.parameters  # the schema is kept


def test_on_tool_unknown_name_lists_known() -> None:
    registry = ToolRegistry([add, WEATHER])
    with pytest.raises(ToolError, match=r"unknown tool 'nope'.*'add', 'get_weather'"):
        registry.on_tool("nope", lambda: None)
    with pytest.raises(ToolError, match=r"known tools: none"):
        ToolRegistry().on_tool("nope", lambda: None)
    with pytest.raises(ToolError, match="must be callable"):
        registry.on_tool("add", "nope")  # type: ignore[call-overload]


def test_registry_execute_unknown_tool() -> None:
    assert error_of(ToolRegistry().execute(call("ghost"))) == "unknown tool 'ghost'"


# ---------------------------------------------------------------- execute


class Recorder:
    """A handler that records its calls."""

    def __init__(self, result: Any = "ok") -> None:
        self.calls: List[Dict[str, Any]] = []
        self.result = result

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def recorded_tool(result: Any = "ok") -> Tuple[Tool, Recorder]:
    recorder = Recorder(result)
    calls = recorder.calls

    def target(
        city: str, days: int = 1, color: Optional[Color] = None, sizes: list[Size] = [], ratio: float = 1.0  # noqa: B006
    ) -> Any:
        calls.append({"city": city, "days": days, "color": color, "sizes": sizes, "ratio": ratio})
        if isinstance(recorder.result, BaseException):
            raise recorder.result
        return recorder.result

    return tool(target), recorder


@pytest.mark.parametrize(
    "value, content",
    [
        ("plain text", "plain text"),
        ("", ""),
        ({"temp": 21, "city": "Zürich"}, '{"temp": 21, "city": "Zürich"}'),
        ([1, 2.5, True, None], "[1, 2.5, true, null]"),
        (None, "null"),
        (42, "42"),
        (Color.RED, '"red"'),
        ({"when": Custom}, json.dumps({"when": str(Custom)})),
        ({"s": {3}}, '{"s": [3]}'),
    ],
)
def test_execute_result_content(value: Any, content: str) -> None:
    made, recorder = recorded_tool(value)
    result = execute(made, call("target", {"city": "Oslo"}))
    assert result.content == content and result.is_error is False
    assert result.call_id == "call_1" and result.name == "target"
    assert recorder.calls == [{"city": "Oslo", "days": 1, "color": None, "sizes": [], "ratio": 1.0}]


def test_execute_str_subclass_result_is_plain_str() -> None:
    class Mode(str, enum.Enum):
        FAST = "fast"

    made, _ = recorded_tool(Mode.FAST)
    result = execute(made, call("target", {"city": "x"}))
    assert result.content == "fast" and type(result.content) is str


def test_execute_converts_enums_and_passes_values() -> None:
    made, recorder = recorded_tool()
    arguments = {"city": "Oslo", "days": 3, "color": "green", "sizes": [2, 1], "ratio": 2}
    assert execute(made, call("target", arguments)).is_error is False
    expected = {"city": "Oslo", "days": 3, "color": Color.GREEN, "sizes": [Size.LARGE, Size.SMALL], "ratio": 2}
    assert recorder.calls == [expected]
    assert isinstance(recorder.calls[0]["color"], Color)
    assert execute(made, call("target", {"city": "Oslo", "color": None})).is_error is False
    assert recorder.calls[1]["color"] is None


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            {"city": "Oslo", "color": "blue"},
            "invalid value for argument 'color' of tool 'target': 'blue' is not one of ['red', 'green']",
        ),
        (
            {"city": "Oslo", "sizes": [1, 3]},
            "invalid value for argument 'sizes' of tool 'target': 3 is not one of [1, 2]",
        ),
        ({}, "invalid arguments for tool 'target': missing a required argument: 'city'"),
        (
            {"city": "Oslo", "town": "x"},
            "invalid arguments for tool 'target': got an unexpected keyword argument 'town'",
        ),
    ],
)
def test_execute_bad_arguments_do_not_call_the_handler(arguments: Dict[str, Any], message: str) -> None:
    made, recorder = recorded_tool()
    assert error_of(execute(made, call("target", arguments))) == message
    assert recorder.calls == []


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", "invalid arguments for tool 'target': invalid JSON arguments: "),
        ("[1, 2]", "invalid arguments for tool 'target': arguments are not a JSON object"),
    ],
)
def test_execute_arguments_error(raw: str, message: str) -> None:
    made, recorder = recorded_tool()
    assert error_of(execute(made, call("target", raw=raw))).startswith(message)
    assert recorder.calls == []


def test_execute_arguments_error_quotes_what_the_model_sent() -> None:
    # The history replays unparseable arguments as "{}", so the error is where the model sees them.
    made, _ = recorded_tool()
    assert error_of(execute(made, call("target", raw='{"city": "Par'))).endswith('; you sent: {"city": "Par')
    long = '{"city": "' + "x" * 600
    message = error_of(execute(made, call("target", raw=long)))
    assert message.endswith("; you sent: " + long[:500] + "...")


def test_execute_empty_arguments_text_is_an_empty_object() -> None:
    @tool
    def ping() -> str:
        return "pong"

    assert execute(ping, call("ping", raw="")).content == "pong"


def test_execute_handler_exception(caplog: pytest.LogCaptureFixture) -> None:
    made, recorder = recorded_tool(ValueError("city not found: Атлантида"))
    with caplog.at_level(logging.WARNING, logger="promptkit._tools"):
        result = execute(made, call("target", {"city": "Атлантида"}))
    assert error_of(result) == "ValueError: city not found: Атлантида"
    assert "Атлантида" in result.content  # ensure_ascii=False
    assert len(recorder.calls) == 1
    records = [r for r in caplog.records if r.name == "promptkit._tools"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert records[0].exc_info is not None and records[0].exc_info[0] is ValueError
    assert "'target'" in records[0].getMessage() and "call_1" in records[0].getMessage()


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3)])
def test_execute_does_not_swallow_base_exceptions(exc: BaseException) -> None:
    made, _ = recorded_tool(exc)
    with pytest.raises(type(exc)):
        execute(made, call("target", {"city": "x"}))


def test_execute_unknown_and_handlerless_tools() -> None:
    assert error_of(execute(None, call("ghost"))) == "unknown tool 'ghost'"
    assert error_of(execute(Tool.from_openai(WEATHER), call("get_weather", {"city": "x"}))) == (
        "tool 'get_weather' has no handler"
    )


def test_execute_unserialisable_result() -> None:
    made, _ = recorded_tool({(1, 2): "tuple key"})
    assert "cannot be sent as JSON" in error_of(execute(made, call("target", {"city": "x"})))


def test_execute_on_tool_handler_converts_enums_from_its_own_hints() -> None:
    schema = {"type": "object", "properties": {"c": {"type": "string"}}}
    registry = ToolRegistry([{"name": "paint", "parameters": schema}])
    seen: List[Any] = []

    def paint(c: Color) -> str:
        seen.append(c)
        return c.value

    registry.on_tool("paint", paint)
    assert registry.execute(call("paint", {"c": "red"})).content == "red"
    assert seen == [Color.RED]


def test_execute_plain_kwargs_handler() -> None:
    recorder = Recorder({"ok": True})
    made = Tool(name="free", handler=recorder)
    assert execute(made, call("free", {"anything": [1]})).content == '{"ok": true}'
    assert recorder.calls == [{"anything": [1]}]


def test_execute_strict_null_means_default() -> None:
    seen: List[Any] = []

    @tool(strict=True)
    def pick(a: int, b: int = 7, c: Optional[str] = "keep") -> str:
        seen.append((a, b, c))
        return "done"

    assert pick.parameters["required"] == ["a", "b", "c"]
    assert execute(pick, call("pick", {"a": 1, "b": None, "c": None})).content == "done"
    # b does not accept None, so its default applies; c does, so the null is passed.
    assert seen == [(1, 7, None)]
