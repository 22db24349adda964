"""Recording a failed import on the audience and telling the app: the importer's and the lost-import recorder's."""

from steward.audiences.models import Audience, Failure
from steward.audiences.ports import Notifier
from steward.audiences.repository import AudienceRepository


def record_failed(
    repository: AudienceRepository,
    notifier: Notifier,
    app_id: str,
    name: str,
    current: Audience | None,
    sequencer: str,
    failure: Failure,
) -> bool:
    """Record ``failure`` of the file ``sequencer`` and publish it; False when a newer file made it moot.

    A name with no counted record (new, or refused before) gets a failed record that does not count
    against the app's maximum; a counted one keeps its members and notes the failure (a new audience
    whose own first attempt failed gives its slot back).
    """
    if current is None or not current.counted:
        recorded = repository.record_refused_new(app_id, name, failure, sequencer, failure.at)
    else:
        recorded = repository.record_failure(app_id, name, failure, sequencer, failure.at)
    if recorded:
        tell_failure(repository, notifier, app_id, name, failure, sequencer)
    return recorded


def tell_failure(
    repository: AudienceRepository, notifier: Notifier, app_id: str, name: str, failure: Failure, sequencer: str
) -> None:
    """Publish a recorded failure, then mark it told: a crash between the two tells it again, never not at all."""
    notifier.failed(app_id, name, failure, sequencer)
    repository.mark_notified(app_id, name, sequencer, failure=True)


def untold_failure(audience: Audience, sequencer: str) -> Failure | None:
    """The failure recorded for the file ``sequencer`` that was never told (its notification threw)."""
    told = audience.failure_notified_sequencer
    if audience.failed_sequencer != sequencer or (told is not None and told >= sequencer):
        return None  # told already, or a newer file's failure was (the marker only moves forward)
    return audience.last_failure
