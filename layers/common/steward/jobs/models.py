"""Maintenance jobs as the API takes and shows them: the submission bodies, the job, its counts and estimate.

The admin credentials of a real run are accepted in the bodies only to be
checked (``steward.apps.reauth``): they are left out of ``repr()`` and of
every dump, and a validation error never quotes them.
"""

from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeFloat,
    NonNegativeInt,
    StrictBool,
    StringConstraints,
    field_validator,
)

from steward.schema import Schema

JOB_ID_PREFIX = "job_"
# Fits the audit log's job id (``^[A-Za-z0-9_-]{1,64}$``), which records every job.
JOB_ID_PATTERN = r"^job_[0-9a-f]{32}$"
MAX_PASSWORD_CHARS = 1024  # as long as any real password; keeps scrypt's input small
TOTP_CODE_PATTERN = r"^[0-9]{6}$"
ERROR_CODE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_ERROR_MESSAGE_CHARS = 1024
# The key of a job state that the job shows as `cutoff` (bulk_update delete_profiles).
CUTOFF_STATE = "cutoff"
# Estimates are rounded up to 1/100 of a cent: never below what the run would cost,
# and still not zero for a job that costs a fraction of a cent.
USD_QUANTUM = Decimal("0.0001")


class JobType(StrEnum):
    SPLIT_AUDIENCE = "split_audience"
    REACTIVATE_DEVICES = "reactivate_devices"
    DEACTIVATE_USERS = "deactivate_users"
    DELETE_EMPTY_SEGMENTS = "delete_empty_segments"
    DELETE_SEGMENTS = "delete_segments"
    DELETE_EMPTY_TAGS = "delete_empty_tags"
    DELETE_TAGS = "delete_tags"
    DELETE_REGIONS = "delete_regions"
    BULK_UPDATE = "bulk_update"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
# No minimum: an empty password is a missing one, which re-authentication answers with 428.
AdminPassword = Annotated[str, StringConstraints(max_length=MAX_PASSWORD_CHARS)]
# A string, so that a leading zero survives; exactly six digits.
TotpCode = Annotated[str, StringConstraints(pattern=TOTP_CODE_PATTERN)]


def _password_field() -> Any:
    return Field(
        default=None,
        repr=False,
        exclude=True,
        description=(
            f"The app's admin password (at most {MAX_PASSWORD_CHARS} characters), required for a real run. "
            "Never stored, logged or returned."
        ),
    )


def _totp_field() -> Any:
    return Field(
        default=None,
        repr=False,
        exclude=True,
        description="A current 6-digit code, required for a real run when the app has TOTP. Never stored or returned.",
    )


# hide_input_in_errors: a ValidationError's text would otherwise quote the refused value.
_BODY_CONFIG = ConfigDict(extra="forbid", hide_input_in_errors=True)


class SubmitJob(Schema):
    """Body of POST /v1/jobs."""

    model_config = _BODY_CONFIG

    type: JobType = Field(description="The job to run.")
    params: dict[str, JsonValue] = Field(
        default_factory=dict, description="The type's parameters; see the README's 'Maintenance jobs: parameters'."
    )
    dry_run: StrictBool = Field(
        default=True,
        description="Count and report what a real run would change, without changing anything (the default).",
    )
    admin_password: AdminPassword | None = _password_field()
    totp_code: TotpCode | None = _totp_field()


class ConfirmJob(Schema):
    """Body of POST /v1/jobs/{job_id}/confirm: run for real what a dry run counted."""

    model_config = _BODY_CONFIG

    admin_password: AdminPassword | None = _password_field()
    totp_code: TotpCode | None = _totp_field()


class JobCounts(Schema):
    model_config = ConfigDict(frozen=True)

    scanned: NonNegativeInt = Field(default=0, description="Items read.")
    matched: NonNegativeInt = Field(default=0, description="Items the job selected.")
    changed: NonNegativeInt = Field(default=0, description="Items changed (a dry run: would change).")
    skipped: NonNegativeInt = Field(default=0, description="Selected items left alone (already in the target state).")
    failed: NonNegativeInt = Field(default=0, description="Selected items that could not be changed.")


class JobEstimate(Schema):
    """What a real run would cost, from a dry run's counts."""

    model_config = ConfigDict(frozen=True)

    read_units: NonNegativeFloat = Field(description="DynamoDB read units (eventually consistent reads count half).")
    write_units: NonNegativeFloat = Field(description="DynamoDB write units.")
    state_transitions: NonNegativeInt = Field(description="Step Functions state transitions.")
    lambda_gb_seconds: NonNegativeFloat = Field(description="Lambda compute, in GB-seconds.")
    s3_gets: NonNegativeInt = Field(
        default=0, description="S3 GETs: the job's own pages, and the data it reads (an audience's member list)."
    )
    events: NonNegativeInt = Field(default=0, description="Trigger events the real run would publish.")
    put_events_calls: NonNegativeInt = Field(default=0, description="The PutEvents calls that carry them (10 a call).")
    usd: Decimal = Field(
        ge=0,
        description="The total in US dollars at on-demand prices, rounded up to 0.0001; a string in JSON, exact.",
    )

    @field_validator("usd")
    @classmethod
    def _round_up(cls, usd: Decimal) -> Decimal:
        return usd.quantize(USD_QUANTUM, rounding=ROUND_CEILING)


class JobError(Schema):
    model_config = ConfigDict(frozen=True)

    code: Annotated[str, StringConstraints(pattern=ERROR_CODE_PATTERN)] = Field(description="Stable, e.g. `timed_out`.")
    message: Annotated[str, StringConstraints(max_length=MAX_ERROR_MESSAGE_CHARS)]


class Job(Schema):
    """A job as the API returns it."""

    model_config = ConfigDict(frozen=True)

    job_id: JobId = Field(description=f"Server-generated: `{JOB_ID_PREFIX}` followed by 32 hex digits.")
    type: JobType
    params: dict[str, JsonValue] = Field(description="The validated parameters, defaults filled in.")
    dry_run: bool
    status: JobStatus
    counts: JobCounts = Field(default_factory=JobCounts)
    created_at: AwareDatetime
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    error: JobError | None = Field(default=None, description="Why the job failed; null otherwise.")
    estimate: JobEstimate | None = Field(default=None, description="Dry runs: what a real run would cost.")
    confirms: JobId | None = Field(default=None, description="For a confirmed real run: the dry run it applies.")
    cutoff: AwareDatetime | None = Field(
        default=None,
        description="bulk_update delete_profiles, once planned: profiles with an interaction at or after this "
        "moment (UTC) are kept.",
    )


class JobRecord(Job):
    """A job as the engine keeps it: what the API shows, plus what stays internal."""

    app_id: str
    key_id: str = Field(description="The API key that submitted the job (the audit log records it).")
    reauth: str = Field(default="none", description="How a real run was re-authenticated (the audit log records it).")
    report_key: str | None = Field(default=None, description="The report's S3 key; the API serves the report itself.")
    report_sha256: str | None = None
    execution_arn: str | None = None
    confirmed_by: str | None = Field(default=None, description="A dry run: the real run that confirmed it.")
    phase: int = 0
    phases: int = 1
    state: dict[str, Any] = Field(default_factory=dict, description="The job type's own state between steps.")
    items: list[dict[str, Any]] = Field(default_factory=list, description="The current phase's work items.")
    deleted: bool = False
    event_published: bool = False

    def public(self) -> Job:
        """The job without its internal fields; what the type fixed when it planned (a cutoff) is shown."""
        shown = self.model_dump(include=set(Job.model_fields))
        if self.state.get(CUTOFF_STATE) is not None:
            shown["cutoff"] = self.state[CUTOFF_STATE]
        return Job.model_validate(shown)
