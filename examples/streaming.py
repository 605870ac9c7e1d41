"""Streaming example: the Python version of the PromptKit Go SDK's "Streaming Example".

Turn 1 uses send() (the whole reply at once), turn 2 streams delta by delta;
each turn prints its cost, latency and tokens, then the history is listed.

    python examples/streaming.py

With OPENAI_API_KEY set it talks to OpenAI (or to OPENAI_BASE_URL). With
neither set it starts promptkit's embedded mock server and says so.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, Optional

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


@contextlib.contextmanager
def make_client() -> Iterator[promptkit.Client]:
    """OpenAI when a key (or a base URL) is configured, else the embedded mock server."""
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        with promptkit.Client() as client:
            yield client
        return
    print("ℹ️  No OPENAI_API_KEY set: using promptkit's embedded mock server (promptkit.testing.MockServer).")
    with MockServer(default_delay=0.02) as server, promptkit.Client(base_url=server.url) as client:
        yield client


def main() -> int:
    with make_client() as client:
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
        for event in conv.send_stream(second):
            if event.type == "content":
                print(event.content, end="", flush=True)
            elif event.type == "tool_call":
                print(f"\n[Tool: {event.tool_call.name}]")
            elif event.type == "error":
                print(f"\n❌ Error: {event.error}", file=sys.stderr)
                return 1
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
