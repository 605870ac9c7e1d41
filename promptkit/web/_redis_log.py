"""RedisStreamLog: published streams in Redis, resumable and stoppable from every worker and machine.

Keys, for a stream ``SID``, a key ``KEY`` and the prefix ``promptkit:``::

    promptkit:stream:{SID}:log     stream: entry 0-n holds the n-th event (field e: its JSON)
    promptkit:stream:{SID}:meta    hash: state (running|done), key, n (events so far), stop (0|1)
    promptkit:stream:{SID}:lease   string: the producer's token, with a PX expiry it keeps renewing
    promptkit:current:{KEY}        string: the newest SID published under KEY

The braces are a Redis Cluster hash tag: a stream's keys share one slot, so
each Lua script below touches them atomically. Stop requests go out on the
channel ``promptkit:stop`` (the message is the SID) and are also kept in the
meta hash, so a producer that subscribes late still sees them.

Each process that produces holds one *keeper* thread while it has streams
running: it renews their leases every ``lease / 3`` seconds in one pipeline
and cancels a local stream the moment its stop message arrives. It exits
when the last local stream ends. A process that dies stops renewing; the
first follower to find the lease lapsed ends the stream with an ``error``
event, atomically, and the producer (if it was only frozen) finds its stream
ended at its next append and cancels its turn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Mapping, Optional, TypeVar

from .._errors import ConfigurationError, StoreError
from .._redis import connect, failure_cause, ms, text
from .._stream import start_thread
from ._log import (
    DEFAULT_LEASE,
    DEFAULT_MAX_EVENTS,
    DEFAULT_TTL,
    TERMINAL_TYPES,
    Appended,
    LogEntry,
    StreamInfo,
    StreamLog,
    StreamNotFoundError,
    check_count,
    check_key,
    check_seconds,
    check_stream_id,
)

if TYPE_CHECKING:  # pragma: no cover
    from .._stream import Stream

__all__ = ["RedisStreamLog"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# KEYS: meta, lease. ARGV: key ("" for none), owner, lease ms, ttl ms. 1: created; 0: the id is taken.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'running', 'key', ARGV[1], 'n', 0, 'stop', 0)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
return 1
"""

# KEYS: meta, log, lease. ARGV: event JSON, terminal (0|1), max events, ttl ms, the seq it must get (0: any).
# {n, stop}: appended as entry 0-n (or found there: a retried append); {0, 0}: the stream is not
# running (ended, lost or expired).
_APPEND = """
local want = tonumber(ARGV[5])
if want > 0 and tonumber(redis.call('HGET', KEYS[1], 'n') or '0') >= want then
  if redis.call('HGET', KEYS[1], 'lost') == '1' then
    return {0, 0}  -- that seq is a follower's error event: this producer was declared lost
  end
  return {want, tonumber(redis.call('HGET', KEYS[1], 'stop'))}
end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then
  return {0, 0}
end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '0-' .. n, 'e', ARGV[1])
local ttl = tonumber(ARGV[4])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'done')
  redis.call('DEL', KEYS[3])
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {n, tonumber(redis.call('HGET', KEYS[1], 'stop'))}
"""

# KEYS: meta, log, lease. ARGV: error event JSON, max events, ttl ms. 1: this call ended the stream.
_DECLARE_LOST = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' or redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '0-' .. n, 'e', ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'done', 'lost', 1)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
return 1
"""

# KEYS: meta. ARGV: channel, stream id. 1: a running stream was asked to stop.
_STOP = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], 'stop', 1)
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""

# KEYS: lease, meta, log. ARGV: owner, lease ms, ttl ms. A held stream's renewal: its lease, and its
# log's time to live while it runs (a reply may be silent for longer than ttl). {stop (0|1), key}.
_RENEW = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]), 'XX')
if redis.call('HGET', KEYS[2], 'state') == 'running' then
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[3]))
end
return {tonumber(redis.call('HGET', KEYS[2], 'stop') or '0'), redis.call('HGET', KEYS[2], 'key') or ''}
"""

# KEYS: current. ARGV: stream id, ttl ms. Keeps the pointer as long as the stream's log, if it still names it.
_TOUCH_CURRENT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""

# How often the keeper looks at its stop channel when no message comes: how soon it exits after its last stream.
_KEEPER_TICK = 0.2
# How many entries one read returns at most: small enough that a long replay's first event goes out
# at once (decoding a thousand entries first cost about 20 ms), large enough to take few round trips.
_READ_COUNT = 100
# The connection settings a redis.asyncio pool takes from the synchronous one.
_ASYNC_KEYS = frozenset(
    ("host", "port", "db", "username", "password", "path", "client_name", "encoding", "encoding_errors",
     "decode_responses", "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data",
     "ssl_check_hostname", "ssl_min_version", "ssl_ciphers", "protocol")
)


class RedisStreamLog(StreamLog):
    """A :class:`~promptkit.web.StreamLog` in Redis: streams that resume and stop on any worker or machine.

    Each event of a published turn is one entry of a Redis Stream (bounded by
    ``max_events``, expiring ``ttl`` seconds after its last event), so a
    follower on any worker replays from any point and then blocks in
    ``XREAD`` for the live ones. A stop request reaches the producing worker
    through pub/sub within milliseconds. A producer that dies stops renewing
    its ``lease``, and its followers end with an ``error`` event at most
    ``lease`` plus one poll (``min(1 s, lease / 5)``) later.

    Thread-safe. A follower waiting costs no thread of its own, and holds one
    pooled connection only while it blocks (for at most a poll).

    Args:
        url_or_client: a URL such as ``"redis://localhost:6379/0"`` (the log
            owns that client and closes it in :meth:`close`), or a
            ``redis.Redis`` client you own.
        ttl: seconds a stream stays readable after its last event.
        lease: seconds a producer's lease lasts without renewal (it renews
            every third of it).
        max_events: the most events one stream keeps (a resume from a
            trimmed event ends with a plain error, never with a silent gap).
        prefix: the prefix of every key and of the stop channel.
        timeout: how long any operation may wait for Redis (beyond a follower's poll), in seconds.

    Raises:
        ConfigurationError: redis-py is not installed, or an argument is invalid.
    """

    def __init__(
        self,
        url_or_client: Any,
        *,
        ttl: float = DEFAULT_TTL,
        lease: float = DEFAULT_LEASE,
        max_events: int = DEFAULT_MAX_EVENTS,
        prefix: str = "promptkit:",
        timeout: float = 5.0,
    ) -> None:
        self.ttl = check_seconds("ttl", ttl)
        self.lease = check_seconds("lease", lease)
        self.max_events = check_count("max_events", max_events)
        self.timeout = check_seconds("timeout", timeout)
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a str, got {prefix!r}")
        self.prefix = prefix
        # A follower's blocking read may take a poll on top of the operation bound.
        self._redis, link = connect(url_or_client, "RedisStreamLog", self.timeout + self.poll)
        self._client, self._owns_client, self._secret = link.client, link.owned, link.secret
        # Followers on event loops talk over redis.asyncio clients, one per loop, made on first use.
        self._async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = weakref.WeakKeyDictionary()
        self._async_lock = threading.Lock()
        self.description = f"RedisStreamLog({link.where})"
        self.channel = f"{prefix}stop"
        self._create = self._client.register_script(_CREATE)
        self._append = self._client.register_script(_APPEND)
        self._declare_lost = self._client.register_script(_DECLARE_LOST)
        self._stop = self._client.register_script(_STOP)
        self._touch_current = self._client.register_script(_TOUCH_CURRENT)
        self._renew_script = self._client.register_script(_RENEW)
        self._owner = f"{secrets.token_hex(8)}"  # this process's lease token
        self._keeper = _Keeper(self)
        self._closed = False

    def __repr__(self) -> str:
        return f"{self.description[:-1]}, prefix={self.prefix!r}, ttl={self.ttl:g}, lease={self.lease:g})"

    # -- plumbing ----------------------------------------------------------
    def _key(self, stream_id: str, part: str) -> str:
        return f"{self.prefix}stream:{{{stream_id}}}:{part}"

    def _keys(self, stream_id: str) -> List[str]:
        return [self._key(stream_id, "meta"), self._key(stream_id, "log"), self._key(stream_id, "lease")]

    def _current_key(self, key: str) -> str:
        return f"{self.prefix}current:{{{key}}}"

    def _run(self, operation: str, action: Callable[[], _T]) -> _T:
        """Run one Redis operation; any redis-py failure becomes a :class:`~promptkit.StoreError`."""
        if self._closed:
            raise StoreError(f"{self.description} is closed", store=self.description)
        try:
            return action()
        except (self._redis.RedisError, OSError) as exc:
            cause = failure_cause(self._redis, exc, self.timeout, self._secret)
        raise StoreError(f"{self.description}: {operation} failed: {cause}", store=self.description, operation=operation)

    def _entries(self, raw: Any) -> List[LogEntry]:
        entries = []
        for entry_id, fields in raw or ():
            seq = int(text(entry_id).partition("-")[2])
            payload = fields.get(b"e", fields.get("e"))
            entries.append(LogEntry(seq, json.loads(text(payload))))
        return entries

    # -- producers -------------------------------------------------------------
    def create(self, stream_id: str, key: Optional[str]) -> None:
        check_stream_id(stream_id)
        keys = self._keys(stream_id)
        created = self._run(
            "create",
            lambda: self._create(
                keys=[keys[0], keys[2]], args=[key or "", self._owner, ms(self.lease), ms(self.ttl)], client=self._client
            ),
        )
        if not int(created):
            raise ConfigurationError(f"a stream {stream_id!r} is already in the log")
        if key is not None:
            self._run("create", lambda: self._client.set(self._current_key(key), stream_id, px=ms(self.ttl)))

    def append(self, stream_id: str, event: Mapping[str, Any], seq: int = 0) -> Appended:
        terminal = event.get("type") in TERMINAL_TYPES
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)
        written, stop = self._run(
            "append",
            lambda: self._append(
                keys=self._keys(stream_id),
                args=[data, "1" if terminal else "0", self.max_events, ms(self.ttl), seq],
                client=self._client,
            ),
        )
        if not int(written):
            return Appended(0, live=False)
        if terminal:
            self._keep_current(stream_id)
        return Appended(int(written), stop=bool(int(stop or 0)))

    def _keep_current(self, stream_id: str) -> None:
        key = self._run("append", lambda: self._client.hget(self._key(stream_id, "meta"), "key"))
        if key:
            current = self._current_key(text(key))
            self._run("append", lambda: self._touch_current(keys=[current], args=[stream_id, ms(self.ttl)], client=self._client))

    def hold(self, stream_id: str, stream: "Stream") -> None:
        self._keeper.hold(stream_id, stream)  # subscribed to stop requests from here on
        stop = self._run("hold", lambda: self._client.hget(self._key(stream_id, "meta"), "stop"))
        if stop is not None and int(stop):
            stream.cancel()  # asked to stop before this process subscribed

    def release(self, stream_id: str) -> None:
        self._keeper.release(stream_id)

    def _renew(self, stream_ids: List[str]) -> List[str]:
        """Renew the held streams' leases, their logs' and current pointers' time to live; the ids asked to stop.

        The stop flags read here back pub/sub up: a stop published while the
        keeper was reconnecting is seen at the next renewal.
        """

        def renew() -> Any:
            with self._client.pipeline(transaction=False) as pipe:
                for sid in stream_ids:
                    meta, log, lease = self._keys(sid)
                    self._renew_script(keys=[lease, meta, log], args=[self._owner, ms(self.lease), ms(self.ttl)], client=pipe)
                return pipe.execute()

        answers = self._run("renew", renew)
        stopping, keys = [], []
        for sid, (stop, key) in zip(stream_ids, answers):
            if int(stop):
                stopping.append(sid)
            if key:
                keys.append((sid, text(key)))
        if keys:

            def touch() -> Any:
                with self._client.pipeline(transaction=False) as pipe:
                    for sid, key in keys:
                        self._touch_current(keys=[self._current_key(key)], args=[sid, ms(self.ttl)], client=pipe)
                    return pipe.execute()

            self._run("renew", touch)
        return stopping

    # -- followers -------------------------------------------------------------
    def read(self, stream_id: str, after: int, timeout: float) -> List[LogEntry]:
        meta, log = self._key(stream_id, "meta"), self._key(stream_id, "log")
        timeout = min(timeout, self.poll)  # the connections' bound allows a poll: return early, as allowed
        block = ms(timeout) if timeout > 0 else None

        def fetch() -> Any:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.exists(meta)
                pipe.xread({log: f"0-{after}"}, count=_READ_COUNT, block=block)
                return pipe.execute()

        exists, found = self._run("read", fetch)
        if not exists:
            raise StreamNotFoundError(f"no stream {stream_id!r} in {self.description} (never published, or expired)")
        return self._entries(found[0][1]) if found else []

    def info(self, stream_id: str) -> StreamInfo:
        check_stream_id(stream_id)
        fields = self._run("info", lambda: self._client.hgetall(self._key(stream_id, "meta")))
        return self._info(stream_id, fields)

    def _info(self, stream_id: str, fields: Any) -> StreamInfo:
        if not fields:
            raise StreamNotFoundError(f"no stream {stream_id!r} in {self.description} (never published, or expired)")
        meta = {text(k): text(v) for k, v in fields.items()}
        return StreamInfo(
            stream_id, meta.get("key") or None, int(meta.get("n", 0)), meta.get("state") == "done", meta.get("stop") == "1"
        )

    # -- followers on an event loop -------------------------------------------------
    def _aclient(self) -> Any:
        """This loop's redis.asyncio client (same server and settings, bounded the same way); ``None``
        for a client promptkit cannot copy (a cluster or custom client): then the follower's reads run
        in the loop's executor instead."""
        loop = asyncio.get_running_loop()
        with self._async_lock:
            if loop in self._async_clients:
                return self._async_clients[loop]
            pool = getattr(self._client, "connection_pool", None)
            settings = getattr(pool, "connection_kwargs", None)
            client = None
            if isinstance(settings, dict):
                import redis.asyncio

                kwargs = {k: v for k, v in settings.items() if k in _ASYNC_KEYS}
                kwargs["socket_timeout"] = self.timeout + self.poll
                unix = "path" in kwargs
                if not unix:
                    kwargs["socket_connect_timeout"] = self.timeout
                ssl = "SSL" in getattr(getattr(pool, "connection_class", None), "__name__", "")
                connection_class = (
                    redis.asyncio.UnixDomainSocketConnection
                    if unix
                    else redis.asyncio.SSLConnection if ssl else redis.asyncio.Connection
                )
                client = redis.asyncio.Redis(
                    connection_pool=redis.asyncio.ConnectionPool(connection_class=connection_class, **kwargs)
                )
            self._async_clients[loop] = client
            return client

    async def _arun(self, operation: str, action: Callable[[Any], Awaitable[_T]]) -> _T:
        if self._closed:
            raise StoreError(f"{self.description} is closed", store=self.description)
        try:
            return await action(self._aclient())
        except (self._redis.RedisError, OSError, asyncio.TimeoutError) as exc:
            cause = failure_cause(self._redis, exc, self.timeout, self._secret)
        raise StoreError(f"{self.description}: {operation} failed: {cause}", store=self.description, operation=operation)

    async def aread(self, stream_id: str, after: int, timeout: float) -> List[LogEntry]:
        if self._aclient() is None:
            return await super().aread(stream_id, after, timeout)
        meta, log = self._key(stream_id, "meta"), self._key(stream_id, "log")
        timeout = min(timeout, self.poll)
        block = ms(timeout) if timeout > 0 else None

        async def fetch(client: Any) -> Any:
            async with client.pipeline(transaction=False) as pipe:
                pipe.exists(meta)
                pipe.xread({log: f"0-{after}"}, count=_READ_COUNT, block=block)
                return await pipe.execute()

        exists, found = await self._arun("read", fetch)
        if not exists:
            raise StreamNotFoundError(f"no stream {stream_id!r} in {self.description} (never published, or expired)")
        return self._entries(found[0][1]) if found else []

    async def ainfo(self, stream_id: str) -> StreamInfo:
        if self._aclient() is None:
            return await super().ainfo(stream_id)
        check_stream_id(stream_id)
        meta = self._key(stream_id, "meta")
        return self._info(stream_id, await self._arun("info", lambda client: client.hgetall(meta)))

    async def adeclare_lost(self, stream_id: str, event: Mapping[str, Any]) -> bool:
        if self._aclient() is None:
            return await super().adeclare_lost(stream_id, event)
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)
        keys, args = self._keys(stream_id), [data, self.max_events, ms(self.ttl)]
        done = await self._arun(
            "declare_lost", lambda client: client.register_script(_DECLARE_LOST)(keys=keys, args=args)
        )
        return bool(int(done))

    def declare_lost(self, stream_id: str, event: Mapping[str, Any]) -> bool:
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)
        done = self._run(
            "declare_lost",
            lambda: self._declare_lost(
                keys=self._keys(stream_id), args=[data, self.max_events, ms(self.ttl)], client=self._client
            ),
        )
        return bool(int(done))

    # -- anyone --------------------------------------------------------------------
    def stop(self, stream_id: str) -> bool:
        check_stream_id(stream_id)
        meta = self._key(stream_id, "meta")
        return bool(int(self._run("stop", lambda: self._stop(keys=[meta], args=[self.channel, stream_id], client=self._client))))

    def current(self, key: str) -> Optional[str]:
        check_key(key)
        value = self._run("current", lambda: self._client.get(self._current_key(key)))
        return None if value is None else text(value)

    def close(self) -> None:
        """Close the log's connections (never those of a client you gave it); idempotent.

        Close it after the streams this process produces have ended: their
        leases then lapse and followers end them with an error.
        """
        if self._closed:
            return
        self._closed = True
        self._keeper.close()
        with self._async_lock:
            clients = list(self._async_clients.items())
            self._async_clients.clear()
        for loop, client in clients:  # closed on their own loops, when those still run
            if client is None:
                continue
            try:
                loop.call_soon_threadsafe(_close_async_client, client)
            except RuntimeError:  # that loop is closed: its connections went with it
                pass
        if self._owns_client:
            self._client.close()
            self._client.connection_pool.disconnect()


def _close_async_client(client: Any) -> None:
    asyncio.ensure_future(client.aclose())


class _Keeper:
    """A RedisStreamLog's producer side in this process: renews leases and delivers stop requests.

    Runs one thread (started by the first :meth:`hold`, gone soon after the
    last :meth:`release`) that listens on the stop channel and renews every
    held stream's lease each ``lease / 3`` seconds.
    """

    def __init__(self, log: RedisStreamLog) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._held: Dict[str, "Stream"] = {}
        self._running: Optional[threading.Event] = None  # set once the thread listens; None: no thread
        self._thread: Optional[threading.Thread] = None
        self._closed = threading.Event()

    def hold(self, stream_id: str, stream: "Stream") -> None:
        with self._lock:
            self._held[stream_id] = stream
            listening = self._running
            if self._closed.is_set():
                raise StoreError(f"{self._log.description} is closed", store=self._log.description)
            if listening is None:
                listening = self._running = threading.Event()
                self._thread = start_thread(self._run, "stream-log", listening)
        # Subscribed (once) before the caller reads the stop flag: no stop request falls between
        # the two. A keeper that later reconnects reads every held stream's flag when it is back.
        if not listening.wait(self._log.timeout):
            raise StoreError(f"{self._log.description}: could not subscribe to {self._log.channel}")

    def release(self, stream_id: str) -> None:
        with self._lock:
            self._held.pop(stream_id, None)

    def close(self) -> None:
        """Stop the thread (the log is closing) and wait for it; held streams' leases then lapse."""
        self._closed.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(self._log.timeout)

    def _held_now(self, listening: threading.Event) -> Optional[List[str]]:
        """The held ids; ``None`` (and the keeper is gone) when there are none or the log closed."""
        with self._lock:
            if not self._held or self._closed.is_set():
                if self._running is listening:
                    self._running = None
                return None
            return list(self._held)

    def _cancel(self, stream_id: str) -> None:
        with self._lock:
            stream = self._held.get(stream_id)
        if stream is not None:
            logger.info("stream %s: stop requested; cancelling its turn", stream_id)
            stream.cancel()

    def _run(self, listening: threading.Event) -> None:
        log = self._log
        every = log.lease / 3
        pubsub = None
        renew_at = time.monotonic() + every
        try:
            while True:
                if self._held_now(listening) is None:
                    return
                try:
                    if pubsub is None:
                        pubsub = log._client.pubsub()
                        pubsub.subscribe(log.channel)
                        while True:  # wait for the server's confirmation
                            message = pubsub.get_message(timeout=log.timeout)
                            if message is None:
                                raise log._redis.TimeoutError("no subscribe confirmation")
                            if message.get("type") == "subscribe":
                                break
                        listening.set()
                        # A (re)subscription renews at once, which reads the stop flags: a stop
                        # published while this keeper was not listening is not lost.
                        renew_at = time.monotonic()
                    # Wake for the next renewal too: a lease shorter than the tick must still be renewed in time.
                    wait = max(0.0, min(_KEEPER_TICK, renew_at - time.monotonic()))
                    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                    if message is not None and message.get("type") == "message":
                        self._cancel(text(message.get("data")))
                    if time.monotonic() >= renew_at:
                        held = self._held_now(listening)
                        if held is None:
                            return
                        for sid in log._renew(held):
                            self._cancel(sid)
                        renew_at = time.monotonic() + every
                except Exception as exc:  # Redis down or restarting: reconnect, and keep renewing
                    logger.warning("%s: keeper failed (%s); reconnecting", log.description, type(exc).__name__)
                    if pubsub is not None:
                        try:
                            pubsub.close()
                        except Exception:  # pragma: no cover - a broken connection may fail to close
                            pass
                        pubsub = None
                    self._closed.wait(_KEEPER_TICK)  # a pause before the next attempt (or the log closed)
        finally:
            if pubsub is not None:
                pubsub.close()
