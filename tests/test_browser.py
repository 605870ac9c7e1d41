"""The Flask chat example in a real headless Chromium: tokens appear as they stream, Stop cancels upstream,
and a reply whose connection drops is resumed (the page's EventSource reconnects by itself).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and the
``selenium`` package. Selenium is given both binaries' paths and runs offline, so it never
downloads a browser or a driver. Without them the test is skipped, except in CI, where it fails.
Waits poll the DOM with WebDriverWait; the screenshot lands in tests/artifacts/chat.png.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import promptkit
from promptkit.testing import MockReply, MockServer
from promptkit.web import MemoryStreamLog
from tests.test_web import ARTIFACTS, RecordingStore, load_example, serve_werkzeug

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",  # the tests may run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers give /dev/shm 64 MB, too little for the renderer
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1000,900",
)
SUMMARY = re.compile(r"Cost: (\$\d+\.\d+|n/a) \| Latency: \d+ms \| Tokens: ~?\d+")
STORY = "Once upon a time a small robot learned to paint the evening sky with a thousand tiny brushes."


def _missing() -> Optional[str]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return None
    return "missing " + ", ".join(missing) + " (apt-get install chromium chromium-driver; pip install selenium)"


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let selenium-manager reach for a download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


@pytest.fixture
def mock() -> Iterator[MockServer]:
    with MockServer(default_delay=0.05) as server:
        yield server


@pytest.fixture
def client(mock: MockServer) -> Iterator[promptkit.Client]:
    with promptkit.Client(base_url=mock.url, api_key="test", max_retries=0,
                          timeout=promptkit.Timeout(connect=5, idle=20, total=60)) as c:
        yield c


def _streaming_text(driver: Any) -> Optional[str]:
    # One atomic read in the page: the bubble is replaced as the reply ends.
    return driver.execute_script(
        "const b = document.querySelector('.msg.assistant.streaming'); return b ? b.textContent : null;"
    )


def _state(driver: Any) -> str:
    return driver.execute_script("return document.getElementById('status').dataset.state;")


def test_chat_page_streams_tokens_and_stop_cancels_upstream(browser: Any, mock: MockServer,
                                                            client: promptkit.Client) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    store = RecordingStore()
    story = STORY
    mock.enqueue(MockReply.text(story, delay=0.08), MockReply.stall(after_text="Let me think about that for a"))
    app = load_example("flask_chat").create_app(client, store, mode="mock server (test)", mock=True, heartbeat=0.05)
    wait = WebDriverWait(browser, 15, poll_frequency=0.02)

    with serve_werkzeug(app) as url:
        browser.get(url + "/")
        wait.until(lambda d: d.find_element(By.ID, "mode").text == "mock server (test)")
        assert "mock" in browser.find_element(By.ID, "mode").get_attribute("class")

        # Turn 1: partial text shows up while the reply streams, then the whole text and its cost line.
        browser.find_element(By.ID, "message").send_keys("Tell me a story about a robot.")
        browser.find_element(By.ID, "send").click()
        partial = wait.until(lambda d: (t := _streaming_text(d)) and t != story and t)
        assert story.startswith(partial) and len(partial) < len(story)
        wait.until(lambda d: _state(d) == "done")
        assert browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1].text == story
        assert SUMMARY.fullmatch(browser.find_elements(By.CSS_SELECTOR, ".cost")[-1].text)
        wait.until(lambda d: "Conversation" in d.find_element(By.ID, "totals").text)

        # Turn 2: the model stalls mid-sentence; Stop cancels the upstream request.
        browser.find_element(By.ID, "message").send_keys("And now think forever.")
        browser.find_element(By.ID, "send").click()
        wait.until(lambda d: _streaming_text(d) == "Let me think about that for a")
        assert not mock.disconnected.is_set()
        browser.find_element(By.ID, "stop").click()
        assert mock.disconnected.wait(10.0), "Stop did not cancel the upstream request"  # it stalls for ever
        wait.until(lambda d: _state(d) == "stopped")
        stopped = browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]
        assert "stopped" in stopped.get_attribute("class") and stopped.text == "Let me think about that for a"
        assert browser.find_elements(By.CSS_SELECTOR, ".note.stopped")[-1].text == "■ Stopped"
        costs = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".cost")]
        assert len(costs) == 2 and all(SUMMARY.fullmatch(c) for c in costs) and "Tokens: ~" in costs[1]
        assert browser.find_element(By.ID, "send").is_enabled() and not browser.find_element(By.ID, "stop").is_enabled()
        ARTIFACTS.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "chat.png"))

        # The session's conversation is in the store: a reload shows the same history.
        browser.refresh()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg")) == 4)
        texts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".msg")]
        assert texts == ["Tell me a story about a robot.", story, "And now think forever.", "Let me think about that for a"]
        assert len(browser.find_elements(By.CSS_SELECTOR, ".msg.assistant.stopped")) == 1

    assert [store.next_commit()[1].finish_reason for _ in range(2)] == ["stop", "cancelled"]


class ConnectionCutter:
    """WSGI middleware that drops a response's connection after some frames, as a flaky network would.

    ``cuts[path_prefix]`` lists frame budgets for the next requests to that prefix: each such
    request sends that many body chunks, then its socket is shut down mid-response. Requests
    beyond the list pass untouched. ``seen`` records every request (path, Last-Event-ID).
    """

    def __init__(self, app: Any, cuts: Dict[str, List[int]]) -> None:
        self.app, self.cuts = app, cuts
        self.seen: List[Tuple[str, Optional[str]]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        with self.lock:
            self.seen.append((path, environ.get("HTTP_LAST_EVENT_ID")))
            prefix = next((p for p in self.cuts if path.startswith(p) and self.cuts[p]), None)
            budget = self.cuts[prefix].pop(0) if prefix is not None else None
        body = self.app(environ, start_response)
        return body if budget is None else self._cut(body, budget, environ["werkzeug.socket"])

    @staticmethod
    def _cut(body: Any, budget: int, sock: Any) -> Iterator[bytes]:
        sent = 0
        try:
            for chunk in body:
                if chunk.startswith(b":") or chunk.startswith(b"retry:"):
                    yield chunk  # keep-alive comments and the retry hint are not frames
                    continue
                if sent == budget:
                    sock.shutdown(socket.SHUT_RDWR)  # the connection drops mid-reply
                    raise ConnectionAbortedError("dropped by the test")
                sent += 1
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()  # only the follower ends: the published reply goes on


def _story_app(mock: MockServer, client: promptkit.Client, store: RecordingStore, delay: float) -> Any:
    """The Flask chat example on a MemoryStreamLog, its mock model about to tell :data:`STORY`."""
    mock.enqueue(MockReply.text(STORY, chunk_size=4, delay=delay))
    return load_example("flask_chat").create_app(client, store, mode="mock server (test)", mock=True, heartbeat=0.05,
                                                 stream_log=MemoryStreamLog())


def _ask_for_the_story(browser: Any, wait: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url + "/")
    wait.until(lambda d: d.find_element(By.ID, "mode").text == "mock server (test)")
    browser.find_element(By.ID, "message").send_keys("Tell me a story about a robot.")
    browser.find_element(By.ID, "send").click()


def test_chat_page_resumes_a_dropped_reply_and_eventsource_reconnects_by_itself(
        browser: Any, mock: MockServer, client: promptkit.Client) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    store = RecordingStore()
    story = STORY
    app = _story_app(mock, client, store, delay=0.06)
    # The POST's connection drops after 3 events; the page resumes with an EventSource whose first
    # connection drops after 4 more; EventSource then reconnects by itself, sending Last-Event-ID.
    cutter = ConnectionCutter(app, {"/chat/streams/": [4], "/chat": [3]})
    wait = WebDriverWait(browser, 20, poll_frequency=0.02)
    with serve_werkzeug(cutter) as url:
        _ask_for_the_story(browser, wait, url)
        wait.until(lambda d: _state(d) in ("done", "error"))
        assert _state(browser) == "done", browser.find_element(By.ID, "status").text
        assert browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1].text == story
        assert SUMMARY.fullmatch(browser.find_elements(By.CSS_SELECTOR, ".cost")[-1].text)
    resumes = [(path, last) for path, last in cutter.seen if path.startswith("/chat/streams/")]
    assert len(resumes) >= 2, cutter.seen
    assert resumes[0][1] is None  # the page's own first attempt: ?after=0-3
    assert resumes[1][1] == "0-7"  # EventSource's own reconnect, after the 4 events it had (0-4 .. 0-7)
    committed = store.next_commit(timeout=20)[1]
    assert committed.finish_reason == "stop" and committed.messages[-1]["content"] == story
    assert not mock.disconnected.is_set()  # no drop cancelled the model


def test_a_page_reloaded_mid_reply_follows_the_reply_to_its_end(browser: Any, mock: MockServer,
                                                                client: promptkit.Client) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    store = RecordingStore()
    story = STORY
    app = _story_app(mock, client, store, delay=0.08)
    wait = WebDriverWait(browser, 20, poll_frequency=0.02)
    with serve_werkzeug(app) as url:
        _ask_for_the_story(browser, wait, url)
        wait.until(lambda d: (t := _streaming_text(d)) and len(t) > 8)
        browser.refresh()  # mid-reply: the reply goes on, and the reloaded page follows it
        wait.until(lambda d: _state(d) == "done" and not d.find_elements(By.CSS_SELECTOR, ".msg.assistant.streaming"))
        committed = store.next_commit(timeout=20)[1]
        # Drawn again from the history once the reply ended: each message once, the reply whole.
        wait.until(lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, ".msg")]
                   == ["Tell me a story about a robot.", story])
    assert committed.finish_reason == "stop" and committed.messages[-1]["content"] == story
    assert not mock.disconnected.is_set()
