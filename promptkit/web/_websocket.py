"""Relaying a conversation over one WebSocket: the Go SDK example's protocol, with stop."""

from __future__ import annotations

import itertools
import json
import logging
import threading
from typing import Any, Callable, Dict, Optional, Union

from .._conversation import Conversation
from .._errors import ConversationBusyError, PromptKitError
from .._sse_out import dumps, json_frame
from .._stream import Stream, start_thread
from ._errors import error_event

__all__ = ["relay_websocket", "WebSocketRequestError"]

logger = logging.getLogger(__name__)

_ids = itertools.count(1)
# How long a new turn or the relay's exit waits for a cancelled turn to finish relaying.
_JOIN_WAIT = 10.0


class WebSocketRequestError(PromptKitError, ValueError):
    """A WebSocket frame that is not a valid relay request (sent back as an ``error`` frame)."""


class _Turn:
    """One turn being relayed, on a thread of its own: it opens the turn, then sends its events.

    Opening runs on that thread too, so the receiving thread sees a "stop" (or
    the socket closing) while the turn still connects, waits for its headers or
    backs off; it cancels through :meth:`Conversation.cancel`, which reaches
    every phase.
    """

    def __init__(self, conv: Conversation, message: str, options: Dict[str, Any],
                 send: Callable[[str], None], send_error: Callable[[BaseException], None]) -> None:
        self.conv = conv
        self.stopped = False
        self.ended = threading.Event()  # the terminal event (or the error raised before a stream) was taken
        self.thread = start_thread(self._run, f"ws-relay-{next(_ids)}", message, options, send, send_error)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def _run(self, message: str, options: Dict[str, Any], send: Callable[[str], None],
             send_error: Callable[[BaseException], None]) -> None:
        try:
            stream = self.conv.send_stream(message, **options)
        except Exception as exc:  # raised before a stream existed: one error frame, the socket stays open
            self.ended.set()
            send_error(exc)
            return
        if self.stopped:  # a stop that came before the turn could be reached by conv.cancel()
            stream.cancel()
        _pump(stream, send, self.ended)

    def stop(self, wait: bool) -> None:
        if not self.ended.is_set():
            self.stopped = True
            self.conv.cancel()
        if wait:
            self.thread.join(_JOIN_WAIT)
            if self.thread.is_alive():  # pragma: no cover - only if a send blocks for good
                logger.warning("a WebSocket relay thread is still sending %.0f s after its turn was cancelled", _JOIN_WAIT)


def _pump(stream: Stream, send: Callable[[str], None], ended: threading.Event) -> None:
    """Send every event of ``stream`` as a JSON text frame; a failed send cancels the stream."""
    events = iter(stream)
    try:
        for event in events:
            if event.is_terminal:
                ended.set()
            send(json_frame(event))
    except Exception as exc:  # the socket closed under us: nobody is left to read the reply
        logger.debug("WebSocket send failed, cancelling the turn: %r", exc)
    finally:
        events.close()  # before the terminal event, closing cancels the upstream request


def _parse(data: Union[str, bytes]) -> Any:
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise WebSocketRequestError("frames must be UTF-8 JSON") from None
    try:
        request = json.loads(data)
    except ValueError:
        raise WebSocketRequestError("frames must be JSON objects like {\"action\": \"send_message\", \"message\": \"...\"}") from None
    if not isinstance(request, dict):
        raise WebSocketRequestError("frames must be JSON objects with an \"action\"")
    return request


def relay_websocket(
    ws: Any,
    conversation: Union[Conversation, Callable[[], Conversation]],
    **send_options: Any,
) -> int:
    """Relay chat turns between one WebSocket connection and a conversation, until the socket closes.

    The protocol is the PromptKit Go SDK example's, plus stop. The client
    sends text frames:

    * ``{"action": "send_message", "message": "..."}`` starts a turn;
    * ``{"action": "stop"}`` cancels the turn in flight (the upstream request
      is aborted at once; the turn ends with a ``done`` event whose
      ``final.finish_reason`` is ``"cancelled"``, and commits as cancelled).

    The server sends each ``event.to_dict()`` as a JSON text frame (keys
    ``type``, ``content``, ``tool_call``, ``final``, ``error``), ending every
    turn with one ``done`` or ``error``. An error raised before the turn's
    stream existed (a rate limit, a busy conversation, ...) is sent as one
    ``error`` frame. So is an invalid frame (``error.type`` is
    ``"WebSocketRequestError"``) and a ``send_message`` while a turn is in
    flight (``"ConversationBusyError"``); those two do not end the turn in
    flight, whose own terminal event still follows.

    Events are sent by a thread of their own (``promptkit-ws-relay-N``)
    while the calling thread keeps receiving, so a stop is seen while the
    model talks. Sends are serialised with a lock: simple-websocket's
    ``send`` (flask-sock) is not thread-safe, as it shares one protocol
    state and compressor between callers. The caller's thread returns once
    the socket is closed, after cancelling the turn in flight and waiting for
    its thread.

    Works with any object that has ``send(str)`` and ``receive()`` (or
    ``recv()``) that returns a frame, and raises (or returns ``None``) once
    the connection is closed: flask-sock's and simple-websocket's ``Server``,
    and ``websockets.sync.server.ServerConnection``::

        from flask_sock import Sock
        sock = Sock(app)

        @sock.route("/ws")
        def ws(ws):
            relay_websocket(ws, lambda: client.conversation(conversation_id=session["cid"]))

    Args:
        ws: the server side of an accepted WebSocket connection.
        conversation: the conversation, or a factory called once, on entry.
        **send_options: passed to every ``send_stream`` (``buffer_size``, ``max_retries``, callbacks, ...).

    Returns:
        How many turns were started.
    """
    receive = getattr(ws, "receive", None) or ws.recv
    lock = threading.Lock()

    def send(text: str) -> None:
        with lock:
            ws.send(text)

    def send_error(error: BaseException) -> None:
        try:
            send(dumps(error_event(error)))
        except Exception as exc:  # the socket is closing: the receive loop will notice
            logger.debug("could not send an error frame: %r", exc)

    conv = conversation if isinstance(conversation, Conversation) else conversation()
    turn: Optional[_Turn] = None
    started = 0
    try:
        while True:
            try:
                data = receive()
            except Exception as exc:  # every WebSocket library raises its own ConnectionClosed
                logger.debug("WebSocket closed: %r", exc)
                return started
            if data is None:
                return started
            try:
                request = _parse(data)
                action = request.get("action")
                if action == "stop":
                    if turn is not None:
                        turn.stop(wait=False)
                    continue
                if action != "send_message":
                    raise WebSocketRequestError(f"unknown action {action!r}; expected \"send_message\" or \"stop\"")
                message = request.get("message")
                if not isinstance(message, str):
                    raise WebSocketRequestError("\"message\" must be a string")
            except WebSocketRequestError as exc:
                send_error(exc)
                continue
            if turn is not None and turn.running:
                # A turn whose terminal event was taken is only finishing its last send: wait for it.
                if not turn.ended.is_set() and not turn.stopped:
                    send_error(ConversationBusyError(f"conversation {conv.id} already has a turn in flight; send \"stop\" first"))
                    continue
                turn.stop(wait=True)  # a stopped turn finishes relaying first: its frames never interleave with ours
            started += 1
            turn = _Turn(conv, message, send_options, send, send_error)
    finally:
        if turn is not None:
            turn.stop(wait=True)
