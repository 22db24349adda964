"""S3 event records as S3 sends them: with a ``sequencer``.

moto's records carry no sequencer, while real S3 always sends one on
ObjectCreated: a hex string that grows with each event of the same key, by
which consumers order events that arrive out of order. The emulator plays S3
here, so it adds one: monotonic per bucket and key, 16 upper-case hex digits.
"""

import threading
import time
from typing import Any

from moto.s3 import notifications

_lock = threading.Lock()
_last: dict[tuple[str, str], int] = {}


def next_sequencer(bucket: str, key: str) -> str:
    with _lock:
        value = max(time.time_ns(), _last.get((bucket, key), 0) + 1)
        _last[(bucket, key)] = value
    return f"{value:016X}"


def install() -> None:
    original = notifications._get_s3_event
    if getattr(original, "_adds_sequencer", False):
        return

    def with_sequencer(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, list[dict[str, Any]]]:
        event = original(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            record["s3"]["object"]["sequencer"] = next_sequencer(bucket.name, key.name)
        return event

    with_sequencer._adds_sequencer = True  # type: ignore[attr-defined]
    notifications._get_s3_event = with_sequencer
