"""Typed configuration, read from the environment once at cold start, one object per function.

template.yaml sets these variables with !Ref; a missing or malformed one
fails the cold start loudly instead of failing a request later. Plain
dataclasses rather than pydantic-settings: building a settings model costs
about 90 ms of cold start, more than the authorizer's whole budget.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Self

PREFIX = "STEWARD_"
MAX_SHARDS = 256
MAX_INACTIVE_PROFILE_MONTHS = 120
# A retention execution's page budget: about 9 history events a page, 27 with every retry, under 25,000 events.
MAX_PAGES_PER_EXECUTION = 800
MAX_PAGE_ENTRIES = 500
# The most of its time a finalize invocation may keep free (past the function's 120 s: one unit of work a step).
MAX_FINALIZE_MARGIN_SECONDS = 900


class SettingsError(ValueError):
    """A setting is missing or malformed: the function cannot start."""


def _table_name(name: str, value: object) -> str:
    # DynamoDB table names are 3-255 characters.
    if not isinstance(value, str) or not 3 <= len(value) <= 255:
        raise SettingsError(f"{PREFIX}{name.upper()} must be a table name of 3-255 characters, not {value!r}.")
    return value


def _count(name: str, value: object, low: int, high: int) -> int:
    try:
        number = int(str(value)) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise SettingsError(f"{PREFIX}{name.upper()} must be a whole number from {low} to {high}, not {value!r}.")
    return number


class _FromEnvironment:
    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Self:
        """Read every field from ``STEWARD_<FIELD>``; a missing one fails the cold start."""
        names = [field.name for field in fields(cls)]  # type: ignore[arg-type]
        missing = [f"{PREFIX}{name.upper()}" for name in names if f"{PREFIX}{name.upper()}" not in environ]
        if missing:
            raise SettingsError(f"Missing settings: {', '.join(missing)}.")
        return cls(**{name: environ[f"{PREFIX}{name.upper()}"] for name in names})


@dataclass(frozen=True, kw_only=True)
class AuthorizerSettings(_FromEnvironment):
    """The authorizer reads API keys, and nothing else."""

    apps_table: str

    def __post_init__(self) -> None:
        _table_name("apps_table", self.apps_table)


@dataclass(frozen=True, kw_only=True)
class StoreSettings(_FromEnvironment):
    """Where the data lives: every function that touches the app data needs this."""

    apps_table: str
    devices_table: str
    profiles_table: str
    catalog_table: str
    shard_count: int

    def __post_init__(self) -> None:
        for name in ("apps_table", "devices_table", "profiles_table", "catalog_table"):
            _table_name(name, getattr(self, name))
        # Frozen: the environment gives text, so the count is converted here.
        object.__setattr__(self, "shard_count", _count("shard_count", self.shard_count, 1, MAX_SHARDS))


@dataclass(frozen=True, kw_only=True)
class ConversationStoreSettings(StoreSettings):
    """The store plus the conversations table (conversations, retention settings, sweep runs)."""

    conversations_table: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _table_name("conversations_table", self.conversations_table)


def _name(name: str, value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 2048:
        raise SettingsError(f"{PREFIX}{name.upper()} must be a name or ARN, not {value!r}.")
    return value


@dataclass(frozen=True, kw_only=True)
class ApiSettings(ConversationStoreSettings):
    """The HTTP API function: the store, plus where jobs start and their reports live."""

    reports_bucket: str
    job_state_machine: str
    imports_bucket: str
    audience_data_bucket: str
    audience_importer: str

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "reports_bucket",
            "job_state_machine",
            "imports_bucket",
            "audience_data_bucket",
            "audience_importer",
        ):
            _name(name, getattr(self, name))


@dataclass(frozen=True, kw_only=True)
class JobsSettings(StoreSettings):
    """The jobs worker: the store, the reports bucket and the bus that hears of finished jobs."""

    reports_bucket: str
    job_event_bus: str
    job_max_concurrency: int
    # bulk_update's delete_profiles: profiles without interaction since the start of the month this many
    # months before the current one.
    inactive_profile_months: int
    # bulk_update's audience source reads the member lists there.
    audience_data_bucket: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _name("reports_bucket", self.reports_bucket)
        _name("audience_data_bucket", self.audience_data_bucket)
        _name("job_event_bus", self.job_event_bus)
        object.__setattr__(
            self, "job_max_concurrency", _count("job_max_concurrency", self.job_max_concurrency, 1, MAX_SHARDS)
        )
        months = _count("inactive_profile_months", self.inactive_profile_months, 1, MAX_INACTIVE_PROFILE_MONTHS)
        object.__setattr__(self, "inactive_profile_months", months)


@dataclass(frozen=True, kw_only=True)
class RetentionSchedulerSettings(ConversationStoreSettings):
    """What the retention schedule invokes: reads the index of apps with settings, starts their sweeps."""

    retention_state_machine: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _name("retention_state_machine", self.retention_state_machine)


@dataclass(frozen=True, kw_only=True)
class RetentionSweepSettings(ConversationStoreSettings):
    """The sweep's steps: the store, the bucket of its reports, how many shards it sweeps at once, how many
    pages one execution sweeps (its history stays bounded), how many due entries a page reads and how many
    seconds of its time a finalize step keeps free."""

    reports_bucket: str
    retention_max_concurrency: int
    retention_pages_per_execution: int
    retention_page_entries: int
    retention_finalize_margin_seconds: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _name("reports_bucket", self.reports_bucket)
        object.__setattr__(
            self,
            "retention_max_concurrency",
            _count("retention_max_concurrency", self.retention_max_concurrency, 1, MAX_SHARDS),
        )
        pages = _count("retention_pages_per_execution", self.retention_pages_per_execution, 1, MAX_PAGES_PER_EXECUTION)
        object.__setattr__(self, "retention_pages_per_execution", pages)
        entries = _count("retention_page_entries", self.retention_page_entries, 1, MAX_PAGE_ENTRIES)
        object.__setattr__(self, "retention_page_entries", entries)
        margin = _count(
            "retention_finalize_margin_seconds", self.retention_finalize_margin_seconds, 1, MAX_FINALIZE_MARGIN_SECONDS
        )
        object.__setattr__(self, "retention_finalize_margin_seconds", margin)


@dataclass(frozen=True, kw_only=True)
class AudienceImportFailedSettings(StoreSettings):
    """The recorder of imports the importer lost (its OnFailure destination): the store, where member lists
    live (a flip it finishes removes the version it replaced), and where imports and failures are told."""

    audience_data_bucket: str
    audience_topic: str
    audience_event_bus: str

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("audience_data_bucket", "audience_topic", "audience_event_bus"):
            _name(name, getattr(self, name))


@dataclass(frozen=True, kw_only=True)
class AudienceFanOutSettings(AudienceImportFailedSettings):
    """The fan-out's steps: the same, the data bucket holding the steps' work too."""


# A range is parsed by one function: 1 MiB at least, 1 GiB at most (a 500 MiB file is one range then).
MAX_RANGE_BYTES = 1024**3


@dataclass(frozen=True, kw_only=True)
class AudienceImporterSettings(AudienceFanOutSettings):
    """The audience importer: the fan-out's settings, and when and how a file fans out.

    Files over ``audience_fan_out_bytes`` are imported by the state machine over ranges of
    ``audience_range_bytes`` (a test stack sets a tiny one; production ranges are MiBs).
    """

    audience_import_state_machine: str
    audience_fan_out_bytes: int
    audience_range_bytes: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _name("audience_import_state_machine", self.audience_import_state_machine)
        for name in ("audience_fan_out_bytes", "audience_range_bytes"):
            object.__setattr__(self, name, _count(name, getattr(self, name), 1, MAX_RANGE_BYTES))

    @property
    def fan_out(self) -> tuple[str, int, int]:
        return (self.audience_import_state_machine, self.audience_fan_out_bytes, self.audience_range_bytes)
