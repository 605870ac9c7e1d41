"""The Anthropic Messages renderer: ``POST .../messages``, named events, no ``[DONE]``.

The events follow Anthropic's as recorded (``/work/shared/corpus/anthropic``): every event is
``event: <type>`` plus ``data: {"type": <type>, ...}``. A stream opens with ``message_start`` (the
message with empty content and provisional usage), sends each content block (``thinking``,
``text``, one ``tool_use`` per call) as ``content_block_start``, ``content_block_delta`` events and
``content_block_stop``, and ends with ``message_delta`` (stop reason and final usage) and
``message_stop``. As on the real server, one ``ping`` comes right after the first block's start
and is serialised differently (``{"type": "ping"}``), and the other data lines are padded with
spaces before their closing brace.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ._render import Block, Context, Plan, Renderer, Streamed, Whole
from ._replies import _JSON_TYPE, Headers, _Item, MockReply, _dumps, _merge, _pieces, _usage

__all__ = ["AnthropicRenderer"]

# Chat finish reasons as Anthropic stop reasons; any other value is sent as it is ("stop_sequence", "pause_turn", ...).
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                 "content_filter": "refusal"}
# The error type Anthropic sends with each status (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                500: "api_error", 504: "timeout_error", 529: "overloaded_error"}
_CHAT_USAGE = frozenset({"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
                         "completion_tokens_details"})
_PADDING = (15, 3, 10, 0, 6, 1, 12, 4, 0, 9)  # spaces before the closing brace, in turn
_PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def _text(content: Any) -> str:
    """The text of a string, or of a list of blocks (only ``text`` blocks have any)."""
    if isinstance(content, str):
        return content
    blocks = content if isinstance(content, list) else []
    return "".join(str(b.get("text") or "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")


def _part(block: Dict[str, Any]) -> Dict[str, Any]:
    """A user content block as the chat content part it stands for (other blocks are kept as they are)."""
    source = block.get("source")
    if block.get("type") == "text":
        return {"type": "text", "text": block.get("text")}
    if block.get("type") == "image" and isinstance(source, dict):
        url = source.get("url") if source.get("type") == "url" else \
            f"data:{source.get('media_type')};base64,{source.get('data')}"
        return {"type": "image_url", "image_url": {"url": url}}
    return block


def _conversation(body: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """An Anthropic request's ``system`` and ``messages`` as the chat messages of the same conversation.

    Tool results are blocks of a user message here and one tool message each in chat, and
    thinking blocks add nothing, so the same conversation gets the same default reply and
    prompt size on every endpoint.
    """
    out: List[Dict[str, Any]] = []
    system = _text(body.get("system"))
    if system:
        out.append({"role": "system", "content": system})
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        role, content = message.get("role"), message.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        if role == "assistant":
            text = _text(content)
            calls = [{"id": b.get("id"), "type": "function",
                      "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input", {}))}}
                     for b in blocks if b.get("type") == "tool_use"]
            last = out[-1] if out else {}
            if last.get("role") == "assistant":  # Anthropic merges consecutive turns of one role
                last["content"] = (last["content"] or "") + text if text else last["content"]
                if calls:
                    last.setdefault("tool_calls", []).extend(calls)
            else:
                out.append({"role": "assistant", "content": text or (None if calls else text)})
                if calls:
                    out[-1]["tool_calls"] = calls
            continue
        out += [{"role": "tool", "tool_call_id": b.get("tool_use_id"), "content": _text(b.get("content"))}
                for b in blocks if b.get("type") == "tool_result"]
        rest = [_part(b) for b in blocks if b.get("type") != "tool_result"]
        if isinstance(content, str) or rest:
            out.append({"role": role, "content": content if isinstance(content, str) else rest})
    return out


def _anthropic_usage(o: Mapping[str, Any], messages: Any, completion: int,
                     reasoning: int) -> Optional[Dict[str, Any]]:
    """The counts of ``_usage`` in Anthropic names; a ``usage`` dict may use the chat or the Anthropic names.

    Anthropic's ``input_tokens`` leaves out the tokens read from the cache (chat's ``cached_tokens``),
    which it reports as ``cache_read_input_tokens``.
    """
    chat = _usage(o, messages, completion, reasoning)
    if chat is None:
        return None
    prompt = chat["prompt_tokens_details"] if isinstance(chat.get("prompt_tokens_details"), Mapping) else {}
    output = chat["completion_tokens_details"] if isinstance(chat.get("completion_tokens_details"), Mapping) else {}
    cached = int(prompt.get("cached_tokens") or 0)
    usage: Dict[str, Any] = {"input_tokens": chat["prompt_tokens"] - cached, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": cached, "output_tokens": chat["completion_tokens"]}
    if output.get("reasoning_tokens"):  # as Anthropic reports thinking
        usage["output_tokens_details"] = {"thinking_tokens": output["reasoning_tokens"]}
    if isinstance(o["usage"], Mapping):
        usage.update((key, value) for key, value in o["usage"].items() if key not in _CHAT_USAGE)
    return usage


def _stop_reason(finish_reason: Optional[str], calls: bool) -> Optional[str]:
    if calls and finish_reason in ("stop", "tool_calls", "function_call"):
        return "tool_use"
    return None if finish_reason is None else _STOP_REASONS.get(finish_reason, finish_reason)


class _Events:
    """Encodes the events of one stream; a pause of ``delay`` goes between two deltas."""

    def __init__(self, delay: float) -> None:
        self.items: List[_Item] = []
        self.delay = delay
        self._count = self._deltas = 0

    def add(self, type: str, **fields: Any) -> None:  # noqa: A002 - the wire name
        data = _dumps({"type": type, **fields})
        pad = b" " * _PADDING[self._count % len(_PADDING)]  # Anthropic pads most data lines like this
        self._count += 1
        self.items.append(b"event: " + type.encode() + b"\ndata: " + data[:-1] + pad + b"}\n\n")

    def delta(self, index: int, delta: Dict[str, Any]) -> None:
        if self._deltas and self.delay > 0:
            self.items.append(self.delay)
        self._deltas += 1
        self.add("content_block_delta", index=index, delta=delta)

    def ping(self) -> None:
        self.items.append(_PING)


# One content block: its final form, its form in content_block_start, and its deltas.
_Block = Tuple[Dict[str, Any], Dict[str, Any], List[Dict[str, Any]]]


class _Message:
    """One rendered reply: its ids, its message objects and its content blocks."""

    def __init__(self, req: Mapping[str, Any], ctx: Context, o: Mapping[str, Any]) -> None:
        self.seq, self.model = ctx.seq, ctx.model_of(o, req)
        self.id = f"msg_mock{ctx.seq:08d}"

    def message(self, content: List[Dict[str, Any]], stop_reason: Optional[str],
                usage: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        out: Dict[str, Any] = {"model": self.model, "id": self.id, "type": "message", "role": "assistant",
                               "content": content, "stop_reason": stop_reason, "stop_sequence": None}
        if usage is not None:
            out["usage"] = usage
        return out

    def start(self, ev: _Events, usage: Optional[Dict[str, Any]]) -> None:
        """``message_start``: usage with the prompt's counts and a provisional ``output_tokens`` of 1."""
        if usage is not None:
            usage = {k: v for k, v in usage.items() if k != "output_tokens_details"}
            usage["output_tokens"] = 1
        ev.add("message_start", message=self.message([], None, usage))

    def thinking(self, text: str, pieces: List[str]) -> _Block:
        # A mock signature: opaque and deterministic; real ones are base64 too.
        digest = hashlib.sha256(f"{self.id}|{text}".encode()).digest()
        signature = base64.b64encode(b"promptkit-mock-thinking-signature:" + digest).decode()
        deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
        return ({"type": "thinking", "thinking": text, "signature": signature},
                {"type": "thinking", "thinking": "", "signature": ""},
                deltas + [{"type": "signature_delta", "signature": signature}])

    @staticmethod
    def text(text: str, pieces: List[str]) -> _Block:
        return {"type": "text", "text": text}, {"type": "text", "text": ""}, [
            {"type": "text_delta", "text": p} for p in pieces]

    def tool_use(self, i: int, call: Mapping[str, Any], pieces: List[str]) -> _Block:
        args = call.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                pass  # sent as it is: a script may test a client against a broken input
        block = {"type": "tool_use", "id": call.get("id") or f"toolu_mock{self.seq}_{i}", "name": call["name"]}
        # Anthropic's first fragment is always "", and a call without arguments sends only that one.
        fragments = [""] + ([] if "".join(pieces) in ("", "{}") else pieces)
        return dict(block, input=args), dict(block, input={}), [
            {"type": "input_json_delta", "partial_json": p} for p in fragments]


class AnthropicRenderer(Renderer):
    """Anthropic's Messages API (``POST .../messages``), streamed as named events ending with ``message_stop``."""

    suffix = "/messages"
    bad_key = "invalid x-api-key"

    def authorized(self, headers: Headers, api_key: str) -> bool:
        """Anthropic's ``x-api-key: <key>``, or ``Authorization: Bearer <key>`` as gateways and proxies send it."""
        return headers.get("x-api-key") == api_key or super().authorized(headers, api_key)

    def messages(self, body: Mapping[str, Any]) -> List[Dict[str, Any]]:
        return _conversation(body)

    def render(self, reply: MockReply, req: Dict[str, Any], ctx: Context) -> Plan:
        """As the base class, with Anthropic's ``request-id`` header on every reply but raw ones."""
        plan = super().render(reply, req, ctx)
        if reply.kind == "raw" or isinstance(plan, Block):
            return plan
        return dataclasses.replace(plan, headers=_merge({"request-id": ctx.request_id}, plan.headers))

    def error_json(self, o: Mapping[str, Any], ctx: Context) -> Dict[str, Any]:
        """Anthropic's error object, its type derived from the status unless given."""
        status = o["status"]
        etype = o["type"] or _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": etype, "message": o["message"]}, "request_id": ctx.request_id}

    def answer(self, o: Mapping[str, Any], req: Dict[str, Any], ctx: Context) -> Plan:
        """Render a text or tool_calls reply as content blocks: thinking, text, tool_use."""
        r = _Message(req, ctx, o)
        blocks: List[_Block] = []
        # As many output tokens as the chat renderer counts deltas: the same reply has the same usage everywhere.
        thinking = _pieces(o["reasoning"] or "", None)
        completion = len(thinking)
        if o["reasoning"]:
            blocks.append(r.thinking(o["reasoning"], thinking))
        if o["text"]:
            pieces = _pieces(o["text"], o["chunk_size"])
            blocks.append(r.text(o["text"], pieces))
            completion += len(pieces)
        step = max(1, o.get("split_arguments", 1))
        calls = o.get("calls", ())
        for i, call in enumerate(calls):
            args = call.get("arguments", {})
            args = args if isinstance(args, str) else json.dumps(args)
            pieces = [args[j:j + step] for j in range(0, len(args), step)]
            blocks.append(r.tool_use(i, call, pieces))
            completion += 1 + len(pieces)
        usage = _anthropic_usage(o, self.messages(req), completion, len(thinking))
        stop = _stop_reason(o["finish_reason"], bool(calls))
        if not req.get("stream"):
            body = r.message([final for final, _, _ in blocks], stop, usage)
            return Whole(200, _dumps(body), _JSON_TYPE, o["headers"])
        ev = _Events(o["delay"])
        ev.items += [b": keep-alive\n\n"] * o["keepalive_comments"]
        r.start(ev, usage)
        if not blocks:
            ev.ping()
            ev.items.append(o["first_delay"])
        for index, (_, start, deltas) in enumerate(blocks):
            ev.add("content_block_start", index=index, content_block=start)
            if index == 0:
                ev.ping()
                ev.items.append(o["first_delay"])
            for delta in deltas:
                ev.delta(index, delta)
            ev.add("content_block_stop", index=index)
        if stop is not None:  # else the stream just ends, as a truncated one does
            end = {"usage": usage} if usage is not None else {}
            ev.add("message_delta", delta={"stop_reason": stop, "stop_sequence": None}, **end)
            ev.add("message_stop")
        return Streamed(200, o["headers"], o["framing"] or ctx.framing, ev.items, bulk=o["bulk"])

    def broken(self, kind: str, o: Mapping[str, Any], req: Dict[str, Any], ctx: Context) -> List[_Item]:
        # message_start, after_text in a text block that never stops, then for in_band_error an `error` event
        # (serialised like the ping, as Anthropic documents it).
        ev = _Events(0.0)
        message = _Message(req, ctx, o)
        message.start(ev, _anthropic_usage({"usage": True}, self.messages(req), 0, 0))
        reasoning = o.get("reasoning") or ""
        index = 0
        if reasoning:  # a whole thinking block first, as on the other endpoints
            _, opening, deltas = message.thinking(reasoning, _pieces(reasoning, None))
            ev.add("content_block_start", index=0, content_block=opening)
            ev.ping()
            for item in deltas:
                ev.delta(0, item)
            ev.add("content_block_stop", index=0)
            index = 1
        text = o.get("after_text", "")
        if text:
            ev.add("content_block_start", index=index, content_block={"type": "text", "text": ""})
        if not reasoning:
            ev.ping()
        for piece in _pieces(text, None):
            ev.delta(index, {"type": "text_delta", "text": piece})
        if kind == "in_band_error":
            error = {"type": "error", "error": {"type": o["code"] or "overloaded_error", "message": o["message"]}}
            ev.items.append(b"event: error\ndata: " + json.dumps(error, ensure_ascii=False).encode() + b"\n\n")
        return ev.items
