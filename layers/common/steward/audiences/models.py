"""Domain objects of imported audiences."""

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field

from steward.schema import Schema

# The contract's limits.
MAX_OBJECT_BYTES = 524_288_000
DEFAULT_MAX_AUDIENCES = 100
MAX_AUDIENCES_LIMIT = 10_000
MAX_CHECK_IDS = 1_000
MAX_NAME_CHARS = 200
IMPORTS_PREFIX = "imports/"
CSV_SUFFIX = ".csv"


class AudienceStatus(StrEnum):
    IMPORTING = "importing"  # the first file is being imported; no members yet
    READY = "ready"
    FAILED = "failed"  # no file was ever imported; see last_failure
    DELETED = "deleted"  # a tombstone: files with this name are refused


class Counts(Schema):
    """What the importer kept of a file (see the README for each field)."""

    model_config = ConfigDict(frozen=True)

    rows: int = 0
    invalid: int = 0
    valid: int = 0
    duplicates: int = 0
    unknown: int = 0
    members: int = 0


class InvalidLine(Schema):
    model_config = ConfigDict(frozen=True)

    line: int = Field(description="1-based line number in the file.")
    reason: str = Field(description="too_long, not_utf8, comma or quote.")
    text: str = Field(description="The start of the line, invalid bytes replaced.")


class Failure(Schema):
    model_config = ConfigDict(frozen=True)

    code: str = Field(
        description="file_too_large, audience_limit, audience_deleted, invalid_name, unreadable, import_error, "
        "timeout or import_failed (the function crashed, ran out of time or memory, and its retries did too)."
    )
    reason: str
    key: str = Field(description="The S3 key of the refused file.")
    at: datetime


class Layout(Schema):
    """Where a version's members are: buckets ``partitions * buckets_per_partition`` and the member list."""

    model_config = ConfigDict(frozen=True)

    version: str
    partitions: int
    buckets_per_partition: int
    members_key: str

    @property
    def bucket_total(self) -> int:
        return self.partitions * self.buckets_per_partition


class Audience(Schema):
    model_config = ConfigDict(frozen=True)

    name: str
    status: AudienceStatus
    version: str | None = Field(default=None, description="The member version readers see; changes on each import.")
    counts: Counts | None = None
    invalid_samples: list[InvalidLine] = Field(default_factory=list)
    source_key: str | None = Field(default=None, description="The S3 key of the imported file.")
    sequencer: str | None = Field(default=None, description="The S3 sequencer of the imported file's event.")
    import_started_at: datetime | None = None
    imported_at: datetime | None = None
    last_failure: Failure | None = None
    deleted_at: datetime | None = None
    refused_key: str | None = Field(default=None, description="The last file refused because of the tombstone.")
    refused_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    layout: Layout | None = Field(default=None, exclude=True)
    counted: bool = Field(default=False, exclude=True)
    attempt_sequencer: str | None = Field(default=None, exclude=True)
    attempt_request: str | None = Field(default=None, exclude=True)
    notified_sequencer: str | None = Field(default=None, exclude=True)
    failed_sequencer: str | None = Field(default=None, exclude=True)
    failure_notified_sequencer: str | None = Field(default=None, exclude=True)
    refused_sequencer: str | None = Field(default=None, exclude=True)
    refusal_notified_sequencer: str | None = Field(default=None, exclude=True)
    unremoved: dict[str, Layout] = Field(
        default_factory=dict,
        exclude=True,
        description="The versions flips replaced that are not removed yet, by the sequencer of the file that flipped.",
    )


class MembersCheck(Schema):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[str] = Field(min_length=1, max_length=MAX_CHECK_IDS)


class MembersCheckResult(Schema):
    members: list[str]
    not_members: list[str]


class Membership(Schema):
    audience: str
    user_id: str
    member: bool


class UploadUrl(Schema):
    url: str
    method: str = "PUT"
    key: str
    expires_at: datetime


class MemberPage(Schema):
    items: list[str]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page."
    )
