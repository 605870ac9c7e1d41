"""An embedded LLM API server (Chat Completions, Responses, Anthropic Messages) for tests and offline examples.

A real HTTP/1.1 server on ``127.0.0.1`` (stdlib only), so clients go through the
same sockets, framing, keep-alive and timeouts as with a remote API::

    with MockServer() as server:
        server.enqueue(MockReply.text("Hello there!"), MockReply.error(429, "slow down"))
        ...  # point a client at base_url=server.url
        assert server.requests[0].body["stream"] is True
"""

from ._replies import Headers, MockReply, RecordedRequest
from ._server import MockServer

__all__ = ["MockServer", "MockReply", "RecordedRequest", "Headers"]
