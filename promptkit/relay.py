"""Relaying events to browsers: server-sent-event frames and JSON text frames.

Every frame carries ``event.to_dict()`` as compact JSON. JSON escapes newlines,
so the ``data:`` field is always one line: content holding ``"\\n\\ndata: x"``
or ``"event: done"`` can never forge an event on the client side.

The framing itself lives in one private module, ``promptkit._sse_out``
(which :meth:`Stream.iter_sse <promptkit.Stream.iter_sse>` and
:mod:`promptkit.web` use too); these are its public names.
"""

from __future__ import annotations

from ._sse_out import HEARTBEAT, error_frame, json_frame, sse_frame

__all__ = ["sse_frame", "json_frame", "error_frame", "HEARTBEAT"]
