"""Reasoning and images: ask about a picture and watch the model think before it answers.

    python examples/reasoning_and_images.py [--api chat|responses|anthropic] [--model NAME] [--image PATH_OR_URL] [--effort low]

The reply's reasoning arrives as ``reasoning`` events (shown dimmed, before the
answer) and its text as ``content`` events; ``Response.reasoning`` keeps the
whole reasoning. ``--api responses`` talks the OpenAI Responses API, where
reasoning models stream reasoning summaries (asked for here with
``reasoning={"summary": "auto"}`` when ``--effort`` is given); on Chat
Completions, servers such as DeepSeek and vLLM stream ``reasoning_content``;
``--api anthropic`` streams Claude's thinking (asked for with ``thinking`` when
``--effort`` is given).

With OPENAI_API_KEY (or OPENAI_BASE_URL; ANTHROPIC_API_KEY or
ANTHROPIC_BASE_URL with ``--api anthropic``) set it talks to that server; with
neither it starts promptkit's embedded mock server and says so, on any dialect. A failure prints one line (``error: ...``) and exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any, Dict, Iterator, Optional, Sequence

import promptkit
from promptkit.testing import MockReply, MockServer

IMAGE = "https://upload.wikimedia.org/wikipedia/commons/3/3a/Cat03.jpg"
QUESTION = "What is in this picture? Answer in one sentence."
DIM, RESET = ("\x1b[2m", "\x1b[0m") if sys.stdout.isatty() else ("", "")


@contextlib.contextmanager
def make_client(api: str, model: Optional[str]) -> Iterator[promptkit.Client]:
    """The configured server, or the embedded mock server (with a scripted reply that reasons)."""
    key, url = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL") if api == "anthropic" else ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    if os.environ.get(key) or os.environ.get(url):
        with promptkit.Client(api=api, model=model) as client:
            yield client
        return
    print(f"ℹ️  No {key} or {url}: using promptkit's embedded mock server (promptkit.testing.MockServer).")
    with MockServer() as server, promptkit.Client(base_url=server.url, api=api, model=model) as client:
        server.enqueue(
            MockReply.text(
                "A tabby cat sits looking at the camera.",
                reasoning="The picture shows an animal with pointed ears and whiskers: a cat, striped like a tabby.",
                chunk_size=6,
                delay=0.02,
            )
        )
        yield client


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", choices=["chat", "responses", "anthropic"], default="chat")
    parser.add_argument("--model", help="the model (default: PROMPTKIT_MODEL, else gpt-4o-mini)")
    parser.add_argument("--image", default=IMAGE, help="a file path or an http(s) URL")
    parser.add_argument("--effort", choices=["low", "medium", "high"], help="reasoning effort, for reasoning models")
    args = parser.parse_args(argv)
    params: Dict[str, Any] = {}
    if args.effort and args.api == "anthropic":
        budget = {"low": 1024, "medium": 4096, "high": 16384}[args.effort]
        params.update(thinking={"type": "enabled", "budget_tokens": budget}, max_tokens=budget + 2048)
    elif args.effort:
        params["reasoning_effort"] = args.effort
        if args.api == "responses":
            params["reasoning"] = {"summary": "auto"}  # summaries are streamed only when asked for
    try:
        with make_client(args.api, args.model) as client:
            conv = client.conversation(**params)
            print(f"User: {QUESTION} [image: {args.image}]")
            phase = ""  # "" before any output, then "thinking", then "answer"
            for event in conv.send_stream(QUESTION, images=[args.image]):
                if event.type == "reasoning":
                    if phase != "thinking":
                        print(f"{DIM}Thinking: ", end="")
                        phase = "thinking"
                    print(event.reasoning, end="", flush=True)
                elif event.type == "content":
                    if phase != "answer":
                        print(f"{RESET}\n" if phase else "", end="")
                        print("Assistant: ", end="")
                        phase = "answer"
                    print(event.content, end="", flush=True)
                elif event.type == "error":
                    raise event.error  # type: ignore[misc]
                elif event.type == "done":
                    assert event.final is not None
                    response = event.final
            print(RESET)
            print(f"Reasoning kept: {len(response.reasoning)} characters | {response.summary()}")
    except (promptkit.PromptKitError, OSError) as error:
        print(f"error: {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
