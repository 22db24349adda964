"""What a sweep would do in one shard of an app: the due conversations and their plans, a page at a time.

The sweep (steward/usecases/retention_sweep.py) applies what this selects;
the preview counts it. Both walk the due index the same way, so a preview
followed by a sweep with no activity in between gives the same counts.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from steward.conversations import retention
from steward.conversations.models import ConversationStatus, EffectiveSettings, RetentionSettings
from steward.conversations.repository import ConversationRepository, DueEntry
from steward.pagination import invalid_cursor

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


@dataclass(frozen=True)
class Decision:
    entry: DueEntry
    plan: retention.Plan
    delete_user_data: bool

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
            "steps": list(self.plan.steps),
            "final": self.plan.final,
            "delete_user_data": self.delete_user_data,
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
        )
        return cls(entry, retention.Plan(tuple(data["steps"]), data["final"]), bool(data["delete_user_data"]))


@dataclass(frozen=True)
class ShardPosition:
    """Where a shard's walk resumes: the status (its index in SWEEP_ORDER) and the last due key read."""

    status_index: int = 0
    after: str | None = None

    def as_fields(self) -> dict[str, Any]:
        return {"status_index": self.status_index, "after": self.after}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> "ShardPosition":
        index, after = fields.get("status_index"), fields.get("after")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(SWEEP_ORDER):
            raise invalid_cursor()
        if after is not None and not isinstance(after, str):
            raise invalid_cursor()
        return cls(index, after)


@dataclass(frozen=True)
class DuePage:
    decisions: list[Decision]
    read: int  # index entries read
    next: ShardPosition | None  # None: the shard is done


def due_page(
    conversations: ConversationRepository,
    app_id: str,
    settings: RetentionSettings,
    shard: int,
    now: datetime,
    start: ShardPosition,
    max_read: int,
) -> DuePage:
    """The decisions among the next ``max_read`` due-index entries of ``shard`` from ``start``.

    A status whose settings can make nothing due (null for the app and every
    channel) is not read at all; otherwise its partition is read only up to
    the earliest cutoff over the channels, so a shard where nothing is due
    costs one empty query per status.
    """
    decisions: list[Decision] = []
    read = 0
    index, after = start.status_index, start.after
    effective_by_channel: dict[str, EffectiveSettings] = {}
    while index < len(SWEEP_ORDER):
        status = SWEEP_ORDER[index]
        cutoff = retention.cutoff(settings, status, now)
        if cutoff is None:
            index, after = index + 1, None
            continue
        entries, resume = conversations.due_entries(app_id, status, shard, cutoff, after, max_read - read)
        read += len(entries)
        for entry in entries:
            effective = effective_by_channel.get(entry.channel)
            if effective is None:
                effective = effective_by_channel[entry.channel] = retention.effective(settings, entry.channel)
            plan = retention.due(status, entry.clock, effective, now)
            if plan is not None:
                decisions.append(Decision(entry, plan, effective.delete_user_data))
        if resume is None:
            index, after = index + 1, None
        else:
            after = resume
        if read >= max_read and index < len(SWEEP_ORDER):
            return DuePage(decisions, read, ShardPosition(index, after))
    return DuePage(decisions, read, None)
