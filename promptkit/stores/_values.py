"""The stored value classes, their versioned JSON, and the store errors.

A store keeps a conversation as its :class:`ConversationMeta` (system prompt,
creation time, model) and an ordered list of :class:`StoredTurn` values.

The JSON written for every value is plain JSON with a format version
(``"v": 1``). Readers ignore keys they do not know, so later minor additions
stay readable; a newer *major* version raises :class:`StoreFormatError`.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

from .._errors import ConfigurationError, ConversationBusyError, StoreError
from .._types import Response, Usage

__all__ = [
    "FORMAT_VERSION",
    "StoreError",
    "StoreConflictError",
    "StoreFormatError",
    "StoredTurn",
    "ConversationMeta",
    "StoredConversation",
]

FORMAT_VERSION = 1
"""The major version of the stored JSON that this promptkit writes and reads."""

_USAGE_FIELDS = tuple(a.name for a in attrs.fields(Usage))


class StoreConflictError(ConversationBusyError, StoreError):
    """Another writer committed a turn first: the stored turn count is not the expected index.

    Nothing was written. Reload the conversation and retry the turn if it
    still makes sense. A :class:`~promptkit.StoreError`: when it ends a turn,
    ``partial`` holds the turn's Response.

    Attributes:
        conversation_id: the conversation.
        index: the position the rejected turn was to take.
        stored: how many turns the store holds.
    """

    def __init__(self, conversation_id: str, index: int, stored: int) -> None:
        super().__init__(
            f"conversation {conversation_id} has {stored} stored turn(s), so turn {index} cannot be appended: "
            "another worker committed a turn concurrently; reload the conversation",
            operation="append",
        )
        self.conversation_id = conversation_id
        self.index = index
        self.stored = stored


class StoreFormatError(StoreError, ValueError):
    """Stored data is not promptkit JSON, or was written in a newer major format version."""


# -- JSON helpers ---------------------------------------------------------------


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _loads(text: Union[str, bytes, bytearray], kind: str) -> Dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StoreFormatError(f"stored {kind} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StoreFormatError(f"stored {kind} is not a JSON object")
    return data


def _check_version(data: Mapping[str, Any], kind: str) -> None:
    version = data.get("v")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StoreFormatError(f"stored {kind} has no valid format version 'v' (got {version!r}): not promptkit data")
    if version > FORMAT_VERSION:
        raise StoreFormatError(
            f"stored {kind} has format version {version}, written by a newer promptkit; "
            f"this promptkit reads format version {FORMAT_VERSION}: upgrade promptkit to read it"
        )


def _number(data: Mapping[str, Any], key: str, kind: str, default: Optional[float] = None) -> float:
    value = data.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise StoreFormatError(f"stored {kind} field {key!r} must be a number, got {value!r}")
    return float(value)


def _opt_str(data: Mapping[str, Any], key: str, kind: str) -> Optional[str]:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise StoreFormatError(f"stored {kind} field {key!r} must be a string or null, got {value!r}")
    return value


def _to_messages(value: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ConfigurationError(f"messages must be a list of OpenAI message dicts, got {type(value).__name__}")
    out = []
    for message in value:
        if not isinstance(message, Mapping):
            raise ConfigurationError(f"every message must be a dict, got {type(message).__name__}")
        out.append(copy.deepcopy(dict(message)))
    return out


def _to_usage_dict(value: Union[Usage, Mapping[str, Any], None]) -> Dict[str, Any]:
    if value is None:
        return Usage().to_dict()
    if isinstance(value, Usage):
        return value.to_dict()
    return dict(value)


def _usage_from_dict(data: Mapping[str, Any]) -> Usage:
    # Unknown keys (from a later minor version) are dropped; missing ones default.
    known = {key: data[key] for key in _USAGE_FIELDS if key in data}
    return Usage(**known)


# -- values -------------------------------------------------------------------


def _to_turns(value: Iterable["StoredTurn"]) -> Tuple["StoredTurn", ...]:
    return tuple(value)


@attrs.frozen
class ConversationMeta:
    """What a store keeps about a conversation besides its turns.

    Written once, with the conversation's first committed turn.

    Attributes:
        system_prompt: the system prompt, or ``None``.
        created_at: when the conversation was created (seconds since the epoch).
        model: the conversation's model, or ``None`` for the client's default.
    """

    system_prompt: Optional[str] = None
    created_at: float = attrs.field(factory=time.time)
    model: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-safe dict, with the format version ``"v"``."""
        return {
            "v": FORMAT_VERSION,
            "system_prompt": self.system_prompt,
            "created_at": self.created_at,
            "model": self.model,
        }

    def to_json(self) -> str:
        """The versioned JSON text."""
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ConversationMeta":
        """Read a dict made by :meth:`to_dict`.

        Raises:
            StoreFormatError: not meta, or a newer major format version.
        """
        kind = "conversation meta"
        _check_version(data, kind)
        return cls(
            system_prompt=_opt_str(data, "system_prompt", kind),
            created_at=_number(data, "created_at", kind),
            model=_opt_str(data, "model", kind),
        )

    @classmethod
    def from_json(cls, text: Union[str, bytes, bytearray]) -> "ConversationMeta":
        """Read JSON made by :meth:`to_json`.

        Raises:
            StoreFormatError: not valid JSON meta, or a newer major format version.
        """
        return cls.from_dict(_loads(text, "conversation meta"))


@attrs.frozen
class StoredTurn:
    """One committed turn: the messages it added to the history, and what it cost.

    Attributes:
        messages: the OpenAI message dicts the turn added, in order (tool
            results, the user message, assistant messages with tool calls,
            tool messages). Copied on construction.
        usage: the turn's token counts as :meth:`promptkit.Usage.to_dict`
            gives them (a :class:`~promptkit.Usage` is accepted and converted).
        cost: USD.
        latency_ms: the turn's latency.
        finish_reason: the reply's finish reason (``"cancelled"`` for a stopped turn).
        model: the model that answered.
        created_at: when the turn was committed (seconds since the epoch).
    """

    messages: List[Dict[str, Any]] = attrs.field(converter=_to_messages)
    usage: Dict[str, Any] = attrs.field(factory=dict, converter=_to_usage_dict)
    cost: float = 0.0
    latency_ms: float = 0.0
    finish_reason: Optional[str] = None
    model: str = ""
    created_at: float = attrs.field(factory=time.time)

    @classmethod
    def from_response(
        cls, messages: Sequence[Mapping[str, Any]], response: Response, *, created_at: Optional[float] = None
    ) -> "StoredTurn":
        """Build the stored turn of a committed ``response`` that added ``messages``."""
        return cls(
            messages=messages,
            usage=response.usage.to_dict(),
            cost=response.cost,
            latency_ms=response.latency_ms,
            finish_reason=response.finish_reason,
            model=response.model,
            created_at=time.time() if created_at is None else created_at,
        )

    def usage_value(self) -> Usage:
        """``usage`` as a :class:`~promptkit.Usage`."""
        return _usage_from_dict(self.usage)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-safe dict, with the format version ``"v"``."""
        return {
            "v": FORMAT_VERSION,
            "messages": copy.deepcopy(self.messages),
            "usage": dict(self.usage),
            "cost": self.cost,
            "latency_ms": self.latency_ms,
            "finish_reason": self.finish_reason,
            "model": self.model,
            "created_at": self.created_at,
        }

    def to_json(self) -> str:
        """The versioned JSON text."""
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StoredTurn":
        """Read a dict made by :meth:`to_dict`.

        Raises:
            StoreFormatError: not a stored turn, or a newer major format version.
        """
        kind = "turn"
        _check_version(data, kind)
        messages = data.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise StoreFormatError("stored turn field 'messages' must be a list of objects")
        usage = data.get("usage") or {}
        if not isinstance(usage, dict):
            raise StoreFormatError("stored turn field 'usage' must be an object")
        model = data.get("model") or ""
        if not isinstance(model, str):
            raise StoreFormatError(f"stored turn field 'model' must be a string, got {model!r}")
        return cls(
            messages=messages,
            usage=usage,
            cost=_number(data, "cost", kind, 0.0),
            latency_ms=_number(data, "latency_ms", kind, 0.0),
            finish_reason=_opt_str(data, "finish_reason", kind),
            model=model,
            created_at=_number(data, "created_at", kind),
        )

    @classmethod
    def from_json(cls, text: Union[str, bytes, bytearray]) -> "StoredTurn":
        """Read JSON made by :meth:`to_json`.

        Raises:
            StoreFormatError: not a valid stored turn, or a newer major format version.
        """
        return cls.from_dict(_loads(text, "turn"))


@attrs.frozen
class StoredConversation:
    """A conversation as a store returns it: its meta and committed turns, oldest first.

    Attributes:
        id: the conversation id.
        meta: the :class:`ConversationMeta` written with the first turn.
        turns: the :class:`StoredTurn` values, in commit order.
    """

    id: str
    meta: ConversationMeta
    turns: Tuple[StoredTurn, ...] = attrs.field(default=(), converter=_to_turns)

    def messages(self) -> List[Dict[str, Any]]:
        """The history as OpenAI message dicts: the system prompt (if any), then every turn's messages."""
        out: List[Dict[str, Any]] = []
        if self.meta.system_prompt:
            out.append({"role": "system", "content": self.meta.system_prompt})
        for turn in self.turns:
            out.extend(copy.deepcopy(turn.messages))
        return out

    def usage_totals(self) -> Usage:
        """The sum of every stored turn's usage."""
        total = Usage()
        for turn in self.turns:
            total = total + turn.usage_value()
        return total

    def total_cost(self) -> float:
        """The sum of every stored turn's cost, in USD."""
        return sum(turn.cost for turn in self.turns)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-safe dict, with the format version ``"v"`` (meta and turns nested)."""
        return {
            "v": FORMAT_VERSION,
            "id": self.id,
            "meta": self.meta.to_dict(),
            "turns": [turn.to_dict() for turn in self.turns],
        }

    def to_json(self) -> str:
        """The versioned JSON text, e.g. to export a conversation."""
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StoredConversation":
        """Read a dict made by :meth:`to_dict`.

        Raises:
            StoreFormatError: not a stored conversation, or a newer major format version.
        """
        _check_version(data, "conversation")
        conv_id = data.get("id")
        meta = data.get("meta")
        turns = data.get("turns")
        if not isinstance(conv_id, str) or not isinstance(meta, dict) or not isinstance(turns, list):
            raise StoreFormatError("stored conversation needs 'id' (string), 'meta' (object) and 'turns' (list)")
        for turn in turns:
            if not isinstance(turn, dict):
                raise StoreFormatError("stored conversation 'turns' must be a list of objects")
        return cls(id=conv_id, meta=ConversationMeta.from_dict(meta), turns=[StoredTurn.from_dict(t) for t in turns])

    @classmethod
    def from_json(cls, text: Union[str, bytes, bytearray]) -> "StoredConversation":
        """Read JSON made by :meth:`to_json`.

        Raises:
            StoreFormatError: not a valid stored conversation, or a newer major format version.
        """
        return cls.from_dict(_loads(text, "conversation"))
