"""The Chat Completions renderer: ``POST .../chat/completions``, ``chat.completion.chunk`` events and ``[DONE]``."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Mapping, Optional

from ._render import Context, Plan, Renderer, Streamed, Whole
from ._replies import _JSON_TYPE, _Item, _dumps, _pieces, _sse, _usage

__all__ = ["ChatRenderer"]


class _Chunks:
    """Builds the ``chat.completion.chunk`` events of one reply (they share id, created and model)."""

    def __init__(self, req: Mapping[str, Any], ctx: Context, o: Mapping[str, Any]) -> None:
        options = req.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self.base = {"id": f"chatcmpl-mock{ctx.seq:08d}", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": ctx.model_of(o, req), "system_fingerprint": "fp_mock"}

    def __call__(self, delta: Dict[str, Any], finish: Optional[str] = None) -> bytes:
        out = dict(self.base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if self.include_usage:  # OpenAI sends "usage": null on every chunk once usage was requested
            out["usage"] = None
        return _sse(out)


class ChatRenderer(Renderer):
    """OpenAI Chat Completions, streamed as ``data: {chat.completion.chunk}`` lines ending with ``data: [DONE]``."""

    suffix = "/chat/completions"

    def messages(self, body: Mapping[str, Any]) -> List[Dict[str, Any]]:
        messages = body.get("messages")
        return messages if isinstance(messages, list) else []

    def broken(self, kind: str, o: Mapping[str, Any], req: Dict[str, Any], ctx: Context) -> List[_Item]:
        # The role chunk, any reasoning and some content, then for in_band_error a data: {"error": ...} line
        # (no [DONE]).
        chunk = _Chunks(req, ctx, {})
        items: List[_Item] = [chunk({"role": "assistant", "content": ""})]
        items += [chunk({"reasoning_content": p}) for p in _pieces(o.get("reasoning") or "", None)]
        items += [chunk({"content": p}) for p in _pieces(o.get("after_text", ""), None)]
        if kind == "in_band_error":
            error = {"message": o["message"], "type": "server_error", "param": None, "code": o["code"]}
            items.append(_sse({"error": error}, o["event"]))
        return items

    def answer(self, o: Mapping[str, Any], req: Dict[str, Any], ctx: Context) -> Plan:
        """Render a text or tool_calls reply, streamed or as one ``chat.completion`` object."""
        chunk = _Chunks(req, ctx, o)
        base = chunk.base
        reasoning = [{"reasoning_content": p} for p in _pieces(o["reasoning"] or "", None)]
        pieces = _pieces(o["text"], o["chunk_size"])
        tool_deltas: List[Dict[str, Any]] = []
        calls = []
        for i, call in enumerate(o.get("calls", ())):
            args = call.get("arguments", {})
            args = args if isinstance(args, str) else json.dumps(args)
            calls.append({"id": call.get("id") or f"call_mock{ctx.seq}_{i}", "type": "function",
                          "function": {"name": call["name"], "arguments": args}})
            first = {"index": i, **calls[-1], "function": {"name": call["name"], "arguments": ""}}
            step = max(1, o["split_arguments"])
            tool_deltas += [{"tool_calls": [first]}] + [{"tool_calls": [{"index": i, "function": {
                "arguments": args[j:j + step]}}]} for j in range(0, len(args), step)]
        usage = _usage(o, req.get("messages", []), len(reasoning) + len(pieces) + len(tool_deltas), len(reasoning))
        if not req.get("stream"):
            message: Dict[str, Any] = {"role": "assistant", "content": o["text"] or None, "refusal": None}
            if o["reasoning"]:
                message["reasoning_content"] = o["reasoning"]
            if calls:
                message["tool_calls"] = calls
            body = dict(base, object="chat.completion", choices=[
                {"index": 0, "message": message, "logprobs": None, "finish_reason": o["finish_reason"]}])
            if usage is not None:
                body["usage"] = usage
            return Whole(200, _dumps(body), _JSON_TYPE, o["headers"])
        # A long reply repeats its pieces (benchmarks send thousands of equal deltas): render each distinct one once.
        rendered = {p: chunk({"content": p}) for p in dict.fromkeys(pieces)}
        out = [chunk(d) for d in reasoning] + list(map(rendered.__getitem__, pieces)) + [chunk(d) for d in tool_deltas]
        items: List[_Item] = [b": keep-alive\n\n"] * o["keepalive_comments"]
        items += [chunk({"role": "assistant", "content": ""}), o["first_delay"]]
        if o["delay"] > 0:
            for i, data in enumerate(out):
                items += [o["delay"], data] if i else [data]
        else:
            items += out
        if o["finish_reason"] is not None:
            items.append(chunk({}, o["finish_reason"]))
        if chunk.include_usage and usage is not None:
            items.append(_sse(dict(base, choices=[], usage=usage)))
        if o["include_done"]:
            items.append(b"data: [DONE]\n\n")
        return Streamed(200, o["headers"], o["framing"] or ctx.framing, items, bulk=o["bulk"])
