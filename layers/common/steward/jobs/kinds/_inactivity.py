"""delete_profiles' rules: the cutoff, a profile's last interaction, and whether it is still inactive."""

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
