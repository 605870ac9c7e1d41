"""The stream log engines (MemoryStreamLog, RedisStreamLog on a real redis-server), publish() and the follower.

Behaviour both engines share is tested once, parametrised over them; the
Redis-only parts (several log instances standing for several workers, lapsed
leases, key layout and expiry) follow.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any, Iterator, List

import pytest

import promptkit
from promptkit.testing import MockReply, MockServer
from promptkit.web import (
    FollowBody,
    LogEntry,
    MemoryStreamLog,
    ProducerLostError,
    RedisStreamLog,
    StreamLog,
    StreamNotFoundError,
    publish,
)
from promptkit.web._follow import follow

from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures

ENGINES = ("memory", "redis")


def _redis_log(url: str, **options: Any) -> RedisStreamLog:
    return RedisStreamLog(url, prefix=f"t{uuid.uuid4().hex[:8]}:", **options)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_log(engine: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``make_log(**options)``: a log of the engine under test; Redis logs made together share a prefix."""
    made: List[StreamLog] = []
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    def make(**options: Any) -> StreamLog:
        if engine == "memory":
            options.pop("lease", None)
            log: StreamLog = MemoryStreamLog(**options)
        else:
            url = request.getfixturevalue("redis_url")
            log = RedisStreamLog(url, prefix=prefix, **options)
        made.append(log)
        return log

    yield make
    for log in made:
        log.close()


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as s:
        yield s


@pytest.fixture
def client(server: MockServer) -> Iterator[promptkit.Client]:
    with promptkit.Client(base_url=server.url, api_key="k", max_retries=0) as c:
        yield c


def _entries(log: StreamLog, sid: str, after: int = 0) -> List[LogEntry]:
    out = []
    for entry in follow(log, sid, after, None, threading.Event()):
        assert entry is not None
        out.append(entry)
    return out


def _text(entries: List[LogEntry]) -> str:
    return "".join(e.event["content"] for e in entries if e.event["type"] == "content")


# -- what every engine does ------------------------------------------------------------------


def test_a_published_turn_is_logged_whole_in_order_and_committed(make_log: Any, client: promptkit.Client) -> None:
    log = make_log()
    conv = client.conversation()
    sid = publish(conv.send_stream("Tell me a story."), log, key=conv.id)
    entries = _entries(log, sid)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert [e.id for e in entries][:2] == ["0-1", "0-2"]
    assert entries[-1].terminal and entries[-1].event["type"] == "done"
    assert not any(e.terminal for e in entries[:-1])
    final = entries[-1].event["final"]
    assert _text(entries) == final["content"] == conv.messages[-1]["content"]
    info = log.info(sid)
    assert info.finished and info.events == len(entries) and info.last_id == entries[-1].id and info.key == conv.id
    assert log.current(conv.id) == sid


def test_a_finished_stream_replays_from_any_point_without_loss_or_repeat(make_log: Any, client: promptkit.Client) -> None:
    log = make_log()
    sid = publish(client.conversation().send_stream("Tell me a story."), log)
    whole = _entries(log, sid)
    for after in (0, 1, len(whole) // 2, len(whole) - 1):
        assert _entries(log, sid, after) == whole[after:]
    assert _entries(log, sid, len(whole)) == []  # nothing after the terminal: the follower ends at once


def test_a_follower_that_joins_mid_reply_gets_the_rest_live(make_log: Any, client: promptkit.Client,
                                                          server: MockServer) -> None:
    log = make_log()
    server.enqueue(MockReply.text("one two three four five six", chunk_size=4, delay=0.01))
    sid = publish(client.conversation().send_stream("go"), log)
    first = next(follow(log, sid, 0, None, threading.Event()))
    assert first is not None and first.seq == 1
    rest = _entries(log, sid, first.seq)  # whatever was appended meanwhile, then live to the end
    assert rest[0].seq == 2 and rest[-1].terminal
    assert _text([first] + rest) == "one two three four five six"


def test_stop_cancels_a_silent_turn_which_commits_as_cancelled(make_log: Any, client: promptkit.Client,
                                                              server: MockServer) -> None:
    producer, other = make_log(), make_log()  # with Redis: two instances, as two workers would have
    server.enqueue(MockReply.stall(after_text="Let me think"))
    conv = client.conversation()
    sid = publish(conv.send_stream("think"), producer, key=conv.id)
    updates = follow(producer, sid, 0, None, threading.Event())
    seen = ""
    while seen != "Let me think":  # the model is now silent for ever
        entry = next(updates)
        assert entry is not None
        seen += entry.event["content"]
    asker = other if isinstance(producer, RedisStreamLog) else producer
    assert asker.stop(asker.current(conv.id) or "")
    assert server.disconnected.wait(10.0), "the stop request did not cancel the upstream request"
    rest = list(updates)
    assert rest[-1] is not None and rest[-1].event["final"]["finish_reason"] == "cancelled"
    assert conv.messages[-1] == {"role": "assistant", "content": "Let me think"}
    assert not asker.stop(sid), "a finished stream cannot be stopped"
    assert producer.info(sid).finished


def test_a_stop_that_comes_before_the_producer_listens_is_not_lost(make_log: Any, client: promptkit.Client,
                                                                  server: MockServer) -> None:
    log = make_log()
    server.enqueue(MockReply.stall(after_text="x"))
    log.create("early-stop", None)
    assert log.stop("early-stop")
    stream = client.conversation().send_stream("q")
    log.hold("early-stop", stream)  # what the producer does first: it finds the request and cancels
    try:
        assert stream.result().finish_reason == "cancelled"
    finally:
        log.release("early-stop")


def test_an_unknown_stream_is_not_found(make_log: Any) -> None:
    log = make_log()
    with pytest.raises(StreamNotFoundError):
        log.info("ps_nothing")
    with pytest.raises(StreamNotFoundError):
        list(follow(log, "ps_nothing", 0, None, threading.Event()))
    assert log.current("no-such-key") is None
    assert not log.stop("ps_nothing")


def test_a_resume_point_that_was_trimmed_ends_with_an_error_not_a_gap(make_log: Any, client: promptkit.Client) -> None:
    log = make_log(max_events=5)
    sid = publish(client.conversation().send_stream("Tell me a story."), log)
    while not log.info(sid).finished:
        log.read(sid, log.info(sid).events, 1.0)  # wait for the next event
    kept = _entries(log, sid, log.info(sid).events - 5)
    assert len(kept) == 5 and kept[-1].terminal
    trimmed = _entries(log, sid, 1)
    assert len(trimmed) == 1 and trimmed[0].seq == 0 and trimmed[0].event["type"] == "error"
    assert trimmed[0].event["error"]["type"] == "StreamNotFoundError"
    assert "no longer holds events 0-2 to" in trimmed[0].event["error"]["message"]


def test_the_same_stream_id_cannot_be_published_twice(make_log: Any, client: promptkit.Client, server: MockServer) -> None:
    log = make_log()
    publish(client.conversation().send_stream("a"), log, stream_id="fixed-id")
    first = _entries(log, "fixed-id")
    server.enqueue(MockReply.stall(after_text="never seen"))
    second = client.conversation().send_stream("b")
    with pytest.raises(promptkit.ConfigurationError, match="already in the log"):
        publish(second, log, stream_id="fixed-id")
    assert second.done and second.result().finish_reason == "cancelled"  # closed, not left running
    assert _entries(log, "fixed-id") == first


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "a{b}", "../x", None, 7])
def test_bad_stream_ids_are_refused_before_any_io(make_log: Any, client: promptkit.Client, bad: Any) -> None:
    log = make_log()
    for call in (lambda: log.stop(bad), lambda: log.info(bad)):
        with pytest.raises(promptkit.ConfigurationError):
            call()
    stream = client.conversation().send_stream("q")
    with pytest.raises(promptkit.ConfigurationError):
        publish(stream, log, stream_id=bad if bad is not None else 7)
    assert stream.done


@pytest.mark.parametrize("bad", ["", "x" * 1025, None, 7])
def test_bad_keys_are_refused_before_any_io(make_log: Any, client: promptkit.Client, bad: Any) -> None:
    log = make_log()
    with pytest.raises(promptkit.ConfigurationError):
        log.current(bad)
    stream = client.conversation().send_stream("q")
    with pytest.raises(promptkit.ConfigurationError):
        publish(stream, log, key=bad if bad is not None else 7)
    assert stream.done


def test_any_conversation_id_is_a_key(make_log: Any, client: promptkit.Client) -> None:
    log = make_log()
    key = "user 42 {tenant}/chat:ü"
    sid = publish(client.conversation(conversation_id=key).send_stream("q"), log, key=key)
    assert log.current(key) == sid and log.info(sid).key == key
    assert _entries(log, sid)[-1].terminal


def test_heartbeats_while_the_model_is_silent_and_closing_stops_a_follower(make_log: Any, client: promptkit.Client,
                                                                        server: MockServer) -> None:
    log = make_log()
    server.enqueue(MockReply.stall(after_text="wait"))
    conv = client.conversation()
    sid = publish(conv.send_stream("q"), log)
    body = FollowBody(log, sid, heartbeat=0.01)
    frames = []
    while b": keep-alive" not in b"".join(frames[-1:]):
        frames.append(next(body))
    body.close()  # the client left: the follower ends, the turn goes on
    assert list(body) == []
    assert not log.info(sid).finished
    assert log.stop(sid)
    assert _entries(log, sid)[-1].event["final"]["finish_reason"] == "cancelled"


# -- Redis only: several workers, lapsed leases, keys ------------------------------------------


def test_a_producer_whose_lease_lapses_ends_its_followers_with_one_error(redis_url: str) -> None:
    log = _redis_log(redis_url, lease=0.3)
    log.create("orphan", "chat-1")  # a producer that took its lease, wrote one event, and died
    assert log.append("orphan", {"type": "content", "content": "half"}).seq == 1
    a, b = (_entries(log, "orphan") for _ in range(2))
    assert a == b and [e.event["type"] for e in a] == ["content", "error"]
    assert a[-1].event["error"]["type"] == "ProducerLostError" and "lease" in a[-1].event["error"]["message"]
    assert log.info("orphan").finished and log.info("orphan").events == 2
    assert not log.append("orphan", {"type": "content", "content": "late"}).live  # a frozen producer learns it
    log.close()


# 0.18: a lease shorter than the keeper's 0.2 s stop-channel tick, which once set the pace of renewals.
@pytest.mark.parametrize("lease", [0.3, 0.18])
def test_a_live_producer_keeps_its_lease_through_a_long_silence(redis_url: str, client: promptkit.Client,
                                                               server: MockServer, lease: float) -> None:
    log = _redis_log(redis_url, lease=lease)
    server.enqueue(MockReply.stall(after_text="thinking"))
    sid = publish(client.conversation().send_stream("q"), log)
    seen = []
    for entry in follow(log, sid, 0, 0.05, threading.Event()):
        seen.append(entry)
        if seen.count(None) == 20:  # a second of silence: more than three leases, renewed all along
            break
    assert not log.info(sid).finished
    assert log.stop(sid)
    assert _entries(log, sid)[-1].event["final"]["finish_reason"] == "cancelled"
    log.close()


def test_redis_keys_share_a_hash_tag_and_expire(redis_url: str, client: promptkit.Client) -> None:
    import redis

    log = _redis_log(redis_url, ttl=120)
    conv = client.conversation()
    sid = publish(conv.send_stream("q"), log, key=conv.id)
    _entries(log, sid)
    raw = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(k.decode() for k in raw.scan_iter(match=f"{log.prefix}*"))
        assert keys == sorted([f"{log.prefix}stream:{{{sid}}}:log", f"{log.prefix}stream:{{{sid}}}:meta",
                               f"{log.prefix}current:{{{conv.id}}}"])  # the lease is gone with the producer
        for key in keys:
            assert 0 < raw.pttl(key) <= 120_000
        first = raw.xrange(f"{log.prefix}stream:{{{sid}}}:log", count=1)[0]
        assert first[0] == b"0-1" and json.loads(first[1][b"e"])["type"] == "content"
    finally:
        raw.close()
        log.close()


def test_redis_failures_are_store_errors_without_the_password(redis_url: str, client: promptkit.Client) -> None:
    log = RedisStreamLog("redis://:s3cret-pw@127.0.0.1:1/0", timeout=0.5)
    stream = client.conversation().send_stream("q")
    with pytest.raises(promptkit.StoreError) as caught:
        publish(stream, log)
    assert "s3cret-pw" not in str(caught.value) and "refused" in str(caught.value)
    assert stream.done  # a turn nobody could follow was closed
    log.close()


def test_options_are_checked_before_any_io() -> None:
    for bad in ({"ttl": 0}, {"lease": -1}, {"max_events": 0}, {"prefix": 3}, {"timeout": "1"}):
        with pytest.raises(promptkit.ConfigurationError):
            RedisStreamLog("redis://127.0.0.1:1/0", **bad)
    with pytest.raises(promptkit.ConfigurationError):
        RedisStreamLog(object())
    with pytest.raises(promptkit.ConfigurationError):
        MemoryStreamLog(ttl=-1)


def test_lost_producer_error_type_is_public() -> None:
    assert issubclass(ProducerLostError, promptkit.PromptKitError)
    assert issubclass(StreamNotFoundError, LookupError)


def test_a_follower_whose_log_fails_ends_with_one_error_event(redis_server: Any, client: promptkit.Client,
                                                             server: MockServer) -> None:
    log = RedisStreamLog(redis_server.url, prefix=f"t{uuid.uuid4().hex[:8]}:", timeout=1.0, lease=0.5)
    server.enqueue(MockReply.stall(after_text="half"))
    sid = publish(client.conversation().send_stream("q"), log)
    body = FollowBody(log, sid, heartbeat=None)
    assert b'"content":"half"' in next(body)
    redis_server.kill()  # Redis goes away while the follower waits
    try:
        frames = list(body)
    finally:
        redis_server.restart()
        server.close()  # the stalled reply ends; its producer's appends fail and it stops
        log.close()
    assert len(frames) == 1 and frames[0].startswith(b"event: error\ndata: ")  # no id: not in the log
    assert json.loads(frames[0].split(b"data: ", 1)[1])["error"]["type"] == "StoreError"


# -- followers on an event loop ------------------------------------------------------------------


async def _afollow_all(log: StreamLog, sid: str, after: int = 0, heartbeat: Any = None) -> List[Any]:
    from promptkit.web._follow import afollow

    return [entry async for entry in afollow(log, sid, after, heartbeat, threading.Event())]


def test_async_followers_see_what_sync_ones_see(make_log: Any, client: promptkit.Client) -> None:
    import asyncio

    log = make_log()
    sid = publish(client.conversation().send_stream("Tell me a story."), log)
    live = asyncio.run(_afollow_all(log, sid))  # started while the reply streams
    assert live == _entries(log, sid) and live[-1].terminal
    assert asyncio.run(_afollow_all(log, sid, 5)) == live[5:]
    assert asyncio.run(_afollow_all(log, sid, len(live))) == []


def _blocked_in_xread(url: str) -> int:
    import redis

    raw = redis.Redis.from_url(url)
    try:
        return sum(1 for c in raw.client_list() if c.get("cmd") == "xread" and "b" in c.get("flags", ""))
    finally:
        raw.close()


def test_many_async_followers_wait_without_a_thread_each(make_log: Any, client: promptkit.Client,
                                                        server: MockServer, engine: str,
                                                        request: pytest.FixtureRequest) -> None:
    import asyncio

    from promptkit.web._follow import afollow

    log = make_log()
    url = request.getfixturevalue("redis_url") if engine == "redis" else None
    server.enqueue(MockReply.stall(after_text="silent now"))
    sid = publish(client.conversation().send_stream("q"), log)

    async def main() -> List[List[Any]]:
        followers = [afollow(log, sid, 0, None, threading.Event()) for _ in range(50)]
        seen: List[List[Any]] = [[] for _ in followers]
        for follower, entries in zip(followers, seen):
            while _text(entries) != "silent now":  # the model is silent from here on
                entries.append(await follower.__anext__())
        threads = threading.active_count()
        waiting = [asyncio.ensure_future(f.__anext__()) for f in followers]
        await asyncio.sleep(0)  # one pass of the loop: every follower runs to its wait for the next entry
        if url is not None:  # Redis: until the server has every one of them blocked in XREAD
            while _blocked_in_xread(url) < len(followers):
                await asyncio.sleep(0.01)
        assert threading.active_count() == threads, "a waiting follower took a thread"
        assert not any(w.done() for w in waiting)
        assert await asyncio.get_running_loop().run_in_executor(None, log.stop, sid)  # as another worker would
        for follower, entries, next_entry in zip(followers, seen, waiting):
            entries.append(await next_entry)
            entries.extend([e async for e in follower])
        return seen

    results = asyncio.run(main())
    assert all(r == results[0] for r in results) and results[0][-1].event["final"]["finish_reason"] == "cancelled"


def test_the_first_publish_in_a_process_loads_the_token_counter_in_the_background() -> None:
    # In a fresh process: a stopped reply's usage is estimated with tiktoken, whose first load would
    # otherwise delay the first stop by about 0.3 s. A reply that ends normally never needs it.
    code = """
import sys, promptkit
from promptkit.testing import MockServer
from promptkit.web import MemoryStreamLog, publish
from promptkit._stream import Stream
with MockServer() as server, promptkit.Client(base_url=server.url, api_key="k") as client:
    client.conversation().send("hi")
    assert "tiktoken" not in sys.modules
    log = MemoryStreamLog()
    sid = publish(client.conversation().send_stream("hi"), log)
    while not log.info(sid).finished:
        log.read(sid, log.info(sid).events, 5.0)
    import threading
    for thread in threading.enumerate():
        if thread.name.startswith("promptkit-token-warmup"):
            thread.join(30)
    print("tiktoken" in sys.modules)
"""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"


def test_last_event_id_0_0_means_from_the_start(make_log: Any, client: promptkit.Client) -> None:
    from promptkit.web._follow import resume_reply
    from promptkit.web._log import parse_entry_id

    assert parse_entry_id("0-0") == 0 and parse_entry_id(" 0-17 ") == 17
    for bad in ("0-01", "1-1", "0-", "-1", "0-1-2", 17):
        with pytest.raises(promptkit.ConfigurationError):
            parse_entry_id(bad)
    log = make_log()
    sid = publish(client.conversation().send_stream("q"), log)
    whole = _entries(log, sid)
    status, body = resume_reply(log, sid, last_event_id="0-0", heartbeat=None)
    assert status == 200 and body is not None
    frames = list(body)
    assert frames[0] == b"retry: 1000\n\n" and len(frames) == 1 + len(whole)
    assert frames[1].startswith(b"event: content\nid: 0-1\n")


# -- a log that fails under the producer -------------------------------------------------------------


def test_a_retried_append_is_written_once(make_log: Any) -> None:
    log = make_log()
    log.create("retry-me", None)
    first = {"type": "content", "content": "a"}
    assert log.append("retry-me", first, 1).seq == 1
    assert log.append("retry-me", first, 1).seq == 1  # the answer was lost, the producer retries
    assert log.append("retry-me", {"type": "content", "content": "b"}, 2).seq == 2
    done = {"type": "done", "content": "", "final": {"finish_reason": "stop"}}
    assert log.append("retry-me", done, 3).seq == 3 and log.append("retry-me", done, 3).seq == 3
    assert [e.event["content"] for e in _entries(log, "retry-me")] == ["a", "b", ""]
    assert log.info("retry-me").events == 3


class FlakyLog(MemoryStreamLog):
    """A MemoryStreamLog whose appends fail as a remote engine's can: ``fail(seq)`` says how."""

    def __init__(self, fail: Any) -> None:
        super().__init__()
        self.fail = fail
        self.attempts: List[int] = []

    def append(self, stream_id: str, event: Any, seq: int = 0) -> Any:
        self.attempts.append(seq)
        how = self.fail(seq, self.attempts.count(seq))
        if how == "lost-answer":  # written, but the answer never came back
            super().append(stream_id, event, seq)
        if how in ("lost-answer", "down"):
            raise promptkit.StoreError("FlakyLog: append failed: connection lost")
        return super().append(stream_id, event, seq)


def test_an_append_whose_answer_was_lost_is_retried_without_a_duplicate(client: promptkit.Client) -> None:
    log = FlakyLog(lambda seq, attempt: "lost-answer" if seq == 3 and attempt == 1 else None)
    conv = client.conversation()
    sid = publish(conv.send_stream("Tell me a story."), log)
    entries = _entries(log, sid)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert _text(entries) == entries[-1].event["final"]["content"] == conv.messages[-1]["content"]
    assert log.attempts.count(3) == 2


def test_a_log_that_stays_down_cancels_the_turn_and_ends_its_followers(client: promptkit.Client,
                                                                      server: MockServer) -> None:
    from tests.test_web import RecordingStore

    store = RecordingStore()
    log = FlakyLog(lambda seq, attempt: "down" if seq >= 3 else None)
    server.enqueue(MockReply.stall(after_text="one two three four five"))  # then silent: only a cancel ends it
    conv = client.conversation(store=store)
    sid = publish(conv.send_stream("q"), log)
    entries = _entries(log, sid)
    assert [e.seq for e in entries] == [1, 2, 3]  # two events, then the failure (appended wherever it stood)
    assert entries[-1].event["type"] == "error" and entries[-1].event["error"]["type"] == "StoreError"
    assert server.disconnected.wait(10.0), "the turn went on although nobody could follow it"
    assert log.attempts.count(3) == 3  # tried, then retried twice
    committed, turn = store.next_commit(timeout=10)
    assert committed == conv.id and turn.finish_reason == "cancelled"


class OpaqueClient:
    """A redis client promptkit cannot copy (as a cluster or a custom client): no plain connection pool."""

    def __init__(self, url: str) -> None:
        import redis

        self._inner = redis.Redis.from_url(url, socket_timeout=10)

    def __getattr__(self, name: str) -> Any:
        if name == "connection_pool":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_async_followers_of_a_client_promptkit_cannot_copy_read_in_the_executor(
        redis_url: str, client: promptkit.Client) -> None:
    import asyncio

    opaque = OpaqueClient(redis_url)
    log = RedisStreamLog(opaque, prefix=f"t{uuid.uuid4().hex[:8]}:")
    try:
        sid = publish(client.conversation().send_stream("Tell me a story."), log)
        live = asyncio.run(_afollow_all(log, sid))
        assert live == _entries(log, sid) and live[-1].terminal
    finally:
        log.close()
        opaque.close()


# -- the review's cases: a frozen producer, stops while pub/sub is away, runs longer than ttl ------------


def test_a_frozen_producers_next_append_finds_its_stream_ended(redis_url: str) -> None:
    log = _redis_log(redis_url, lease=0.2)
    log.create("frozen", None)  # its lease is never renewed: as a producer frozen for longer than it
    assert log.append("frozen", {"type": "content", "content": "a"}, 1).seq == 1
    while not log.declare_lost("frozen", {"type": "error", "error": {"type": "ProducerLostError"}}):
        log.read("frozen", 2, 0.05)  # a follower's silent poll, until the lease lapses
    # The follower's error took seq 2: the producer's append of its own seq 2 must not count as written.
    assert not log.append("frozen", {"type": "content", "content": "b"}, 2).live
    assert [e.event["type"] for e in _entries(log, "frozen")] == ["content", "error"]
    log.close()


def test_a_stop_flag_alone_reaches_the_producer_at_its_next_renewal(redis_url: str, client: promptkit.Client,
                                                                   server: MockServer) -> None:
    # A stop published while the producer's keeper was reconnecting is not heard on pub/sub: the
    # flag in the log must still reach it. Here the flag is set without any message at all.
    import redis

    log = _redis_log(redis_url, lease=0.3)
    server.enqueue(MockReply.stall(after_text="thinking"))
    sid = publish(client.conversation().send_stream("q"), log)
    assert log.read(sid, 0, 10.0)
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.hset(f"{log.prefix}stream:{{{sid}}}:meta", "stop", 1)
    finally:
        raw.close()
    assert server.disconnected.wait(10.0), "a stop flag without its pub/sub message was never seen"
    assert _entries(log, sid)[-1].event["final"]["finish_reason"] == "cancelled"
    log.close()


def test_a_reply_that_runs_longer_than_the_ttl_stays_current_and_readable(redis_url: str, client: promptkit.Client,
                                                                         server: MockServer) -> None:
    log = _redis_log(redis_url, ttl=1.0, lease=0.9)  # renewed every 0.3 s: room for a loaded machine
    server.enqueue(MockReply.stall(after_text="a long think"))
    conv = client.conversation()
    sid = publish(conv.send_stream("q"), log, key=conv.id)
    beats = 0
    for entry in follow(log, sid, 0, 0.05, threading.Event()):
        beats += entry is None
        if beats == 50:  # 2.5 s of silence: two and a half times the ttl
            break
    assert log.current(conv.id) == sid and not log.info(sid).finished
    assert log.stop(sid)
    assert _entries(log, sid)[-1].event["final"]["finish_reason"] == "cancelled"
    log.close()


def test_a_read_may_ask_to_wait_longer_than_the_connections_allow(redis_url: str) -> None:
    log = _redis_log(redis_url, timeout=0.3, lease=0.5)
    log.create("patient", None)
    assert log.read("patient", 0, 2.0) == []  # returns early (after a poll) instead of failing
    log.close()


@pytest.mark.parametrize("after", [0, 1, 7, 20])
def test_an_ai_sdk_resume_is_exactly_the_rest_of_the_live_stream(make_log: Any, client: promptkit.Client,
                                                                after: int) -> None:
    log = make_log()
    sid = publish(client.conversation().send_stream("Tell me a story."), log)
    live = list(FollowBody(log, sid, heartbeat=None, protocol="ai-sdk"))
    whole = b"".join(live)
    rest = b"".join(FollowBody(log, sid, after=after, heartbeat=None, protocol="ai-sdk"))
    if after == 0:
        assert rest == whole
    else:
        cut = whole.index(f"id: 0-{after}\n".encode())
        cut = whole.index(b"\n\n", cut) + 2  # the end of event 0-<after>'s last frame
        assert rest == whole[cut:]
