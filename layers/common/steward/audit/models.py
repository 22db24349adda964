"""Domain objects of the audit log: what the jobs engine records, and the entries as stored and served."""

from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StrictInt, StringConstraints

from steward.apps.tokens import KEY_ID_PATTERN
from steward.schema import Schema

# An entry's id is its position in the app's log, zero-padded so that ids sort as numbers do.
SEQUENCE_DIGITS = 12
ENTRY_ID_PATTERN = rf"^[0-9]{{{SEQUENCE_DIGITS}}}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
JOB_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
COUNT_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# `at` is always written in this one form (UTC, microseconds), so it hashes the same everywhere.
AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
AT_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"
MAX_COUNTS = 50
MAX_COUNT = 2**53 - 1
# Criteria alone may take 64 KB; an entry stays far below DynamoDB's 400 KB item limit.
MAX_PARAMS_BYTES = 96 * 1024
# Every field of an entry, in the order the API shows them. `hash` covers all the others.
ENTRY_FIELDS = (
    "entry_id",
    "at",
    "key_id",
    "job_id",
    "type",
    "params",
    "reauth",
    "status",
    "counts",
    "report_sha256",
    "prev_hash",
    "hash",
)

Sha256 = Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]
CountName = Annotated[str, StringConstraints(pattern=COUNT_NAME_PATTERN)]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]


class ReauthMethod(StrEnum):
    """How the caller re-authenticated before the job ran (dry runs need none)."""

    NONE = "none"
    PASSWORD = "password"  # noqa: S105 (a method's name, not a secret)
    PASSWORD_TOTP = "password+totp"  # noqa: S105


class JobStatus(StrEnum):
    """How a job ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class JobAudit(Schema):
    """What the jobs engine records when a job finishes, dry or real (see AuditLog.append)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(pattern=KEY_ID_PATTERN.pattern, description="The API key that started the job.")
    job_id: str = Field(pattern=JOB_ID_PATTERN, description="The job; an app's log holds one entry per job.")
    type: str = Field(pattern=JOB_TYPE_PATTERN, description="The job type, e.g. `delete_inactive_devices`.")
    params: dict[str, Any] = Field(description="The job's parameters as sent, `dry_run` included.")
    reauth: ReauthMethod
    status: JobStatus
    counts: dict[CountName, Count] = Field(
        max_length=MAX_COUNTS, description='What the job counted, e.g. `{"selected": 120, "deleted": 118}`.'
    )
    report_sha256: Sha256 | None = Field(description="SHA-256 (hex) of the job's report; null when it wrote none.")


class AuditEntry(Schema):
    """One entry of an app's audit log, exactly as its hash covers it."""

    model_config = ConfigDict(frozen=True)

    entry_id: str = Field(
        pattern=ENTRY_ID_PATTERN,
        description=f"The entry's position in the app's log, from 1, zero-padded to {SEQUENCE_DIGITS} digits.",
    )
    at: str = Field(pattern=AT_PATTERN, description="When the entry was appended: UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.")
    key_id: str = Field(description="The API key that started the job.")
    job_id: str = Field(description="The job.")
    type: str = Field(description="The job type.")
    params: dict[str, Any] = Field(description="The job's parameters, `dry_run` included.")
    reauth: ReauthMethod = Field(description="How the caller re-authenticated: `none`, `password` or `password+totp`.")
    status: JobStatus = Field(description="How the job ended.")
    counts: dict[str, int] = Field(description="What the job counted.")
    report_sha256: str | None = Field(description="SHA-256 (hex) of the job's report; null when it wrote none.")
    prev_hash: str | None = Field(description="`hash` of the app's previous entry; null for the app's first entry.")
    hash: str = Field(
        description=(
            "SHA-256 (hex) of the entry's canonical JSON (RFC 8785) without `hash`; see the README's Audit log."
        )
    )


class ChainProblem(StrEnum):
    UNREADABLE = "unreadable"  # an entry lacks a field, has an extra one, or holds a value of the wrong type
    SEQUENCE_GAP = "sequence_gap"  # an entry is missing before this one (or was inserted)
    PREV_HASH_MISMATCH = "prev_hash_mismatch"  # prev_hash is not the previous entry's hash
    HASH_MISMATCH = "hash_mismatch"  # the entry's content is not what its hash covers
    HEAD_MISMATCH = "head_mismatch"  # the log's head names another last entry (entries removed from the end)


class ChainBreak(Schema):
    model_config = ConfigDict(frozen=True)

    entry_id: str | None = Field(description="The first entry whose link is broken; null for a head mismatch.")
    problem: ChainProblem
    message: str


class ChainVerification(Schema):
    """What re-walking an app's chain found: every link checked from the first entry."""

    model_config = ConfigDict(frozen=True)

    app_id: str
    entries: int = Field(description="Entries checked, up to the first broken link.")
    last_hash: str | None = Field(description="`hash` of the last entry checked that was intact.")
    broken: ChainBreak | None = Field(description="The first broken link; null when the chain is intact.")

    @property
    def intact(self) -> bool:
        return self.broken is None


class AuditHead(Schema):
    """The last entry of an app's log: its position and hash."""

    model_config = ConfigDict(frozen=True)

    sequence: int
    hash: str
