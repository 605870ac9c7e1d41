"""promptkit._history.History: a conversation's committed messages, tool calls, results and totals."""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

import pytest

import promptkit
from promptkit._history import History
from promptkit._types import Response, ToolCall, ToolResult, Usage

SYSTEM = {"role": "system", "content": "Be terse."}


def call(call_id: str, name: str = "lookup") -> ToolCall:
    return ToolCall.create(call_id, name, '{"q": "x"}')


def reply(content: str = "hi", *, tokens: int = 10, cost: float = 0.5, **kwargs: Any) -> Response:
    usage = Usage(prompt_tokens=tokens - 1, completion_tokens=1, total_tokens=tokens)
    return Response(content=content, finish_reason=kwargs.pop("finish_reason", "stop"), usage=usage, cost=cost, **kwargs)


def turn(text: str) -> List[Dict[str, Any]]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": text.upper()}]


def with_pending(*call_ids: str) -> History:
    history = History("Be terse.")
    calls = tuple(call(c) for c in call_ids)
    history.commit(turn("q"), reply("", finish_reason="tool_calls", tool_calls=calls))
    return history


def test_starts_with_the_system_message_or_empty() -> None:
    assert History("Be terse.").messages() == [SYSTEM]
    assert History().messages() == [] and History().system_message() is None
    assert History("Be terse.").system_message() == "Be terse."
    empty = History()
    assert (empty.usage, empty.cost, empty.last, empty.pending()) == (Usage(), 0.0, None, [])


def test_commit_adds_messages_totals_and_the_last_response() -> None:
    history = History("Be terse.")
    first, second = reply("A", tokens=10, cost=0.5), reply("B", tokens=5, cost=0.25)
    history.commit(turn("a"), first)
    history.commit(turn("b"), second)
    assert history.messages() == [SYSTEM, *turn("a"), *turn("b")] and len(history) == 5
    assert history.usage.total_tokens == 15 and history.cost == 0.75
    assert history.last is second


def test_read_messages_are_copies() -> None:
    # commit() takes over the turn's own dicts (the turn keeps none); every read is a deep copy.
    history = History()
    history.commit(turn("a"), reply())
    read = history.messages()
    read[0]["content"] = "changed by a reader"
    assert history.messages() == turn("a")


def test_a_snapshot_is_not_changed_by_a_later_commit() -> None:
    history = History("Be terse.")
    snapshot = history.snapshot()
    history.commit(turn("a"), reply())
    assert snapshot == [SYSTEM] and len(history.snapshot()) == 3


def test_tool_calls_without_results_stay_pending() -> None:
    history = History()
    answered = ToolResult("c1", "lookup", "done")
    calls = (call("c1"), call("c2"))
    history.commit(turn("q"), reply("", finish_reason="tool_calls", tool_calls=calls, tool_results=(answered,)))
    assert [c.id for c in history.pending()] == ["c2"]
    history.commit(turn("r"), reply("", finish_reason="stop", tool_calls=calls))
    assert history.pending() == []  # only a tool_calls finish leaves calls pending


def test_add_tool_result_checks_the_call_and_encodes_the_result() -> None:
    history = with_pending("c1", "c2")
    with pytest.raises(promptkit.ToolError, match=r"'nope'.*pending: c1, c2"):
        history.add_tool_result("nope", "x")
    history.add_tool_result("c1", {"temp": 21})
    assert [c.id for c in history.pending()] == ["c2"]
    with pytest.raises(promptkit.ConfigurationError, match="c2"):
        history.add_tool_result("c2", "bad \ud800")
    history.add_tool_result("c2", "plain", is_error=True)
    assert history.start(None) == [
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "c2", "content": "plain"},
    ]


def test_start_needs_every_result_and_a_message() -> None:
    history = with_pending("c1", "c2")
    with pytest.raises(promptkit.ToolError, match="c1, c2"):
        history.start("next")
    history.add_tool_result("c2", "two")
    history.add_tool_result("c1", "one")
    staged = history.start("next")
    assert [m.get("tool_call_id") for m in staged] == ["c1", "c2", None]  # call order, then the user message
    assert staged[-1] == {"role": "user", "content": "next"}
    with pytest.raises(promptkit.ConfigurationError, match="needs a message"):
        History().start(None)
    assert History().start("hi") == [{"role": "user", "content": "hi"}]


def test_start_changes_nothing() -> None:
    history = with_pending("c1")
    history.add_tool_result("c1", "one")
    history.start("next")
    assert history.pending() == [] and len(history) == 3  # still staged, nothing committed
    history.commit(history.start("next"), reply())
    assert len(history) == 5 and history.pending() == []


def test_fail_keeps_a_cancelled_reply_as_the_last_one() -> None:
    history = History()
    history.fail(None)
    history.fail(reply("oops", finish_reason="error"))
    assert history.last is None
    cancelled = reply("partial", finish_reason="cancelled")
    history.fail(cancelled)
    assert history.last is cancelled and history.messages() == [] and history.usage == Usage()


def test_record_counts_tokens_and_restore_keeps_only_the_unstored_ones() -> None:
    history = History()
    history.record(reply(tokens=10, cost=1.0), stored=True)
    history.record(reply(tokens=4, cost=0.5), stored=False)
    assert history.usage.total_tokens == 14 and history.cost == 1.5
    # The store holds the first one (plus a committed turn): restoring must not count it twice.
    stored_usage = Usage(prompt_tokens=19, completion_tokens=1, total_tokens=20)
    history.restore(turn("a"), usage=stored_usage, cost=2.0, pending=[], system=lambda: None)
    assert history.usage.total_tokens == 24 and history.cost == 2.5
    assert history.messages() == turn("a")


def test_restore_takes_pending_calls_and_drops_staged_results() -> None:
    history = with_pending("old")
    history.add_tool_result("old", "x")
    history.restore([SYSTEM, *turn("q")], usage=Usage(), cost=0.0, pending=[call("n1"), call("n2")], system=lambda: None)
    assert [c.id for c in history.pending()] == ["n1", "n2"]
    with pytest.raises(promptkit.ToolError, match="n1, n2"):
        history.start(None)


def test_restore_re_renders_a_stored_system_message() -> None:
    history = History()
    history.restore([{"role": "system", "content": "stored"}], usage=Usage(), cost=0.0, pending=[], system=lambda: "mine")
    assert history.system_message() == "mine"
    history.restore([{"role": "system", "content": "stored"}], usage=Usage(), cost=0.0, pending=[], system=lambda: None)
    assert history.system_message() == "stored"


def test_replace_system_only_where_there_is_a_system_message() -> None:
    rendered: List[Optional[str]] = []

    def render() -> str:
        rendered.append("new")
        return "new"

    bare = History()
    bare.commit(turn("a"), reply())
    bare.replace_system(render)
    assert rendered == [] and bare.messages() == turn("a")
    history = History("old")
    history.commit(turn("a"), reply())
    history.replace_system(render)
    assert history.messages() == [{"role": "system", "content": "new"}, *turn("a")]
    history.replace_system(lambda: None)
    assert history.system_message() == "new"


def test_clear_keeps_the_system_message_and_the_totals() -> None:
    history = with_pending("c1")
    history.add_tool_result("c1", "x")
    paid = (history.usage, history.cost)
    history.clear()
    assert history.messages() == [SYSTEM] and history.pending() == [] and (history.usage, history.cost) == paid
    with pytest.raises(promptkit.ConfigurationError):
        history.start(None)  # the staged result went too
    bare = History()
    bare.commit(turn("a"), reply())
    bare.clear()
    assert bare.messages() == []


def test_concurrent_commits_and_readers_see_whole_turns() -> None:
    history = History("Be terse.")
    writers, turns_each = 4, 50
    start = threading.Barrier(writers + 1)
    seen: List[int] = []

    def write() -> None:
        start.wait(timeout=5)
        for i in range(turns_each):
            history.commit(turn(str(i)), reply(tokens=2, cost=0.01))

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for thread in threads:
        thread.start()
    start.wait(timeout=5)
    while any(t.is_alive() for t in threads):
        seen.append(len(history.messages()))
    for thread in threads:
        thread.join(timeout=5)
    assert all(n % 2 == 1 for n in seen)  # the system message plus whole turns
    assert len(history) == 1 + 2 * writers * turns_each
    assert history.usage.total_tokens == 2 * writers * turns_each
    assert history.cost == pytest.approx(0.01 * writers * turns_each)
