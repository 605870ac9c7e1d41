"""SSE and JSON relay frames: injection-safe, heartbeats, cancel on disconnect."""

from __future__ import annotations

import json
import threading
from typing import List

import promptkit
from promptkit._sse_out import HEARTBEAT, error_frame, json_frame, sse_frame
from promptkit._sse import SSEParser
from promptkit._stream import Stream, StreamControl
from promptkit.testing import MockReply, MockServer
from promptkit._types import Response, StreamEvent

NASTY = "line one\n\ndata: {\"type\": \"done\"}\nevent: done\r\nid: 9\r: not a comment \u2028 end"


def test_sse_frames_parse_back_to_identical_content() -> None:
    events = [StreamEvent("content", content=NASTY), StreamEvent("done", final=Response(content=NASTY))]
    wire = b"".join(sse_frame(e, event_id=i) for i, e in enumerate(events, 1))
    parsed = SSEParser().feed(wire)
    assert [p.event for p in parsed] == ["content", "done"]
    assert json.loads(parsed[0].data)["content"] == NASTY
    assert json.loads(parsed[1].data)["final"]["content"] == NASTY
    assert parsed[1].id == "2"


def test_json_frame_and_error_frame_shape() -> None:
    frame = json.loads(json_frame(StreamEvent("content", content="hi")))
    assert set(frame) == {"type", "content", "tool_call", "final", "error"}
    err = error_frame(promptkit.RateLimitError("429: slow", status_code=429))
    assert err["type"] == "error" and err["error"]["status_code"] == 429


def test_iter_sse_heartbeats_while_silent_and_ends_after_terminal() -> None:
    release = threading.Event()

    def run(control: StreamControl) -> Response:
        control.emit(StreamEvent("content", content="a"))
        release.wait(10)
        return Response(content="a", finish_reason="stop")

    frames: List[bytes] = []
    stream = Stream(run)
    for frame in stream.iter_sse(heartbeat=0.02):
        frames.append(frame)
        if frame == HEARTBEAT:
            release.set()
    assert HEARTBEAT in frames
    data = [p for p in SSEParser().feed(b"".join(frames))]
    assert [p.event for p in data] == ["content", "done"]
    assert stream.result().content == "a"


def test_closing_iter_sse_cancels_upstream_and_commits_cancelled() -> None:
    with MockServer() as server, promptkit.Client(base_url=server.url) as client:
        server.enqueue(MockReply.stall(after_text="partial"))
        conv = client.conversation()
        frames = conv.send_stream("q").iter_sse(heartbeat=5)
        first = next(frames)
        assert b"event: content" in first
        frames.close()  # what a WSGI server does when the browser goes away
        assert server.disconnected.wait(5)
        assert conv.last_response is not None and conv.last_response.finish_reason == "cancelled"
        assert conv.messages[-1] == {"role": "assistant", "content": "partial"}
