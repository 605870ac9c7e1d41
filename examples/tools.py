"""Tools example: a weather-and-time assistant whose tool calls run inside one streamed turn.

The model asks for ``get_weather`` and ``get_time`` (in parallel); promptkit runs
both handlers, sends the results back and streams the final answer, all on one
``send_stream``. Each call is printed as ``[Tool: name(args)]`` (as in the Go
SDK's example) with its result, then the answer and the turn's cost line.

    python examples/tools.py [--model NAME]

With OPENAI_API_KEY set it talks to OpenAI (or to OPENAI_BASE_URL). With
neither set it starts promptkit's embedded mock server, scripted with the two
tool calls and a final answer built from the tools' results, and says so.
The model is --model, else PROMPTKIT_MODEL, else gpt-4o-mini (pick one that
supports tool calls, e.g. ``PROMPTKIT_MODEL=llama3.2`` for Ollama). A failure
prints one line (``error: ...``) and exits with status 1.

The weather is demo data (no weather service is called): a city outside the
table makes the handler raise, which promptkit sends to the model as an error
result rather than crashing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import promptkit
from promptkit.testing import MockReply, MockServer

QUESTION = "What's the weather like in Paris right now, and what time is it in Tokyo?"

# city -> (IANA time zone, fallback UTC offset in hours, demo weather)
CITIES: Dict[str, Any] = {
    "paris": ("Europe/Paris", 1, {"temp_c": 18, "conditions": "partly cloudy", "humidity": 62}),
    "london": ("Europe/London", 0, {"temp_c": 14, "conditions": "light rain", "humidity": 81}),
    "new york": ("America/New_York", -5, {"temp_c": 22, "conditions": "sunny", "humidity": 48}),
    "tokyo": ("Asia/Tokyo", 9, {"temp_c": 26, "conditions": "humid and clear", "humidity": 74}),
    "sydney": ("Australia/Sydney", 10, {"temp_c": 19, "conditions": "windy", "humidity": 55}),
}

# The mock run freezes the clock, so that its scripted answer quotes what get_time returns.
clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)  # noqa: E731


def _city(name: str) -> Any:
    entry = CITIES.get(name.strip().lower())
    if entry is None:
        raise ValueError(f"unknown city {name!r}; known: {', '.join(c.title() for c in CITIES)}")
    return entry


def _zone(name: str, offset_hours: int) -> tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:  # no tz database (e.g. Windows without tzdata): a fixed offset will do for a demo
        return timezone(timedelta(hours=offset_hours))


@promptkit.tool
def get_weather(city: str) -> Dict[str, Any]:
    """Get the current weather in a city.

    Args:
        city: the city name, e.g. "Paris".
    """
    _, _, weather = _city(city)
    return {"city": city.strip().title(), **weather}


@promptkit.tool
def get_time(city: str) -> str:
    """Get the current local time in a city, as HH:MM (24-hour clock).

    Args:
        city: the city name, e.g. "Tokyo".
    """
    zone, offset, _ = _city(city)
    return clock().astimezone(_zone(zone, offset)).strftime("%H:%M")


def stats(resp: promptkit.Response) -> str:
    """The cost / latency / tokens line of a turn, with its request rounds."""
    cost, latency, tokens = resp.summary().split(" | ")
    return f"💰 {cost} | ⏱️  {latency} | 🎫 {tokens} | 🔁 Rounds: {resp.rounds}"


def cut(text: Optional[str], width: int = 60) -> str:
    """A message shortened to ``width`` characters and "..." for the history listing."""
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[:width] + "..."


def script(server: MockServer) -> None:
    """What the mock "model" says: two parallel tool calls, then an answer from their results."""
    global clock
    frozen = datetime.now(timezone.utc)
    clock = lambda: frozen  # noqa: E731
    weather, local_time = get_weather(city="Paris"), get_time(city="Tokyo")
    server.enqueue(
        MockReply.tool_calls([
            {"id": "call_weather_paris", "name": "get_weather", "arguments": {"city": "Paris"}},
            {"id": "call_time_tokyo", "name": "get_time", "arguments": {"city": "Tokyo"}},
        ]),
        MockReply.text(
            f"It's {weather['temp_c']}°C and {weather['conditions']} in Paris "
            f"(humidity {weather['humidity']}%), and the local time in Tokyo is {local_time}.",
            delay=0.02,
        ),
    )


def failed(error: BaseException) -> int:
    """Report a failure on one line (a model the server does not serve, a refused connection...)."""
    message = " ".join(str(error).split())
    hint = ""
    if isinstance(error, (promptkit.BadRequestError, promptkit.NotFoundError)) and "model" in message.lower():
        hint = " (choose the model with --model or PROMPTKIT_MODEL)"
    print(f"error: {type(error).__name__}: {message}{hint}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def make_client(model: Optional[str] = None) -> Iterator[promptkit.Client]:
    """OpenAI when a key (or a base URL) is configured, else the scripted embedded mock server."""
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        with promptkit.Client(model=model) as client:
            yield client
        return
    print("ℹ️  No OPENAI_API_KEY or OPENAI_BASE_URL: using promptkit's embedded mock server (promptkit.testing.MockServer).")
    with MockServer() as server, promptkit.Client(base_url=server.url, model=model) as client:
        script(server)
        yield client


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", help="the model (default: $PROMPTKIT_MODEL, else gpt-4o-mini)")
    args = parser.parse_args(argv)
    try:
        return chat(args.model)
    except promptkit.PromptKitError as error:
        return failed(error)


def chat(model: Optional[str]) -> int:
    """The turn with its tool calls, then the history."""
    with make_client(model) as client:
        conv = client.conversation(
            system_prompt="You answer questions about weather and time. Use the tools; answer in one sentence.",
            tools=[get_weather, get_time],
        )
        print(f"🤖 Conversation started (ID: {conv.id})\n")
        print(f"User: {QUESTION}")
        answering = False
        for event in conv.send_stream(QUESTION):
            if event.type == "tool_call":
                call = event.tool_call
                args = json.dumps(call.arguments, ensure_ascii=False) if call.arguments_error is None else call.arguments_json
                print(f"[Tool: {call.name}({args})]")
            elif event.type == "tool_result":
                result = event.tool_result
                print(f"  -> {result.name}{' failed' if result.is_error else ''}: {result.content}")
            elif event.type == "content":
                if not answering:
                    print("Assistant: ", end="", flush=True)
                    answering = True
                print(event.content, end="", flush=True)
            elif event.type == "error":
                if answering:
                    print()  # end the streamed line before the error's
                return failed(event.error)
            elif event.type == "done":
                print("\n")
                print(stats(event.final) + "\n")

        print("📜 Conversation History:")
        shown = [m for m in conv.messages if m["role"] != "system"]
        for number, message in enumerate(shown, 1):
            calls = message.get("tool_calls")
            text = ", ".join(c["function"]["name"] for c in calls) if calls else message.get("content")
            print(f"  {number}. [{message['role']}] {'calls ' if calls else ''}{cut(text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
