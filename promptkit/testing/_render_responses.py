"""The Responses API renderer: ``POST .../responses``, named events with sequence numbers, no ``[DONE]``.

The events follow OpenAI's as recorded (``/work/shared/corpus/responses``): every event is
``event: <type>`` plus ``data: {"type": <type>, "sequence_number": n, ...}``; a stream opens with
``response.created`` and ``response.in_progress``, streams each output item (reasoning, message,
function calls) between ``response.output_item.added`` and ``response.output_item.done``, and
ends with ``response.completed``, ``response.incomplete`` or, after an ``error`` event,
``response.failed``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ._render import Context, Plan, Renderer, Streamed, Whole
from ._replies import _JSON_TYPE, _Item, _dumps, _pieces, _usage

__all__ = ["ResponsesRenderer"]

_ENCRYPTED = "reasoning.encrypted_content"  # the `include` entry that asks for encrypted reasoning
_COMPLETED = ("stop", "tool_calls", "function_call")  # chat finish reasons of a completed response
_INCOMPLETE = {"length": "max_output_tokens"}  # other chat finish reasons: incomplete_details.reason
_USAGE_NAMES = {"prompt_tokens": "input_tokens", "prompt_tokens_details": "input_tokens_details",
                "completion_tokens": "output_tokens", "completion_tokens_details": "output_tokens_details"}
_PAD = "mZhSFjZXJr0Xy4lUv4u4YwOlliOCc2dfXwA6HxTq2wtPseI3KxuNsGfuvYpEYMAR"  # obfuscation padding


def _text(content: Any) -> str:
    """The text of a message item's content: a string, or parts with ``text`` (images have none)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "".join(str(p.get("text") or "") for p in parts if isinstance(p, dict))


def _conversation(body: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """A Responses request's ``instructions`` and ``input`` as the chat messages of the same conversation.

    One assistant turn is several items here (reasoning, a message, function calls) and one
    message in chat, so consecutive assistant items merge and reasoning items add nothing: the
    same conversation gets the same default reply and prompt size on either endpoint.
    """
    out: List[Dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        out.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    items = [{"role": "user", "content": items}] if isinstance(items, str) else items
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind, last = item.get("type", "message"), out[-1] if out else {}
        if kind == "message" and item.get("role") == "assistant":
            text = _text(item.get("content"))
            if last.get("role") == "assistant":
                last["content"] = (last["content"] or "") + text
            else:
                out.append({"role": "assistant", "content": text})
        elif kind == "message":
            out.append({"role": item.get("role"), "content": item.get("content")})
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments", "")}}
            if last.get("role") == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")})
    return out


def _responses_usage(o: Mapping[str, Any], messages: Any, completion: int, reasoning: int) -> Optional[Dict[str, Any]]:
    """The usage of ``_usage`` in Responses names; overrides may use either the chat or the Responses names."""
    chat = _usage(o, messages, completion, reasoning)
    if chat is None:
        return None
    named = {_USAGE_NAMES.get(key, key): value for key, value in chat.items()}  # a Responses-named override wins
    order = ("input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details", "total_tokens")
    usage = {key: named.pop(key) for key in order}
    usage.update(named)  # extra fields of an override, e.g. "cost"
    if isinstance(o["usage"], Mapping) and "total_tokens" not in o["usage"]:
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    return usage


def _outcome(finish_reason: Optional[str]) -> Tuple[Optional[str], Optional[Dict[str, str]]]:
    """A chat finish reason as the response's status and incomplete_details (``None``: no terminal event)."""
    if finish_reason is None:
        return None, None
    if finish_reason in _COMPLETED:
        return "completed", None
    return "incomplete", {"reason": _INCOMPLETE.get(finish_reason, finish_reason)}


class _Events:
    """Numbers and encodes the events of one stream; a pause of ``delay`` goes between two deltas."""

    def __init__(self, delay: float, obfuscate: bool) -> None:
        self.items: List[_Item] = []
        self.delay, self.obfuscate = delay, obfuscate
        self._seq = self._deltas = 0

    def add(self, type: str, **fields: Any) -> None:  # noqa: A002 - the wire name
        data = _dumps({"type": type, "sequence_number": self._seq, **fields})
        self.items.append(b"event: " + type.encode() + b"\ndata: " + data + b"\n\n")
        self._seq += 1

    def delta(self, type: str, delta: str, **fields: Any) -> None:  # noqa: A002 - the wire name
        if self._deltas and self.delay > 0:
            self.items.append(self.delay)
        self._deltas += 1
        if self.obfuscate:  # OpenAI pads deltas with random characters (stream_options.include_obfuscation)
            start = self._seq % 32
            fields["obfuscation"] = _PAD[start:start + max(2, 16 - len(delta))]
        self.add(type, delta=delta, **fields)


class _Reply:
    """One rendered reply: its ids, its response objects and the events of each output item."""

    def __init__(self, req: Mapping[str, Any], ctx: Context, o: Mapping[str, Any]) -> None:
        self.req, self.seq, self.model = req, ctx.seq, ctx.model_of(o, req)
        self.id = f"resp_mock{ctx.seq:08d}"
        self.created = int(time.time())
        include = req.get("include")
        self.encrypted = isinstance(include, list) and _ENCRYPTED in include

    def response(self, status: str, output: List[Dict[str, Any]], usage: Optional[Dict[str, Any]] = None,
                 error: Optional[Dict[str, Any]] = None, incomplete: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """The ``response`` object, echoing the request's settings like OpenAI does."""
        req = self.req
        reasoning: Mapping[str, Any] = req["reasoning"] if isinstance(req.get("reasoning"), dict) else {}
        return {"id": self.id, "object": "response", "created_at": self.created, "status": status,
                "background": False, "completed_at": self.created if status == "completed" else None,
                "error": error, "incomplete_details": incomplete, "instructions": req.get("instructions"),
                "max_output_tokens": req.get("max_output_tokens"), "max_tool_calls": req.get("max_tool_calls"),
                "model": self.model, "output": output, "parallel_tool_calls": req.get("parallel_tool_calls", True),
                "previous_response_id": req.get("previous_response_id"),
                "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
                "service_tier": "default", "store": req.get("store", True),
                "temperature": req.get("temperature", 1.0), "text": req.get("text") or {"format": {"type": "text"}},
                "tool_choice": req.get("tool_choice", "auto"), "tools": req.get("tools") or [],
                "top_p": req.get("top_p", 1.0), "truncation": req.get("truncation", "disabled"), "usage": usage,
                "user": None, "metadata": req.get("metadata") or {}}

    def open(self, ev: _Events) -> None:
        """The first two events of every stream."""
        ev.add("response.created", response=self.response("in_progress", []))
        ev.add("response.in_progress", response=self.response("in_progress", []))

    def opaque(self, stage: str, text: str) -> str:
        """A mock ``encrypted_content``: opaque, deterministic, and (like OpenAI's) different in each event."""
        digest = hashlib.sha256(f"{self.id}|{stage}|{text}".encode()).digest()
        return "gAAAAAB" + base64.urlsafe_b64encode(b"promptkit-mock-reasoning:" + digest).decode()

    def reasoning(self, text: str) -> Dict[str, Any]:
        item: Dict[str, Any] = {"id": f"rs_mock{self.seq:08d}", "type": "reasoning",
                                "summary": [{"type": "summary_text", "text": text}]}
        if self.encrypted:
            item["encrypted_content"] = self.opaque("done", text)
        return item

    def stream_reasoning(self, ev: _Events, index: int, item: Dict[str, Any], pieces: List[str]) -> None:
        text, where = item["summary"][0]["text"], {"item_id": item["id"], "output_index": index, "summary_index": 0}
        added = dict(item, summary=[])
        if self.encrypted:
            added["encrypted_content"] = self.opaque("added", text)
        ev.add("response.output_item.added", output_index=index, item=added)
        ev.add("response.reasoning_summary_part.added", **where, part={"type": "summary_text", "text": ""})
        for piece in pieces:
            ev.delta("response.reasoning_summary_text.delta", piece, **where)
        ev.add("response.reasoning_summary_text.done", **where, text=text)
        ev.add("response.reasoning_summary_part.done", **where, part={"type": "summary_text", "text": text})
        ev.add("response.output_item.done", output_index=index, item=item)

    def message(self, text: str, status: str = "completed") -> Dict[str, Any]:
        return {"id": f"msg_mock{self.seq:08d}", "type": "message", "status": status,
                "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
                "role": "assistant"}

    def open_message(self, ev: _Events, index: int, pieces: List[str]) -> Dict[str, Any]:
        """Stream a message item up to its last text delta; return where its events go."""
        where = {"item_id": f"msg_mock{self.seq:08d}", "output_index": index, "content_index": 0}
        ev.add("response.output_item.added", output_index=index, item=dict(self.message(""), status="in_progress",
                                                                           content=[]))
        ev.add("response.content_part.added", **where, part=self.message("")["content"][0])
        for piece in pieces:
            ev.delta("response.output_text.delta", piece, **where, logprobs=[])
        return where

    def stream_message(self, ev: _Events, index: int, item: Dict[str, Any], pieces: List[str]) -> None:
        where = self.open_message(ev, index, pieces)
        part = item["content"][0]
        ev.add("response.output_text.done", **where, text=part["text"], logprobs=[])
        ev.add("response.content_part.done", **where, part=part)
        ev.add("response.output_item.done", output_index=index, item=item)

    def call(self, i: int, call: Mapping[str, Any]) -> Dict[str, Any]:
        args = call.get("arguments", {})
        return {"id": f"fc_mock{self.seq}_{i}", "type": "function_call", "status": "completed",
                "arguments": args if isinstance(args, str) else json.dumps(args),
                "call_id": call.get("id") or f"call_mock{self.seq}_{i}", "name": call["name"]}

    @staticmethod
    def stream_call(ev: _Events, index: int, item: Dict[str, Any], pieces: List[str]) -> None:
        ev.add("response.output_item.added", output_index=index, item=dict(item, status="in_progress", arguments=""))
        for piece in pieces:
            ev.delta("response.function_call_arguments.delta", piece, item_id=item["id"], output_index=index)
        ev.add("response.function_call_arguments.done", item_id=item["id"], output_index=index,
               arguments=item["arguments"])
        ev.add("response.output_item.done", output_index=index, item=item)


def _events(req: Mapping[str, Any], delay: float = 0.0) -> _Events:
    options = req.get("stream_options")
    return _Events(delay, not (isinstance(options, dict) and options.get("include_obfuscation") is False))


class ResponsesRenderer(Renderer):
    """The OpenAI Responses API (``POST .../responses``), streamed as named, numbered events."""

    suffix = "/responses"

    def messages(self, body: Mapping[str, Any]) -> List[Dict[str, Any]]:
        return _conversation(body)

    def answer(self, o: Mapping[str, Any], req: Dict[str, Any], ctx: Context) -> Plan:
        """Render a text or tool_calls reply as output items: reasoning, a message, function calls."""
        r = _Reply(req, ctx, o)
        status, incomplete = _outcome(o["finish_reason"])
        # (item, its delta pieces, how it streams), in output order
        parts: List[Tuple[Dict[str, Any], List[str], Callable[[_Events, int, Dict[str, Any], List[str]], None]]] = []
        if o["reasoning"]:
            parts.append((r.reasoning(o["reasoning"]), _pieces(o["reasoning"], None), r.stream_reasoning))
        if o["text"] or "calls" not in o:  # a text reply always has its message, even an empty one
            message = r.message(o["text"], "incomplete" if status == "incomplete" else "completed")
            parts.append((message, _pieces(o["text"], o["chunk_size"]), r.stream_message))
        step = max(1, o.get("split_arguments", 1))
        for i, call in enumerate(o.get("calls", ())):
            item = r.call(i, call)
            args = item["arguments"]
            parts.append((item, [args[j:j + step] for j in range(0, len(args), step)], r.stream_call))
        output = [item for item, _, _ in parts]
        # As many output tokens as the chat renderer counts deltas: the same reply has the same usage on both.
        completion = sum(len(pieces) + (item["type"] == "function_call") for item, pieces, _ in parts)
        reasoning = len(parts[0][1]) if o["reasoning"] else 0
        usage = _responses_usage(o, self.messages(req), completion, reasoning)
        if not req.get("stream"):
            body = r.response(status or "in_progress", output, usage, incomplete=incomplete)
            return Whole(200, _dumps(body), _JSON_TYPE, o["headers"])
        ev = _events(req, o["delay"])
        ev.items += [b": keep-alive\n\n"] * o["keepalive_comments"]
        r.open(ev)
        ev.items.append(o["first_delay"])
        for index, (item, pieces, stream) in enumerate(parts):
            stream(ev, index, item, pieces)
        if status is not None:  # else the stream just ends, as a truncated one does
            ev.add(f"response.{status}", response=r.response(status, output, usage, incomplete=incomplete))
        return Streamed(200, o["headers"], o["framing"] or ctx.framing, ev.items, bulk=o["bulk"])

    def broken(self, kind: str, o: Mapping[str, Any], req: Dict[str, Any], ctx: Context) -> List[_Item]:
        # response.created and .in_progress, any reasoning as a whole item, after_text in a message item
        # that never finishes, then for in_band_error an `error` event and response.failed (the shape
        # OpenAI sends, see the corpus).
        r = _Reply(req, ctx, o)
        ev = _events(req)
        r.open(ev)
        output: List[Dict[str, Any]] = []
        reasoning = o.get("reasoning") or ""
        if reasoning:
            output.append(r.reasoning(reasoning))
            r.stream_reasoning(ev, 0, output[0], _pieces(reasoning, None))
        text = o.get("after_text", "")
        if text:
            r.open_message(ev, len(output), _pieces(text, None))
        if kind == "in_band_error":
            code = o["code"] or "server_error"
            ev.add("error", error={"type": code, "code": code, "message": o["message"], "param": None})
            output += [r.message(text, "incomplete")] if text else []
            error = {"code": code, "message": o["message"]}
            ev.add("response.failed", response=r.response("failed", output, error=error))
        return ev.items
