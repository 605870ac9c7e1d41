"""promptkit judged by an independently written chaos server: ``llmock`` (PyPI).

llmock injects HTTP errors (429, 500, 503) and stream faults (disconnect,
truncate, malformed chunk, stall) at random points of random requests, records
every attempt, and grades the client (``llmock report``). promptkit retries
every failure before output reached the consumer and never one after it, so the
only findings allowed are those about failures after content had reached the
consumer, which promptkit reports as typed errors carrying the partial reply
(llmock cannot see that the application was told).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
import urllib.request
from typing import Any, Dict, Iterator, List

import pytest

import promptkit
from promptkit._dialects import APIS
from tests._processes import free_port, program_path, third_party_server

# Findings that only describe a failure after content reached the consumer.
AFTER_CONTENT = {"truncated_stream_accepted", "malformed_chunk_ignored", "gave_up"}
TURNS = 60


@pytest.fixture
def chaos_server() -> Iterator[str]:
    port = free_port()
    args = [
        program_path("llmock"), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--error-rate", "500=0.1", "--error-rate", "503=0.05", "--error-rate", "429=0.1",
        "--stream-fault", "disconnect=0.1", "--stream-fault", "truncate=0.1",
        "--stream-fault", "malformed=0.1", "--stream-fault", "stall=0.05", "--stream-stall-seconds", "3",
    ]  # fmt: skip
    with third_party_server(args, port):
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("api", APIS)
def test_llmock_finds_nothing_but_failures_after_content(chaos_server: str, api: str) -> None:
    outcomes: List[Any] = []  # per turn: its Response, or the APIError it ended with
    timeout = promptkit.Timeout(connect=5, idle=0.5, total=60)
    base_url = f"{chaos_server}/anthropic/v1" if api == "anthropic" else f"{chaos_server}/v1"
    with promptkit.Client(base_url=base_url, api_key="sk-chaos", timeout=timeout, max_retries=4, api=api) as client:
        for i in range(TURNS):
            conv = client.conversation()
            try:
                outcomes.append(conv.send(f"question number {i}"))  # distinct bodies: one llmock call per turn
                assert [m["role"] for m in conv.messages] == ["user", "assistant"]
            except promptkit.APIError as error:
                outcomes.append(error)
                assert conv.messages == []
    report = subprocess.run(
        [program_path("llmock"), "report", "--url", chaos_server, "--json"], capture_output=True, text=True, timeout=60
    )
    verdict: Dict[str, Any] = json.loads(report.stdout)
    journal = json.loads(urllib.request.urlopen(f"{chaos_server}/_llmock/requests", timeout=10).read())
    turn_of = {r["seq"]: _turn_of(r["body"]) for r in journal["requests"]}
    # A retry that starts while llmock still holds a stalled attempt counts as a new call there.
    assert verdict["calls"] >= TURNS, verdict
    assert verdict["faults_injected"] > 10, "the chaos server injected too little to judge anything"
    assert verdict["attempts"] > verdict["calls"], "nothing was retried: the faults before output were not exercised"
    assert sum(isinstance(o, promptkit.Response) for o in outcomes) >= TURNS // 2
    records = journal["requests"]
    attempts = Counter(turn_of.values())
    exhausted = {turn for turn, n in attempts.items() if n >= 1 + 4}  # max_retries=4: every attempt was made
    for finding in verdict["findings"]:
        if finding["code"] == "no_backoff":
            # llmock groups attempts into calls by body and end time. It holds a stalled attempt for
            # the whole stall after promptkit timed out and moved on, so that attempt "ends" late and
            # a later retry is grouped behind it: the measured gap is not promptkit's wait (which
            # test_transport checks grows 1.5x per attempt). Only such a misgrouping is excused.
            chain = [r for r in journal["requests"] if r["seq"] in finding["requests"]]
            assert any(str(r.get("fault") or "").startswith("stream:stall") for r in chain), (finding, chain)
            continue
        assert finding["code"] in AFTER_CONTENT, finding
        for seq in finding["requests"]:
            record = next(r for r in records if r["seq"] == seq)
            if any(r["fingerprint"] == record["fingerprint"] and r["seq"] > seq for r in records):
                # promptkit did retry; llmock filed the retry as a new call, because it counts a
                # corrupted but completed stream, or a stall it still holds, as no failure.
                continue
            outcome = outcomes[turn_of[seq]]
            what = f"{finding['code']}: {record['fault']} of {record['chunks_sent']} chunks; promptkit: {outcome!r}"
            if isinstance(outcome, promptkit.Response):
                # The cut came after the finish chunk: the reply is complete (only the usage chunk
                # or the closing [DONE] was lost, and the usage is then estimated), so promptkit
                # keeps it; a retry would pay for a second reply.
                assert outcome.finish_reason == "stop" and outcome.content, what
                assert record["chunks_sent"] >= 2, what
                continue
            # That turn failed after content had reached the consumer (or after its last allowed
            # attempt), and promptkit said so with a typed error.
            assert isinstance(outcome, (promptkit.StreamError, promptkit.APIConnectionError)), what
            assert outcome.partial is not None and outcome.partial.content or turn_of[seq] in exhausted, (what, attempts)
    for turn, outcome in enumerate(outcomes):
        if isinstance(outcome, promptkit.APIError):  # a failure reported came after output; earlier ones were retried
            assert (outcome.partial is not None and outcome.partial.content or turn in exhausted
                    or isinstance(outcome, promptkit.APIStatusError)), (outcome, attempts[turn])


def _turn_of(body: Any) -> int:
    text = (body["messages"] if "messages" in body else body["input"])[-1]["content"]
    if isinstance(text, list):  # Anthropic's content blocks
        text = "".join(block.get("text", "") for block in text)
    assert text.startswith("question number ")
    return int(text.rsplit(" ", 1)[1])
