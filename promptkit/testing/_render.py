"""What a wire protocol's renderer turns a MockReply into, and the part every protocol shares.

A renderer is pure: from a :class:`MockReply` and the request body it builds a plan (a whole
body, an event-stream script, or "send nothing"), and the server's connection handler carries
the plan out on the socket. One renderer per wire protocol (``_render_chat``,
``_render_responses``, ``_render_anthropic``), chosen by the request path; a new protocol is
one more subclass of :class:`Renderer` and one more entry in the server's list.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Union

from ._replies import _JSON_TYPE, Headers, _Item, MockReply, _dumps

__all__ = ["Block", "Context", "Plan", "Renderer", "Streamed", "Whole"]


@dataclass(frozen=True)
class Whole:
    """Send one body with a ``Content-Length``."""

    status: int
    data: bytes
    content_type: str
    headers: Optional[Mapping[str, str]] = None


@dataclass(frozen=True)
class Streamed:
    """Send an event stream: ``items`` are writes (bytes) and pauses (floats).

    ``end`` is what happens after the last item: ``"done"`` (end the body), ``"close"`` (end it
    and close the connection), ``"stall"`` (send nothing more) or ``"reset"`` (abort with a RST).
    """

    status: int
    headers: Optional[Mapping[str, str]]
    framing: str
    items: List[_Item]
    end: str = "done"
    bulk: bool = False


@dataclass(frozen=True)
class Block:
    """Send nothing at all, not even a status line, until the client or the server gives up."""


Plan = Union[Whole, Streamed, Block]


@dataclass(frozen=True)
class Context:
    """What a renderer needs from the server for one reply.

    Attributes:
        seq: the reply's number on this server (from 1), used in the ids it sends.
        model: the server's default model.
        framing: the server's default framing of streamed replies.
    """

    seq: int
    model: str
    framing: str

    def model_of(self, o: Mapping[str, Any], req: Mapping[str, Any]) -> str:
        """The reported model: the reply's, else the request's, else the server's."""
        return str(o.get("model") or req.get("model") or self.model)

    @property
    def request_id(self) -> str:
        """The id the server gives this reply (its ``x-request-id`` header)."""
        return f"req_mock{self.seq:08d}"


class Renderer(abc.ABC):
    """One wire protocol. Subclasses set ``suffix`` and implement the abstract methods."""

    #: the request path (without query) ends with this, e.g. ``"/chat/completions"``
    suffix: str = ""
    #: the message of the 401 sent when the server has an ``api_key`` and the request lacks it
    bad_key: str = "Incorrect API key provided."

    def matches(self, path: str) -> bool:
        """Whether a request target (``/v1/...?...``) is this protocol's endpoint."""
        return path.split("?", 1)[0].rstrip("/").endswith(self.suffix)

    def authorized(self, headers: Headers, api_key: str) -> bool:
        """Whether the request headers carry the server's ``api_key`` (OpenAI: ``Authorization: Bearer``)."""
        return bool(headers.get("Authorization") == f"Bearer {api_key}")

    @abc.abstractmethod
    def messages(self, body: Mapping[str, Any]) -> List[Dict[str, Any]]:
        """The conversation of a request body as chat-completions messages (for the default reply and usage)."""

    def render(self, reply: MockReply, req: Dict[str, Any], ctx: Context) -> Plan:
        """The plan for sending ``reply`` as the answer to the request body ``req``."""
        o, kind = reply.options, reply.kind
        if kind == "error":
            return self._error(o, ctx)
        if kind == "json":
            return Whole(o["status"], _dumps(o["body"]), _JSON_TYPE)
        if kind == "raw":
            items: List[_Item] = []
            for piece in o["chunks"]:
                items += [o["delay"], piece] if items else [piece]
            return Streamed(o["status"], o["headers"], o["framing"], items)
        if kind == "stall" and o["before_headers"]:
            return Block()
        if kind in ("text", "tool_calls"):
            return self.answer(o, req, ctx)
        if kind == "keepalive_only":
            count = max(1, round(o["seconds"] / o["interval"])) if o["interval"] > 0 else 1
            return self._failure([b": keep-alive\n\n", o["interval"]] * count, "close", ctx)
        # stall, reset, truncate, in_band_error: a stream that starts and then breaks off its own way.
        items = self.broken(kind, o, req, ctx)
        return self._failure(items, kind if kind in ("stall", "reset") else "done", ctx, bulk=o.get("bulk", False))

    @abc.abstractmethod
    def answer(self, o: Mapping[str, Any], req: Dict[str, Any], ctx: Context) -> Plan:
        """A text or tool_calls reply: streamed when the request asked for it, else one JSON object."""

    @abc.abstractmethod
    def broken(self, kind: str, o: Mapping[str, Any], req: Dict[str, Any], ctx: Context) -> List[_Item]:
        """The events of a stream that fails: the protocol's opening events, ``o["after_text"]`` as content,
        and for ``kind == "in_band_error"`` the protocol's in-band error. The server ends it by ``kind``."""

    def error_json(self, o: Mapping[str, Any], ctx: Context) -> Dict[str, Any]:
        """The JSON body of an ``error`` reply without a raw body: OpenAI's ``{"error": {...}}``."""
        etype = o["type"] or ("server_error" if o["status"] >= 500 else
                              "rate_limit_error" if o["status"] == 429 else "invalid_request_error")
        return {"error": {"message": o["message"], "type": etype, "param": None, "code": o["code"]}}

    def _error(self, o: Mapping[str, Any], ctx: Context) -> Whole:
        """A whole error reply: the protocol's JSON error object, or the raw body given."""
        data = o["body"]
        ctype = o["content_type"] or _JSON_TYPE
        if data is None:
            data = _dumps(self.error_json(o, ctx))
        else:
            data = data.encode() if isinstance(data, str) else data
            html = data.lstrip()[:1] == b"<"
            ctype = o["content_type"] or ("text/html; charset=utf-8" if html else "text/plain; charset=utf-8")
        return Whole(o["status"], data, ctype, o["headers"])

    @staticmethod
    def _failure(items: List[_Item], end: str, ctx: Context, *, bulk: bool = False) -> Streamed:
        # "length" framing cannot stall or reset half-way, so these fall back to chunked.
        return Streamed(200, None, "close" if ctx.framing == "close" else "chunked", items, end, bulk=bulk)
