"""The AI SDK chat transport's request body: :func:`parse_chat_request` and :class:`AIChatRequest`.

Checked against ``HttpChatTransport.sendMessages`` of the ``ai`` npm package
7.0.173: a POST of ``{...body option, "id", "messages", "trigger",
"messageId"}`` (``messageId`` left out when undefined). Re-exported by
:mod:`promptkit.web._ai_sdk`. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any, List, Mapping, Optional, Tuple

import attrs

from .._errors import ConfigurationError
from .._images import image_part
from .._validate import check_text

__all__ = ["TRIGGERS", "AIChatRequest", "parse_chat_request"]

TRIGGERS = ("submit-message", "regenerate-message")


@attrs.frozen
class AIChatRequest:
    """What a ``useChat`` request asks for: the new user message of a chat.

    * ``chat_id``: the chat's id (``useChat``'s ``id``); use it as the
      conversation id.
    * ``message``: the text of the last user message (its text parts, joined
      with blank lines).
    * ``images``: its image file parts, as ``data:`` or ``http(s)`` URLs, for
      ``send_stream(..., images=list(request.images))``.
    * ``message_id``: the body's ``messageId``: the id of the user message
      being replaced when a user edits a message and sends it again, the last
      message's id for an automatic resend, else ``None``.
    * ``trigger``: ``"submit-message"``.
    * ``user_message_id``: the last user message's own ``id``.
    * ``extra``: the other keys of the body (those of ``DefaultChatTransport``'s
      ``body`` option, or ``sendMessage``'s ``{body}``), as sent.
    """

    chat_id: str
    message: str
    message_id: Optional[str] = None
    trigger: str = "submit-message"
    images: Tuple[str, ...] = ()
    user_message_id: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, hash=False)


_PREFIX = "the AI SDK chat request"


def _bad(problem: str) -> ConfigurationError:
    return ConfigurationError(f"{_PREFIX} {problem}")


def _optional_str(body: Mapping[str, Any], key: str) -> Optional[str]:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"has a non-string {key!r}: {type(value).__name__}")
    return check_text(value, f"{_PREFIX}'s {key}")


def _image(part: Mapping[str, Any], where: str) -> str:
    media_type, url = part.get("mediaType"), part.get("url")
    if not isinstance(media_type, str) or not isinstance(url, str):
        raise _bad(f"has a file part without a str mediaType and url ({where})")
    if not media_type.lower().startswith("image/"):
        raise _bad(f"has a {media_type!r} file ({where}): only images can be sent to the model")
    # Only URLs: a str that is not one would be read as a file path on the server.
    if not re.match(r"(?i)(?:data:|https?://)", url):
        raise _bad(f"has an image ({where}) whose url is neither a data: URL nor an http(s) URL")
    image_part(url, where=f"{_PREFIX}'s image ({where})")  # checked now: before any I/O
    return url


def parse_chat_request(body: Any) -> AIChatRequest:
    """Read the JSON body that the AI SDK's ``DefaultChatTransport`` POSTs (``useChat``'s requests).

    The body is ``{"id", "messages", "trigger", "messageId", ...extra}``, the
    messages being ``UIMessage`` dicts (``{"id", "role", "parts"}``). promptkit
    keeps the history on the server (the conversation and its store), so only
    the last message is read: it must be a user message; its ``text`` parts
    make the text and its ``file`` parts with an ``image/...`` media type the
    images. Other part types (``data-*`` parts, ...) are left out.

    Args:
        body: the parsed JSON body (``request.get_json()``, ``json.loads(request.body)``).

    Raises:
        ConfigurationError: a body of another shape, a last message that is not
            a user message (client-side tool outputs and approvals: promptkit
            runs tools on the server), a non-image file or an image that is
            not a valid data: or http(s) URL, a message with neither text nor
            images, or the ``regenerate-message`` trigger (see its message).
    """
    if not isinstance(body, Mapping):
        raise _bad(f"must be a JSON object, got {type(body).__name__}")
    chat_id = body.get("id")
    if not isinstance(chat_id, str) or not chat_id:
        raise _bad("has no chat 'id' (a non-empty string)")
    check_text(chat_id, f"{_PREFIX}'s id")
    trigger = body.get("trigger", "submit-message")
    if trigger == "regenerate-message":
        raise _bad(
            "asks to regenerate a message (trigger 'regenerate-message'), which promptkit does not do: the "
            "history is kept on the server, in the conversation. Hide regenerate in the UI, or handle it "
            "yourself (e.g. start a new conversation from the stored turns); send new messages with "
            "sendMessage (trigger 'submit-message')"
        )
    if trigger not in TRIGGERS:
        raise _bad(f"has an unknown trigger {trigger!r}: expected 'submit-message'")
    message_id = _optional_str(body, "messageId")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("has no 'messages' (a non-empty list of UI messages)")
    last = messages[-1]
    if not isinstance(last, Mapping) or not isinstance(last.get("parts"), list):
        raise _bad("has a last message that is not a UI message ({'id', 'role', 'parts': [...]})")
    if last.get("role") != "user":
        raise _bad(
            f"ends with a {last.get('role')!r} message, not a user message: tool outputs and approvals sent "
            "from the browser are not supported (promptkit runs tools on the server; leave "
            "sendAutomaticallyWhen unset and do not call addToolOutput)"
        )
    texts: List[str] = []
    images: List[str] = []
    for index, part in enumerate(last["parts"]):
        where = f"part {index} of the last message"
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise _bad(f"has a {where} that is not an object with a str 'type'")
        if part["type"] == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad(f"has a text part without a str 'text' ({where})")
            texts.append(check_text(text, f"{_PREFIX}'s text ({where})") or "")
        elif part["type"] == "file":
            images.append(_image(part, where))
    message = "\n\n".join(texts)
    if not message.strip() and not images:
        raise _bad("has a last user message with no text and no images")
    extra = {k: v for k, v in body.items() if k not in ("id", "messages", "trigger", "messageId")}
    user_message_id = last.get("id")
    return AIChatRequest(
        chat_id=chat_id,
        message=message,
        message_id=message_id,
        trigger=str(trigger),
        images=tuple(images),
        user_message_id=user_message_id if isinstance(user_message_id, str) else None,
        extra=extra,
    )
