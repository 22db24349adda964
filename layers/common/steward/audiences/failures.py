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
        notifier.failed(app_id, name, failure, sequencer)
    return recorded
