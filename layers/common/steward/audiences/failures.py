"""Recording a failed import on the audience and telling the app: the importer's and the lost-import recorder's."""

from steward.audiences.models import Audience, Failure
from steward.audiences.ports import Notifier
from steward.audiences.repository import AudienceRepository, Recorded


def record_failed(
    repository: AudienceRepository,
    notifier: Notifier,
    app_id: str,
    name: str,
    current: Audience | None,
    sequencer: str,
    failure: Failure,
) -> bool:
    """Record ``failure`` of the file ``sequencer`` and publish it; False when a newer file's import made it moot.

    A name with no counted record (new, or refused before) gets a failed record that does not count
    against the app's maximum; a counted one keeps its members and notes the failure (a new audience
    whose own first attempt failed gives its slot back).
    """
    recorded: Recorded
    if current is None or not current.counted:
        new = repository.record_refused_new(app_id, name, failure, sequencer, failure.at)
        recorded = "recorded" if new else "moot"
    else:
        recorded = repository.record_failure(app_id, name, failure, sequencer, failure.at)
    return tell_recorded(repository, notifier, app_id, name, failure, sequencer, recorded)


def tell_recorded(
    repository: AudienceRepository,
    notifier: Notifier,
    app_id: str,
    name: str,
    failure: Failure,
    sequencer: str,
    recorded: Recorded,
) -> bool:
    """Tell a failure as ``record_failure`` left it; False when a newer file's import made it moot.

    A recorded failure is told until marked told. A superseded one (a newer file's failure stays on the
    audience) is still published once for its own key and sequencer, unmarked: the marker belongs to the
    recorded failure, which a retry must still be able to tell.
    """
    if recorded == "recorded":
        tell_failure(repository, notifier, app_id, name, failure, sequencer)
    elif recorded == "superseded":
        notifier.failed(app_id, name, failure, sequencer)
    return recorded != "moot"


def tell_failure(
    repository: AudienceRepository, notifier: Notifier, app_id: str, name: str, failure: Failure, sequencer: str
) -> None:
    """Publish a recorded failure, then mark it told: a crash between the two tells it again, never not at all."""
    notifier.failed(app_id, name, failure, sequencer)
    repository.mark_notified(app_id, name, sequencer, told="failure")


def untold_failure(audience: Audience, sequencer: str) -> Failure | None:
    """The failure recorded for the file ``sequencer`` that was never told (its notification threw)."""
    told = audience.failure_notified_sequencer
    if audience.failed_sequencer != sequencer or (told is not None and told >= sequencer):
        return None  # told already, or a newer file's failure was (the marker only moves forward)
    return audience.last_failure


def untold_refusal(audience: Audience, sequencer: str) -> Failure | None:
    """The tombstone's refusal of the file ``sequencer`` that was never told (its notification threw)."""
    told = audience.refusal_notified_sequencer
    if audience.refused_sequencer != sequencer or (told is not None and told >= sequencer):
        return None
    return audience.last_failure
