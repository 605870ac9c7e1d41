"""promptkit.stores._binding: binding a store, and bringing a conversation's history up to date from it."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

import promptkit
from promptkit._history import History
from promptkit.stores._binding import StoreBinding, bind
from promptkit._types import Response, ToolCall, Usage


def reply(*, tokens: int = 10, cost: float = 0.5, finish_reason: str = "stop") -> Response:
    usage = Usage(prompt_tokens=tokens - 1, completion_tokens=1, total_tokens=tokens)
    return Response(content="ok", finish_reason=finish_reason, usage=usage, cost=cost)


def turn(text: str) -> List[Dict[str, Any]]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": text.upper()}]


def keep() -> Optional[str]:
    return None


def test_bind_refuses_what_is_not_a_store() -> None:
    with pytest.raises(promptkit.ConfigurationError, match="ConversationStore"):
        bind(object(), "c1")
    assert isinstance(bind(promptkit.MemoryStore(), "c1"), StoreBinding)


def test_restore_gives_the_history_the_stored_state() -> None:
    store = promptkit.MemoryStore()
    writer = bind(store, "c1")
    writer.append(turn("a"), reply(tokens=10, cost=0.5), system_prompt="stored {{x}}", model="m")
    call = {"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}
    asked = [{"role": "user", "content": "b"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    writer.append(asked, reply(tokens=5, cost=0.25, finish_reason="tool_calls"), system_prompt="stored {{x}}", model="m")

    reader = bind(store, "c1")
    stored = reader.load()
    assert stored is not None
    history = History()
    reader.restore(history, stored, lambda: "rendered here")
    assert history.messages() == [{"role": "system", "content": "rendered here"}, *turn("a"), *asked]
    assert history.usage.total_tokens == 15 and history.cost == 0.75
    assert history.pending() == [ToolCall.create("t1", "lookup", '{"q": 1}')]


def test_catch_up_takes_other_workers_turns() -> None:
    store = promptkit.MemoryStore()
    mine, other = bind(store, "c1"), bind(store, "c1")
    history = History("sys")
    mine.catch_up(history, keep)
    assert history.messages() == [{"role": "system", "content": "sys"}]  # nothing stored yet: unchanged
    mine.append(turn("a"), reply(), system_prompt="sys", model="m")
    history.commit(turn("a"), reply())
    other.load()
    other.append(turn("b"), reply(), system_prompt="sys", model="m")
    mine.catch_up(history, keep)
    assert history.messages() == [{"role": "system", "content": "sys"}, *turn("a"), *turn("b")]
    assert history.usage.total_tokens == 20
    mine.catch_up(history, lambda: "never asked")  # nothing new: history left alone
    assert history.system_message() == "sys"


def test_catch_up_after_a_deletion_starts_afresh_keeping_the_totals() -> None:
    store = promptkit.MemoryStore()
    binding = bind(store, "c1")
    history = History("sys")
    binding.append(turn("a"), reply(cost=0.5), system_prompt="sys", model="m")
    history.commit(turn("a"), reply(cost=0.5))
    store.delete("c1")
    binding.catch_up(history, keep)
    assert history.messages() == [{"role": "system", "content": "sys"}]
    assert history.cost == 0.5 and binding.stored_turns == 0
