"""Resumable streams scaled out, with real parts: several gunicorn servers of gthread workers on one redis-server.

Three gunicorn servers (each its own master and two worker processes, on its own port) run
tests/_scale_app.py: a Flask chat app with the history in ``RedisStore`` and every reply
published to a ``RedisStreamLog``. The model is a MockServer in this process; what it answers
is chosen by the request's message (a scenario, see ``_respond``). "Another process" here is
another server's port, so it is provably another pid (every response carries
``X-Worker-Pid``).

What is proven: a client cut off mid-reply resumes on another process and gets the whole
reply exactly once; a stop sent to another process cancels a silent model; a producer killed
with SIGKILL ends every follower with ``ProducerLostError``; and a seeded, randomized harness
of concurrent clients that cut, reconnect elsewhere, stop and kill keeps every invariant.
Latencies (stop to terminal event, kill to error, resume to first event) are recorded in
tests/artifacts/scale_out.json and printed (``pytest -s``), never asserted as time bounds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Tuple

import attrs
import pytest
import requests

import promptkit
from promptkit._sse import ServerSentEvent, SSEParser
from promptkit.testing import MockReply, MockServer

from tests._processes import free_port
from tests.redis_server import _unavailable, redis_server, redis_url  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PID_HEADER = "X-Worker-Pid"
SERVERS = 3  # gunicorn servers: separate masters on separate ports
WORKERS = 2  # worker processes per server
THREADS = 16
LEASE = 1.0  # the producers' lease, seconds: a killed producer's followers end about this much later
START_TIMEOUT = 60.0  # for a server to answer /health
# The longest a follower may sit without a byte. Every wait here ends by itself well before (a
# reply, a stop, a lapsed lease): a follower that hangs fails its test rather than hanging it.
READ_TIMEOUT = 20.0
STALL_TEXT = "the model is thinking about it"  # what a stalled reply sends before its silence


def _words(tag: str, n: int) -> str:
    return " ".join(f"{tag}.{i}" for i in range(n))


def _respond(body: Dict[str, Any]) -> Optional[MockReply]:
    """The model's reply, from the scenario in the last message: ``text <n> <delay> <tag>`` or ``stall``."""
    message = str(body["messages"][-1]["content"]).split()
    if message[0] == "text":
        return MockReply.text(_words(message[3], int(message[1])), delay=float(message[2]))
    if message[0] == "stall":
        return MockReply.stall(after_text=STALL_TEXT)
    return None


# -- the servers -------------------------------------------------------------------------------


class Gunicorn:
    """One gunicorn server (a master and its workers) running tests/_scale_app.py on 127.0.0.1."""

    def __init__(self, index: int, env: Mapping[str, str], directory: Path) -> None:
        self.index = index
        self.env = env
        self.log_path = directory / f"gunicorn-{index}.log"
        self.port = 0
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "-w", str(WORKERS),
                "-k", "gthread", "--threads", str(THREADS), "--graceful-timeout", "5", "--log-level", "warning",
                "--error-logfile", str(self.log_path), "tests._scale_app:create_app()"]  # fmt: skip
        self.proc = subprocess.Popen(args, cwd=ROOT, env=dict(self.env), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=1.0).status_code == 200
        except requests.RequestException:
            return False

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else "(no log)"

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` is one of this server's worker processes (its parent is this master)."""
        import psutil

        try:
            return self.proc is not None and psutil.Process(pid).ppid() == self.proc.pid
        except psutil.Error:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _start_all(servers: List[Gunicorn]) -> None:
    """Start every server and wait until each answers; a server whose port was taken is started again."""
    pending = list(servers)
    for server in pending:
        server.start()
    deadline = time.monotonic() + START_TIMEOUT
    tick = threading.Event()  # never set: a bounded pause between readiness polls
    attempts = {server.index: 1 for server in servers}
    while pending:
        for server in list(pending):
            if server.answers():
                pending.remove(server)
            elif server.exited():
                if attempts[server.index] >= 3:
                    raise AssertionError(f"gunicorn {server.index} did not start:\n{server.log_tail()}")
                attempts[server.index] += 1
                server.start()
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"gunicorn did not answer within {START_TIMEOUT:g} s:\n{pending[0].log_tail()}")
        tick.wait(0.05)


@pytest.fixture(scope="module")
def model() -> Iterator[MockServer]:
    with MockServer(responder=_respond) as server:
        yield server


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"scale{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="module")
def servers(redis_url: str, model: MockServer, prefix: str) -> Iterator[List[Gunicorn]]:  # noqa: F811
    """Three gunicorn servers of the scale app, sharing the redis-server and the model."""
    try:
        import gunicorn  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as exc:
        _unavailable(f"{exc.name} is not installed (pip install -e '.[test]')")
    env = dict(os.environ, SCALE_REDIS_URL=redis_url, SCALE_MODEL_URL=model.url, SCALE_LEASE=str(LEASE),
               SCALE_PREFIX=prefix, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory(prefix="promptkit-gunicorn-") as directory:
        started = [Gunicorn(i, env, Path(directory)) for i in range(SERVERS)]
        try:
            _start_all(started)
            yield started
        finally:
            for server in started:
                server.stop()


@pytest.fixture(scope="module")
def store(redis_url: str, prefix: str) -> Iterator[promptkit.RedisStore]:  # noqa: F811
    """The history as the servers commit it, read from this process."""
    s = promptkit.RedisStore(redis_url, prefix=prefix)
    yield s
    s.close()


# -- reading the servers' SSE -----------------------------------------------------------------


# What a request to a process that dies under it raises (before its headers, or while its body is read).
DIED = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


class Broken(Exception):
    """A connection ended before the stream's terminal event (its process died, or it was reset)."""


class Connection:
    """One SSE response being read, event by event, and the process that serves it."""

    def __init__(self, response: Any, server: Gunicorn) -> None:
        assert response.status_code == 200, (response.status_code, response.text[:500])
        self.response = response
        self.server = server
        self.pid = int(response.headers[PID_HEADER])
        self.stream_id = str(response.headers["X-Stream-Id"])
        self._chunks = response.iter_content(chunk_size=None)
        self._parser = SSEParser()
        self._ready: Deque[ServerSentEvent] = deque()
        self._eof = False

    def next_event(self) -> Optional[ServerSentEvent]:
        """The next event; ``None`` at the end of the body.

        Raises:
            Broken: the connection broke (its process died).
            AssertionError: no byte for READ_TIMEOUT seconds: the follower hung.
        """
        while not self._ready:
            if self._eof:
                return None
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._eof = True
                tail = self._parser.close()
                if tail is not None:
                    self._ready.append(tail)
                continue
            except requests.RequestException as exc:
                if "timed out" in str(exc).lower():
                    raise AssertionError(f"no byte from pid {self.pid} for {READ_TIMEOUT:g} s: the follower hung") from exc
                raise Broken(str(exc)) from exc
            self._ready.extend(self._parser.feed(chunk))
        return self._ready.popleft()

    def close(self) -> None:
        self.response.close()


def _data(event: ServerSentEvent) -> Dict[str, Any]:
    return dict(json.loads(event.data))


def post_chat(server: Gunicorn, cid: str, message: str) -> Connection:
    response = requests.post(f"{server.url}/chat", json={"conversation_id": cid, "message": message}, stream=True,
                             timeout=(5.0, READ_TIMEOUT))
    return Connection(response, server)


def resume(server: Gunicorn, sid: str, last_id: Optional[str]) -> Any:
    """``GET /streams/<sid>`` with ``Last-Event-ID`` (the raw response: 200 streams, 204 has nothing)."""
    headers = {} if last_id is None else {"Last-Event-ID": last_id}
    return requests.get(f"{server.url}/streams/{sid}", headers=headers, stream=True, timeout=(5.0, READ_TIMEOUT))


def post_stop(server: Gunicorn, cid: str) -> Tuple[bool, int]:
    """Ask ``server`` to stop the conversation's reply; whether one was running, and the pid that answered."""
    response = requests.post(f"{server.url}/stop", json={"conversation_id": cid}, timeout=(5.0, READ_TIMEOUT))
    assert response.status_code == 200, response.text
    return bool(response.json()["stopped"]), int(response.headers[PID_HEADER])


def read_until(conn: Connection, events: List[ServerSentEvent], text: str) -> None:
    """Read content events into ``events`` until their text is ``text``."""
    so_far = "".join(_data(e)["content"] for e in events if e.event == "content")
    while so_far != text:
        event = conn.next_event()
        assert event is not None and event.event == "content", (so_far, event)
        events.append(event)
        so_far += _data(event)["content"]


def read_to_end(conn: Connection, events: List[ServerSentEvent]) -> float:
    """Read the rest into ``events``, through the terminal event and the end of the body; when the terminal came."""
    at = 0.0
    while True:
        event = conn.next_event()
        if event is None:
            assert at, "the body ended before the terminal event"
            return at
        assert not at, f"an event after the terminal one: {event}"
        events.append(event)
        if event.event in ("done", "error"):
            at = time.monotonic()


def check_sequence(events: List[ServerSentEvent]) -> None:
    """Ids ``0-1 .. 0-n`` with no gap or repeat, and exactly one terminal event: the last."""
    assert [e.id for e in events] == [f"0-{i}" for i in range(1, len(events) + 1)]
    terminal = [e for e in events if e.event in ("done", "error")]
    assert len(terminal) == 1 and terminal[0] is events[-1], [e.event for e in events]


def content(events: List[ServerSentEvent]) -> str:
    return "".join(_data(e)["content"] for e in events if e.event == "content")


def committed(store: promptkit.RedisStore, cid: str) -> Optional[Tuple[str, Optional[str]]]:
    """The committed reply of a one-turn conversation: its assistant text and finish reason (``None``: none)."""
    stored = store.load(cid)
    if stored is None or not stored.turns:
        return None
    assert len(stored.turns) == 1, stored.turns
    turn = stored.turns[0]
    assert turn.messages[-1]["role"] == "assistant", turn.messages
    return str(turn.messages[-1]["content"]), turn.finish_reason


def record(label: str, value: Any) -> None:
    """Keep a measurement in tests/artifacts/scale_out.json and print it (``pytest -s``)."""
    print(f"\n[scale-out] {label}: {json.dumps(value)}")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "scale_out.json"
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = {}
    previous[label] = value
    path.write_text(json.dumps(previous, indent=2, sort_keys=True))


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def new_cid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


# -- the scenarios ------------------------------------------------------------------------------


def test_a_client_cut_mid_reply_resumes_on_other_processes_and_gets_the_whole_reply_once(
        servers: List[Gunicorn], store: promptkit.RedisStore) -> None:
    cid = new_cid("cut")
    expected = _words("cut", 40)
    first = post_chat(servers[0], cid, "text 40 0.02 cut")
    events: List[ServerSentEvent] = []
    for _ in range(5):
        event = first.next_event()
        assert event is not None and event.event == "content"
        events.append(event)
    first.close()  # cut off mid-reply: the turn goes on in its producer

    pids = [first.pid]
    latencies = []
    for server, more in ((servers[1], 10), (servers[2], None)):
        asked = time.monotonic()
        conn = Connection(resume(server, first.stream_id, events[-1].id), server)
        pids.append(conn.pid)
        got = conn.next_event()
        latencies.append(time.monotonic() - asked)
        assert got is not None
        events.append(got)
        if more is None:
            read_to_end(conn, events)
        else:
            for _ in range(more):
                got = conn.next_event()
                assert got is not None and got.event == "content"
                events.append(got)
        conn.close()
    assert len(set(pids)) == 3, f"each connection must be served by another process: {pids}"

    check_sequence(events)
    final = _data(events[-1])["final"]
    assert events[-1].event == "done" and final["finish_reason"] == "stop"
    assert content(events) == final["content"] == expected
    assert committed(store, cid) == (expected, "stop")
    again = resume(servers[0], first.stream_id, events[-1].id)
    assert again.status_code == 204, "the client has the terminal event: nothing more to send"
    record("resume_to_first_event_ms", [ms(s) for s in latencies])


def stop_across_processes(servers: List[Gunicorn], model: MockServer, store: promptkit.RedisStore) -> float:
    """One silent turn on server 0, followed there and on server 2, stopped on server 1; the stop's latency."""
    cid = new_cid("stop")
    disconnects = model.disconnects
    producer = post_chat(servers[0], cid, "stall")
    mine: List[ServerSentEvent] = []
    read_until(producer, mine, STALL_TEXT)  # the model is now silent for ever: only a stop ends it
    follower = Connection(resume(servers[2], producer.stream_id, None), servers[2])
    theirs: List[ServerSentEvent] = []
    read_until(follower, theirs, STALL_TEXT)

    asked = time.monotonic()
    stopped, pid = post_stop(servers[1], cid)
    assert stopped and pid not in (producer.pid, follower.pid)
    arrived = read_to_end(follower, theirs)
    read_to_end(producer, mine)
    for events in (mine, theirs):
        check_sequence(events)
        assert events[-1].event == "done" and _data(events[-1])["final"]["finish_reason"] == "cancelled"
    assert [e[:3] for e in mine] == [e[:3] for e in theirs]  # the same events (only a resume sends retry:)
    assert model.wait_for_disconnects(disconnects + 1, 10.0), "the stop did not cancel the upstream request"
    assert committed(store, cid) == (STALL_TEXT, "cancelled")
    stopped_again, _ = post_stop(servers[2], cid)
    assert not stopped_again, "a finished reply cannot be stopped"
    return arrived - asked


def test_a_stop_sent_to_another_process_cancels_a_silent_model(servers: List[Gunicorn], model: MockServer,
                                                              store: promptkit.RedisStore) -> None:
    # Three times: server 0 has two workers, so at least one stop reaches a worker that has cancelled a
    # turn before. A worker's first cancelled turn loads tiktoken's encoding to estimate its usage.
    latencies = [stop_across_processes(servers, model, store) for _ in range(3)]
    record("stop_to_terminal_ms", [ms(s) for s in latencies])


def test_a_producer_killed_with_sigkill_ends_every_follower_with_producer_lost(
        servers: List[Gunicorn], model: MockServer, store: promptkit.RedisStore) -> None:
    cid = new_cid("kill")
    disconnects = model.disconnects
    producer = post_chat(servers[0], cid, "stall")
    read_until(producer, [], STALL_TEXT)
    followers = [Connection(resume(server, producer.stream_id, None), server) for server in servers[1:]]
    for follower in followers:
        assert follower.pid != producer.pid
        read_until(follower, [], STALL_TEXT)
    assert servers[0].owns(producer.pid)

    def follow(conn: Connection) -> Tuple[List[ServerSentEvent], float]:
        events: List[ServerSentEvent] = []
        at = read_to_end(conn, events)
        return events, at

    with ThreadPoolExecutor(len(followers), thread_name_prefix="scale-follower") as pool:
        futures = [pool.submit(follow, conn) for conn in followers]
        killed = time.monotonic()
        os.kill(producer.pid, signal.SIGKILL)
        results = [future.result(timeout=READ_TIMEOUT * 2) for future in futures]
    producer.close()
    ends = []
    for events, at in results:
        assert len(events) == 1 and events[0].event == "error", events
        assert _data(events[0])["error"]["type"] == "ProducerLostError"
        ends.append(events[0])
        assert at > killed
    assert ends[0][:3] == ends[1][:3], "one terminal event in the log, the same for every follower"
    assert model.wait_for_disconnects(disconnects + 1, 10.0), "the dead process's model request was not closed"
    assert committed(store, cid) is None, "a killed producer commits nothing"
    record("kill_to_error_ms", [ms(at - killed) for _, at in results])


# -- the randomized harness -----------------------------------------------------------------------

SEED = int(os.environ.get("SCALE_SEED", "20240916"))
CLIENTS = 16
KILLS = 2
STOPS = 4


@attrs.define
class Plan:
    """What one harness client will do, drawn from the seed before anything runs."""

    name: str
    role: str  # "normal", "stop" or "kill"
    home: int  # the server it starts its turn on
    message: str
    expected: str  # the whole reply, as the model sends it
    cuts: List[int]  # after how many events it cuts its connection (and reconnects elsewhere)
    cid: str = attrs.field(factory=lambda: new_cid("h"))


@attrs.define
class Outcome:
    """What one harness client saw."""

    plan: Plan
    stream_id: str = ""
    producer_pid: int = 0
    events: List[ServerSentEvent] = attrs.field(factory=list)
    pids: List[int] = attrs.field(factory=list)
    cuts: int = 0
    broken: int = 0
    stop_sent: float = 0.0
    stopped: Optional[bool] = None
    stop_died: int = 0  # stop requests whose process died under them
    terminal_at: float = 0.0


class Killer:
    """The harness's SIGKILLs: each producer process is killed at most once, and only one of our workers."""

    def __init__(self, servers: List[Gunicorn]) -> None:
        self.servers = servers
        self.lock = threading.Lock()
        self.killed: Dict[int, float] = {}

    def kill(self, pid: int) -> None:
        with self.lock:
            if pid in self.killed:
                return  # another client's producer shared this process: it is dead already
            assert any(server.owns(pid) for server in self.servers), f"pid {pid} is not a gunicorn worker of ours"
            os.kill(pid, signal.SIGKILL)
            self.killed[pid] = time.monotonic()


def make_plans(rng: random.Random) -> List[Plan]:
    roles = ["kill"] * KILLS + ["stop"] * STOPS + ["normal"] * (CLIENTS - KILLS - STOPS)
    rng.shuffle(roles)
    plans = []
    for i, role in enumerate(roles):
        if role == "normal":
            n, delay = rng.randint(25, 60), rng.choice((0.01, 0.02, 0.03))
            message, expected = f"text {n} {delay} c{i}", _words(f"c{i}", n)
            events = n  # content events before the terminal one
        else:
            message, expected = "stall", STALL_TEXT
            events = len(STALL_TEXT.split())
        cuts = sorted(rng.sample(range(1, events), rng.randint(0, 3)))
        plans.append(Plan(f"client{i}", role, rng.randrange(SERVERS), message, expected, cuts))
    return plans


def run_client(plan: Plan, servers: List[Gunicorn], start: threading.Barrier, killer: Killer, seed: int) -> Outcome:
    """One client: its turn, its cuts and reconnects elsewhere, its stop or kill, to the terminal event."""
    rng = random.Random(seed)
    out = Outcome(plan)
    conn = post_chat(servers[plan.home], plan.cid, plan.message)  # every turn is published before any kill
    out.stream_id, out.producer_pid = conn.stream_id, conn.pid
    out.pids.append(conn.pid)
    start.wait(30.0)
    cuts = list(plan.cuts)
    acted = plan.role == "normal"

    def elsewhere(avoid: Gunicorn) -> Connection:
        """Reconnect with Last-Event-ID to a random other server (another one again if its process dies)."""
        died: List[Gunicorn] = []
        for _ in range(10):
            # Never the server just left (the reconnect must reach another process); a server whose
            # worker died under a resume is tried last.
            others = [s for s in servers if s is not avoid]
            server = rng.choice([s for s in others if s not in died] or others)
            last = out.events[-1].id if out.events else None
            try:
                response = resume(server, out.stream_id, last)
            except DIED:
                died.append(server)
                continue
            assert response.status_code == 200, (plan.name, response.status_code, response.text[:300])
            fresh = Connection(response, server)
            out.pids.append(fresh.pid)
            return fresh
        raise AssertionError(f"{plan.name}: no server answered a resume")

    try:
        while True:
            if cuts and len(out.events) == cuts[0] and not out.terminal_at:
                cuts.pop(0)
                conn.close()
                out.cuts += 1
                conn = elsewhere(conn.server)
                continue
            try:
                event = conn.next_event()
            except Broken:
                event = None
                if out.terminal_at:
                    break  # its process died after sending the terminal event: nothing is missing
            if event is None:
                if out.terminal_at:
                    break
                conn.close()
                out.broken += 1
                conn = elsewhere(conn.server)
                continue
            out.events.append(event)
            if event.event in ("done", "error"):
                out.terminal_at = time.monotonic()
            elif not acted and content(out.events) == STALL_TEXT:
                acted = True
                if plan.role == "kill":
                    killer.kill(out.producer_pid)
                else:
                    out.stop_sent = time.monotonic()
                    for server in rng.sample(servers, len(servers)):  # a random server; another if it is dying
                        try:
                            out.stopped, _ = post_stop(server, plan.cid)
                            break
                        except DIED:  # it may have stopped the reply before it died: then the next finds none
                            out.stop_died += 1
    finally:
        conn.close()
    return out


def check_outcome(out: Outcome, store: promptkit.RedisStore, killed: Mapping[int, float]) -> str:
    """Assert the invariants for one client; its verdict for the summary."""
    plan, events = out.plan, out.events
    where = f"{plan.name} ({plan.role}, producer {out.producer_pid}, cuts {plan.cuts})"
    check_sequence(events)
    end = _data(events[-1])
    text, stored = content(events), committed(store, plan.cid)
    lost = end["type"] == "error" and end["error"]["type"] == "ProducerLostError"
    if plan.role == "kill":
        assert lost, f"{where}: {end}"
        assert text == STALL_TEXT and stored is None, where
        return "lost"
    if out.producer_pid in killed and lost:  # another client's kill took this producer's process with it
        assert plan.expected.startswith(text), where
        return "lost with a killed neighbour"
    assert end["type"] == "done", f"{where}: {end}"
    final = end["final"]
    if plan.role == "stop":
        assert out.stopped or out.stop_died, f"{where}: the stop found no running reply"
        assert final["finish_reason"] == "cancelled" and text == final["content"] == STALL_TEXT, where
        assert stored == (STALL_TEXT, "cancelled"), where
        return "cancelled"
    assert final["finish_reason"] == "stop", where
    assert text == final["content"] == plan.expected, where
    assert stored == (plan.expected, "stop"), where
    return "complete"


def test_randomized_clients_cutting_reconnecting_stopping_and_killing_keep_every_invariant(
        servers: List[Gunicorn], model: MockServer, store: promptkit.RedisStore) -> None:
    rng = random.Random(SEED)
    plans = make_plans(rng)
    seeds = [rng.randrange(2**32) for _ in plans]
    killer = Killer(servers)
    start = threading.Barrier(len(plans))
    with ThreadPoolExecutor(len(plans), thread_name_prefix="scale-client") as pool:
        futures = [pool.submit(run_client, plan, servers, start, killer, seed) for plan, seed in zip(plans, seeds)]
        outcomes = [future.result(timeout=120) for future in futures]

    verdicts = [check_outcome(out, store, killer.killed) for out in outcomes]
    for out in outcomes:  # the client has its terminal event: a resume anywhere has nothing more
        assert resume(rng.choice(servers), out.stream_id, out.events[-1].id).status_code == 204, out.plan.name
    assert len(killer.killed) >= 1 and sum(o.cuts for o in outcomes) >= 1
    same = [(o.plan.name, o.pids) for o in outcomes if any(a == b for a, b in zip(o.pids, o.pids[1:]))]
    assert not same, f"every reconnect must reach another process: {same}"
    summary = {
        "seed": SEED,
        "clients": len(plans),
        "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
        "voluntary_cuts": sum(o.cuts for o in outcomes),
        "broken_by_a_kill": sum(o.broken for o in outcomes),
        "stop_requests_lost_with_a_killed_process": sum(o.stop_died for o in outcomes),
        "processes_killed": len(killer.killed),
        "distinct_pids_served": len({pid for o in outcomes for pid in o.pids}),
        "stop_to_terminal_ms": sorted(ms(o.terminal_at - o.stop_sent) for o in outcomes if o.stop_sent and o.stopped),
        "kill_to_error_ms": sorted(ms(o.terminal_at - killer.killed[o.producer_pid]) for o, v in zip(outcomes, verdicts)
                                   if v.startswith("lost")),
    }
    record("harness", summary)
