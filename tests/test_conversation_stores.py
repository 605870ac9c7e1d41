"""Conversations bound to stores, end to end against the embedded mock server.

The store contract itself is in tests/test_stores.py; this module checks what
a Conversation does with a store: when a conversation is written, resuming it
in a new client, the history rules of section 4 through the store, several
workers (objects, then processes) on one conversation, the stored JSON, and a
worker killed mid-turn.

Redis runs against a real redis-server (tests/redis_server.py). Worker
processes are spawned and run targets from tests/_store_workers.py; each
builds its own Client and store instance against one MockServer started here.
Synchronisation is by Events, barriers and joins with timeouts; the only
polling is for a lock expiry, which is time-based by nature.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import queue
import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import promptkit
from promptkit.stores import (
    MemoryStore,
    RedisStore,
    SQLiteStore,
    StoreConflictError,
    StoredConversation,
    StoredTurn,
    StoreError,
    new_owner,
)
from promptkit.testing import MockReply, MockServer
from promptkit.testing._replies import _story

try:
    from tests import _store_workers as workers
    from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures
except ImportError:  # pragma: no cover - run from another directory
    import _store_workers as workers  # type: ignore[import-not-found, no-redef]
    from redis_server import redis_server, redis_url  # type: ignore[import-not-found, no-redef]  # noqa: F401

logger = logging.getLogger(__name__)

JOIN = 60.0  # bound on every wait for a thread, a process or an event
SYSTEM = "You are terse."
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up.",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    },
}


@promptkit.tool
def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: the city name.
    """
    return f"sunny and 21C in {city}"


def user(text: str) -> Dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> Dict[str, Any]:
    return {"role": "assistant", "content": text}


def system(text: str = SYSTEM) -> Dict[str, Any]:
    return {"role": "system", "content": text}


def snapshot(store: Any, cid: str) -> Optional[Dict[str, Any]]:
    """Everything the store holds for ``cid``, as plain data (``None`` when absent)."""
    stored = store.load(cid)
    return None if stored is None else stored.to_dict()


def loaded(store: Any, cid: str) -> StoredConversation:
    stored = store.load(cid)
    assert stored is not None, f"conversation {cid} is not stored"
    return stored


def lock_is_free(store: Any, cid: str) -> bool:
    """Whether a new owner can take the turn lock (released again at once)."""
    owner = new_owner()
    if not store.acquire(cid, owner):
        return False
    store.release(cid, owner)
    return True


def wait_real(seconds: float) -> None:
    """Let real time pass (for lock expiries, which the stores time)."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()  # never set
    while (left := deadline - time.monotonic()) > 0:
        pause.wait(left)


def new_client(server: MockServer, **kwargs: Any) -> promptkit.Client:
    return promptkit.Client(
        base_url=server.url, api_key="sk-test", timeout=promptkit.Timeout(idle=10), max_retries=0, **kwargs
    )


def first_content(stream: promptkit.Stream) -> "tuple[str, Iterator[promptkit.StreamEvent]]":
    """Iterate until the first content event (the server then stalls); return its text and the iterator.

    Keep the iterator: leaving a ``for`` loop, or dropping the iterator, cancels the turn.
    """
    events = iter(stream)
    for event in events:
        if event.type == "content":
            return event.content, events
        assert event.type not in ("error", "done"), f"the turn ended early: {event!r}"
    raise AssertionError("the stream ended without content")


# -- fixtures -----------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


@pytest.fixture
def client(server: MockServer) -> Iterator[promptkit.Client]:
    with new_client(server) as c:
        yield c


class Stores:
    """Makes store instances of one kind that share their data (one instance for memory)."""

    def __init__(self, kind: str, path: Path, url: str) -> None:
        self.kind = kind
        self.path = path
        self.url = url
        self.prefix = f"convtest:{uuid.uuid4().hex[:10]}:"
        self._made: List[Any] = []
        self._memory: Optional[MemoryStore] = None

    def make(self, **kwargs: Any) -> Any:
        """A store on the shared data; for memory, the one instance (``kwargs`` apply to the first call)."""
        if self.kind == "memory":
            if self._memory is None:
                self._memory = MemoryStore(**kwargs)
                self._made.append(self._memory)
            return self._memory
        if self.kind == "sqlite":
            store: Any = SQLiteStore(self.path, **kwargs)
        else:
            store = RedisStore(self.url, prefix=self.prefix, **kwargs)
        self._made.append(store)
        return store

    def close(self) -> None:
        for store in self._made:
            store.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    made = Stores(request.param, tmp_path / "conversations.db", url)
    yield made
    made.close()


# -- 1. written at the first committed turn ----------------------------------------


def test_a_conversation_is_stored_at_its_first_committed_turn_not_before(
    stores: Stores, server: MockServer, client: promptkit.Client
) -> None:
    store = stores.make()
    conv = client.conversation(system_prompt=SYSTEM, store=store)
    named = client.conversation(system_prompt=SYSTEM, store=store, conversation_id="named-but-unused")
    assert conv.id.startswith("conv_") and conv.messages == [system()]
    assert store.list_ids() == [] and client.conversations(store).list() == []
    assert store.load(conv.id) is None and store.load(named.id) is None

    # Turns that fail, before the stream or in it, commit nothing: still no conversation.
    server.enqueue(MockReply.error(400, "bad request"), MockReply.in_band_error("overloaded", after_text="Half"))
    with pytest.raises(promptkit.BadRequestError):
        conv.send("first try")
    with pytest.raises(promptkit.StreamError):
        conv.send("second try")
    assert store.list_ids() == [] and store.load(conv.id) is None
    assert conv.messages == [system()]

    server.enqueue(MockReply.text("Hello."))
    conv.send("third try")
    assert store.list_ids() == [conv.id] == client.conversations(store).list()
    stored = loaded(store, conv.id)
    assert stored.meta.system_prompt == SYSTEM and stored.meta.model == "gpt-4o-mini"
    assert [turn.messages for turn in stored.turns] == [[user("third try"), assistant("Hello.")]]
    assert stored.messages() == conv.messages == [system(), user("third try"), assistant("Hello.")]
    assert lock_is_free(store, conv.id)


def test_without_a_system_prompt_the_meta_has_none(
    stores: Stores, server: MockServer, client: promptkit.Client
) -> None:
    store = stores.make()
    conv = client.conversation(store=store, model="gpt-4o")
    server.enqueue(MockReply.text("Hi."))
    conv.send("hello")
    stored = loaded(store, conv.id)
    assert stored.meta.system_prompt is None and stored.meta.model == "gpt-4o"
    assert stored.messages() == conv.messages == [user("hello"), assistant("Hi.")]


def test_the_client_store_is_the_default(stores: Stores, server: MockServer) -> None:
    store = stores.make()
    with new_client(server, store=store) as c:
        conv = c.conversation(system_prompt=SYSTEM)
        server.enqueue(MockReply.text("Hi."))
        conv.send("hello")
        assert c.conversations().list() == [conv.id]
        resumed = c.conversation(conversation_id=conv.id)
        assert resumed.messages == conv.messages == [system(), user("hello"), assistant("Hi.")]
    with new_client(server) as bare:
        with pytest.raises(promptkit.ConfigurationError, match="needs a store"):
            bare.conversations()


# -- 2. resume --------------------------------------------------------------------


def test_resume_in_a_new_client_restores_everything_and_continues(
    stores: Stores, server: MockServer, client: promptkit.Client
) -> None:
    store = stores.make()
    conv = client.conversation(system_prompt=SYSTEM, store=store, conversation_id="trip")
    server.enqueue(
        MockReply.text("Paris.", usage={"prompt_tokens": 20, "completion_tokens": 2}),
        MockReply.text("Rome.", usage={"prompt_tokens": 30, "completion_tokens": 3}),
    )
    first = conv.send("Where first?")
    second = conv.send("And then?")
    assert conv.usage.total_tokens == 55

    with new_client(server) as other:
        resumed = other.conversation(conversation_id="trip", store=stores.make())
        assert resumed.id == "trip" and resumed.system_prompt == SYSTEM
        assert resumed.messages == conv.messages == [
            system(), user("Where first?"), assistant("Paris."), user("And then?"), assistant("Rome."),
        ]
        assert resumed.usage == conv.usage == first.usage + second.usage
        assert resumed.total_cost == pytest.approx(conv.total_cost) and resumed.total_cost > 0
        assert resumed.pending_tool_calls == [] and resumed.last_response is None

        server.enqueue(MockReply.text("Lisbon.", usage={"prompt_tokens": 40, "completion_tokens": 4}))
        third = resumed.send("Finally?")
        assert server.requests[-1].body["messages"] == conv.messages + [user("Finally?")]
        assert resumed.messages == conv.messages + [user("Finally?"), assistant("Lisbon.")]
        assert resumed.usage == first.usage + second.usage + third.usage
        assert resumed.total_cost == pytest.approx(first.cost + second.cost + third.cost)
    stored = loaded(store, "trip")
    assert len(stored.turns) == 3 and stored.usage_totals() == resumed.usage

    # The first object was not told: it syncs before its next turn, and sends the whole history.
    server.enqueue(MockReply.text("Home."))
    conv.send("And now?")
    assert server.requests[-1].body["messages"] == resumed.messages + [user("And now?")]
    assert conv.messages == loaded(store, "trip").messages()


def test_resume_keeps_the_stored_system_prompt(
    stores: Stores, server: MockServer, client: promptkit.Client, caplog: pytest.LogCaptureFixture
) -> None:
    store = stores.make()
    server.enqueue(MockReply.text("Ok."))
    client.conversation(system_prompt=SYSTEM, store=store, conversation_id="c").send("hi")
    with caplog.at_level(logging.WARNING, logger="promptkit._conversation"):
        resumed = client.conversation(system_prompt="You are verbose.", store=stores.make(), conversation_id="c")
    assert "resumes with its stored system prompt" in caplog.text
    assert resumed.system_prompt == SYSTEM and resumed.messages[0] == system()
    server.enqueue(MockReply.text("Ok again."))
    resumed.send("again")
    assert server.requests[-1].body["messages"][0] == system()


def test_conversation_index_lists_gets_and_deletes(
    stores: Stores, server: MockServer, client: promptkit.Client
) -> None:
    store = stores.make()
    index = client.conversations(store)
    assert index.list() == []
    for cid in ("b-conv", "a-conv"):
        server.enqueue(MockReply.text(f"hello from {cid}"))
        client.conversation(system_prompt=f"sys {cid}", conversation_id=cid, store=store).send(f"hi {cid}")
    client.conversation(conversation_id="never-used", store=store)  # no turn: not stored
    assert index.list() == ["a-conv", "b-conv"]

    got = index.get("a-conv")
    assert isinstance(got, promptkit.Conversation) and got.id == "a-conv"
    assert got.system_prompt == "sys a-conv"
    assert got.messages == [system("sys a-conv"), user("hi a-conv"), assistant("hello from a-conv")]
    server.enqueue(MockReply.text("more from a"))
    got.send("more")
    assert len(loaded(store, "a-conv").turns) == 2
    with pytest.raises(KeyError):
        index.get("never-used")

    with new_client(server) as other:  # another worker's view of the same store
        assert other.conversations(stores.make()).list() == ["a-conv", "b-conv"]
    assert index.delete("a-conv") is True
    assert index.delete("a-conv") is False
    assert index.delete("never-used") is False
    assert index.list() == ["b-conv"] and store.load("a-conv") is None
    with pytest.raises(KeyError):
        index.get("a-conv")
    assert loaded(store, "b-conv").messages() == [
        system("sys b-conv"), user("hi b-conv"), assistant("hello from b-conv"),
    ]


# -- 3. history rules through a store ------------------------------------------------


def test_a_successful_turn_stores_user_and_assistant_with_its_figures(
    stores: Stores, server: MockServer, client: promptkit.Client
) -> None:
    store = stores.make()
    conv = client.conversation(system_prompt=SYSTEM, store=store)
    server.enqueue(MockReply.text("Hello there.", usage={"prompt_tokens": 12, "completion_tokens": 3}))
    resp = conv.send("Hi")
    (turn,) = loaded(store, conv.id).turns
    assert turn.messages == [user("Hi"), assistant("Hello there.")]
    assert turn.finish_reason == "stop" and turn.model == "gpt-4o-mini"
    assert turn.usage == resp.usage.to_dict() and turn.usage_value() == resp.usage
    assert turn.usage["total_tokens"] == 15 and turn.usage["estimated"] is False
    assert turn.cost == pytest.approx(resp.cost) and turn.cost > 0
    assert turn.latency_ms == pytest.approx(resp.latency_ms) and turn.latency_ms > 0


@pytest.mark.parametrize("failure", ["status", "in_band", "truncated"])
def test_a_failed_turn_stores_only_its_tokens_and_frees_the_lock(
    stores: Stores, server: MockServer, client: promptkit.Client, failure: str
) -> None:
    store = stores.make()
    conv = client.conversation(system_prompt=SYSTEM, store=store)
    server.enqueue(MockReply.text("First answer."))
    conv.send("first")
    before = snapshot(store, conv.id)
    reply = {
        "status": MockReply.error(400, "context too long"),
        "in_band": MockReply.in_band_error("model overloaded", after_text="Half an ans"),
        "truncated": MockReply.truncate(after_text="cut off"),
    }[failure]
    server.enqueue(reply)
    with pytest.raises(promptkit.APIError) as info:
        conv.send("this one fails")
    after = loaded(store, conv.id)
    if failure == "status":  # refused before any stream: nothing was consumed, nothing is stored
        assert snapshot(store, conv.id) == before
    else:  # no messages, but the tokens the failed stream consumed, so they survive a resume
        assert before is not None and after.to_dict()["turns"][:-1] == before["turns"]
        failed = after.turns[-1]
        assert failed.messages == [] and failed.finish_reason == "error"
        assert info.value.partial is not None and failed.usage_value() == info.value.partial.usage
        assert after.usage_totals() == conv.usage
    assert conv.messages == after.messages()
    assert lock_is_free(store, conv.id)

    server.enqueue(MockReply.text("Second answer."))
    conv.send("second")
    assert server.requests[-1].body["messages"] == [system(), user("first"), assistant("First answer."), user("second")]
    assert [t.messages[0]["content"] for t in loaded(store, conv.id).turns if t.messages] == ["first", "second"]


def test_a_cancelled_turn_stores_its_partial_text(stores: Stores, server: MockServer, client: promptkit.Client) -> None:
    store = stores.make()
    conv = client.conversation(system_prompt=SYSTEM, store=store)
    server.enqueue(MockReply.stall(after_text="Once upon"))
    stream = conv.send_stream("tell me a story")
    seen = ""
    for event in stream:
        seen += event.content or ""
        if seen == "Once upon":
            break  # "stop generating"
    stream.close(timeout=JOIN)
    resp = stream.result()
    assert resp.finish_reason == "cancelled" and resp.content == "Once upon"
    (turn,) = loaded(store, conv.id).turns
    assert turn.messages == [user("tell me a story"), assistant("Once upon")]
    assert turn.finish_reason == "cancelled"
    assert turn.usage_value() == resp.usage and turn.usage["estimated"] is True
    assert conv.messages == loaded(store, conv.id).messages()
    assert lock_is_free(store, conv.id)


def test_tool_rounds_are_stored_as_one_turn(stores: Stores, server: MockServer, client: promptkit.Client) -> None:
    store = stores.make()
    conv = client.conversation(system_prompt=SYSTEM, tools=[get_weather], store=store)
    server.enqueue(
        MockReply.tool_calls([{"id": "call_w", "name": "get_weather", "arguments": {"city": "Paris"}}],
                             usage={"prompt_tokens": 40, "completion_tokens": 10}),
        MockReply.text("It is sunny in Paris.", usage={"prompt_tokens": 60, "completion_tokens": 6}),
    )
    resp = conv.send("Weather in Paris?")
    assert resp.rounds == 2 and resp.content == "It is sunny in Paris."

    (turn,) = loaded(store, conv.id).turns  # one turn, not one per round
    assert [m["role"] for m in turn.messages] == ["user", "assistant", "tool", "assistant"]
    call = turn.messages[1]["tool_calls"][0]
    assert (call["id"], call["type"], call["function"]["name"]) == ("call_w", "function", "get_weather")
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert turn.messages[2] == {"role": "tool", "tool_call_id": "call_w", "content": "sunny and 21C in Paris"}
    assert turn.messages[3] == assistant("It is sunny in Paris.")
    assert turn.finish_reason == "stop"
    assert turn.usage["total_tokens"] == 116 and turn.usage_value() == resp.usage
    assert turn.cost == pytest.approx(resp.cost)
    assert conv.messages == loaded(store, conv.id).messages()
    assert lock_is_free(store, conv.id)

    with new_client(server) as other:
        resumed = other.conversation(conversation_id=conv.id, store=stores.make(), tools=[get_weather])
        assert resumed.messages == conv.messages and resumed.pending_tool_calls == []
        server.enqueue(MockReply.text("You're welcome."))
        resumed.send("thanks")
        assert server.requests[-1].body["messages"] == conv.messages + [user("thanks")]


def test_pending_tool_calls_survive_a_resume(stores: Stores, server: MockServer, client: promptkit.Client) -> None:
    store = stores.make()
    conv = client.conversation(system_prompt=SYSTEM, tools=[LOOKUP], store=store, conversation_id="define")
    server.enqueue(MockReply.tool_calls(
        [{"id": "q1", "name": "lookup", "arguments": {"word": "ebb"}},
         {"id": "q2", "name": "lookup", "arguments": {"word": "flow"}}],
        content="Let me look those up.",
    ))
    resp = conv.send("define ebb and flow")
    assert resp.finish_reason == "tool_calls"
    (turn,) = loaded(store, "define").turns
    assert turn.finish_reason == "tool_calls"
    assert [m["role"] for m in turn.messages] == ["user", "assistant"]
    assert [c["id"] for c in turn.messages[1]["tool_calls"]] == ["q1", "q2"]

    with new_client(server) as other:
        resumed = other.conversation(conversation_id="define", store=stores.make(), tools=[LOOKUP])
        pending = resumed.pending_tool_calls
        assert [(c.id, c.name, c.arguments) for c in pending] == [("q1", "lookup", {"word": "ebb"}),
                                                                  ("q2", "lookup", {"word": "flow"})]
        requests = len(server.requests)
        with pytest.raises(promptkit.ToolError, match="q1, q2"):
            resumed.send()  # results are missing: refused before any I/O
        assert len(server.requests) == requests and lock_is_free(store, "define")

        resumed.add_tool_result("q1", "the tide going out")
        resumed.add_tool_result("q2", {"definition": "to move in"})
        assert resumed.pending_tool_calls == []
        server.enqueue(MockReply.text("Ebb: out. Flow: in."))
        final = resumed.send()
        assert final.content == "Ebb: out. Flow: in." and final.finish_reason == "stop"
        sent = server.requests[-1].body["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool"]
        assert sent[3:] == [
            {"role": "tool", "tool_call_id": "q1", "content": "the tide going out"},
            {"role": "tool", "tool_call_id": "q2", "content": json.dumps({"definition": "to move in"})},
        ]
        stored = loaded(store, "define")
        assert [t.finish_reason for t in stored.turns] == ["tool_calls", "stop"]
        assert stored.turns[1].messages == sent[3:] + [assistant("Ebb: out. Flow: in.")]
        assert resumed.messages == stored.messages()

    # The original object still believes the calls are pending; its next turn syncs first.
    server.enqueue(MockReply.text("Anytime."))
    conv.send("thanks")
    assert server.requests[-1].body["messages"] == stored.messages() + [user("thanks")]
    assert conv.pending_tool_calls == []


# -- 4. two workers on one conversation ----------------------------------------------


def test_two_workers_alternate_and_see_each_others_turns(stores: Stores, server: MockServer) -> None:
    with new_client(server) as client_a, new_client(server) as client_b:
        a = client_a.conversation(system_prompt=SYSTEM, conversation_id="shared", store=stores.make())
        b = client_b.conversation(system_prompt=SYSTEM, conversation_id="shared", store=stores.make())
        history = [system()]
        usages, costs = [], []
        for worker, text in ((a, "a1"), (b, "b1"), (a, "a2"), (b, "b2"), (b, "b3"), (a, "a3")):
            server.enqueue(MockReply.text(f"re {text}", usage={"prompt_tokens": 10, "completion_tokens": 2}))
            resp = worker.send(text)
            assert server.requests[-1].body["messages"] == history + [user(text)]
            history += [user(text), assistant(f"re {text}")]
            usages.append(resp.usage)
            costs.append(resp.cost)
            assert worker.messages == history
            assert worker.usage == sum(usages[1:], usages[0])  # totals synced too, not only messages
            assert worker.total_cost == pytest.approx(sum(costs)) and worker.total_cost > 0
        assert loaded(stores.make(), "shared").messages() == history
        assert len(server.requests) == 6


def test_a_turn_while_another_worker_is_in_flight_is_refused_cleanly(stores: Stores, server: MockServer) -> None:
    with new_client(server) as client_a, new_client(server) as client_b:
        store_a, store_b = stores.make(), stores.make()
        a = client_a.conversation(system_prompt=SYSTEM, conversation_id="busy", store=store_a)
        b = client_b.conversation(system_prompt=SYSTEM, conversation_id="busy", store=store_b)
        server.enqueue(MockReply.text("First."))
        a.send("first")

        server.enqueue(MockReply.stall(after_text="Thinking"))
        stream = a.send_stream("a long one")
        try:
            text, _events = first_content(stream)
            assert text == "Thinking"
            requests, before, b_before = len(server.requests), snapshot(store_b, "busy"), b.messages
            with pytest.raises(promptkit.ConversationBusyError, match="another worker") as info:
                b.send("me too")
            assert not isinstance(info.value, StoreConflictError)
            with pytest.raises(promptkit.ConversationBusyError):
                b.send_stream("me too, streaming")
            with pytest.raises(promptkit.ConversationBusyError):
                a.send("and me, locally")  # the holder itself runs one turn at a time
            assert len(server.requests) == requests  # nothing was sent for the refused turns
            assert snapshot(store_b, "busy") == before and b.messages == b_before  # nothing was stored
            assert not lock_is_free(store_b, "busy")
        finally:
            stream.close(timeout=JOIN)
        assert stream.result().finish_reason == "cancelled"

        server.enqueue(MockReply.text("Now you."))
        b.send("now me")
        assert server.requests[-1].body["messages"] == [
            system(), user("first"), assistant("First."), user("a long one"), assistant("Thinking"), user("now me"),
        ]
        assert [t.messages[0]["content"] for t in loaded(store_a, "busy").turns] == ["first", "a long one", "now me"]


def test_a_turn_stored_behind_a_turns_back_makes_it_conflict_instead_of_interleaving(
    stores: Stores, server: MockServer, client: promptkit.Client
) -> None:
    # Another writer stores a turn while ours is in flight, as happens when a lock expired under a frozen
    # worker (or with a writer that ignores locks): the index check must refuse our late turn, not interleave it.
    store = stores.make()
    a = client.conversation(system_prompt=SYSTEM, conversation_id="slow", store=store)
    server.enqueue(MockReply.text("Zero."))
    a.send("a0")
    meta = loaded(store, "slow").meta

    server.enqueue(MockReply.stall(after_text="Still"))
    stream = a.send_stream("a1, too slow")
    try:
        text, _events = first_content(stream)
        assert text == "Still"
        other = StoredTurn(messages=[user("b1"), assistant("One.")], finish_reason="stop", model="gpt-4o-mini")
        stores.make().append_turn("slow", other, index=1, meta=meta)
    finally:
        stream.close(timeout=JOIN)
    with pytest.raises(StoreConflictError) as info:
        stream.result()  # the late turn cannot take index 1 any more: nothing of it is stored
    assert (info.value.conversation_id, info.value.index, info.value.stored) == ("slow", 1, 2)
    expected = [system(), user("a0"), assistant("Zero."), user("b1"), assistant("One.")]
    assert loaded(store, "slow").messages() == expected
    assert a.messages == [system(), user("a0"), assistant("Zero.")]
    assert lock_is_free(store, "slow")

    server.enqueue(MockReply.text("Two."))
    a.send("a2")  # syncs the other turn first
    assert server.requests[-1].body["messages"] == expected + [user("a2")]
    assert a.messages == expected + [user("a2"), assistant("Two.")] == loaded(store, "slow").messages()


def test_a_live_conversation_after_its_stored_copy_was_deleted(
    stores: Stores, server: MockServer, client: promptkit.Client
) -> None:
    store = stores.make()
    conv = client.conversation(system_prompt=SYSTEM, conversation_id="gone", store=store)
    server.enqueue(MockReply.text("One."))
    conv.send("one")
    assert client.conversations(store).delete("gone") is True

    requests = len(server.requests)
    try:
        conv.send("two")
    except promptkit.PromptKitError:
        # Refusing is acceptable, but only before any I/O: never pay for a reply that cannot be stored.
        assert len(server.requests) == requests, "a request was sent for a turn that could never be stored"
        conv.send("three")  # and the refusal must not be permanent
    stored = loaded(store, "gone")  # the conversation starts afresh in the store
    assert stored.turns[0].messages[0]["content"] in ("two", "three")
    assert conv.messages == stored.messages()


def test_a_turn_streaming_longer_than_the_lock_ttl_keeps_its_lock(server: MockServer) -> None:
    lock_ttl = 0.3
    store = MemoryStore(lock_ttl=lock_ttl)  # the renewal is the Conversation's job, whatever the store
    with new_client(server) as client_a, new_client(server) as client_b:
        a = client_a.conversation(conversation_id="long", store=store)
        b = client_b.conversation(conversation_id="long", store=store)
        # A reply that streams steadily for about 2 s: the turn is alive and busy all along.
        server.enqueue(MockReply.text(" ".join(f"w{i}" for i in range(20)), delay=0.1))
        stream = a.send_stream("a long answer, please")
        outcome: List[Any] = []

        def consume() -> None:
            try:
                outcome.append(stream.result())
            except Exception as exc:  # noqa: BLE001 - reported by the assertions below
                outcome.append(exc)

        consumer = threading.Thread(target=consume, name="test-consumer")
        consumer.start()
        try:
            wait_real(3 * lock_ttl)  # time-based: well past the lock's ttl, well before the reply ends
            assert consumer.is_alive(), "precondition: the first turn is still streaming"
            requests = len(server.requests)
            with pytest.raises(promptkit.ConversationBusyError):
                b.send("me too")
            assert len(server.requests) == requests
        finally:
            consumer.join(JOIN)
            stream.close(timeout=JOIN)
        assert isinstance(outcome[0], promptkit.Response) and outcome[0].finish_reason == "stop"


def test_set_var_survives_a_sync_with_another_workers_turn(stores: Stores, server: MockServer) -> None:
    with new_client(server) as client_a, new_client(server) as client_b:
        a = client_a.conversation(system_prompt="You talk to {{name}}.", variables={"name": "Alice"},
                                  conversation_id="vars", store=stores.make())
        a.send("hi")
        a.set_var("name", "Bob")
        a.send("hi again")
        assert server.requests[-1].body["messages"][0] == system("You talk to Bob.")
        b = client_b.conversation(conversation_id="vars", store=stores.make())
        b.send("from b")
        a.send("and again")  # syncs b's turn first
        sent = server.requests[-1].body["messages"]
        assert a.system_prompt is not None
        assert sent[0] == system(a.system_prompt) == a.messages[0]  # what it reports is what it sends
        assert sent[0] == system("You talk to Bob.")


@pytest.mark.parametrize("method", [
    "acquire",
    "load",
    "append_turn",
])
def test_a_store_failure_leaves_the_conversation_usable(
    stores: Stores, server: MockServer, client: promptkit.Client, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    store = stores.make()
    conv = client.conversation(system_prompt=SYSTEM, conversation_id="flaky", store=store)
    server.enqueue(MockReply.text("One."))
    conv.send("one")
    before, history = snapshot(store, "flaky"), conv.messages

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise StoreError(f"the store is down ({method})")

    with monkeypatch.context() as patch:
        patch.setattr(store, method, broken)  # this instance only; the data stays
        with pytest.raises(StoreError, match="the store is down"):
            conv.send("while the store is down")
    # A store that fails before the turn sends nothing; one that fails at the commit sent the request.
    assert len(server.requests) == (2 if method == "append_turn" else 1)
    assert snapshot(store, "flaky") == before and conv.messages == history
    assert lock_is_free(store, "flaky")

    server.enqueue(MockReply.text("Two."))
    conv.send("two")  # the store is back: so is the conversation
    assert loaded(store, "flaky").messages() == conv.messages == history + [user("two"), assistant("Two.")]


def test_tokens_of_a_turn_the_store_refused_still_count(
    server: MockServer, client: promptkit.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()
    conv = client.conversation(conversation_id="paid", store=store)
    server.enqueue(MockReply.text("One.", usage={"prompt_tokens": 10, "completion_tokens": 5}))
    first = conv.send("one")
    server.enqueue(MockReply.text("Two.", usage={"prompt_tokens": 20, "completion_tokens": 5}))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise StoreError("the store is down")

    with monkeypatch.context() as patch:
        patch.setattr(store, "append_turn", broken)
        with pytest.raises(StoreError):
            conv.send("two")  # the reply was streamed (and paid for); only storing it failed
    assert conv.usage.total_tokens == 15 + 25
    assert conv.total_cost > first.cost


# -- 5. the stored JSON ----------------------------------------------------------------


def _raw_rows(stores: Stores, cid: str) -> "tuple[str, List[str]]":
    """The meta JSON and the turns' JSON exactly as the backend holds them."""
    if stores.kind == "sqlite":
        conn = sqlite3.connect(str(stores.path))
        try:
            (meta, count), = conn.execute(
                "SELECT meta, turn_count FROM promptkit_conversations WHERE id = ?", (cid,)
            ).fetchall()
            turns = [r[0] for r in conn.execute(
                "SELECT data FROM promptkit_turns WHERE conversation_id = ? ORDER BY idx", (cid,)
            ).fetchall()]
        finally:
            conn.close()
        assert count == len(turns)
        return meta, turns
    import redis

    raw = redis.Redis.from_url(stores.url)
    try:
        meta = raw.get(f"{stores.prefix}{{{cid}}}:meta")
        turns = raw.lrange(f"{stores.prefix}{{{cid}}}:turns", 0, -1)
        assert raw.type(f"{stores.prefix}{{{cid}}}:turns") == b"list"
    finally:
        raw.close()
    assert isinstance(meta, bytes), "no meta key"
    assert all(isinstance(t, bytes) for t in turns)
    return meta.decode("utf-8"), [t.decode("utf-8") for t in turns if isinstance(t, bytes)]


def _plain_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"not plain JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_the_stored_json_is_plain_versioned_openai_messages(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, server: MockServer, client: promptkit.Client
) -> None:
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""
    stores = Stores(kind, tmp_path / "json.db", url)
    try:
        store = stores.make()
        conv = client.conversation(system_prompt="Sé bref.", tools=[get_weather], store=store, conversation_id="json")
        server.enqueue(
            MockReply.tool_calls([{"id": "call_1", "name": "get_weather", "arguments": {"city": "Zürich"}}],
                                 usage={"prompt_tokens": 40, "completion_tokens": 10}),
            MockReply.text("Sonnig in Zürich.", usage={"prompt_tokens": 60, "completion_tokens": 5}),
            MockReply.text("Bitte.", usage={"prompt_tokens": 80, "completion_tokens": 2}),
        )
        responses = [conv.send("Wetter in Zürich?"), conv.send("Danke")]

        meta_text, turn_texts = _raw_rows(stores, "json")
        meta = _plain_json(meta_text)
        assert meta["v"] == 1 and meta["system_prompt"] == "Sé bref." and meta["model"] == "gpt-4o-mini"
        assert isinstance(meta["created_at"], float)
        assert "Zürich" in turn_texts[0]  # raw UTF-8, not \u escapes

        turns = [_plain_json(t) for t in turn_texts]
        assert len(turns) == 2
        history = conv.messages
        assert [m for t in turns for m in t["messages"]] == history[1:]
        for data, resp in zip(turns, responses):
            assert data["v"] == 1
            assert {"messages", "usage", "cost", "latency_ms", "finish_reason", "model", "created_at"} <= set(data)
            for message in data["messages"]:
                assert message["role"] in ("user", "assistant", "tool")
            assert data["usage"] == resp.usage.to_dict()
            assert {"prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens"} <= set(data["usage"])
            assert data["cost"] == pytest.approx(resp.cost) and data["cost"] > 0
            assert data["latency_ms"] == pytest.approx(resp.latency_ms) and data["latency_ms"] > 0
            assert data["finish_reason"] == "stop" and data["model"] == "gpt-4o-mini"
        assert turns[0]["usage"]["total_tokens"] == 115 and turns[1]["usage"]["total_tokens"] == 82
        tool_turn = turns[0]["messages"]
        assert tool_turn[1] == {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Zürich"})}}],
        }
        assert tool_turn[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny and 21C in Zürich"}
    finally:
        stores.close()


# -- 6 and 7. worker processes ---------------------------------------------------------------

N_PROCS = 4
N_CONVS = 20
TURNS = 200  # in all, N_PROCS * TURNS_EACH
TURNS_EACH = TURNS // N_PROCS
KILL_LOCK_TTL = 1.0


@pytest.fixture(params=["sqlite", "redis"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dict[str, str]]:
    kind = request.param
    if kind == "sqlite":
        path = str(tmp_path / "shared.db")
        SQLiteStore(path).close()  # the schema exists before the processes race
        yield {"kind": kind, "target": path, "prefix": ""}
    else:
        url = request.getfixturevalue("redis_url")
        yield {"kind": kind, "target": url, "prefix": f"mpconv:{uuid.uuid4().hex[:8]}:"}


def _args(shared: Dict[str, str]) -> "tuple[str, str, str]":
    return shared["kind"], shared["target"], shared["prefix"]


def _collect(results: Any, procs: List[Any], count: int, timeout: float = 2 * JOIN) -> List[Dict[str, Any]]:
    """``count`` reports from the workers; fails early when they all died without reporting."""
    reports: List[Dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(reports) < count:
        assert time.monotonic() < deadline, f"only {len(reports)} of {count} worker reports"
        try:
            reports.append(results.get(timeout=0.5))
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                try:
                    reports.append(results.get(timeout=2.0))  # the last one may still be in the pipe
                except queue.Empty:
                    pytest.fail(f"workers exited without reporting: exit codes {[p.exitcode for p in procs]}")
    errors = [r["error"] for r in reports if "error" in r]
    assert not errors, "a worker failed:\n" + "\n".join(errors)
    return reports


def _reap(procs: List[Any]) -> None:
    """Join every process; kill the ones that do not end in time."""
    for proc in procs:
        if proc.pid is not None:
            proc.join(timeout=JOIN)
    for proc in procs:
        if proc.pid is not None and proc.is_alive():  # pragma: no cover - a hung worker
            proc.kill()
            proc.join(timeout=JOIN)


def wait_for_lock_expiry(store: Any, cid: str, lock_ttl: float) -> float:
    """Poll until a new owner can take the turn lock (released again at once); returns the seconds waited."""
    started = time.monotonic()
    pause = threading.Event()  # never set: a bounded pause between polls
    while not lock_is_free(store, cid):
        waited = time.monotonic() - started
        assert waited < lock_ttl + 10, f"the turn lock of {cid} did not expire within {waited:.1f} s"
        pause.wait(0.02)
    return time.monotonic() - started


def test_worker_processes_share_conversations_without_losing_or_interleaving_turns(shared: Dict[str, str]) -> None:
    ctx = multiprocessing.get_context("spawn")
    conv_ids = [f"conv-{i:02d}" for i in range(N_CONVS)]
    # A short pause between deltas keeps each turn in flight for a while, so processes collide.
    with MockServer(default_delay=0.001) as server:
        start = ctx.Barrier(N_PROCS)
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=workers.hammer,
                args=(*_args(shared), server.url, w, TURNS_EACH, conv_ids, 1000 + w, start, results),
                name=f"conv-store-worker-{w}",
            )
            for w in range(N_PROCS)
        ]
        try:
            for proc in procs:
                proc.start()
            reports = _collect(results, procs, N_PROCS)
        finally:
            _reap(procs)
        assert [p.exitcode for p in procs] == [0] * N_PROCS
        requests = server.requests

    # Refusals are likely (about 20-45 per run here) but not guaranteed: the next test forces one.
    logger.info("%d turns refused while another process had one in flight", sum(r["refusals"] for r in reports))
    assert [r["conflicts"] for r in reports] == [0] * N_PROCS  # the locks kept every commit clean
    done = {d["tag"]: {**d, "pid": r["pid"]} for r in reports for d in r["done"]}
    assert [len(r["done"]) for r in reports] == [TURNS_EACH] * N_PROCS
    assert len(done) == TURNS  # unique tags

    # Every request belongs to exactly one successful turn: refused turns sent nothing.
    assert len(requests) == TURNS
    sent = {req.body["messages"][-1]["content"]: req.body["messages"] for req in requests}
    assert len(sent) == TURNS

    store = workers.open_store(*_args(shared))
    try:
        assert store.list_ids() == sorted({d["cid"] for d in done.values()})
        stored_tags: List[str] = []
        for cid in store.list_ids():
            conv = loaded(store, cid)
            assert conv.meta.system_prompt == workers.SYSTEM
            history = [system(workers.SYSTEM)]
            last_n: Dict[int, int] = {}
            for turn in conv.turns:
                assert [m["role"] for m in turn.messages] == ["user", "assistant"]  # no interleaving
                question, answer = turn.messages[0]["content"], turn.messages[1]["content"]
                tag = question.removeprefix("Tell me about ")
                report = done[tag]
                assert report["cid"] == cid and report["content"] == answer
                # The server saw the full history up to this turn, and answered this question.
                assert sent[question] == history + [user(question)]
                assert answer == _story(sent[question]) and tag in answer
                pid, n = report["pid"], int(tag.rsplit("-n", 1)[1])
                assert n > last_n.get(pid, -1), f"{cid}: turns of process {pid} out of order"
                last_n[pid] = n
                history += turn.messages
                stored_tags.append(tag)
            assert turn.finish_reason == "stop"
            assert conv.messages() == history
        assert len(stored_tags) == TURNS and sorted(stored_tags) == sorted(done)  # complete, no duplicates
        for cid in conv_ids:
            assert lock_is_free(store, cid)
    finally:
        store.close()


def test_a_turn_in_flight_in_one_process_is_refused_in_another(shared: Dict[str, str]) -> None:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    store = workers.open_store(*_args(shared))
    procs: List[Any] = []
    try:
        with MockServer() as server, new_client(server) as client:
            conv = client.conversation(system_prompt=workers.SYSTEM, conversation_id="held", store=store)
            conv.send("Tell me about the first turn")

            def other_process(message: str) -> Dict[str, Any]:
                proc = ctx.Process(target=workers.try_turn,
                                   args=(*_args(shared), server.url, "held", message, results), name="conv-store-try")
                procs.append(proc)
                proc.start()
                (report,) = _collect(results, [proc], 1)
                proc.join(timeout=JOIN)
                assert proc.exitcode == 0
                return report

            server.enqueue(MockReply.stall(after_text="Holding"))
            stream = conv.send_stream("a turn that stalls")
            try:
                text, _events = first_content(stream)
                assert text == "Holding"
                requests, before = len(server.requests), snapshot(store, "held")
                refused = other_process("me too")
                assert refused["busy"] is True and refused["busy_type"] == "ConversationBusyError"
                assert "another worker" in refused["busy_message"]
                assert refused["messages"] == conv.messages  # it resumed the stored history, then was refused
                assert len(server.requests) == requests and snapshot(store, "held") == before
            finally:
                stream.close(timeout=JOIN)
            assert stream.result().finish_reason == "cancelled"

            accepted = other_process("Tell me about the second process")
            assert accepted["busy"] is False
            history = conv.messages
            assert history[-2:] == [user("a turn that stalls"), assistant("Holding")]
            assert server.requests[-1].body["messages"] == history + [user("Tell me about the second process")]
            assert accepted["messages"] == history + [user("Tell me about the second process"),
                                                      assistant(accepted["content"])]
            assert loaded(store, "held").messages() == accepted["messages"]
    finally:
        _reap(procs)
        store.close()


def test_a_killed_worker_frees_its_conversation_after_the_lock_ttl(shared: Dict[str, str]) -> None:
    ctx = multiprocessing.get_context("spawn")
    held, ready, results = ctx.Value("i", 0), ctx.Event(), ctx.Queue()
    store = workers.open_store(*_args(shared))
    proc: Optional[Any] = None
    try:
        with MockServer() as server, new_client(server) as client:
            conv = client.conversation(system_prompt=SYSTEM, conversation_id="doomed", store=store)
            server.enqueue(MockReply.text("Before."))
            conv.send("before")
            before = snapshot(store, "doomed")

            server.enqueue(MockReply.stall(after_text="Partial"))
            proc = ctx.Process(
                target=workers.hold_turn,
                args=(*_args(shared), server.url, "doomed", KILL_LOCK_TTL, held, ready, results),
                name="conv-store-doomed",
            )
            proc.start()
            assert ready.wait(JOIN), "the worker never started its turn"
            if not held.value:
                pytest.fail(f"the worker did not hold a turn: {_collect(results, [proc], 1)}")
            assert len(server.requests) == 2

            # While the worker holds the turn: refused, before any request, nothing stored.
            with pytest.raises(promptkit.ConversationBusyError, match="another worker"):
                conv.send("while held")
            assert len(server.requests) == 2 and snapshot(store, "doomed") == before
            assert not lock_is_free(store, "doomed")

            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(timeout=JOIN)
            assert proc.exitcode == -signal.SIGKILL
            assert server.disconnected.wait(JOIN)  # its connection died with it

            wait_for_lock_expiry(store, "doomed", KILL_LOCK_TTL)
            server.enqueue(MockReply.text("After."))
            conv.send("after")
            history = [system(), user("before"), assistant("Before."), user("after")]
            assert server.requests[-1].body["messages"] == history  # no trace of the killed turn
            assert loaded(store, "doomed").messages() == conv.messages == history + [assistant("After.")]
            assert len(server.requests) == 3
    finally:
        if proc is not None:
            if proc.is_alive():  # the test failed before it killed the worker
                proc.kill()
            _reap([proc])
        store.close()
