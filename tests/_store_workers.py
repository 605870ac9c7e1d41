"""Targets for the spawned worker processes of tests/test_conversation_stores.py.

They live in their own small module so that a ``spawn`` child imports only
this (and promptkit), not the test module and its fixtures. Every target
reports through a multiprocessing queue: a dict, with ``"error"`` holding a
traceback when something went wrong, so the parent fails with the child's
reason instead of a bare exit code.
"""

from __future__ import annotations

import os
import random
import threading
import time
import traceback
from typing import Any, Dict, List, Optional

import promptkit
from promptkit.stores import RedisStore, SQLiteStore, StoreConflictError

SYSTEM = "You are a storyteller."
JOIN = 60.0  # the longest a child waits on its parent


def open_store(kind: str, target: str, prefix: str, **kwargs: Any) -> Any:
    """A store instance of ``kind`` on the shared file or server."""
    if kind == "sqlite":
        return SQLiteStore(target, **kwargs)
    if kind == "redis":
        return RedisStore(target, prefix=prefix, **kwargs)
    raise ValueError(f"no shared store of kind {kind!r}")


def _client(base_url: str) -> promptkit.Client:
    return promptkit.Client(base_url=base_url, api_key="sk-test", timeout=promptkit.Timeout(idle=20), max_retries=0)


def hammer(kind: str, target: str, prefix: str, base_url: str, worker: int, turns: int, conv_ids: List[str],
           seed: int, start: Any, results: Any) -> None:
    """Take ``turns`` successful turns on random conversations; refused turns are retried later.

    Conversation objects are kept per id (so they must sync the other
    processes' turns before each of their own), and now and then dropped and
    resumed from the store afresh. Reports the tags of the successful turns,
    the refusals, and any conflict (a request whose turn could not be stored).
    """
    report: Dict[str, Any] = {"worker": worker, "pid": os.getpid(), "done": [], "refusals": 0, "conflicts": 0}
    rng = random.Random(seed)
    store: Optional[Any] = None
    client: Optional[promptkit.Client] = None
    try:
        store = open_store(kind, target, prefix)
        client = _client(base_url)
        convs: Dict[str, promptkit.Conversation] = {}
        start.wait(timeout=JOIN)
        deadline = time.monotonic() + JOIN
        n = 0
        while len(report["done"]) < turns:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(report['done'])} of {turns} turns after {JOIN} s")
            cid = rng.choice(conv_ids)
            conv = convs.get(cid)
            if conv is None or rng.random() < 0.2:  # sometimes resume from the store afresh
                conv = convs[cid] = client.conversation(system_prompt=SYSTEM, conversation_id=cid, store=store)
            tag = f"p{os.getpid()}-n{n}"
            n += 1
            try:
                resp = conv.send(f"Tell me about {tag}")
            except StoreConflictError:
                report["conflicts"] += 1
                continue
            except promptkit.ConversationBusyError:
                report["refusals"] += 1
                continue
            report["done"].append({"cid": cid, "tag": tag, "content": resp.content})
    except BaseException:
        report["error"] = traceback.format_exc()
        start.abort()
    finally:
        if client is not None:
            client.close()
        if store is not None:
            store.close()
    results.put(report)


def hold_turn(kind: str, target: str, prefix: str, base_url: str, cid: str, lock_ttl: float, held: Any, ready: Any,
              results: Any) -> None:
    """Start a turn on ``cid`` whose reply stalls, set ``ready`` once its first text arrived, and hold it until killed.

    ``held`` (a shared int) is 1 when the turn is held, 0 when ``ready`` was set because the worker failed.

    ``ready`` is the only multiprocessing primitive this process waits on or
    touches after that: a process killed while it waits on a multiprocessing
    Event leaves that Event's condition broken (the next ``set()`` waits
    forever for the dead sleeper), so the hold is a wait on a local Event.
    """
    report: Dict[str, Any] = {"pid": os.getpid()}
    try:
        store = open_store(kind, target, prefix, lock_ttl=lock_ttl)
        client = _client(base_url)
        conv = client.conversation(conversation_id=cid, store=store)
        stream = conv.send_stream("a turn that will never end")
        events = iter(stream)  # kept referenced: dropping the iterator would cancel the turn
        report["first"] = next(events).content
        held.value = 1
        ready.set()
        threading.Event().wait(JOIN)  # until SIGKILL; bounded in case nobody kills us
        report["error"] = f"not killed within {JOIN} s"
    except BaseException:
        report["error"] = traceback.format_exc()
        ready.set()  # never leave the parent waiting: it checks that the turn is held
    results.put(report)


def try_turn(kind: str, target: str, prefix: str, base_url: str, cid: str, message: str, results: Any) -> None:
    """Try one turn on ``cid``; report whether it was refused, and the history either way."""
    report: Dict[str, Any] = {"pid": os.getpid()}
    store: Optional[Any] = None
    client: Optional[promptkit.Client] = None
    try:
        store = open_store(kind, target, prefix)
        client = _client(base_url)
        conv = client.conversation(conversation_id=cid, store=store)
        try:
            report["content"] = conv.send(message).content
            report["busy"] = False
        except promptkit.ConversationBusyError as exc:
            report["busy"] = True
            report["busy_type"] = type(exc).__name__
            report["busy_message"] = str(exc)
        report["messages"] = conv.messages
    except BaseException:
        report["error"] = traceback.format_exc()
    finally:
        if client is not None:
            client.close()
        if store is not None:
            store.close()
    results.put(report)
