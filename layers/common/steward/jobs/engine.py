"""The jobs engine's contract with job types: what a type plans, selects, re-checks and applies.

A job runs as phases of work items. ``plan`` lists the items (the app's
shards, or chunks of named segments, tags or regions). A worker takes one
item a page at a time: ``select`` reads a page from a position and returns
the report rows of what it would change; on a real run the engine then
hands those rows to ``apply``. The rows are the job's intent: the engine
writes them to S3 before ``apply`` runs, so a retried worker re-applies the
same rows instead of selecting again, and a confirmed dry run replays the
dry run's rows through ``recheck`` and ``apply``. Everything a type does
is therefore per row and idempotent: applying a row twice leaves the data
as applying it once.

Types never see Step Functions, S3 or the job records; the engine
(``steward.jobs.runner``) does. A type is one module in ``steward.jobs.kinds``
and one entry in its registry.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from steward.errors import StewardError
from steward.jobs.models import JobCounts, JobRecord
from steward.jobs.params import JobParams

if TYPE_CHECKING:
    from steward.composition import Services

# JSON a type keeps between steps: its job state, and a page position.
JsonObject = dict[str, Any]


class Entity(StrEnum):
    """What a report row is about (the report's `entity` column)."""

    USER = "user"
    DEVICE = "device"
    EMAIL = "email"
    PHONE = "phone"
    SEGMENT = "segment"
    TAG = "tag"
    REGION = "region"


class Outcome(StrEnum):
    """The report actions every type shares; a type's own actions (`deleted`, `added`...) are changes."""

    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_FOUND = "not_found"
    DRIFTED = "drifted"


# Rows with these actions are not changes: they count as skipped or failed.
_NOT_CHANGES = frozenset(Outcome)
REPORT_COLUMNS = ("entity", "id", "user_id", "action", "detail")


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One line of the report: an entity the job changed (or would), skipped, or could not change."""

    entity: Entity
    id: str
    action: str
    user_id: str = ""
    detail: str = ""
    # Rows a change brings along (the `user` row of a user left without contacts) are reported but not
    # counted as selected: counts describe what the job selected.
    consequence: bool = False

    def as_csv(self) -> list[str]:
        return [self.entity.value, self.id, self.user_id, self.action, self.detail]

    def with_outcome(self, action: str, detail: str) -> "ReportRow":
        return ReportRow(self.entity, self.id, action, self.user_id, detail, self.consequence)

    @property
    def is_change(self) -> bool:
        return self.action not in _NOT_CHANGES


def counts_of(rows: Sequence[ReportRow], scanned: int = 0) -> JobCounts:
    """A page's counts: what it read, selected, changed, left alone and could not change."""
    selected = [row for row in rows if not row.consequence]
    return JobCounts(
        scanned=scanned,
        matched=sum(1 for row in selected if row.action != Outcome.NOT_FOUND),
        changed=sum(1 for row in rows if row.is_change),
        skipped=sum(1 for row in selected if row.action in (Outcome.SKIPPED, Outcome.DRIFTED, Outcome.NOT_FOUND)),
        failed=sum(1 for row in rows if row.action == Outcome.FAILED),
    )


@dataclass(frozen=True, slots=True)
class WorkItem:
    """What one worker of the Map state walks: a shard, or a chunk of named entities."""

    index: int
    shard: int | None = None
    names: tuple[str, ...] = ()

    def as_json(self) -> JsonObject:
        return {"index": self.index, "shard": self.shard, "names": list(self.names)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "WorkItem":
        shard = data.get("shard")
        return cls(int(data["index"]), None if shard is None else int(shard), tuple(str(n) for n in data["names"]))


def shard_items(shard_count: int) -> list[WorkItem]:
    return [WorkItem(index=shard, shard=shard) for shard in range(shard_count)]


def name_items(names: Sequence[str], per_item: int) -> list[WorkItem]:
    return [
        WorkItem(index=index, names=tuple(names[start : start + per_item]))
        for index, start in enumerate(range(0, len(names), per_item))
    ]


@dataclass(frozen=True, slots=True)
class Plan:
    """The work of a phase, and the state the type keeps for the next steps (JSON, at most ~100 KB)."""

    items: list[WorkItem]
    state: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PageCost:
    """What a page costs a real run: DynamoDB units, S3 reads of its data, trigger events and their PutEvents calls.

    The dry run's estimate adds these up.
    """

    read_units: Decimal = Decimal(0)
    write_units: int = 0
    s3_gets: int = 0
    events: int = 0
    put_events_calls: int = 0

    def __add__(self, other: "PageCost") -> "PageCost":
        return PageCost(
            self.read_units + other.read_units,
            self.write_units + other.write_units,
            self.s3_gets + other.s3_gets,
            self.events + other.events,
            self.put_events_calls + other.put_events_calls,
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a work item: its rows, what it read, where to go on, and what the type tallies."""

    rows: list[ReportRow]
    scanned: int
    next: JsonObject | None  # None: the item is done
    # Numbers the type adds up across pages and items (split_audience: users per segment).
    tally: dict[str, int] = field(default_factory=dict)
    cost: PageCost = field(default_factory=PageCost)


@dataclass(frozen=True)
class JobContext:
    """What a type gets at every step."""

    job: JobRecord
    params: JobParams
    services: "Services"
    phase: int
    state: JsonObject
    # Fixed for the whole job, so relative criteria (within_last_days) select the same on every page.
    now: datetime

    @property
    def app_id(self) -> str:
        return self.job.app_id

    @property
    def dry_run(self) -> bool:
        return self.job.dry_run


class JobRefused(StewardError):
    """The job cannot run as asked (a split's segment name is taken): it fails before any change."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code)


class RetryPage(Exception):
    """A change the store refused for now (throttled, raced): the engine retries the page, which re-applies it."""


class JobKind(Protocol):
    """A job type. ``phases`` > 1 runs ``advance`` between the phases' Map states."""

    phases: ClassVar[int]

    def plan(self, ctx: JobContext) -> Plan:
        """Check what must hold before any change (raise JobRefused) and list the first phase's work."""
        ...

    def select(self, ctx: JobContext, item: WorkItem, position: JsonObject | None) -> Page:
        """Read one page of ``item`` from ``position`` (None: its start) and report what a real run changes."""
        ...

    def advance(self, ctx: JobContext, tallies: Mapping[int, Mapping[str, int]]) -> Plan:
        """Between phases: the tallies of the phase just done, per item index; returns the next phase's work."""
        ...

    def plan_confirmed(self, ctx: JobContext, dry_state: JsonObject) -> JsonObject:
        """A confirmed run replays the dry run's rows: prepare what they need (create segments) and return the state."""
        ...

    def recheck(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        """A confirmed run: each row the dry run listed, as it stands now; one that no longer qualifies is drifted."""
        ...

    def apply(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        """A real run: make the rows' changes. Idempotent per row; returns each row's outcome."""
        ...

    def finish(self, ctx: JobContext, tally: Mapping[str, int]) -> None:
        """After the last phase of a real run, with the whole job's tally (set exact segment counts...)."""
        ...


class SinglePhase:
    """Defaults for a type with one phase and nothing to prepare or finish."""

    phases: ClassVar[int] = 1

    def advance(self, ctx: JobContext, tallies: Mapping[int, Mapping[str, int]]) -> Plan:
        raise NotImplementedError("a single-phase job has nothing to advance to")

    def plan_confirmed(self, ctx: JobContext, dry_state: JsonObject) -> JsonObject:
        return dry_state

    def finish(self, ctx: JobContext, tally: Mapping[str, int]) -> None:
        return None
