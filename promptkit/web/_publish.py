"""Publishing a turn: its events go to a :class:`StreamLog` as they arrive, whoever is watching.

:func:`publish` hands the :class:`~promptkit.Stream` to a producer thread that
appends every event to the log and ends with the terminal one. The browser's
connection is only a follower (:mod:`promptkit.web._follow`), so the turn goes
on when it drops and is committed as usual; a stop request, from any worker,
reaches the producer through the log.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Dict, Optional

from .._errors import ConfigurationError, PromptKitError, StoreError
from .._stream import start_thread
from ._log import Appended, StreamLog, check_key, check_stream_id, new_stream_id

if TYPE_CHECKING:  # pragma: no cover
    from .._stream import Stream

__all__ = ["publish"]

logger = logging.getLogger(__name__)


def publish(stream: "Stream", log: StreamLog, *, key: Optional[str] = None, stream_id: Optional[str] = None) -> str:
    """Publish ``stream`` to ``log`` and return its stream id, at once.

    A producer thread takes the stream over (nothing else may consume it) and
    appends each event to the log as it arrives, the terminal ``done`` or
    ``error`` last. Followers on any worker read the log with
    :func:`~promptkit.web.flask_resume_response` (or the Django one); the turn
    runs to its end whether or not anyone follows, and is committed to the
    conversation's store as usual. :meth:`StreamLog.stop` cancels it from any
    worker.

    Args:
        stream: the stream from ``send_stream``.
        log: where the events go.
        key: names the stream as the current one of something, usually the
            conversation id: ``log.current(key)`` then finds it (the AI SDK's
            resume and a stop button need no stream id).
        stream_id: the id to publish under; default a fresh unguessable one.

    Raises:
        ConfigurationError: a bad ``key`` or ``stream_id``, or one already used.
        StoreError: the log's engine failed. In both cases ``stream`` is
            cancelled and closed first, so no turn runs unseen.
    """
    try:
        if not isinstance(log, StreamLog):
            raise ConfigurationError(f"log must be a promptkit.web.StreamLog, got {type(log).__name__}")
        if key is not None:
            check_key(key)
        sid = new_stream_id() if stream_id is None else check_stream_id(stream_id)
        log.create(sid, key)
    except BaseException:
        stream.close()  # a turn nobody can follow or stop must not run on
        raise
    start_thread(_produce, "publish", log, sid, stream)
    if not _warmed.is_set():
        _warmed.set()
        start_thread(_warm_up, "token-warmup", stream.model)
    return sid


# Published replies are the ones stopped from other workers. A stopped reply's usage is estimated
# with tiktoken, whose first load takes about 0.3 s: the first publish in a process loads it in the
# background, while the model works, so that the first stop does not wait for it.
_warmed = threading.Event()


def _warm_up(model: Optional[str]) -> None:
    from .._tokens import count_text

    try:
        count_text("warm-up", model)  # loads the model's encoding
    except Exception as exc:  # pragma: no cover - an estimate is never worth a failure
        logger.debug("token counter warm-up failed: %r", exc)


def _error_dict(error: BaseException) -> Dict[str, Any]:
    from .._types import StreamEvent

    if not isinstance(error, PromptKitError):
        error = StoreError(f"the stream's producer failed: {type(error).__name__}")
    return StreamEvent("error", error=error).to_dict()


# How often, and after which pauses, an append is tried before the log counts as failed.
_APPEND_PAUSES = (0.05, 0.25)


def _append(log: StreamLog, sid: str, event: Dict[str, Any], seq: int, stopped: threading.Event) -> Appended:
    """Append with retries: a retry of an append that was written is found, not written twice."""
    for pause in _APPEND_PAUSES:
        try:
            return log.append(sid, event, seq)
        except StoreError as exc:
            logger.warning("stream %s: appending event %d failed (%s); retrying", sid, seq, exc)
        stopped.wait(pause)  # a pause before the retry
    return log.append(sid, event, seq)


def _produce(log: StreamLog, sid: str, stream: "Stream") -> None:
    """The producer thread: every event of ``stream`` into the log, until the terminal one.

    When the log fails for good (its engine is down through the retries),
    nobody can follow or stop the turn any more: it is cancelled (and
    committed as cancelled), and the log gets one ``error`` event if it
    takes it; otherwise the lease lapses and followers end with
    ``ProducerLostError``.
    """
    relaying = True
    seq = 0
    never = threading.Event()  # the retry pauses' clock: nothing sets it
    try:
        log.hold(sid, stream)  # from here on a stop request reaches this stream
    except Exception as exc:
        logger.warning("stream %s: could not take its lease (%s); cancelling the turn", sid, exc)
        stream.cancel()
    try:
        for event in stream:
            if not relaying:
                continue  # drain: the cancelled turn ends and is committed
            seq += 1
            try:
                appended = _append(log, sid, event.to_dict(), seq, never)
            except Exception as exc:  # the log's engine failed for good: nobody can follow this turn now
                logger.error("stream %s: the log failed (%s); cancelling the turn", sid, exc)
                relaying = False
                stream.cancel()
                _record_failure(log, sid, exc)
                continue
            if not appended.live:  # a follower declared this producer lost: stop the turn
                logger.warning("stream %s was ended by a follower (its lease lapsed); cancelling the turn", sid)
                relaying = False
                stream.cancel()
            elif appended.stop:
                stream.cancel()
    except BaseException as exc:  # pragma: no cover - iterating a Stream raises only on misuse
        logger.error("stream %s: the producer failed", sid, exc_info=True)
        if relaying:
            _record_failure(log, sid, exc)
        raise
    finally:
        try:
            log.release(sid)
        except Exception as exc:
            logger.warning("stream %s: releasing its lease failed (%s)", sid, exc)


def _record_failure(log: StreamLog, sid: str, error: BaseException) -> None:
    """End the stream in the log with an error event, if the log takes it (seq 0: wherever it stands)."""
    try:
        log.append(sid, _error_dict(error))
    except Exception:
        logger.error("stream %s: could not record the failure; its followers will find the lease lapsed", sid)
