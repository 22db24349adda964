"""Imports the importer could not finish or record: Lambda's OnFailure destination hands them here.

A crash, a hard timeout or running out of memory kills the importer before it
can record anything; Lambda retries the event twice (the retries take the
same attempt over, see ``importer._settled``) and then sends the event, with
the last error, to the destination. This records ``import_failed`` on the
audience, gives a new name's slot back, and tells the app as every failure is.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from steward.audiences.failures import record_failed
from steward.audiences.importer import ImportOutcome, ObjectCreated
from steward.audiences.keys import event_key, padded_sequencer, parse_key
from steward.audiences.models import AudienceStatus, Failure
from steward.audiences.ports import Notifier
from steward.audiences.repository import AudienceRepository

logger = logging.getLogger(__name__)
MAX_REASON_CHARS = 500


class LostImports:
    def __init__(
        self,
        repository: AudienceRepository,
        app_exists: Callable[[str], bool],
        notifier: Notifier,
        clock: Callable[[], datetime],
    ) -> None:
        self.repository = repository
        self.app_exists = app_exists
        self.notifier = notifier
        self.clock = clock

    def record_all(self, created: list[ObjectCreated], reason: str) -> list[ImportOutcome]:
        return [self.record(record, reason) for record in created]

    def record(self, created: ObjectCreated, reason: str) -> ImportOutcome:
        key = event_key(created.raw_key)
        target = parse_key(key)
        if target is None or not self.app_exists(target.app_id):
            return ImportOutcome("stray", key)  # the importer never took it on
        app_id, name = target.app_id, target.name
        sequencer = padded_sequencer(created.sequencer)
        current = self.repository.get(app_id, name, consistent=True)
        if current is not None and current.status is AudienceStatus.DELETED:
            return ImportOutcome("skipped", key, app_id, name, reason="audience_deleted")
        failure = Failure(
            code="import_failed",
            reason=f"The import failed and so did Lambda's retries: {reason}"[:MAX_REASON_CHARS],
            key=key,
            at=self.clock(),
        )
        if not record_failed(self.repository, self.notifier, app_id, name, current, sequencer, failure):
            # A newer file was imported (or this one was, and only its answer was lost).
            return ImportOutcome("skipped", key, app_id, name, reason="superseded")
        logger.warning("Recorded a lost import of %r: %s", key, reason)
        return ImportOutcome("failed", key, app_id, name, reason=failure.code)
