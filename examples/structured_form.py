"""Structured output: a form that fills in while the reply streams.

    python examples/structured_form.py [--api chat|responses|anthropic] [--model NAME]

``response_format=`` takes a pydantic model (here), a dataclass or attrs class,
or a JSON schema. Each content event carries ``event.parsed``, the value so
far (each one refines the last), so the form below redraws as fields arrive;
``Response.parsed`` is the validated model. With OPENAI_API_KEY (or
ANTHROPIC_API_KEY with ``--api anthropic``) set it asks that server; with no
key it uses promptkit's embedded mock server and says so. A reply that does
not fit the model prints one line (``error: ...``) and exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence

import pydantic

import promptkit
from promptkit.testing import MockReply, MockServer

FIELDS = ("name", "city", "languages", "bio")


class Profile(pydantic.BaseModel):
    name: str
    city: str
    languages: List[str]
    bio: str


EXAMPLE = Profile(
    name="Grace Hopper", city="New York", languages=["COBOL", "FLOW-MATIC"],
    bio="Built the first compiler and taught computers to read English.",
)  # fmt: skip


@contextlib.contextmanager
def make_client(api: str, model: Optional[str]) -> Iterator[promptkit.Client]:
    """The configured server, or the embedded mock server replying with EXAMPLE as JSON."""
    key, url = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL") if api == "anthropic" else ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    if os.environ.get(key) or os.environ.get(url):
        with promptkit.Client(api=api, model=model) as client:
            yield client
        return
    print(f"ℹ️  No {key} or {url}: using promptkit's embedded mock server (promptkit.testing.MockServer).")
    with MockServer() as server, promptkit.Client(base_url=server.url, api=api, model=model) as client:
        server.enqueue(MockReply.text(EXAMPLE.model_dump_json(), chunk_size=8, delay=0.01))
        yield client


def form(value: Dict[str, Any]) -> str:
    """The form as one line per field: what has arrived so far, "..." for what has not."""
    return " | ".join(f"{field}: {json.dumps(value[field]) if field in value else '...'}" for field in FIELDS)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", choices=["chat", "responses", "anthropic"], default="chat")
    parser.add_argument("--model", help="the model (default: PROMPTKIT_MODEL, else the dialect's default)")
    args = parser.parse_args(argv)
    try:
        with make_client(args.api, args.model) as client:
            conv = client.conversation(response_format=Profile)
            stream = conv.send_stream("Fill in a profile of a famous programmer.")
            shown = ""
            for event in stream:
                if event.type == "content" and isinstance(event.parsed, dict):
                    line = form(event.parsed)
                    if line != shown:  # a field grew: redraw
                        print(line)
                        shown = line
            profile = stream.result().parsed
            assert isinstance(profile, Profile)
            print(f"Done: {profile.name} ({profile.city}), {len(profile.languages)} languages.")
    except (promptkit.PromptKitError, OSError) as error:
        print(f"error: {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
