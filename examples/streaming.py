"""Streaming example: the Python version of the PromptKit Go SDK's "Streaming Example".

Turn 1 uses send() (the whole reply at once), turn 2 streams delta by delta;
each turn prints its cost, latency and tokens, then the history is listed.

    python examples/streaming.py [--model NAME]

With OPENAI_API_KEY set it talks to OpenAI (or to OPENAI_BASE_URL). With
neither set it starts promptkit's embedded mock server and says so. The model
is --model, else PROMPTKIT_MODEL, else gpt-4o-mini: set it for a server that
serves other models (``PROMPTKIT_MODEL=llama3.2`` for Ollama). A failure
prints one line (``error: ...``) and exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Iterator, Optional, Sequence

import promptkit
from promptkit.testing import MockServer


def stats(resp: promptkit.Response) -> str:
    """The example's cost / latency / tokens line."""
    cost, latency, tokens = resp.summary().split(" | ")
    return f"💰 {cost} | ⏱️  {latency} | 🎫 {tokens}"


def cut(text: Optional[str], width: int = 50) -> str:
    """A message shortened to ``width`` characters and "..." for the history listing."""
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[:width] + "..."


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
    """OpenAI when a key (or a base URL) is configured, else the embedded mock server."""
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        with promptkit.Client(model=model) as client:
            yield client
        return
    print("ℹ️  No OPENAI_API_KEY or OPENAI_BASE_URL: using promptkit's embedded mock server (promptkit.testing.MockServer).")
    with MockServer(default_delay=0.02) as server, promptkit.Client(base_url=server.url, model=model) as client:
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
    """The two turns and the history."""
    with make_client(model) as client:
        conv = client.conversation(system_prompt="You are a creative storyteller.")
        print(f"🤖 Streaming conversation started (ID: {conv.id})\n")

        first = "Tell me a short story about a robot."
        print(f"User: {first}")
        resp = conv.send(first)
        print(f"Assistant: {resp.content}\n")
        print(stats(resp) + "\n")

        second = "Now tell me another one, but shorter."
        print(f"User: {second}")
        print("Assistant: ", end="", flush=True)
        try:
            stream = conv.send_stream(second)
        except promptkit.PromptKitError as error:  # raised before any event: end the line first
            print()
            return failed(error)
        for event in stream:
            if event.type == "content":
                print(event.content, end="", flush=True)
            elif event.type == "tool_call":
                print(f"\n[Tool: {event.tool_call.name}]")
            elif event.type == "error":
                print()
                return failed(event.error)
            elif event.type == "done":
                print("\n")
                print(stats(event.final) + "\n")

        print("📜 Conversation History:")
        shown = [m for m in conv.messages if m["role"] != "system"]
        for number, message in enumerate(shown, 1):
            print(f"  {number}. [{message['role']}] {cut(message.get('content'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
