"""Conversation stores: one contract suite over MemoryStore, SQLiteStore and RedisStore.

Redis tests run against a real redis-server (tests/redis_server.py). Expiry
tests advance an injected clock for the memory and SQLite stores; Redis keeps
time itself, so there they wait (briefly) for real time to pass.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import attrs
import pytest

from promptkit._errors import ConfigurationError, ConversationBusyError, PromptKitError
from promptkit.stores import (
    DEFAULT_LOCK_TTL,
    FORMAT_VERSION,
    ConversationMeta,
    ConversationStore,
    MemoryStore,
    RedisStore,
    SQLiteStore,
    StoreConflictError,
    StoredConversation,
    StoredTurn,
    StoreError,
    StoreFormatError,
    new_owner,
    turn_lock,
)
from promptkit._types import Response, Usage

try:
    from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures
except ImportError:  # pragma: no cover - run from another directory
    from redis_server import redis_server, redis_url  # type: ignore[no-redef]  # noqa: F401

UNIT = 0.3  # seconds: lock and conversation TTLs in expiry tests
SLACK = 0.1  # extra real time for Redis to pass an expiry
JOIN = 60.0  # bound on waits for threads and processes


def make_turn(tag: str, *, cost: float = 0.001, prompt: int = 3, completion: int = 2) -> StoredTurn:
    return StoredTurn(
        messages=[{"role": "user", "content": tag}, {"role": "assistant", "content": f"re: {tag}"}],
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        cost=cost,
        latency_ms=12.5,
        finish_reason="stop",
        model="gpt-4o-mini",
        created_at=1_700_000_000.0,
    )


META = ConversationMeta(system_prompt="You are terse.", created_at=1_700_000_000.0, model="gpt-4o-mini")


def tags(conv: Optional[StoredConversation]) -> List[str]:
    assert conv is not None
    return [turn.messages[0]["content"] for turn in conv.turns]


def wait_real(seconds: float) -> None:
    """Let real time pass (only for Redis expiries, which the server times)."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while (left := deadline - time.monotonic()) > 0:
        pause.wait(left)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Env:
    """Makes stores of one kind that share their data, and lets time pass for them."""

    def __init__(self, kind: str, make: Callable[..., Any], advance: Callable[[float], None]) -> None:
        self.kind = kind
        self.make = make
        self.advance = advance


@pytest.fixture(params=["memory", "sqlite", "redis"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    kind = request.param
    clock = FakeClock()
    made: List[Any] = []
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""

    def make(**kwargs: Any) -> Any:
        if kind == "memory":
            store = MemoryStore(clock=clock, **kwargs)
        elif kind == "sqlite":
            store = SQLiteStore(tmp_path / "store.db", clock=clock, **kwargs)
        else:
            store = RedisStore(url, prefix=prefix, **kwargs)
        made.append(store)
        return store

    def advance(seconds: float) -> None:
        if kind == "redis":
            wait_real(seconds + SLACK)
        else:
            clock.advance(seconds)

    yield Env(kind, make, advance)
    for store in made:
        store.close()


@pytest.fixture
def store(env: Env) -> Any:
    return env.make()


# -- the contract ----------------------------------------------------------------------


def test_store_implements_the_protocol(store: Any) -> None:
    assert isinstance(store, ConversationStore)


def test_missing_conversation_loads_none(store: Any) -> None:
    assert store.load("nope") is None
    assert store.list_ids() == []
    assert store.delete("nope") is False


def test_first_append_creates_the_conversation_with_its_meta(store: Any) -> None:
    store.append_turn("c1", make_turn("hello"), index=0, meta=META)
    conv = store.load("c1")
    assert conv is not None
    assert conv.id == "c1"
    assert conv.meta == META
    assert conv.turns == (make_turn("hello"),)
    assert conv.messages() == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "re: hello"},
    ]
    assert store.list_ids() == ["c1"]


def test_turns_keep_their_order_and_totals_add_up(store: Any) -> None:
    for i in range(5):
        store.append_turn("c", make_turn(f"t{i}", cost=0.5 * (i + 1), prompt=i), index=i, meta=META)
    conv = store.load("c")
    assert tags(conv) == [f"t{i}" for i in range(5)]
    assert [m["content"] for m in conv.messages()[1::2]] == [f"t{i}" for i in range(5)]
    assert conv.total_cost() == pytest.approx(7.5)
    assert conv.usage_totals() == Usage(prompt_tokens=10, completion_tokens=10, total_tokens=20)


def test_usage_with_cache_writes_round_trips(store: Any) -> None:
    usage = Usage(prompt_tokens=1049, completion_tokens=100, total_tokens=1149, cached_tokens=7,
                  cache_write_tokens=1031, cache_write_1h_tokens=31, reasoning_tokens=3)  # fmt: skip
    turn = attrs.evolve(make_turn("cached"), usage=usage)
    store.append_turn("c", turn, index=0, meta=META)
    store.append_turn("c", turn, index=1, meta=META)
    conv = store.load("c")
    assert conv is not None and conv.turns == (turn, turn)
    assert conv.turns[0].usage_value() == usage
    assert conv.usage_totals() == usage + usage
    assert conv.usage_totals().cache_write_1h_tokens == 62


def test_meta_of_later_turns_is_ignored(store: Any) -> None:
    store.append_turn("c", make_turn("a"), index=0, meta=META)
    store.append_turn("c", make_turn("b"), index=1, meta=ConversationMeta(system_prompt="other", created_at=1.0))
    assert store.load("c").meta == META


def test_wrong_index_conflicts_and_writes_nothing(store: Any) -> None:
    with pytest.raises(StoreConflictError) as info:
        store.append_turn("c", make_turn("early"), index=1, meta=META)
    assert (info.value.conversation_id, info.value.index, info.value.stored) == ("c", 1, 0)
    assert store.load("c") is None and store.list_ids() == []

    store.append_turn("c", make_turn("a"), index=0, meta=META)
    store.append_turn("c", make_turn("b"), index=1, meta=META)
    for index in (0, 1, 3):
        with pytest.raises(StoreConflictError) as info:
            store.append_turn("c", make_turn("stale"), index=index, meta=META)
        assert info.value.stored == 2
    assert tags(store.load("c")) == ["a", "b"]


def test_conflict_is_a_conversation_busy_error(store: Any) -> None:
    store.append_turn("c", make_turn("a"), index=0, meta=META)
    with pytest.raises(ConversationBusyError, match="another worker"):
        store.append_turn("c", make_turn("b"), index=0, meta=META)


def test_list_ids_and_delete(store: Any) -> None:
    for cid in ("b", "a", "c"):
        store.append_turn(cid, make_turn(cid), index=0, meta=META)
    assert store.list_ids() == ["a", "b", "c"]
    assert store.delete("b") is True
    assert store.delete("b") is False
    assert store.load("b") is None
    assert store.list_ids() == ["a", "c"]
    other = ConversationMeta(system_prompt=None, created_at=5.0)
    store.append_turn("b", make_turn("again"), index=0, meta=other)  # a deleted id starts afresh
    conv = store.load("b")
    assert conv.meta == other and tags(conv) == ["again"]
    assert conv.messages()[0] == {"role": "user", "content": "again"}


@pytest.mark.parametrize("cid", ["a*b?[c]\\d", "x{y}z:meta", "ünï cødé 🤖", "conv_1700000000000000000"])
def test_unusual_ids_round_trip(store: Any, cid: str) -> None:
    store.append_turn(cid, make_turn("t"), index=0, meta=META)
    store.append_turn("plain", make_turn("t"), index=0, meta=META)
    assert store.list_ids() == sorted([cid, "plain"])
    assert store.load(cid).id == cid
    assert store.delete(cid) is True
    assert store.list_ids() == ["plain"]


def test_loaded_values_do_not_alias_the_store(store: Any) -> None:
    messages = [{"role": "user", "content": "mine", "extra": {"nested": [1, 2]}}]
    turn = StoredTurn(messages=messages, usage={}, model="m", created_at=1.0)
    store.append_turn("c", turn, index=0, meta=META)
    messages[0]["content"] = "changed after append"
    loaded = store.load("c")
    loaded.turns[0].messages[0]["extra"]["nested"].append(3)
    loaded.messages()[0]["content"] = "changed copy"
    again = store.load("c")
    assert again.turns[0].messages == [{"role": "user", "content": "mine", "extra": {"nested": [1, 2]}}]


def test_tool_call_messages_round_trip_exactly(store: Any) -> None:
    messages = [
        {"role": "user", "content": "weather in Zürich?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Zürich"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21.5}'},
        {"role": "assistant", "content": "21.5 °C ☀️"},
    ]
    turn = StoredTurn(
        messages=messages,
        usage=Usage(prompt_tokens=9, estimated=True),
        cost=0.0,
        finish_reason="stop",
        model="m",
        created_at=2.0,
    )
    store.append_turn("c", turn, index=0, meta=META)
    conv = store.load("c")
    assert conv.turns[0] == turn
    assert conv.turns[0].messages == messages
    assert conv.usage_totals().estimated is True


def test_image_content_parts_round_trip_exactly(store: Any) -> None:
    # A user message with images has a list of parts as its content (data URLs can be megabytes).
    png = "data:image/png;base64," + "iVBORw0KGgo" * 20000
    content = [
        {"type": "text", "text": "what is in these? ☀️"},
        {"type": "image_url", "image_url": {"url": png}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
    ]
    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": "A cat."}]
    turn = StoredTurn(messages=messages, usage=Usage(prompt_tokens=1000), finish_reason="stop", model="m", created_at=3.0)
    store.append_turn("c", turn, index=0, meta=META)
    loaded = store.load("c")
    assert loaded.turns[0] == turn
    assert loaded.messages()[-2:] == messages
    assert StoredConversation.from_json(loaded.to_json()) == loaded


def test_lock_acquire_release_and_owner_only_release(store: Any) -> None:
    assert store.acquire("c", "alice") is True
    assert store.acquire("c", "bob") is False
    assert store.acquire("c", "alice") is True  # the holder renews
    store.release("c", "bob")  # not bob's: nothing happens
    assert store.acquire("c", "bob") is False
    store.release("c", "alice")
    assert store.acquire("c", "bob") is True
    assert store.acquire("c", "alice") is False
    assert store.acquire("other", "alice") is True  # locks are per conversation
    store.release("never-locked", "alice")  # harmless


def test_lock_expires(env: Env) -> None:
    store = env.make()
    assert store.acquire("c", "alice", ttl=UNIT) is True
    assert store.acquire("c", "bob", ttl=UNIT) is False
    env.advance(UNIT)
    assert store.acquire("c", "bob", ttl=60) is True
    assert store.acquire("c", "alice", ttl=UNIT) is False
    store.release("c", "alice")  # an expired holder's release does not free the new holder's lock
    assert store.acquire("c", "carol") is False


def test_lock_ttl_defaults_to_the_store_setting_and_renewal_extends_it(env: Env) -> None:
    assert env.make().lock_ttl == DEFAULT_LOCK_TTL == 60.0
    store = env.make(lock_ttl=UNIT * 2)
    assert store.acquire("c", "alice") is True
    env.advance(UNIT)
    assert store.acquire("c", "alice") is True  # renewed for another 2 units
    env.advance(UNIT)
    assert store.acquire("c", "bob") is False  # 2 units since the start, 1 since the renewal
    env.advance(UNIT)
    assert store.acquire("c", "bob") is True


def test_turn_lock_context_manager(store: Any) -> None:
    with turn_lock(store, "c") as owner:
        assert store.acquire("c", "someone-else") is False
        with pytest.raises(ConversationBusyError):
            with turn_lock(store, "c"):
                pass  # pragma: no cover
        assert store.acquire("c", owner) is True
    assert store.acquire("c", "someone-else") is True


def test_conversation_ttl_slides_with_each_turn_then_expires(env: Env) -> None:
    store = env.make(ttl=UNIT * 2)
    store.append_turn("c", make_turn("a"), index=0, meta=META)
    env.advance(UNIT)
    store.append_turn("c", make_turn("b"), index=1, meta=META)  # restarts the TTL
    env.advance(UNIT)
    assert tags(store.load("c")) == ["a", "b"]
    assert store.list_ids() == ["c"]
    env.advance(UNIT)
    assert store.load("c") is None
    assert store.list_ids() == []
    assert store.delete("c") is False
    with pytest.raises(StoreConflictError):
        store.append_turn("c", make_turn("late"), index=2, meta=META)
    fresh = ConversationMeta(system_prompt="new", created_at=9.0)
    store.append_turn("c", make_turn("anew"), index=0, meta=fresh)
    conv = store.load("c")
    assert conv.meta == fresh and tags(conv) == ["anew"]


def test_without_ttl_conversations_stay(env: Env) -> None:
    if env.kind == "redis":
        pytest.skip("covered by test_redis_keys_and_expiry (no PEXPIRE without ttl)")
    store = env.make()
    store.append_turn("c", make_turn("a"), index=0, meta=META)
    env.advance(10 * 365 * 86400.0)
    assert tags(store.load("c")) == ["a"]


def test_threads_append_to_their_own_conversations(store: Any) -> None:
    barrier = threading.Barrier(8)
    errors: List[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait(timeout=JOIN)
            for i in range(25):
                store.append_turn(f"conv-{n}", make_turn(f"{n}/{i}"), index=i, meta=META)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), name=f"store-test-{n}") for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN)
    assert not errors, errors
    assert store.list_ids() == [f"conv-{n}" for n in range(8)]
    for n in range(8):
        assert tags(store.load(f"conv-{n}")) == [f"{n}/{i}" for i in range(25)]


def test_threads_racing_on_one_index_exactly_one_wins(store: Any) -> None:
    for i in range(3):
        store.append_turn("c", make_turn(f"seed{i}"), index=i, meta=META)
    rounds = 5
    barrier = threading.Barrier(8)
    outcomes: Dict[int, List[str]] = {r: [] for r in range(rounds)}
    errors: List[BaseException] = []

    def work(n: int) -> None:
        try:
            for r in range(rounds):
                barrier.wait(timeout=JOIN)  # every racer of round r starts together
                try:
                    store.append_turn("c", make_turn(f"w{n}/r{r}"), index=3 + r, meta=META)
                    outcomes[r].append(f"w{n}/r{r}")
                except StoreConflictError as exc:
                    assert exc.stored in (3 + r, 4 + r)
                    outcomes[r].append("conflict")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), name=f"store-race-{n}") for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN)
    assert not errors, errors
    winners = []
    for r in range(rounds):
        assert len(outcomes[r]) == 8
        won = [o for o in outcomes[r] if o != "conflict"]
        assert len(won) == 1, outcomes[r]
        winners.extend(won)
    assert tags(store.load("c")) == ["seed0", "seed1", "seed2"] + winners


def test_threads_racing_for_the_lock_exactly_one_wins(store: Any) -> None:
    barrier = threading.Barrier(8)
    got: List[bool] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        barrier.wait(timeout=JOIN)
        ok = store.acquire("c", f"owner-{n}")
        with lock:
            got.append(ok)

    threads = [threading.Thread(target=work, args=(n,), name=f"store-lock-{n}") for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN)
    assert sorted(got) == [False] * 7 + [True]


def test_bad_arguments_are_configuration_errors(env: Env) -> None:
    store = env.make()
    with pytest.raises(ConfigurationError):
        store.append_turn("c", make_turn("a"), index=-1, meta=META)
    with pytest.raises(ConfigurationError):
        store.append_turn("", make_turn("a"), index=0, meta=META)
    with pytest.raises(ConfigurationError):
        store.append_turn("c", {"messages": []}, index=0, meta=META)
    with pytest.raises(ConfigurationError):
        store.append_turn("c", make_turn("a"), index=0, meta=None)
    with pytest.raises(ConfigurationError):
        store.acquire("c", "me", ttl=0)
    with pytest.raises(ConfigurationError):
        env.make(lock_ttl=0)
    with pytest.raises(ConfigurationError):
        env.make(ttl=-1)
    assert store.list_ids() == []


def test_closed_store_raises(store: Any) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.load("c")
    with pytest.raises(StoreError, match="closed"):
        store.append_turn("c", make_turn("a"), index=0, meta=META)


def test_a_second_store_instance_sees_the_same_data(env: Env) -> None:
    if env.kind == "memory":
        pytest.skip("a MemoryStore's data lives in its instance")
    first = env.make()
    first.append_turn("c", make_turn("a"), index=0, meta=META)
    first.close()  # a restart
    second = env.make()
    assert tags(second.load("c")) == ["a"]
    with pytest.raises(StoreConflictError):
        second.append_turn("c", make_turn("b"), index=0, meta=META)
    second.append_turn("c", make_turn("b"), index=1, meta=META)
    assert tags(env.make().load("c")) == ["a", "b"]


# -- values and JSON ------------------------------------------------------------------


def test_turn_json_is_plain_versioned_json_and_round_trips() -> None:
    turn = make_turn("héllo ☃")
    text = turn.to_json()
    data = json.loads(text)
    assert data["v"] == FORMAT_VERSION == 1
    assert "héllo ☃" in text  # not \u-escaped
    assert set(data) == {"v", "messages", "usage", "cost", "latency_ms", "finish_reason", "model", "created_at"}
    assert data["usage"] == Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5).to_dict()
    assert StoredTurn.from_json(text) == turn
    assert StoredTurn.from_json(text.encode("utf-8")) == turn
    assert StoredTurn.from_dict(turn.to_dict()) == turn


def test_meta_and_conversation_round_trip() -> None:
    assert json.loads(META.to_json()) == {
        "v": 1,
        "system_prompt": "You are terse.",
        "created_at": 1_700_000_000.0,
        "model": "gpt-4o-mini",
    }
    assert ConversationMeta.from_json(META.to_json()) == META
    conv = StoredConversation(id="c", meta=META, turns=[make_turn("a"), make_turn("b")])
    assert isinstance(conv.turns, tuple)
    data = json.loads(conv.to_json())
    assert data["v"] == 1 and data["id"] == "c" and [t["v"] for t in data["turns"]] == [1, 1]
    assert StoredConversation.from_json(conv.to_json()) == conv


@pytest.mark.parametrize("cls", [StoredTurn, ConversationMeta, StoredConversation])
def test_a_newer_major_version_is_refused_clearly(cls: Any) -> None:
    value = {
        StoredTurn: make_turn("a"),
        ConversationMeta: META,
        StoredConversation: StoredConversation("c", META, [make_turn("a")]),
    }[cls]
    data = value.to_dict()
    data["v"] = 2
    with pytest.raises(StoreFormatError, match=r"format version 2.*newer promptkit.*upgrade promptkit"):
        cls.from_json(json.dumps(data))


def test_a_newer_version_nested_in_a_conversation_is_refused() -> None:
    data = StoredConversation("c", META, [make_turn("a")]).to_dict()
    data["turns"][0]["v"] = 7
    with pytest.raises(StoreFormatError, match="version 7"):
        StoredConversation.from_dict(data)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"messages": []}',
        '{"v": "1", "messages": []}',
        '{"v": 0, "messages": []}',
        '{"v": 1, "messages": "hi", "created_at": 1}',
        '{"v": 1, "messages": [], "created_at": "yesterday"}',
    ],
)
def test_malformed_turn_json_is_a_format_error(text: str) -> None:
    with pytest.raises(StoreFormatError):
        StoredTurn.from_json(text)
    assert issubclass(StoreFormatError, (PromptKitError, ValueError))


def test_unknown_keys_of_the_same_major_version_are_ignored() -> None:
    data = make_turn("a").to_dict()
    data["future_field"] = {"x": 1}
    data["usage"]["future_tokens"] = 5
    turn = StoredTurn.from_dict(data)
    assert turn.usage_value() == Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
    meta = META.to_dict()
    meta["tags"] = ["x"]
    assert ConversationMeta.from_dict(meta) == META


# A turn as promptkit wrote it before Usage had cache-write fields.
OLD_TURN_JSON = (
    '{"v":1,"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],'
    '"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"cached_tokens":4,"reasoning_tokens":1,'
    '"audio_prompt_tokens":0,"audio_completion_tokens":0,"estimated":false},'
    '"cost":0.0001,"latency_ms":20.0,"finish_reason":"stop","model":"gpt-4o-mini","created_at":1700000000.0}'
)


def test_a_turn_stored_before_the_cache_write_fields_loads(tmp_path: Path) -> None:
    old = Usage(prompt_tokens=12, completion_tokens=3, total_tokens=15, cached_tokens=4, reasoning_tokens=1)
    turn = StoredTurn.from_json(OLD_TURN_JSON)
    assert turn.usage_value() == old and old.cache_write_tokens == old.cache_write_1h_tokens == 0
    assert StoredTurn.from_json(turn.to_json()) == turn
    # In a store, next to a turn written now.
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    store.append_turn("c", make_turn("a"), index=0, meta=META)
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("UPDATE promptkit_turns SET data = ?", (OLD_TURN_JSON,))
    raw.close()
    new = attrs.evolve(make_turn("b"), usage=Usage(prompt_tokens=1049, completion_tokens=100, total_tokens=1149,
                                                  cache_write_tokens=1031))  # fmt: skip
    store.append_turn("c", new, index=1, meta=META)
    conv = store.load("c")
    store.close()
    assert conv is not None and conv.turns[0].usage_value() == old
    assert conv.usage_totals() == Usage(prompt_tokens=1061, completion_tokens=103, total_tokens=1164, cached_tokens=4,
                                        reasoning_tokens=1, cache_write_tokens=1031)  # fmt: skip


def test_stored_turn_from_response() -> None:
    usage = Usage(prompt_tokens=100, completion_tokens=20, total_tokens=120, cached_tokens=50)
    response = Response(
        content="hi", finish_reason="cancelled", usage=usage, cost=0.25, latency_ms=321.0, model="gpt-4o"
    )
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "hi"}]
    turn = StoredTurn.from_response(messages, response, created_at=5.0)
    assert turn == StoredTurn(
        messages=messages,
        usage=usage.to_dict(),
        cost=0.25,
        latency_ms=321.0,
        finish_reason="cancelled",
        model="gpt-4o",
        created_at=5.0,
    )
    assert turn.usage_value() == usage
    assert StoredTurn.from_response(messages, response).created_at == pytest.approx(time.time(), abs=60)


def test_conversation_helpers() -> None:
    conv = StoredConversation("c", ConversationMeta(system_prompt=None, created_at=1.0), [])
    assert conv.messages() == [] and conv.usage_totals() == Usage() and conv.total_cost() == 0.0
    assert issubclass(StoreConflictError, ConversationBusyError)
    assert new_owner() != new_owner()


def test_redis_store_is_importable_and_fails_clearly_without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # "import redis" now raises ImportError
    with pytest.raises(ConfigurationError) as info:
        RedisStore("redis://127.0.0.1:1/0")
    assert str(info.value) == "RedisStore needs redis-py: pip install 'promptkit[redis]'"
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import promptkit, promptkit.stores\n"
        "from promptkit.stores import RedisStore\n"
        "try:\n"
        "    RedisStore('redis://127.0.0.1:1/0', ttl=5)\n"
        "except promptkit.ConfigurationError as exc:\n"
        "    print('ok', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=JOIN)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok RedisStore needs redis-py")


def test_redis_store_refuses_a_non_client() -> None:
    with pytest.raises(ConfigurationError):
        RedisStore(object())


# -- SQLite specifics ------------------------------------------------------------------


def test_sqlite_uses_wal_and_its_own_tables(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    store = SQLiteStore(path)
    store.append_turn("c", make_turn("a"), index=0, meta=META)
    store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    raw.close()
    assert names == {"promptkit_schema", "promptkit_conversations", "promptkit_turns", "promptkit_locks"}


def test_sqlite_refuses_memory_paths() -> None:
    with pytest.raises(ConfigurationError, match="MemoryStore"):
        SQLiteStore(":memory:")


def test_sqlite_refuses_a_newer_schema_and_newer_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    store.append_turn("c", make_turn("a"), index=0, meta=META)
    raw = sqlite3.connect(path)
    newer = make_turn("a").to_dict()
    newer["v"] = 2
    with raw:
        raw.execute("UPDATE promptkit_turns SET data = ?", (json.dumps(newer),))
    with pytest.raises(StoreFormatError, match="newer promptkit"):
        store.load("c")
    with raw:
        raw.execute("UPDATE promptkit_schema SET version = 2")
    raw.close()
    store.close()
    with pytest.raises(StoreFormatError, match="schema version 2"):
        SQLiteStore(path)


def test_sqlite_purge_expired(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "s.db", ttl=10, clock=clock)
    store.append_turn("old", make_turn("a"), index=0, meta=META)
    store.acquire("old", "me", ttl=5)
    clock.advance(8)
    store.append_turn("new", make_turn("b"), index=0, meta=META)
    clock.advance(3)
    assert store.purge_expired() == 1
    assert store.list_ids() == ["new"]
    assert store.acquire("old", "you") is True
    store.close()


def test_sqlite_closes_the_connections_of_every_thread(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)

    def open_files() -> List[str]:
        """This process's open files of the database (its journal and WAL files included)."""
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue  # closed since the listing
            if target.startswith(str(path)):
                found.append(target)
        return found

    used, closed = threading.Event(), threading.Event()

    def work() -> None:
        store.append_turn("t", make_turn("x"), index=0, meta=META)
        used.set()
        closed.wait(JOIN)  # alive until the store is closed: its connection cannot end with the thread

    thread = threading.Thread(target=work, name="store-conn")
    thread.start()
    try:
        assert used.wait(JOIN)
        assert open_files(), "the worker thread's connection is open"
        store.close()
        assert open_files() == []
    finally:
        closed.set()
        thread.join(timeout=JOIN)


def test_memory_purge_expired() -> None:
    clock = FakeClock()
    store = MemoryStore(ttl=10, clock=clock)
    store.append_turn("old", make_turn("a"), index=0, meta=META)
    clock.advance(11)
    assert store.purge_expired() == 1
    assert store.list_ids() == []


# -- Redis specifics -------------------------------------------------------------------


def test_redis_keys_and_expiry(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = f"keys:{uuid.uuid4().hex[:8]}:"
    forever = RedisStore(client, prefix=prefix)
    forever.append_turn("a", make_turn("x"), index=0, meta=META)
    assert client.pttl(f"{prefix}{{a}}:meta") == -1 and client.pttl(f"{prefix}{{a}}:turns") == -1
    assert client.llen(f"{prefix}{{a}}:turns") == 1
    forever.acquire("a", "me")
    assert 0 < client.pttl(f"{prefix}{{a}}:lock") <= 60_000
    assert client.get(f"{prefix}{{a}}:lock") == b"me"

    daily = RedisStore(client, prefix=prefix, ttl=86400)
    daily.append_turn("b", make_turn("x"), index=0, meta=META)
    for part in ("meta", "turns"):
        assert 86_000_000 < client.pttl(f"{prefix}{{b}}:{part}") <= 86_400_000
    with pytest.raises(StoreConflictError):
        daily.append_turn("b", make_turn("y"), index=5, meta=META)
    assert client.llen(f"{prefix}{{b}}:turns") == 1  # the script wrote nothing
    forever.close()
    daily.close()
    assert client.ping()  # the store did not close a client it was given
    client.close()


def test_redis_with_a_decoding_client_and_separate_prefixes(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    one = RedisStore(client, prefix=f"one:{uuid.uuid4().hex[:8]}:")
    two = RedisStore(client, prefix=f"two:{uuid.uuid4().hex[:8]}:")
    one.append_turn("c", make_turn("a"), index=0, meta=META)
    assert tags(one.load("c")) == ["a"] and one.list_ids() == ["c"]
    assert two.load("c") is None and two.list_ids() == []
    assert one.acquire("c", "me") and two.acquire("c", "you")
    one.release("c", "me")
    client.close()


def test_redis_refuses_newer_rows(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = f"newer:{uuid.uuid4().hex[:8]}:"
    store = RedisStore(client, prefix=prefix)
    store.append_turn("c", make_turn("a"), index=0, meta=META)
    newer = META.to_dict()
    newer["v"] = 3
    client.set(f"{prefix}{{c}}:meta", json.dumps(newer))
    with pytest.raises(StoreFormatError, match="version 3"):
        store.load("c")
    client.close()


# -- across processes (SQLite and Redis) ------------------------------------------------

N_PROCS = 4
N_CONVS = 20
N_TURNS = 10  # 200 turns in all
RACE_ROUNDS = 6


def _open_store(kind: str, target: str, prefix: str, **kwargs: Any) -> Any:
    if kind == "sqlite":
        return SQLiteStore(target, **kwargs)
    return RedisStore(target, prefix=prefix, **kwargs)


def _process_worker(kind: str, target: str, prefix: str, n: int, barrier: Any, results: Any) -> None:
    """Runs in a spawned process: owned conversations, then two races on shared ones."""
    report: Dict[str, Any] = {"n": n}
    try:
        store = _open_store(kind, target, prefix)
        owned = [f"conv-{i:02d}" for i in range(N_CONVS) if i % N_PROCS == n]
        barrier.wait(timeout=JOIN)
        for t in range(N_TURNS):  # interleaved with the other processes' writes
            for cid in owned:
                owner = new_owner()
                assert store.acquire(cid, owner), f"{cid} locked by someone else"
                conv = store.load(cid)
                index = 0 if conv is None else len(conv.turns)
                assert index == t
                store.append_turn(cid, make_turn(f"{cid}/{t}"), index=index, meta=META)
                store.release(cid, owner)
        # Race 1, no lock: all append turn r at once; the store lets exactly one through.
        wins = conflicts = 0
        for r in range(RACE_ROUNDS):
            barrier.wait(timeout=JOIN)
            try:
                store.append_turn("race", make_turn(f"p{n}/r{r}"), index=r, meta=META)
                wins += 1
            except StoreConflictError:
                conflicts += 1
        # Race 2, with the lock: the holder keeps it until every process has tried.
        lock_wins = lock_losses = 0
        for r in range(RACE_ROUNDS):
            barrier.wait(timeout=JOIN)
            owner = new_owner()
            if store.acquire("locked", owner):
                lock_wins += 1
                conv = store.load("locked")
                store.append_turn(
                    "locked", make_turn(f"p{n}/r{r}"), index=0 if conv is None else len(conv.turns), meta=META
                )
                barrier.wait(timeout=JOIN)
                store.release("locked", owner)
            else:
                lock_losses += 1
                barrier.wait(timeout=JOIN)
        report.update(wins=wins, conflicts=conflicts, lock_wins=lock_wins, lock_losses=lock_losses)
        store.close()
    except BaseException:  # pragma: no cover - reported to the parent
        report["error"] = traceback.format_exc()
        barrier.abort()
    results.put(report)


def _hold_lock_until_killed(kind: str, target: str, prefix: str, cid: str, lock_ttl: float, ready: Any) -> None:
    store = _open_store(kind, target, prefix, lock_ttl=lock_ttl)
    if store.acquire(cid, "doomed-worker"):
        ready.set()
    threading.Event().wait(JOIN)  # until SIGKILL; bounded in case nobody kills us


def _hold_write_transaction_until_killed(path: str, ready: Any) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO promptkit_locks VALUES ('x', 'doomed', 0)")
    ready.set()
    threading.Event().wait(JOIN)


@pytest.fixture(params=["sqlite", "redis"])
def shared_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dict[str, str]]:
    kind = request.param
    if kind == "sqlite":
        path = str(tmp_path / "shared.db")
        SQLiteStore(path).close()  # create the schema once, before the race
        yield {"kind": kind, "target": path, "prefix": ""}
    else:
        yield {"kind": kind, "target": request.getfixturevalue("redis_url"), "prefix": f"mp:{uuid.uuid4().hex[:8]}:"}


def _join_all(procs: List[Any]) -> None:
    for proc in procs:
        proc.join(timeout=JOIN)
    for proc in procs:
        if proc.is_alive():  # pragma: no cover - a hung worker
            proc.kill()
            proc.join(timeout=JOIN)
            pytest.fail(f"worker process {proc.pid} did not finish")


def test_processes_share_a_store_without_losing_or_interleaving_turns(shared_target: Dict[str, str]) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_PROCS)
    results = ctx.Queue()
    args = (shared_target["kind"], shared_target["target"], shared_target["prefix"])
    procs = [
        ctx.Process(target=_process_worker, args=args + (n, barrier, results), name=f"store-proc-{n}")
        for n in range(N_PROCS)
    ]
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=JOIN * 2) for _ in procs]
    finally:
        _join_all(procs)
    errors = [r["error"] for r in reports if "error" in r]
    assert not errors, "\n".join(errors)
    assert [p.exitcode for p in procs] == [0] * N_PROCS

    store = _open_store(*args)
    try:
        assert store.list_ids() == sorted([f"conv-{i:02d}" for i in range(N_CONVS)] + ["locked", "race"])
        total = 0
        for i in range(N_CONVS):
            cid = f"conv-{i:02d}"
            got = tags(store.load(cid))
            assert got == [f"{cid}/{t}" for t in range(N_TURNS)]  # complete, ordered, no duplicates
            total += len(got)
        assert total == N_CONVS * N_TURNS == 200

        assert sum(r["wins"] for r in reports) == RACE_ROUNDS
        assert sum(r["conflicts"] for r in reports) == RACE_ROUNDS * (N_PROCS - 1)
        race = tags(store.load("race"))
        assert [t.split("/")[1] for t in race] == [f"r{r}" for r in range(RACE_ROUNDS)]

        assert sum(r["lock_wins"] for r in reports) == RACE_ROUNDS
        assert sum(r["lock_losses"] for r in reports) == RACE_ROUNDS * (N_PROCS - 1)
        locked = tags(store.load("locked"))
        assert [t.split("/")[1] for t in locked] == [f"r{r}" for r in range(RACE_ROUNDS)]
    finally:
        store.close()


def test_a_killed_lock_holder_frees_the_conversation_after_the_lock_ttl(shared_target: Dict[str, str]) -> None:
    lock_ttl = 1.0
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    args = (shared_target["kind"], shared_target["target"], shared_target["prefix"])
    proc = ctx.Process(target=_hold_lock_until_killed, args=args + ("c", lock_ttl, ready), name="store-doomed")
    proc.start()
    store = _open_store(*args)
    try:
        assert ready.wait(JOIN), "the holder never took the lock"
        assert store.acquire("c", "survivor") is False
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=JOIN)
        assert proc.exitcode == -signal.SIGKILL
        killed = time.monotonic()
        pause = threading.Event()
        while not store.acquire("c", "survivor"):
            assert time.monotonic() - killed < lock_ttl + 10, "the dead holder's lock never expired"
            pause.wait(0.05)
        assert store.acquire("c", "latecomer") is False
    finally:
        if proc.is_alive():  # pragma: no cover
            proc.kill()
            proc.join(timeout=JOIN)
        store.close()


def test_sqlite_a_writer_killed_mid_transaction_does_not_block_others(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = SQLiteStore(path, busy_timeout=20)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_write_transaction_until_killed, args=(path, ready), name="store-doomed-tx")
    proc.start()
    try:
        assert ready.wait(JOIN)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=JOIN)
        store.append_turn("c", make_turn("after"), index=0, meta=META)
        assert tags(store.load("c")) == ["after"]
        assert store.acquire("x", "me") is True  # the dead writer's row was rolled back
    finally:
        if proc.is_alive():  # pragma: no cover
            proc.kill()
            proc.join(timeout=JOIN)
        store.close()


def test_open_store_by_name(tmp_path: "Path") -> None:
    from promptkit._errors import ConfigurationError
    from promptkit.stores import MemoryStore, RedisStore, SQLiteStore, open_store

    assert isinstance(open_store("memory"), MemoryStore)
    sqlite = open_store(f"sqlite:{tmp_path / 'x.db'}")
    try:
        assert isinstance(sqlite, SQLiteStore)
    finally:
        sqlite.close()
    assert isinstance(open_store("redis://127.0.0.1:1/0"), RedisStore)  # connects lazily
    for bad in ("", "sqlite:", "postgres://x", "mem"):
        with pytest.raises(ConfigurationError):
            open_store(bad)
