"""The body of an SSE response: a WSGI iterable, and an async iterable for ASGI servers.

Both stream ``Stream.iter_sse()`` and guarantee that a client disconnect
cancels the upstream request at once and that the turn commits as cancelled,
whichever way the server ends the response: ``close()`` (WSGI servers call it
when a write fails), a cancelled ASGI task, or garbage collection.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, AsyncIterator, Iterator, List, Optional

from ._follow import check_protocol

if TYPE_CHECKING:  # pragma: no cover
    from .._stream import Stream

__all__ = ["SSEBody", "AsyncSSEBody"]

logger = logging.getLogger(__name__)

# How long close() waits for a cancelled turn to commit before giving up on it.
_CLOSE_WAIT = 10.0


class SSEBody:
    """The server-sent-event bytes of one :class:`~promptkit.Stream`, as a WSGI response iterable.

    Iterating yields the frames of ``stream.iter_sse(heartbeat)``. ``close()``
    (which every WSGI server calls at the end of a response, including when a
    write to a departed client failed) cancels the upstream request if the
    stream has not ended, and waits until the cancelled turn is committed.

    It is a class rather than a generator on purpose: closing a generator that
    never started runs none of its code, so a response closed before its first
    frame would leave the upstream request running.

    Args:
        stream: the stream to relay; nothing else may consume it.
        heartbeat: seconds of model silence before a ``: keep-alive`` comment
            (``None``: none). Besides keeping proxies from closing an idle
            response, a heartbeat is how a WSGI server learns that the client
            left: it only notices when a write fails.
        protocol: ``"promptkit"`` (its own event frames) or ``"ai-sdk"`` (the
            Vercel AI SDK's UI message stream).
    """

    def __init__(self, stream: "Stream", heartbeat: Optional[float] = 15.0, protocol: str = "promptkit") -> None:
        self._stream = stream
        if check_protocol(protocol) == "ai-sdk":
            from ._ai_sdk import UIMessageEncoder

            encoder = UIMessageEncoder(None)
            self._frames = stream.iter_sse(heartbeat, frame=lambda event, _n: encoder.encode(event.to_dict()))
        else:
            self._frames = stream.iter_sse(heartbeat)
        # One next() at a time: under ASGI the pulls run on worker threads while
        # close() may come from another; closing a generator that is executing raises.
        self._lock = threading.Lock()
        self._closed = False

    @property
    def stream(self) -> "Stream":
        """The relayed stream."""
        return self._stream

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        with self._lock:
            if self._closed:
                raise StopIteration
            return next(self._frames)

    def cancel(self) -> None:
        """Cancel the upstream request unless the stream already ended. Thread-safe, returns at once."""
        if not self._stream.done:
            self._stream.cancel()

    def close(self) -> None:
        """End the response: cancel a stream still running and wait for its turn to commit. Idempotent."""
        self.cancel()  # first, so that a next() blocked on another thread returns promptly
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._frames.close()  # runs iter_sse's cleanup when it had started
        if not self._stream.done:  # never iterated: iter_sse's cleanup never ran
            self._stream.close(_CLOSE_WAIT)

    def __del__(self) -> None:
        # A server that drops the body without close() must not leave the model talking.
        stream = getattr(self, "_stream", None)
        if stream is not None and not stream.done:
            stream.cancel()


class AsyncSSEBody:
    """An async iterable over an :class:`SSEBody`, for ASGI servers.

    A thread of its own (one per response, gone with it) pulls the frames
    from the synchronous body and hands each to the event loop as it comes,
    so the loop never blocks on the model, every frame goes out as soon as
    the client takes it (frames wait in memory while a client reads slower
    than the model writes), and
    replies do not queue for asgiref's shared executor (``min(32, cpus + 4)``
    threads, which a silent model would hold for a heartbeat each). When the
    ASGI server cancels the response task (the client disconnected), the
    upstream request is cancelled at once.

    ``close()`` is synchronous and is what Django calls as the response's
    resource closer.
    """

    def __init__(self, body: SSEBody) -> None:
        self._body = body

    @property
    def stream(self) -> "Stream":
        """The relayed stream."""
        return self._body.stream

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        from asgiref.sync import sync_to_async

        from .._stream import start_thread

        body = self._body
        loop = asyncio.get_running_loop()
        frames: "asyncio.Queue[Optional[bytes]]" = asyncio.Queue()
        failure: List[BaseException] = []

        def pull() -> None:  # on the body's own thread
            try:
                for frame in body:
                    loop.call_soon_threadsafe(frames.put_nowait, frame)
            except BaseException as exc:  # handed to the response task, which raises it
                failure.append(exc)
            finally:
                try:
                    loop.call_soon_threadsafe(frames.put_nowait, None)
                except RuntimeError:  # the loop is closed: nobody reads any more
                    pass

        start_thread(pull, "asgi-body")
        try:
            while True:
                frame = await frames.get()
                if frame is None:
                    if failure:
                        raise failure[0]
                    return
                yield frame
        finally:
            body.cancel()  # synchronous and immediate: the model stops now, whatever happens below
            try:
                await sync_to_async(body.close, thread_sensitive=False)()
            except BaseException:  # cancelled again while waiting: finish closing on a thread of our own
                start_thread(body.close, "web-close")
                raise

    def close(self) -> None:
        """Cancel the stream if it is still running and wait for its turn to commit. Idempotent."""
        self._body.close()
