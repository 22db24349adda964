"""Recording a failed import on the audience and telling the app: the importer's and the lost-import recorder's."""

import logging

from steward.audiences.models import Audience, AudienceStatus, Failure
from steward.audiences.ports import Notifier
from steward.audiences.repository import AudienceRepository, Recorded

logger = logging.getLogger(__name__)
# Reads and conditional writes of one failure's record when claims of the name race it.
RECORD_ATTEMPTS = 3


class RecordContended(Exception):
    """The record kept changing while a refusal was written on it (``RECORD_ATTEMPTS`` conditional writes lost), or
    while a flip's pointer was moved: the invocation fails, and Lambda (or the step's Retry) runs it again."""


def record_failed(
    repository: AudienceRepository,
    notifier: Notifier,
    app_id: str,
    name: str,
    current: Audience | None,
    sequencer: str,
    failure: Failure,
) -> Recorded | Audience:
    """Record ``failure`` of the file ``sequencer`` and publish it, as ``record_failure`` says (``moot``: a newer
    file's import or attempt made it so); or the tombstone, when the name was deleted: the file is refused.

    A name with no counted record (new, or refused before) gets a failed record that does not count
    against the app's maximum; a counted one keeps its members and notes the failure (a new audience
    whose own first attempt failed gives its slot back). When a first attempt claimed the new name after
    ``current`` was read, the failure is noted on that claim: if its object was replaced, the record then
    stays as this failure rather than going. When that claim let go of the name before the record was read
    again (an older file's, released uncounted), the refusal is written again. A file imported before a deletion
    whose tombstone was lifted since is moot: its record went with the tombstone, and nothing is written.
    """
    for _ in range(RECORD_ATTEMPTS):
        if current is not None and current.status is AudienceStatus.DELETED:
            return current
        if current is not None and current.counted:
            recorded = repository.record_failure(app_id, name, failure, sequencer, failure.at)
            if not isinstance(recorded, Audience):
                tell_recorded(repository, notifier, app_id, name, failure, sequencer, recorded)
            return recorded
        refused = repository.record_refused_new(app_id, name, failure, sequencer, failure.at)
        if refused == "recorded":
            tell_recorded(repository, notifier, app_id, name, failure, sequencer, "recorded")
            return "recorded"
        if refused == "lifted":
            return "moot"  # the file was imported before a deletion whose tombstone was lifted since
        current = repository.get(app_id, name, consistent=True)
        if _taken(current, sequencer):
            return "moot"
    raise RecordContended(f"The record of {name!r} kept changing while the failure of {failure.key!r} was written")


def _taken(current: Audience | None, sequencer: str) -> bool:
    """Whether a refused record holds this file's attempt or a newer one: a refusal of this file is moot."""
    if current is None or current.counted or current.status is AudienceStatus.DELETED:
        return False
    return current.attempt_sequencer is not None and current.attempt_sequencer >= sequencer


def tell_recorded(
    repository: AudienceRepository,
    notifier: Notifier,
    app_id: str,
    name: str,
    failure: Failure,
    sequencer: str,
    recorded: Recorded,
) -> None:
    """Tell a failure as ``record_failure`` left it.

    A recorded failure is told until marked told. A superseded one (a newer file's failure stays on the
    audience) is still published once for its own key and sequencer, unmarked: the marker belongs to the
    recorded failure, which a retry must still be able to tell.
    """
    if recorded == "recorded":
        tell_failure(repository, notifier, app_id, name, failure, sequencer)
    elif recorded == "superseded":
        notifier.failed(app_id, name, failure, sequencer)


def tell_failure(
    repository: AudienceRepository, notifier: Notifier, app_id: str, name: str, failure: Failure, sequencer: str
) -> None:
    """Publish a recorded failure, then mark it told: a crash between the two tells it again, never not at all."""
    notifier.failed(app_id, name, failure, sequencer)
    repository.mark_notified(app_id, name, sequencer, told="failure")


def untold_failure(audience: Audience, sequencer: str) -> Failure | None:
    """The failure recorded for the file ``sequencer`` that was never told (its notification threw)."""
    if not _untold(audience.failed_sequencer, audience.failure_notified_sequencer, sequencer):
        return None
    return audience.last_failure


def untold_refusal(tombstone: Audience, sequencer: str) -> bool:
    """Whether the tombstone noted its refusal of the file ``sequencer`` but never told it (the notification threw)."""
    return _untold(tombstone.refused_sequencer, tombstone.refusal_notified_sequencer, sequencer)


def _untold(noted: str | None, told: str | None, sequencer: str) -> bool:
    # Not when told already, or when a newer file's was (the marker only moves forward).
    return noted == sequencer and (told is None or told < sequencer)
