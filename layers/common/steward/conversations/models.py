"""Domain objects and input shapes for conversations."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)

from steward.schema import Schema
from steward.types import UserId, no_control_characters

MAX_CHANNEL_CHARS = 64
MAX_SUBJECT_CHARS = 1024
CONVERSATION_ID_PATTERN = r"^cnv_[0-9a-f]{32}$"


class ConversationStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"
    AUTOMATED = "automated"
    SENT = "sent"
    ARCHIVE = "archive"
    IRRELEVANT = "irrelevant"
    RESOLVED = "resolved"
    DELETE = "delete"


# Which setting moves a conversation on from each status (see retention.py).
ARCHIVABLE = (
    ConversationStatus.OPEN,
    ConversationStatus.PENDING,
    ConversationStatus.AUTOMATED,
    ConversationStatus.SENT,
)
DELETABLE = (ConversationStatus.ARCHIVE, ConversationStatus.IRRELEVANT, ConversationStatus.RESOLVED)

ChannelName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_CHANNEL_CHARS),
    AfterValidator(no_control_characters),
]
Subject = Annotated[str, StringConstraints(max_length=MAX_SUBJECT_CHARS), AfterValidator(no_control_characters)]


class Conversation(Schema):
    model_config = ConfigDict(frozen=True)

    conversation_id: str = Field(description="`cnv_` followed by 32 hex digits.")
    channel: str = Field(description="Free text, such as email, sms, whatsapp, chat or push.")
    status: ConversationStatus
    user_id: str | None
    subject: str | None
    created_at: datetime
    last_activity_at: datetime = Field(description="Last message in or out, or status change by hand.")
    status_changed_at: datetime


class CreateConversation(Schema):
    """`created_at`, `last_activity_at` and `status_changed_at` import existing history."""

    model_config = ConfigDict(extra="forbid")

    channel: ChannelName
    status: ConversationStatus = ConversationStatus.OPEN
    user_id: UserId | None = None
    subject: Subject | None = None
    created_at: AwareDatetime | None = Field(default=None, description="Not in the future. Default: now.")
    last_activity_at: AwareDatetime | None = Field(
        default=None, description="Not in the future nor before `created_at`. Default: `created_at`."
    )
    status_changed_at: AwareDatetime | None = Field(
        default=None, description="Not in the future nor before `created_at`. Default: `created_at`."
    )


class RecordActivity(Schema):
    model_config = ConfigDict(extra="forbid")

    direction: Literal["inbound", "outbound"] = Field(description="A message in or out.")


class ChangeStatus(Schema):
    model_config = ConfigDict(extra="forbid")

    status: ConversationStatus


class ConversationFilter(Schema):
    model_config = ConfigDict(frozen=True)

    status: ConversationStatus | None = None
    channel: str | None = None
    user_id: str | None = None


# Retention settings (see retention.py for what they mean).

MAX_DAYS = 36_500
DEFAULT_PURGE_AFTER_DAYS = 30
MAX_OVERRIDDEN_CHANNELS = 100

Days = Annotated[int, Field(strict=True, ge=0, le=MAX_DAYS)]
ArchivableStatus = Literal["open", "pending", "automated", "sent"]
DeletableStatus = Literal["archive", "irrelevant", "resolved"]


class ChannelOverride(Schema):
    """One channel's settings, key by key: a key left out keeps the app's value, an explicit null overrides it."""

    model_config = ConfigDict(extra="forbid")

    archive_after_days: dict[ArchivableStatus, Days | None] | None = None
    delete_after_days: dict[DeletableStatus, Days | None] | None = None
    purge_after_days: Days | None = Field(default=None, description="Left out: the app's value; null: 30.")
    delete_user_data: bool | None = Field(default=None, description="Left out or null: the app's value.")

    @model_serializer(mode="wrap")
    def _only_what_was_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A key left out and a key set to null mean different things: only the keys sent are kept.
        document: dict[str, Any] = handler(self)
        return {key: value for key, value in document.items() if key in self.model_fields_set}


class RetentionSettings(Schema):
    """An app's retention settings. In the app's maps a status left out is null."""

    model_config = ConfigDict(extra="forbid")

    archive_after_days: dict[ArchivableStatus, Days | None] = Field(
        default_factory=dict, description="Days without activity before open, pending, automated, sent -> archive."
    )
    delete_after_days: dict[DeletableStatus, Days | None] = Field(
        default_factory=dict, description="Days without activity before archive, irrelevant, resolved -> delete."
    )
    purge_after_days: Days | None = Field(default=None, description="Days in delete before purge; null means 30.")
    delete_user_data: bool = Field(default=False, description="A purge also deletes the user, unless it has others.")
    channels: dict[ChannelName, ChannelOverride] = Field(
        default_factory=dict, max_length=MAX_OVERRIDDEN_CHANNELS, description="Per-channel overrides, key by key."
    )

    def stored(self) -> dict[str, Any]:
        """The document as stored: a channel keeps only the keys it set (an explicit null included)."""
        return self.model_dump(mode="json")


class EffectiveSettings(Schema):
    """What applies to a conversation of one channel: every status named, the purge default applied."""

    model_config = ConfigDict(frozen=True)

    archive_after_days: dict[str, int | None]
    delete_after_days: dict[str, int | None]
    purge_after_days: int
    delete_user_data: bool


class RetentionSettingsView(Schema):
    settings: RetentionSettings | None = Field(description="As stored; null when the app has none.")
    effective: EffectiveSettings | None = Field(description="What applies to channels without overrides.")
    channels: dict[str, EffectiveSettings] = Field(description="What applies to each channel that has overrides.")


# Sweeps: their summaries, and the preview of one.

MAX_USER_SAMPLE = 100
MAX_PREVIEW_SAMPLE = 20
RUN_ID_PATTERN = r"^ret_[0-9]{14}_[0-9a-f]{12}$"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class SweepCounts(Schema):
    counts: dict[str, int] = Field(default_factory=dict, description='By transition, e.g. {"open->archive": 2}.')
    by_channel: dict[str, dict[str, int]] = Field(default_factory=dict, description="The same counts per channel.")

    def count(self, channel: str, steps: tuple[str, ...]) -> None:
        per_channel = self.by_channel.setdefault(channel, {})
        for step in steps:
            self.counts[step] = self.counts.get(step, 0) + 1
            per_channel[step] = per_channel.get(step, 0) + 1

    def add(self, other: "SweepCounts") -> None:
        for channel, counts in other.by_channel.items():
            per_channel = self.by_channel.setdefault(channel, {})
            for step, number in counts.items():
                per_channel[step] = per_channel.get(step, 0) + number
        for step, number in other.counts.items():
            self.counts[step] = self.counts.get(step, 0) + number


class RunSummary(SweepCounts):
    users_deleted: int = 0
    users_kept: int = Field(default=0, description="Users of purged conversations kept for their other conversations.")
    users_deleted_sample: list[str] = Field(default_factory=list, description=f"Up to {MAX_USER_SAMPLE} ids.")
    users_kept_sample: list[str] = Field(default_factory=list, description=f"Up to {MAX_USER_SAMPLE} ids.")

    def user_deleted(self, user_id: str) -> None:
        self.users_deleted += 1
        if len(self.users_deleted_sample) < MAX_USER_SAMPLE:
            self.users_deleted_sample.append(user_id)

    def user_kept(self, user_id: str) -> None:
        self.users_kept += 1
        if len(self.users_kept_sample) < MAX_USER_SAMPLE:
            self.users_kept_sample.append(user_id)


class RetentionRun(RunSummary):
    run_id: str
    status: RunStatus
    started_at: datetime = Field(description="The sweep's 'now': every rule compares with this instant.")
    finished_at: datetime | None
    error: str | None = None


class RetentionPreview(SweepCounts):
    sample: dict[str, list[str]] = Field(
        default_factory=dict, description=f"Up to {MAX_PREVIEW_SAMPLE} conversation ids per transition."
    )
    complete: bool = Field(
        default=True,
        description="False when the preview stopped at its read budget: the counts are of what it read.",
    )
    read: int = Field(default=0, description="Due-index entries read.")
