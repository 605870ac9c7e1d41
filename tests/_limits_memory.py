"""One memory scenario of tests/test_limits.py, run in its own process under RLIMIT_AS.

Usage: python -m tests._limits_memory BASE_URL SCENARIO LIMITS_JSON HEADROOM_BYTES

Warms up with one normal turn (imports, the worker thread, malloc arenas),
then caps the address space at the current size plus HEADROOM, resets the
peak-RSS mark, runs one turn against the hostile ``SCENARIO`` and prints a
JSON report on the last line of stdout: the events, the error, the threads
and the peak RSS growth. The parent asserts on it; a process killed by the
cap, or a MemoryError, is a failure there.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import threading
from typing import Any, Dict, List

KEY = "sk-memory-scenario-SECRET-4242"


def _status(field: str) -> int:
    """A ``kB`` figure of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def main(base_url: str, scenario: str, limits_json: str, headroom: int) -> Dict[str, Any]:
    import promptkit

    records = _Records()
    logging.getLogger("promptkit").addHandler(records)
    logging.getLogger("promptkit").setLevel(logging.DEBUG)
    limits = promptkit.Limits(**json.loads(limits_json))
    timeout = promptkit.Timeout(connect=10, idle=30, total=300)
    with promptkit.Client(base_url=f"{base_url}/ok", api_key=KEY, timeout=timeout, limits=limits) as warm:
        assert warm.conversation().send("warm up").content == "warm"
    client = promptkit.Client(base_url=f"{base_url}/{scenario}", api_key=KEY, timeout=timeout, limits=limits)
    conv = client.conversation(system_prompt="be brief")
    before_messages = conv.messages

    resource.setrlimit(resource.RLIMIT_AS, (_status("VmSize") + headroom, resource.RLIM_INFINITY))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM: the peak from here on is this scenario's
    rss_before = _status("VmRSS")
    stream = conv.send_stream("go")
    kinds: List[str] = []
    error = None
    for event in stream:
        kinds.append(event.type)
        if event.type == "error":
            error = event.error
    stream.close(timeout=10)
    peak = _status("VmHWM")
    client.close()
    threads = [t.name for t in threading.enumerate() if t.name.startswith("promptkit")]
    texts = [str(error), repr(error), repr(getattr(error, "partial", None))] + [r.getMessage() for r in records.records]
    return {
        "kinds": kinds[-3:],
        "terminals": sum(1 for k in kinds if k in ("done", "error")),
        "last": kinds[-1] if kinds else None,
        "error_type": type(error).__name__,
        "message": str(error),
        "threads": threads,
        "history_unchanged": conv.messages == before_messages,
        "key_leaked": any(KEY in text for text in texts),
        "error_logs": [r.getMessage() for r in records.records if r.levelno >= logging.ERROR],
        "rss_before": rss_before,
        "peak_growth": peak - rss_before,
    }


if __name__ == "__main__":
    report = main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
    print(json.dumps(report))
