"""Imports the importer could not finish or record: Lambda's OnFailure destination hands them here.

A crash, a hard timeout or running out of memory kills the importer before it
can record anything; Lambda retries the event twice (the retries take the
same attempt over, see ``importer._settled``) and then sends the event, with
the last error, to the destination. Every invocation of the file is over then.

What the record already shows of the file is finished first, with the fan-out
fail step's logic (``AudienceImporter.settle_recorded``): a flip gets its
pointer, its event unless it was announced (the bus refused it on every
attempt), then the removal of the version it replaced (the flip noted it on the
record; a run that died removing it left the rest); a flip a newer file's
superseded since gets only that removal; a failure recorded but never told
(``failed_sequencer`` past ``failure_notified_sequencer``) is told; on a
tombstone, the importer's rule (``AudienceImporter.on_tombstone``): a file
later than the deletion is refused (told unless it was), one imported before
it is not, and the version its flip replaced goes. Each at least once, and
once for deliveries that do not overlap (a marker follows what it marks: two
deliveries at the same time may both publish). Otherwise this records
``import_failed`` on the audience, gives a new name's slot back, and tells the
app as every failure is; unless the file was imported before a deletion whose
tombstone was lifted since (the lift's floor, see ``AudienceRepository.lift``):
it is skipped, and nothing is recorded or told.

The API's removals of versions go to the importer too, and so to the same
destination when they fail: the version is removed once more.

A removal that fails here (a flip's replaced version, a version the API asked
to remove) fails this invocation too, once everything else is done and marked
(``VersionNotRemoved``): Lambda retries it twice, each removing once more and
telling nothing again; each failure is counted (AudienceVersionRemovalFailed).
"""

import logging

from steward.audiences.events import Cleanup
from steward.audiences.importer import AudienceImporter, ImportOutcome, ObjectCreated
from steward.audiences.keys import event_key, padded_sequencer, parse_key
from steward.audiences.models import AudienceStatus, Failure

logger = logging.getLogger(__name__)
MAX_REASON_CHARS = 500


class LostImports:
    def __init__(self, importer: AudienceImporter) -> None:
        self.importer = importer

    def remove_again(self, cleanup: Cleanup, reason: str) -> None:
        """A version the API asked the importer to remove (a deleted audience's), which it failed to, retries
        included: removed once more (removing what is gone changes nothing). A failure raises, for this
        function's own retries."""
        logger.warning("Removing version %s of app %s again: %s", cleanup.version, cleanup.app_id, reason)
        self.importer.remove_deleted(cleanup.app_id, cleanup.name, cleanup)

    def record_all(self, created: list[ObjectCreated], reason: str) -> list[ImportOutcome]:
        return [self.record(record, reason) for record in created]

    def record(self, created: ObjectCreated, reason: str) -> ImportOutcome:
        importer = self.importer
        key = event_key(created.raw_key)
        target = parse_key(key)
        if target is None or not importer.app_exists(target.app_id):
            return ImportOutcome("stray", key)  # the importer never took it on
        app_id, name = target.app_id, target.name
        sequencer = padded_sequencer(created.sequencer)
        current = importer.repository.get(app_id, name, consistent=True)
        if current is not None and current.status is AudienceStatus.DELETED:
            return importer.on_tombstone(target, current, sequencer)
        settled = importer.settle_recorded(target, current, sequencer)
        if settled is not None:
            return settled
        failure = Failure(
            code="import_failed",
            reason=f"The import failed and so did Lambda's retries: {reason}"[:MAX_REASON_CHARS],
            key=key,
            at=importer.clock(),
        )
        # Skipped when a newer file was imported or is the attempt; refused when the name was deleted meanwhile.
        outcome = importer.fail_unclaimed(target, current, sequencer, failure)
        if outcome.outcome == "failed":
            logger.warning("Recorded a lost import of %r: %s", key, reason)
        return outcome
