"""Domain objects of imported audiences."""

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field

from steward.schema import Schema
from steward.types import UserId

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

    rows: int = Field(default=0, description="Non-blank lines, not counting a header line.")
    invalid: int = Field(
        default=0,
        description="Rows that break the format rules: longer than 256 bytes, not valid UTF-8, or holding a comma "
        "or a quote.",
    )
    valid: int = Field(default=0, description="Rows minus invalid.")
    duplicates: int = Field(default=0, description="Valid rows whose id came earlier in the file.")
    unknown: int = Field(default=0, description="Distinct valid ids that are not registered users of the app.")
    members: int = Field(default=0, description="Distinct valid ids that are registered users: the members.")


class InvalidLine(Schema):
    model_config = ConfigDict(frozen=True)

    line: int = Field(description="1-based line number in the file.")
    reason: str = Field(description="too_long, not_utf8, comma or quote.")
    text: str = Field(description="The start of the line, invalid bytes replaced.")


class Failure(Schema):
    model_config = ConfigDict(frozen=True)

    code: str = Field(
        description="file_too_large, audience_limit, audience_deleted, invalid_name, unreadable, import_error, "
        "timeout, contended or import_failed (the function crashed, ran out of time or memory, and its retries "
        "did too)."
    )
    reason: str = Field(description="What went wrong, in words.")
    key: str = Field(description="The S3 key of the refused file.")
    at: datetime = Field(description="When the failure was recorded.")


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

    name: str = Field(description="The file name without `.csv`.")
    status: AudienceStatus = Field(
        description="`importing` (the first file is being imported), `ready`, `failed` (no file was ever imported: "
        "see `last_failure`) or `deleted` (a tombstone: files with this name are refused)."
    )
    version: str | None = Field(default=None, description="The member version readers see; changes on each import.")
    counts: Counts | None = Field(default=None, description="What the import of the current version kept.")
    invalid_samples: list[InvalidLine] = Field(
        default_factory=list, description="The first five invalid lines of the imported file."
    )
    source_key: str | None = Field(default=None, description="The S3 key of the imported file.")
    sequencer: str | None = Field(default=None, description="The S3 sequencer of the imported file's event.")
    import_started_at: datetime | None = Field(
        default=None, description="When the latest import began: the one running, or the last one (imported or failed)."
    )
    imported_at: datetime | None = Field(default=None, description="When the current version was imported.")
    last_failure: Failure | None = Field(
        default=None, description="The last failed import or refused file; the current version stays."
    )
    deleted_at: datetime | None = Field(default=None, description="When the audience was deleted (status `deleted`).")
    refused_key: str | None = Field(default=None, description="The last file refused because of the tombstone.")
    refused_at: datetime | None = Field(
        default=None, description="When the last file refused because of the tombstone was refused."
    )
    created_at: datetime = Field(description="When the first file with this name arrived.")
    updated_at: datetime = Field(description="When the record last changed.")
    layout: Layout | None = Field(default=None, exclude=True)
    counted: bool = Field(default=False, exclude=True)
    attempt_sequencer: str | None = Field(default=None, exclude=True)
    attempt_request: str | None = Field(default=None, exclude=True)
    notified_sequencer: str | None = Field(default=None, exclude=True)
    failed_sequencer: str | None = Field(default=None, exclude=True)
    failure_notified_sequencer: str | None = Field(default=None, exclude=True)
    refused_sequencer: str | None = Field(default=None, exclude=True)
    refusal_notified_sequencer: str | None = Field(default=None, exclude=True)
    removing: Layout | None = Field(
        default=None, exclude=True, description="A tombstone's removed version, until the importer removed it."
    )
    unremoved: dict[str, Layout] = Field(
        default_factory=dict,
        exclude=True,
        description="The versions flips replaced that are not removed yet, by the sequencer of the file that flipped.",
    )


class MembersCheck(Schema):
    model_config = ConfigDict(extra="forbid")

    # Each id as the point lookup takes it (at most 256 characters): the answer repeats them all, and must stay
    # below Lambda's 6 MB.
    user_ids: list[UserId] = Field(
        min_length=1,
        max_length=MAX_CHECK_IDS,
        description="1-1,000 user ids, each 1-256 characters without control characters (any other: 422).",
    )


class MembersCheckResult(Schema):
    members: list[str] = Field(description="The ids sent that are members, in the order sent.")
    not_members: list[str] = Field(description="The ids sent that are not members, in the order sent.")


class Membership(Schema):
    audience: str = Field(description="The audience name.")
    user_id: str = Field(description="The user id asked about.")
    member: bool = Field(description="Always true: a user who is not a member answers 404 `not_a_member`.")


class UploadUrl(Schema):
    url: str = Field(description="The presigned URL: PUT the file's bytes to it.")
    method: str = Field(default="PUT", description="Always `PUT`.")
    key: str = Field(description="The S3 key the URL writes: `imports/<app_id>/<name>.csv`.")
    expires_at: datetime = Field(description="When the URL stops working: 15 minutes after it was issued.")


class MemberPage(Schema):
    items: list[str] = Field(description="Member user ids.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page."
    )
