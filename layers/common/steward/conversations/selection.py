"""What a sweep would do in one shard of an app: the due conversations and their plans, a page at a time.

The sweep (steward/usecases/retention_sweep.py) applies what this selects;
the preview counts it. Both walk the due index the same way, so a preview
followed by a sweep with no activity in between gives the same counts.
"""

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from steward.conversations import retention
from steward.conversations.models import ConversationStatus, EffectiveSettings, RetentionSettings
from steward.conversations.repository import ConversationRepository, DueEntry
from steward.conversations.retention_repository import DueLayout
from steward.pagination import invalid_cursor
from steward.tables import DEFAULT_DUE_GROUP, due_group

# Statuses in the order a shard is swept: each one's targets first, so that a conversation
# moved in this sweep is never met again in its new status (one step per sweep).
SWEEP_ORDER = (
    ConversationStatus.DELETE,
    ConversationStatus.RESOLVED,
    ConversationStatus.IRRELEVANT,
    ConversationStatus.ARCHIVE,
    ConversationStatus.SENT,
    ConversationStatus.AUTOMATED,
    ConversationStatus.PENDING,
    ConversationStatus.OPEN,
)


# Queries one page makes at most: every status of every group is at least one (up to 101 groups, 808
# queries a shard, with 100 overridden channels), well inside a step's time at 400.
PAGE_QUERIES = 400


@dataclass(frozen=True)
class Decision:
    """What to do with one entry: its plan's steps, or none to re-home it; ``group`` is its channel's now."""

    entry: DueEntry
    plan: retention.Plan
    delete_user_data: bool
    group: str

    @property
    def rehome(self) -> bool:
        return not self.plan.steps

    def as_json(self) -> dict[str, Any]:
        """What a held page records, so that a retried step applies exactly this decision again."""
        entry = self.entry
        return {
            "conversation_id": entry.conversation_id,
            "status": entry.status.value,
            "channel": entry.channel,
            "user_id": entry.user_id,
            "clock": entry.clock.isoformat(),
            "due_sk": entry.due_sk,
            "version": entry.version,
            "from_group": entry.group,
            "steps": list(self.plan.steps),
            "final": self.plan.final,
            "delete_user_data": self.delete_user_data,
            "group": self.group,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Decision":
        entry = DueEntry(
            conversation_id=data["conversation_id"],
            status=ConversationStatus(data["status"]),
            channel=data["channel"],
            user_id=data["user_id"],
            clock=datetime.fromisoformat(data["clock"]),
            due_sk=data["due_sk"],
            version=int(data["version"]),
            group=data["from_group"],
        )
        plan = retention.Plan(tuple(data["steps"]), data["final"])
        return cls(entry, plan, bool(data["delete_user_data"]), data["group"])


@dataclass(frozen=True)
class ShardPosition:
    """Where a shard's walk resumes: the status (its index in SWEEP_ORDER), the group and the last due key read."""

    status_index: int = 0
    group: str = ""
    after: str | None = None

    def as_fields(self) -> dict[str, Any]:
        return {"status_index": self.status_index, "group": self.group, "after": self.after}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> "ShardPosition":
        index, group, after = fields.get("status_index"), fields.get("group", ""), fields.get("after")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(SWEEP_ORDER):
            raise invalid_cursor()
        if not isinstance(group, str) or (after is not None and not isinstance(after, str)):
            raise invalid_cursor()
        return cls(index, group, after)


@dataclass(frozen=True)
class DuePage:
    decisions: list[Decision]
    read: int  # index entries read
    next: ShardPosition | None  # None: the shard is done
    queries: int = 0


def due_page(
    conversations: ConversationRepository,
    app_id: str,
    settings: RetentionSettings,
    layout: DueLayout,
    shard: int,
    now: datetime,
    start: ShardPosition,
    max_read: int,
    max_queries: int = PAGE_QUERIES,
) -> DuePage:
    """The decisions among the next ``max_read`` due-index entries of ``shard`` from ``start``, in at most
    ``max_queries`` queries (each group costs one per status at least, however little it holds).

    Statuses in SWEEP_ORDER, and in each the groups (``_`` and every channel
    ever overridden). Each group is read up to its own cutoff, so a group where
    nothing is due costs one empty query, and every entry read is due; a status
    whose setting is null for a group is not read in it. While the set of
    overridden channels has changed since the last complete sweep
    (``layout.rehoming``), ``_`` and the groups of channels no longer
    overridden are read whole, and each entry not in its channel's group is
    re-homed there (or moved there, if due), so no entry waits in a group
    whose cutoff is not its own.
    """
    overridden = frozenset(settings.channels)
    channel_of = {due_group(channel): channel for channel in layout.channels | overridden}
    walk = [(index, group) for index in range(len(SWEEP_ORDER)) for group in sorted({DEFAULT_DUE_GROUP, *channel_of})]
    decisions: list[Decision] = []
    read = queries = 0
    effective_by_channel: dict[str | None, EffectiveSettings] = {}

    def effective_of(channel: str | None) -> EffectiveSettings:
        key = channel if channel in overridden else None
        if key not in effective_by_channel:
            effective_by_channel[key] = retention.effective(settings, key)
        return effective_by_channel[key]

    after = start.after
    for index, group in (step for step in walk if step >= (start.status_index, start.group)):
        if (index, group) != (start.status_index, start.group):
            after = None
        status = SWEEP_ORDER[index]
        channel = channel_of.get(group)
        whole = layout.rehoming and (channel is None or channel not in overridden)
        cutoff = None if whole else retention.cutoff(effective_of(channel), status, now)
        if cutoff is None and not whole:
            continue
        while True:
            if read >= max_read or queries >= max_queries:
                return DuePage(decisions, read, ShardPosition(index, group, after), queries)
            entries, resume = conversations.due_entries(app_id, group, status, shard, cutoff, after, max_read - read)
            read, queries = read + len(entries), queries + 1
            for entry in entries:
                decision = _decide(entry, effective_of(entry.channel), overridden, now)
                if decision is not None:
                    decisions.append(decision)
            if resume is None:
                break
            after = resume
    return DuePage(decisions, read, None, queries)


def recheck(decision: Decision, settings: RetentionSettings | None, now: datetime) -> Decision | None:
    """What the settings now still allow of a held decision; None when nothing.

    A held page may be re-applied after the settings changed: its steps are cut to those the current
    settings also take (a cutoff that became null or longer drops them), ``delete_user_data`` holds only
    if both say so, and the group is the channel's under the current overrides.
    """
    if settings is None:
        return None
    entry = decision.entry
    channel = _overridden(entry.channel, settings)
    group = due_group(channel)
    if decision.rehome:
        return None if group == entry.group else replace(decision, group=group)
    plan = decision.plan.within(retention.due(entry.status, entry.clock, retention.effective(settings, channel), now))
    if plan is None:
        return None
    return Decision(entry, plan, deletes_user_data(decision, settings), group)


def deletes_user_data(decision: Decision, settings: RetentionSettings | None) -> bool:
    """Whether a purge of a held decision deletes its user's data: only if both it and the settings now say so.

    Whether or not the settings still allow the purge: a re-applied page may find it made by its first
    attempt, and its user must then be checked as if the purge were made now.
    """
    if settings is None or not decision.delete_user_data:
        return False
    return retention.effective(settings, _overridden(decision.entry.channel, settings)).delete_user_data


def _overridden(channel: str, settings: RetentionSettings) -> str | None:
    """The channel whose overrides apply to a conversation of ``channel``: itself if it has any, else None."""
    return channel if channel in settings.channels else None


def _decide(
    entry: DueEntry, effective: EffectiveSettings, overridden: frozenset[str], now: datetime
) -> Decision | None:
    group = due_group(entry.channel if entry.channel in overridden else None)
    plan = retention.due(entry.status, entry.clock, effective, now)
    if plan is not None:
        return Decision(entry, plan, effective.delete_user_data, group)
    if entry.group != group:
        return Decision(entry, retention.Plan((), entry.status.value), effective.delete_user_data, group)
    return None
