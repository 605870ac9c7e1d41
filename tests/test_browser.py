"""The Flask chat example in a real headless Chromium: tokens appear as they stream, Stop cancels upstream.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and the
``selenium`` package. Selenium is given both binaries' paths and runs offline, so it never
downloads a browser or a driver. Without them the test is skipped, except in CI, where it fails.
Waits poll the DOM with WebDriverWait; the screenshot lands in tests/artifacts/chat.png.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import promptkit
from promptkit.testing import MockReply, MockServer
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
    story = "Once upon a time a small robot learned to paint the evening sky with a thousand tiny brushes."
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
