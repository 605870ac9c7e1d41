"""Scripted replies of the mock server, and what it records of each request."""


from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = ["MockReply", "RecordedRequest", "Headers"]

log = logging.getLogger("promptkit.testing")

_SSE_TYPE = "text/event-stream; charset=utf-8"
_JSON_TYPE = "application/json"
_FRAMINGS = ("chunked", "close", "length")
_Item = Union[bytes, float]  # a reply script: bytes are written and flushed as one event, floats are pauses
_Usage = Union[bool, Mapping[str, Any], None]


class _Stopped(Exception):
    """The server is closing: abandon the reply."""


class Headers(Dict[str, str]):
    """A dict of header values whose keys compare case-insensitively (they are stored lower-case)."""

    def __init__(self, items: Iterable[Tuple[str, str]] = ()) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        """The value of header ``key`` (any case), or ``default``."""
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received.

    Attributes:
        method: the HTTP method, e.g. ``"POST"``.
        path: the request target, e.g. ``"/v1/chat/completions"``.
        headers: the request headers (case-insensitive keys).
        body: the parsed JSON body, or ``None`` when it was empty or not JSON.
        raw: the body bytes as received.
    """

    method: str
    path: str
    headers: Headers
    body: Any
    raw: bytes


@dataclass(frozen=True)
class MockReply:
    """An immutable description of one reply; build it with a factory classmethod.

    The server renders it when a request consumes it, so one MockReply can be enqueued
    many times. Options shared by :meth:`text` and :meth:`tool_calls`:

    * ``delay``: seconds between two deltas; ``first_delay``: seconds before the first
      content delta, after the headers and the role chunk were flushed.
    * ``usage``: ``True`` computes plausible counts, a dict overrides fields, ``None``
      sends none. Streamed usage is only sent when the request set
      ``stream_options.include_usage`` (like OpenAI).
    * ``model``: the reported model (default: the request's, else the server's).
    * ``finish_reason``: ``None`` omits the finish chunk. ``reasoning``: text streamed
      as ``reasoning_content`` deltas before the content.
    * ``framing``: ``"chunked"``, ``"close"`` (no length, ``Connection: close``, the body
      ends when the socket closes) or ``"length"`` (``Content-Length``, whole body at
      once); default: the server's.
    * ``keepalive_comments``: ``: keep-alive`` lines sent before the first chunk;
      ``include_done``: end with ``data: [DONE]``; ``headers``: extra response headers.
    * ``bulk``: send the events that have no delay between them back to back in one
      write (each is still its own HTTP chunk when chunked), so the server goes as fast
      as the socket takes them and a client's reading is what limits the rate (for
      throughput benchmarks). Without it, each event is its own write.

    Without ``"stream": true`` in the request, these replies are sent as one
    ``chat.completion`` JSON object instead.

    The server renders every reply in the wire protocol of the request's path. Above is
    ``POST .../chat/completions``. On ``POST .../responses`` (the OpenAI Responses API) the
    same reply streams as named events with a ``sequence_number`` and no ``[DONE]`` (so
    ``include_done`` does not apply): ``response.created``, ``response.in_progress``, then a
    ``reasoning`` item (summary deltas; ``encrypted_content`` when the request's ``include``
    names ``"reasoning.encrypted_content"``), a ``message`` item (``output_text`` deltas) and
    one ``function_call`` item per call, then ``response.completed``. ``finish_reason="length"``
    ends with ``response.incomplete`` (``max_output_tokens``) and ``None`` with no terminal
    event. Usage is always in the final response, in Responses names (``input_tokens``, ...);
    a ``usage`` dict may use the chat or the Responses names. Without ``"stream": true`` the
    reply is one ``response`` object. The failure kinds keep their meaning:
    :meth:`in_band_error` sends an ``error`` event and ``response.failed``.

    On ``POST .../messages`` (Anthropic's Messages API) the reply streams as Anthropic does:
    ``message_start``, one ``ping``, then content blocks (``content_block_start``,
    ``content_block_delta``, ``content_block_stop``): ``reasoning`` as a ``thinking`` block
    (``thinking_delta`` pieces and one ``signature_delta`` with a mock signature), the text as
    a ``text`` block (none when the text is empty) and one ``tool_use`` block per call
    (``input_json_delta`` pieces, the first one ``""``), then ``message_delta`` and
    ``message_stop``; no ``[DONE]``. ``finish_reason`` maps to ``stop_reason``: ``"stop"`` is
    ``end_turn`` (``tool_use`` when there are calls), ``"length"`` is ``max_tokens``,
    ``"content_filter"`` is ``refusal``, other values are sent as they are, and ``None``
    leaves out ``message_delta`` and ``message_stop``. ``first_delay`` comes after the first
    block's start and the ping. Usage is in Anthropic names (``input_tokens`` leaves out
    cached tokens, reported as ``cache_read_input_tokens``); a ``usage`` dict may use the chat
    or the Anthropic names (``cache_read_input_tokens``, ``cache_creation_input_tokens``, ...),
    and ``None`` sends no usage at all. Without ``"stream": true`` the reply is one
    ``message`` object. :meth:`error` replies have Anthropic's error body, and
    :meth:`in_band_error` sends an ``error`` event.
    """

    kind: str
    options: Mapping[str, Any]

    @classmethod
    def _of(cls, kind: str, options: Dict[str, Any]) -> "MockReply":
        options = {k: v for k, v in options.items() if k != "cls"}
        if options.get("framing") not in (None, *_FRAMINGS):
            raise ValueError(f"framing must be one of {_FRAMINGS}, got {options['framing']!r}")
        return cls(kind, MappingProxyType(options))

    @classmethod
    def text(cls, text: str, *, chunk_size: Optional[int] = None, delay: float = 0.0, first_delay: float = 0.0,
             usage: _Usage = True, model: Optional[str] = None, finish_reason: Optional[str] = "stop",
             reasoning: Optional[str] = None, framing: Optional[str] = None, keepalive_comments: int = 0,
             include_done: bool = True, headers: Optional[Mapping[str, str]] = None,
             bulk: bool = False) -> "MockReply":
        """An assistant text reply.

        Args:
            text: the content, streamed as word-sized deltas (long words in ~4-character pieces).
            chunk_size: split the content into deltas of exactly this many characters instead
                (``text="abcd" * n, chunk_size=4`` streams ``n`` equal deltas).
            delay, first_delay, usage, model, finish_reason, reasoning, framing, keepalive_comments,
                include_done, headers, bulk: see the class docstring.
        """
        return cls._of("text", dict(locals()))

    @classmethod
    def tool_calls(cls, calls: Sequence[Mapping[str, Any]], *, content: Optional[str] = None,
                   split_arguments: int = 8, delay: float = 0.0, first_delay: float = 0.0, usage: _Usage = True,
                   model: Optional[str] = None, finish_reason: Optional[str] = "tool_calls",
                   reasoning: Optional[str] = None, framing: Optional[str] = None, keepalive_comments: int = 0,
                   include_done: bool = True, headers: Optional[Mapping[str, str]] = None,
                   bulk: bool = False) -> "MockReply":
        """A reply calling tools, streamed as standard ``tool_calls`` deltas.

        Args:
            calls: dicts ``{"name", "arguments": dict or JSON str, "id" (optional)}``.
            content: text streamed before the calls.
            split_arguments: the arguments text is sent in fragments of this many characters.
            delay, first_delay, usage, model, finish_reason, reasoning, framing, keepalive_comments,
                include_done, headers, bulk: see the class docstring.
        """
        calls = tuple(dict(c) for c in calls)
        return cls._of("tool_calls", dict(locals(), text=content or "", chunk_size=None))

    @classmethod
    def error(cls, status: int, message: str, *, type: Optional[str] = None, code: Optional[str] = None,
              headers: Optional[Mapping[str, str]] = None, body: Union[str, bytes, None] = None,
              content_type: Optional[str] = None) -> "MockReply":
        """A whole (not streamed) reply, normally an OpenAI error ``{"error": {"message", "type", "code"}}``.

        On Anthropic's Messages API the error is ``{"type": "error", "error": {"type", "message"},
        "request_id"}``, its type derived from the status (400 ``invalid_request_error``, 401
        ``authentication_error``, 429 ``rate_limit_error``, 529 ``overloaded_error``, ...).

        Args:
            status: the HTTP status (200 is allowed, to test that a client rejects the body).
            message: the error message.
            type: the error type (default derived from the status).
            code: the error code.
            headers: extra response headers, e.g. ``{"Retry-After": "0"}``.
            body: a raw body sent instead of the JSON error (e.g. an HTML page).
            content_type: the Content-Type (default JSON, or HTML/plain text for a raw body).
        """
        return cls._of("error", dict(locals()))

    @classmethod
    def in_band_error(cls, message: str, *, after_text: str = "", code: Optional[str] = None,
                      event: Optional[str] = None, reasoning: Optional[str] = None) -> "MockReply":
        """A 200 event stream: ``after_text`` deltas, then ``data: {"error": {...}}`` and no ``[DONE]``.

        On the Responses API: an ``error`` event ``{"type": "error", "error": {"type", "code",
        "message", "param"}}`` (the shape OpenAI sends) and then ``response.failed``. On
        Anthropic's Messages API: ``event: error`` with ``{"type": "error", "error": {"type":
        code or "overloaded_error", "message"}}``.

        Args:
            message: the error message.
            after_text: content streamed before the error.
            code: the error code.
            event: an SSE event name for the error (``"error"`` sends ``event: error`` like Groq);
                Chat Completions only.
            reasoning: reasoning streamed before ``after_text`` (see :meth:`reset`).
        """
        return cls._of("in_band_error", dict(locals()))

    @classmethod
    def stall(cls, *, after_text: str = "", before_headers: bool = False,
              reasoning: Optional[str] = None, bulk: bool = False) -> "MockReply":
        """Send headers, the role chunk (Responses: ``response.created``; Anthropic: ``message_start``) and
        ``after_text``, then nothing more.

        Nothing more until the client leaves or the server closes.

        Args:
            after_text: content streamed before stalling.
            before_headers: read the request and send nothing at all, not even the status line.
            reasoning: reasoning streamed before ``after_text`` (see :meth:`reset`).
            bulk: send all of it in one write, so that a client reads it at once (see the class docstring).
        """
        return cls._of("stall", dict(locals()))

    @classmethod
    def reset(cls, *, after_text: str = "", reasoning: Optional[str] = None) -> "MockReply":
        """Stream ``reasoning`` and ``after_text``, then abort the TCP connection with a RST.

        ``reasoning`` (in :meth:`stall`, :meth:`truncate` and :meth:`in_band_error` too) is
        streamed as in :meth:`text`: ``reasoning_content`` deltas, or on the Responses API a
        whole reasoning item before the unfinished message.
        """
        return cls._of("reset", dict(locals()))

    @classmethod
    def truncate(cls, *, after_text: str = "...", reasoning: Optional[str] = None) -> "MockReply":
        """Stream ``reasoning`` and ``after_text``, then end the body cleanly with no finish_reason and no ``[DONE]``.

        On the Responses API: no ``response.completed`` (nor any other terminal event). On Anthropic's
        Messages API: no ``content_block_stop``, ``message_delta`` nor ``message_stop``.
        """
        return cls._of("truncate", dict(locals()))

    @classmethod
    def keepalive_only(cls, seconds: float, *, interval: float = 0.05) -> "MockReply":
        """Send headers, then only ``: keep-alive`` comments every ``interval`` for ``seconds``, then close."""
        return cls._of("keepalive_only", dict(locals()))

    @classmethod
    def raw(cls, chunks: Sequence[bytes], *, status: int = 200, headers: Optional[Mapping[str, str]] = None,
            delay: float = 0.0, framing: str = "chunked") -> "MockReply":
        """Send arbitrary body bytes, one flushed write (one HTTP chunk) per item.

        Args:
            chunks: the body pieces, e.g. a UTF-8 character split across two writes.
            status: the HTTP status.
            headers: response headers (Content-Type defaults to ``text/event-stream``).
            delay: seconds between two writes.
            framing: ``"chunked"``, ``"close"`` or ``"length"``.
        """
        chunks = tuple(bytes(c) for c in chunks)
        return cls._of("raw", dict(locals()))

    @classmethod
    def json(cls, body: Mapping[str, Any], status: int = 200) -> "MockReply":
        """A whole JSON reply, e.g. a hand-written ``chat.completion``, ``response`` or ``message`` object."""
        return cls._of("json", dict(locals()))

    @classmethod
    def sse_file(cls, path: Union[str, Path], *, delay: float = 0.0, chunk_size: Optional[int] = None) -> "MockReply":
        """Replay a recorded ``.sse`` body, one write per event (or per ``chunk_size`` bytes).

        The file is read now, so a missing file fails here rather than in the server thread.
        """
        data = Path(path).read_bytes()
        if chunk_size:
            return cls.raw([data[i:i + chunk_size] for i in range(0, len(data), chunk_size)], delay=delay)
        return cls.raw(re.findall(rb"(?s).+?(?:\r\n\r\n|\n\n|\r\r|\Z)", data), delay=delay)


def _dumps(obj: Any) -> bytes:
    # Compact separators and raw UTF-8, the way OpenAI writes its chunks.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _sse(obj: Any, event: Optional[str] = None) -> bytes:
    return (f"event: {event}\n".encode() if event else b"") + b"data: " + _dumps(obj) + b"\n\n"


def _pieces(text: str, size: Optional[int]) -> List[str]:
    """Token-ish deltas: words with their leading whitespace, long words in ~4-character pieces."""
    if size:
        return [text[i:i + size] for i in range(0, len(text), size)]
    out: List[str] = []
    for word in re.findall(r"\s*\S+|\s+", text):
        out.extend([word[i:i + 4] for i in range(0, len(word), 4)] if len(word) > 8 else [word])
    return out


def _merge(base: Dict[str, str], extra: Optional[Mapping[str, str]]) -> Dict[str, str]:
    for key, value in (extra or {}).items():  # header names are case-insensitive: replace, never duplicate
        for old in [k for k in base if k.lower() == key.lower()]:
            del base[old]
        base[key] = value
    return base


_OPENERS = ("Once upon a time, {s} lived at the edge of a quiet harbor town.",
            "Long ago, in a valley full of morning fog, there was {s} who never stopped wondering.",
            "On the first warm day of spring, {s} set out to find something nobody had seen before.",
            "In a city of humming towers, {s} woke up with a strange and wonderful idea.")
_MIDDLES = ("Each day brought a small puzzle, and each puzzle taught a patient lesson.",
            "Along the way came a lost kitten, a broken lantern and a friend who needed help.",
            "The neighbors laughed at first, but slowly they began to listen.",
            "There were wrong turns and rainy afternoons, yet curiosity always won.")
_ENDINGS = ("By sunset, everyone agreed it had been the most remarkable day in years.",
            "In the end, the greatest discovery was how much a little kindness could change.",
            "From then on, a light always burned in the window, just in case.",
            "It was only the beginning, but what a beginning it was.")
_HEROES = ("a curious inventor", "a retired lighthouse keeper", "a wandering cartographer", "a small brave fox")


def _story(messages: Any) -> str:
    """The default reply: 2-4 deterministic story sentences seeded by the last user message."""
    messages = messages if isinstance(messages, list) else []
    text = ""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            parts = content if isinstance(content, list) else [{"text": content}]
            text = " ".join(str(p.get("text") or "") for p in parts if isinstance(p, dict))
            break
    # The message count is part of the seed so that a repeated question still gets a new answer.
    rng = random.Random(f"{len(messages)}|{text}")
    about = re.search(r"\babout\s+([^.?!\n]{1,60})", text, re.I)
    hero = about.group(1).strip() if about else rng.choice(_HEROES)
    middles = rng.sample(_MIDDLES, rng.randint(0, 2))
    return " ".join([rng.choice(_OPENERS).format(s=hero), *middles, rng.choice(_ENDINGS)])


def _usage(o: Mapping[str, Any], messages: Any, completion: int, reasoning: int) -> Optional[Dict[str, Any]]:
    """Chat-completions usage: plausible counts from the prompt's size, with the reply's overrides applied."""
    if not o["usage"]:
        return None
    prompt = max(1, len(json.dumps(messages)) // 4)
    usage: Dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": reasoning}}
    if isinstance(o["usage"], Mapping):
        usage.update(o["usage"])
        if "total_tokens" not in o["usage"]:
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage


