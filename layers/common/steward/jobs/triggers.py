"""Trigger events: what a bulk update changed, published on the jobs' EventBridge bus for the app's automations.

Events go out after the page's writes, in PutEvents calls of 10 entries
(EventBridge's limit). Entries PutEvents refuses (it answers 200 with
per-entry errors) are sent again with backoff; if some still fail, the
page is retried as throttled (``RetryPage``): its rows are applied again
(a no-op for rows already written) and their events published again.
Delivery is therefore at least once; ``change_id`` (job id / user id)
names a change, so an automation can drop a repeat.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from steward.jobs.engine import RetryPage

SOURCE = "steward"
SUBSCRIPTION_ADDED = "Subscription Added"
SUBSCRIPTION_STATUS_CHANGED = "Subscription Status Changed"
FIELD_UPDATED = "Field Updated"
PROMO_CODE_ATTACHED = "Promo Code Attached"
MAX_ENTRIES = 10  # PutEvents takes at most 10 entries a call
MAX_ATTEMPTS = 4  # the first call and three resends of what it refused
BACKOFF_SECONDS = 0.2


@dataclass(frozen=True)
class TriggerEvent:
    detail_type: str
    app_id: str
    user_id: str
    job_id: str
    facts: dict[str, Any]  # what changed: the fields, the subscription, the code

    def entry(self, bus: str) -> dict[str, Any]:
        detail = {
            "app_id": self.app_id,
            "user_id": self.user_id,
            "job_id": self.job_id,
            "change_id": f"{self.job_id}/{self.user_id}",
            **self.facts,
        }
        return {"Source": SOURCE, "DetailType": self.detail_type, "Detail": json.dumps(detail), "EventBusName": bus}


class TriggersNotPublished(RetryPage):
    """EventBridge kept refusing some entries: the page is retried, and its events sent again."""


class TriggerPublisher:
    def __init__(
        self, put_events: Callable[[list[dict[str, Any]]], dict[str, Any]], bus: str, sleep: Callable[[float], None]
    ) -> None:
        self.put_events = put_events
        self.bus = bus
        self.sleep = sleep

    def publish(self, events: Sequence[TriggerEvent]) -> None:
        entries = [event.entry(self.bus) for event in events]
        for start in range(0, len(entries), MAX_ENTRIES):
            self._send(entries[start : start + MAX_ENTRIES])

    def _send(self, entries: list[dict[str, Any]]) -> None:
        """One batch; the entries it refuses are sent again, with backoff, up to MAX_ATTEMPTS calls."""
        pending = entries
        error = ""
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                self.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
            answer = self.put_events(pending)
            if not answer.get("FailedEntryCount"):
                return
            results = answer["Entries"]
            refused = [(entry, result) for entry, result in zip(pending, results, strict=True) if "ErrorCode" in result]
            pending = [entry for entry, _ in refused]
            error = f"{refused[0][1].get('ErrorCode')}: {refused[0][1].get('ErrorMessage')}"
        raise TriggersNotPublished(f"{len(pending)} trigger events were not published ({error}).")
