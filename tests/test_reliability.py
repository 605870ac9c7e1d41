"""Reliability against a real local server: connection reuse, secrets, redirects, TLS, retry logging.

No sleeps are used to synchronise and no elapsed time is asserted; the session a Client
makes is seen through requests' own ``Session`` (the ``sessions_made`` fixture), not
through promptkit's internals.
"""

from __future__ import annotations

import email.utils
import gc
import json
import logging
import os
import re
import time
import traceback
from typing import Any, Iterator, List

import pytest
import requests
from requests.adapters import HTTPAdapter

import promptkit
from promptkit.testing import MockReply, MockServer
from tests._dialect_views import credential

# Built by concatenation so that no source line shown in a traceback holds the whole key.

pytestmark = pytest.mark.usefixtures("every_dialect")

SENTINEL = "sk-SENTINEL-" + "abc123"


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def port_of(server: MockServer) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.fixture
def sessions_made(monkeypatch: pytest.MonkeyPatch) -> List[requests.Session]:
    """Every ``requests.Session`` created while the test runs, in order."""
    made: List[requests.Session] = []
    real_init = requests.Session.__init__

    def init(self: requests.Session) -> None:
        made.append(self)
        real_init(self)

    monkeypatch.setattr(requests.Session, "__init__", init)
    return made


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


# -- connection reuse ----------------------------------------------------------------


def test_1000_sequential_turns_reuse_pooled_connections(server: MockServer) -> None:
    turns = 1000
    with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=promptkit.Timeout(idle=5)) as client:
        server.enqueue(*[MockReply.text("pong")] * turns)
        assert client.conversation().send("warm").content == "pong"  # opens the connection
        gc.collect()
        fds_before = fd_count()
        started = time.perf_counter()  # reported, not asserted
        for i in range(turns - 1):
            resp = client.conversation().send(f"ping {i}")
            assert resp.content == "pong" and resp.finish_reason == "stop"
        elapsed = time.perf_counter() - started
        gc.collect()
        fds_after = fd_count()
        assert len(server.requests) == turns
        assert server.connections_opened <= 2, server.connections_opened
        assert fds_after <= fds_before + 2, (fds_before, fds_after)
    print(f"{turns} turns in {elapsed:.2f}s ({elapsed / turns * 1000:.2f} ms/turn), "
          f"{server.connections_opened} connection(s) opened, fds {fds_before} -> {fds_after}")


def test_streams_and_sends_interleaved_reuse_connections(server: MockServer) -> None:
    with promptkit.Client(base_url=server.url, api_key="sk-test") as client:
        conv = client.conversation()
        for i in range(50):
            server.enqueue(MockReply.text(f"reply {i}"))
            if i % 2:
                assert conv.send(f"q{i}").content == f"reply {i}"
            else:
                with conv.send_stream(f"q{i}") as stream:
                    assert stream.result().content == f"reply {i}"
        assert server.connections_opened == 1


# -- secrets -------------------------------------------------------------------------


def _texts_of_error(error: BaseException) -> List[str]:
    out = [str(error), repr(error), "".join(traceback.format_exception(type(error), error, error.__traceback__))]
    for attr in ("body", "message", "partial", "request_id"):
        value = getattr(error, attr, None)
        if value is not None:
            out += [str(value), repr(value)]
    partial = getattr(error, "partial", None)
    if partial is not None:
        out.append(json.dumps(partial.to_dict()))
    if error.__cause__ is not None:
        out += _texts_of_error(error.__cause__)
    return out


def _texts_of_events(events: List[promptkit.StreamEvent]) -> List[str]:
    out: List[str] = []
    for event in events:
        out += [repr(event), str(event), json.dumps(event.to_dict())]
        if event.final is not None:
            out += [repr(event.final), str(event.final), event.final.summary()]
        if event.error is not None:
            out += _texts_of_error(event.error)
    return out


def _check_clean(texts: List[str], what: str) -> None:
    for text in texts:
        assert SENTINEL not in text, f"the API key leaked into {what}: {text[:300]!r}"


def _capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: everything propagates here
    for name in ("promptkit", "urllib3", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)


def _check_logs(caplog: pytest.LogCaptureFixture) -> None:
    formatter = logging.Formatter()
    assert caplog.records, "nothing was logged: the capture is not working"
    for record in caplog.records:
        texts = [record.getMessage(), formatter.format(record)]
        if record.exc_info:
            texts.append(formatter.formatException(record.exc_info))
        _check_clean(texts, f"the log record {record.name}:{record.levelname}")
    _check_clean([caplog.text], "the captured log text")


def test_api_key_never_appears_anywhere(server: MockServer, caplog: pytest.LogCaptureFixture) -> None:
    _capture_everything(caplog)
    texts: List[str] = []
    errors: List[BaseException] = []
    with promptkit.Client(base_url=server.url, api_key=SENTINEL, max_retries=2,
                          timeout=promptkit.Timeout(idle=5)) as client:
        conv = client.conversation(system_prompt="s")
        texts += [repr(client), str(client), repr(conv), str(conv)]

        # 1. a success, streamed
        server.enqueue(MockReply.text("Hello there."))
        with conv.send_stream("hi") as stream:
            events = list(stream)
        assert events[-1].type == "done"
        texts += _texts_of_events(events)
        texts += [repr(conv.messages), repr(conv.usage), repr(conv.last_response)]

        # 2. a 401 whose body echoes the key (OpenAI does echo part of it)
        server.enqueue(MockReply.error(401, f"Incorrect API key provided: {SENTINEL}. Check it.",
                                       code="invalid_api_key"))
        with pytest.raises(promptkit.AuthenticationError) as info:
            conv.send_stream("q")
        errors.append(info.value)

        # 3. 500s (echoing the key) through all the retries
        server.enqueue(*[MockReply.error(500, f"internal error for {SENTINEL}", headers={"Retry-After": "0"})] * 3)
        with pytest.raises(promptkit.ServerError) as info2:
            conv.send("q")
        assert info2.value.attempts == 3
        errors.append(info2.value)

        # 4. a reset mid-stream
        server.enqueue(MockReply.reset(after_text="half"))
        stream = conv.send_stream("q")
        events = list(stream)
        assert isinstance(events[-1].error, promptkit.APIConnectionError)
        texts += _texts_of_events(events)

        # 5. an in-band error
        server.enqueue(MockReply.in_band_error("model overloaded", after_text="so far"))
        stream = conv.send_stream("q")
        events = list(stream)
        assert isinstance(events[-1].error, promptkit.StreamError)
        texts += _texts_of_events(events)

        texts += [repr(client), repr(conv), repr(conv.messages)]
    for error in errors:
        texts += _texts_of_error(error)
    # the server really received the key, so its absence above means something
    assert credential(server.requests[0].headers) == SENTINEL
    _check_clean(texts, "an exception, response or event")
    names = {r.name for r in caplog.records}
    assert "urllib3.connectionpool" in names and "promptkit._turn" in names, names  # both (and the retry lines) were captured
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    _check_logs(caplog)


@pytest.mark.parametrize("kind", ["in_band", "event_error_text", "malformed"])
def test_api_key_echoed_in_band_is_redacted(server: MockServer, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    # Regression: in-band errors, `event: error` text and malformed chunks went into StreamError's
    # message, args (repr) and body unredacted.
    _capture_everything(caplog)
    if kind == "in_band":
        reply = MockReply.in_band_error(f"Incorrect API key provided: {SENTINEL}", after_text="x")
    elif kind == "event_error_text":
        reply = MockReply.raw([f"event: error\ndata: invalid key {SENTINEL}\n\n".encode()])
    else:
        reply = MockReply.raw([f"data: <html>bad key {SENTINEL}</html>\n\n".encode()])
    server.enqueue(reply)
    # max_retries=0: a malformed first chunk is retried otherwise (nothing had reached the user).
    with promptkit.Client(base_url=server.url, api_key=SENTINEL, max_retries=0) as client:
        events = list(client.conversation().send_stream("q"))
    error = events[-1].error
    assert isinstance(error, promptkit.StreamError)
    _check_clean(_texts_of_events(events), "an in-band stream error")
    _check_logs(caplog)


# -- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["other-host", "same-host-other-port"])
def test_authorization_is_not_sent_to_another_host_after_a_redirect(server: MockServer, host: str) -> None:
    with MockServer() as other:
        target = f"http://{host}:{port_of(other)}/v1/chat/completions"
        server.enqueue(MockReply.error(307, "moved", headers={"Location": target}))
        other.enqueue(MockReply.text("from the other server"))
        with promptkit.Client(base_url=server.url, api_key=SENTINEL) as client:
            try:
                outcome: Any = client.conversation().send("q").content
            except promptkit.APIStatusError as exc:  # not following redirects at all would be fine too
                outcome = exc
        assert credential(server.requests[0].headers) == SENTINEL
        for request in other.requests:
            assert credential(request.headers) is None, request.headers
            assert SENTINEL not in request.raw.decode("utf-8", "replace")
        if isinstance(outcome, str):
            assert outcome == "from the other server" and len(other.requests) == 1


# -- TLS ---------------------------------------------------------------------------------------


def _verifies(session: requests.Session) -> bool:
    """Verification on: requests' default, or the CA bundle the environment names (read once by promptkit)."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return session.verify is True or (bundle is not None and session.verify == bundle)


def test_tls_verification_is_on_for_an_owned_session(sessions_made: List[requests.Session]) -> None:
    client = promptkit.Client(base_url="https://api.example.invalid/v1", api_key="sk-test")
    try:
        assert len(sessions_made) == 1
        session = sessions_made[0]
        assert _verifies(session)
        assert session.cert is None
        adapter = session.get_adapter("https://api.example.invalid/v1/chat/completions")
        assert isinstance(adapter, HTTPAdapter)
    finally:
        client.close()


class _RecordingAdapter(HTTPAdapter):
    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def test_a_user_session_keeps_its_settings(tmp_path: Any, sessions_made: List[requests.Session]) -> None:
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("not a real CA bundle; never loaded because nothing connects\n")
    session = requests.Session()
    session.verify = str(bundle)
    session.proxies = {"https": "http://proxy.invalid:3128"}
    adapter = _RecordingAdapter()
    session.mount("https://", adapter)
    client = promptkit.Client(base_url="https://api.example.invalid/v1", api_key="sk-test", session=session)
    assert sessions_made == [session]  # promptkit made no session of its own: it uses the user's
    assert session.verify == str(bundle)
    assert session.proxies == {"https": "http://proxy.invalid:3128"}
    assert session.get_adapter("https://api.example.invalid/v1") is adapter
    client.close()
    assert not adapter.closed  # the user's session is theirs to close
    session.close()


def test_verify_false_is_never_set_by_promptkit(server: MockServer, sessions_made: List[requests.Session]) -> None:
    # a whole turn over an owned session does not switch verification off on the way
    with promptkit.Client(base_url=server.url, api_key="sk-test") as client:
        server.enqueue(MockReply.text("ok"))
        assert client.conversation().send("q").content == "ok"
        assert len(sessions_made) == 1 and _verifies(sessions_made[0])


# -- retry logging and Retry-After ----------------------------------------------------------------


def test_retries_are_logged_at_info_with_the_attempt_number(server: MockServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="promptkit")
    server.enqueue(MockReply.error(500, "boom", headers={"Retry-After": "0"}),
                   MockReply.error(429, "slow", headers={"Retry-After": "0"}), MockReply.text("ok"))
    with promptkit.Client(base_url=server.url, api_key="sk-test", max_retries=2) as client:
        assert client.conversation().send("q").content == "ok"
    retries = [r for r in caplog.records if r.name.startswith("promptkit") and "retry" in r.getMessage().lower()]
    assert [r.levelno for r in retries] == [logging.INFO, logging.INFO]
    assert "attempt 1" in retries[0].getMessage() and "500" in retries[0].getMessage()
    assert "attempt 2" in retries[1].getMessage() and "429" in retries[1].getMessage()


def test_worker_side_retry_is_logged_at_info(server: MockServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="promptkit")
    server.enqueue(MockReply.reset(), MockReply.text("ok"))
    with promptkit.Client(base_url=server.url, api_key="sk-test", max_retries=1) as client:
        assert client.conversation().send("q").content == "ok"
    retries = [r for r in caplog.records if r.name.startswith("promptkit") and "retry" in r.getMessage().lower()]
    assert len(retries) == 1 and retries[0].levelno == logging.INFO
    assert "attempt 1" in retries[0].getMessage()


@pytest.fixture
def retry_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="promptkit")
    return caplog


_RETRYING_IN = re.compile(r"retrying in (\d+(?:\.\d+)?)s")


def logged_waits(caplog: pytest.LogCaptureFixture) -> List[float]:
    """The waits between attempts, as the INFO retry log states them ("retrying in 0.15s")."""
    return [float(m.group(1)) for r in caplog.records if r.name.startswith("promptkit")
            for m in [_RETRYING_IN.search(r.getMessage())] if m]  # fmt: skip


def _retry_once(server: MockServer, headers: dict) -> str:
    server.enqueue(MockReply.error(429, "slow down", headers=headers), MockReply.text("ok"))
    with promptkit.Client(base_url=server.url, api_key="sk-test", max_retries=1) as client:
        content = client.conversation().send("q").content
    assert len(server.requests) == 2
    return content


def test_retry_after_as_an_http_date(server: MockServer, retry_log: pytest.LogCaptureFixture) -> None:
    when = email.utils.formatdate(time.time() + 3, usegmt=True)  # whole seconds: 2-3 s from now
    assert _retry_once(server, {"Retry-After": when}) == "ok"
    waits = logged_waits(retry_log)
    assert len(waits) == 1 and 1.5 <= waits[0] <= 3.5, waits  # not the 0.25-0.5 s backoff


def test_retry_after_as_a_past_http_date_means_now(server: MockServer, retry_log: pytest.LogCaptureFixture) -> None:
    assert _retry_once(server, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == "ok"
    assert logged_waits(retry_log) == [0.0]


def test_retry_after_ms_is_honoured(server: MockServer, retry_log: pytest.LogCaptureFixture) -> None:
    started = time.monotonic()
    assert _retry_once(server, {"retry-after-ms": "150"}) == "ok"
    assert logged_waits(retry_log) == [pytest.approx(0.15, abs=0.005)]
    assert time.monotonic() - started >= 0.15  # a lower bound: slowness cannot fail it, a skipped wait does


def test_retry_after_ms_wins_over_retry_after(server: MockServer, retry_log: pytest.LogCaptureFixture) -> None:
    assert _retry_once(server, {"retry-after-ms": "120", "Retry-After": "30"}) == "ok"
    assert logged_waits(retry_log) == [pytest.approx(0.12, abs=0.005)]


def test_retry_after_seconds(server: MockServer, retry_log: pytest.LogCaptureFixture) -> None:
    assert _retry_once(server, {"Retry-After": "0.2"}) == "ok"
    assert logged_waits(retry_log) == [pytest.approx(0.2, abs=0.005)]


def test_retry_after_beyond_the_limit_is_not_retried(server: MockServer, retry_log: pytest.LogCaptureFixture) -> None:
    server.enqueue(MockReply.error(429, "come back tomorrow", headers={"Retry-After": "3600"}))
    with promptkit.Client(base_url=server.url, api_key="sk-test", max_retries=3) as client:
        with pytest.raises(promptkit.RateLimitError) as info:
            client.conversation().send("q")
    assert info.value.retry_after == 3600
    assert "not retried" in str(info.value) and "3600" in str(info.value)
    assert logged_waits(retry_log) == [] and len(server.requests) == 1
