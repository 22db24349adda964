"""delete_profiles' rules: the cutoff, a profile's last interaction, and whether it is still to delete."""

from datetime import UTC, datetime

from steward.users.models import User

ACTIVE_SINCE_CUTOFF = "active_since_cutoff"


def inactivity_cutoff(now: datetime, months: int) -> datetime:
    """The start (00:00 UTC) of the month ``months`` months before ``now``'s month: any day in May, 4 -> 1 January."""
    if months < 1:
        raise ValueError("months must be at least 1")
    moment = now.astimezone(UTC)
    index = moment.year * 12 + (moment.month - 1) - months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def last_interaction(user: User) -> datetime:
    """The user's last activity; a user never active counts from its creation (a new profile is not inactive)."""
    return user.last_activity_at or user.created_at


def inactive_since(user: User, cutoff: datetime) -> bool:
    return last_interaction(user) < cutoff


def deletion_started(user: User) -> bool:
    """A deletion was decided on the user and started (``UserDeletion.delete_if`` marked it): it is to finish."""
    return user.deletion_started_at is not None


def to_delete(user: User, cutoff: datetime) -> bool:
    """Whether delete_profiles deletes the user: inactive since the cutoff, or its deletion already started.

    A started deletion may have deleted devices, released codes and left segments: it is never undone, so a run
    that meets it (selecting, rechecking a confirmed page) lists it as deleted whatever the user did since.
    """
    return deletion_started(user) or inactive_since(user, cutoff)
