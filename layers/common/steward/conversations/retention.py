"""The retention rules as pure functions: effective settings per channel, and what a sweep does to a conversation.

- A conversation in open, pending, automated or sent moves to archive after
  ``archive_after_days[status]`` days without activity (null: never).
- One in archive, irrelevant or resolved moves to delete after
  ``delete_after_days[status]`` days without activity (null: never; 0: at once).
- One in delete is purged ``purge_after_days`` days after it entered delete
  (null: 30; 0: at once).
- A sweep moves a conversation one step, except through 0-day settings: a
  step that lands on a status whose next setting is 0 goes on in the same sweep.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from steward.conversations.models import (
    ARCHIVABLE,
    DEFAULT_PURGE_AFTER_DAYS,
    DELETABLE,
    ConversationStatus,
    EffectiveSettings,
    RetentionSettings,
)

PURGED = "purged"


def effective(settings: RetentionSettings, channel: str | None = None) -> EffectiveSettings:
    """The settings that apply to ``channel`` (the app's own when it has no overrides)."""
    archive = _named(settings.archive_after_days.items(), ARCHIVABLE)
    delete = _named(settings.delete_after_days.items(), DELETABLE)
    purge = settings.purge_after_days
    delete_user_data = settings.delete_user_data
    override = settings.channels.get(channel) if channel is not None else None
    if override is not None:
        archive.update(_named((override.archive_after_days or {}).items(), ()))
        delete.update(_named((override.delete_after_days or {}).items(), ()))
        if "purge_after_days" in override.model_fields_set:
            purge = override.purge_after_days
        if override.delete_user_data is not None:
            delete_user_data = override.delete_user_data
    return EffectiveSettings(
        archive_after_days=archive,
        delete_after_days=delete,
        purge_after_days=DEFAULT_PURGE_AFTER_DAYS if purge is None else purge,
        delete_user_data=delete_user_data,
    )


def _named(entries: Iterable[tuple[str, int | None]], statuses: Iterable[ConversationStatus]) -> dict[str, int | None]:
    """Days by status name: every status of ``statuses`` (null unless set), plus the entries given."""
    named: dict[str, int | None] = {status.value: None for status in statuses}
    named.update(entries)
    return named


def next_step(status: ConversationStatus) -> str:
    """Where a sweep moves a conversation on from ``status``."""
    if status in ARCHIVABLE:
        return ConversationStatus.ARCHIVE.value
    if status in DELETABLE:
        return ConversationStatus.DELETE.value
    return PURGED


def days_before_next_step(settings: EffectiveSettings, status: ConversationStatus) -> int | None:
    """Days that move a conversation on from ``status``; None: it stays."""
    if status in ARCHIVABLE:
        return settings.archive_after_days[status.value]
    if status in DELETABLE:
        return settings.delete_after_days[status.value]
    return settings.purge_after_days


def transition(source: str, target: str) -> str:
    """A transition's name in counts and reports, such as ``open->archive``."""
    return f"{source}->{target}"


@dataclass(frozen=True)
class Plan:
    """What a sweep does to one conversation: its steps, in order, and the status it ends in (or purged)."""

    steps: tuple[str, ...]
    final: str

    @property
    def purged(self) -> bool:
        return self.final == PURGED

    def until(self, target: str) -> "Plan | None":
        """This plan's steps up to the one that lands on ``target``; None when none does."""
        for index, step in enumerate(self.steps):
            if _target(step) == target:
                return Plan(self.steps[: index + 1], target)
        return None

    def within(self, other: "Plan | None") -> "Plan | None":
        """The steps this plan shares with ``other`` from the start (what both allow); None when none."""
        shared = 0
        while other is not None and shared < min(len(self.steps), len(other.steps)):
            if self.steps[shared] != other.steps[shared]:
                break
            shared += 1
        return Plan(self.steps[:shared], _target(self.steps[shared - 1])) if shared else None


def _target(step: str) -> str:
    return step.split("->", 1)[1]


def due(status: ConversationStatus, clock: datetime, settings: EffectiveSettings, now: datetime) -> Plan | None:
    """What a sweep at ``now`` does to a conversation in ``status`` aged since ``clock``; None when nothing is due.

    ``clock`` is its last activity, or for delete the time it entered delete.
    """
    days = days_before_next_step(settings, status)
    if days is None or now - clock < timedelta(days=days):
        return None
    steps = [transition(status.value, next_step(status))]
    current = next_step(status)
    while current != PURGED and days_before_next_step(settings, ConversationStatus(current)) == 0:
        target = next_step(ConversationStatus(current))
        steps.append(transition(current, target))
        current = target
    return Plan(tuple(steps), current)


def cutoff(settings: EffectiveSettings, status: ConversationStatus, now: datetime) -> datetime | None:
    """The latest aging clock at which a conversation in ``status`` under ``settings`` is due; None: never.

    The sweep reads each due-index group up to its own cutoff: the group of an
    overridden channel holds only that channel, the default group only channels
    without overrides, so every entry read is due (see selection.py for the
    exception while entries are re-homed).
    """
    days = days_before_next_step(settings, status)
    return None if days is None else now - timedelta(days=days)
