"""Run a job type in-process, without Step Functions or S3: for the job types' unit tests.

``run_inline`` follows the engine's order (plan, the phases' pages, apply on
a real run, advance between phases, finish) and returns every report row,
so a test can compare a dry run with a real one. The engine's own tests
(runner, state machine) cover what this leaves out: positions across
invocations, retries, confirmation from stored reports.
"""

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3

from steward.clock import utc_now
from steward.composition import Services
from steward.jobs.engine import JobContext, JobKind, JsonObject, Page, PageCost, ReportRow, WorkItem, counts_of
from steward.jobs.kinds import kind_for
from steward.jobs.models import JobCounts, JobRecord, JobStatus, JobType
from steward.jobs.params import parse_params
from steward.tables import DeviceRecord, ProfileRecord, TagRecord
from tests.support.service import JOBS_BUS, SHARD_COUNT

KEY_ID = "k" * 16


def job_context(
    app_id: str,
    job_type: JobType,
    params: dict[str, Any],
    *,
    dry_run: bool,
    services: Services | None = None,
    now: datetime | None = None,
    state: JsonObject | None = None,
    phase: int = 0,
) -> JobContext:
    """A job's context as the worker builds it, for a job that was never stored."""
    parsed = parse_params(job_type, params)
    moment = now or utc_now()
    job = JobRecord(
        job_id=f"job_{uuid.uuid4().hex}",
        type=job_type,
        params=parsed.to_json(),
        dry_run=dry_run,
        status=JobStatus.RUNNING,
        created_at=moment,
        app_id=app_id,
        key_id=KEY_ID,
    )
    return JobContext(
        job=job,
        params=parsed,
        services=services or Services(SHARD_COUNT, job_event_bus=JOBS_BUS),
        phase=phase,
        state=state or {},
        now=moment,
    )


@dataclass
class InlineRun:
    rows: list[ReportRow] = field(default_factory=list)
    counts: JobCounts = field(default_factory=JobCounts)
    tally: dict[str, int] = field(default_factory=dict)
    state: JsonObject = field(default_factory=dict)
    pages: int = 0
    cost: PageCost = field(default_factory=PageCost)  # the pages' costs: what the dry run's estimate adds up


def run_inline(
    ctx: JobContext,
    kind: JobKind | None = None,
    *,
    on_page: Callable[[WorkItem, Page], None] | None = None,
) -> InlineRun:
    """Plan, walk every item page by page (applying on a real run), advance through the phases, finish."""
    kind = kind or kind_for(ctx.job.type)
    run = InlineRun()
    plan = kind.plan(ctx)
    for phase in range(kind.phases):
        ctx = JobContext(ctx.job, ctx.params, ctx.services, phase, plan.state, ctx.now)
        tallies: dict[int, dict[str, int]] = {}
        for item in plan.items:
            position: JsonObject | None = None
            item_tally: dict[str, int] = {}
            while True:
                page = kind.select(ctx, item, position)
                rows = page.rows if ctx.dry_run else kind.apply(ctx, page.rows)
                run.rows.extend(rows)
                run.counts = add_counts(run.counts, counts_of(rows, page.scanned))
                add_tally(item_tally, page.tally)
                run.pages += 1
                run.cost = run.cost + page.cost
                if on_page is not None:
                    on_page(item, page)
                if page.next is None:
                    break
                position = page.next
            tallies[item.index] = item_tally
            add_tally(run.tally, item_tally)
        if phase + 1 < kind.phases:
            plan = kind.advance(ctx, tallies)
    run.state = ctx.state
    if not ctx.dry_run:
        kind.finish(ctx, run.tally)
    return run


def run_job(
    app_id: str, job_type: JobType, params: dict[str, Any], *, dry_run: bool, kind: JobKind | None = None
) -> InlineRun:
    """A whole run of a job that was never stored, in process."""
    return run_inline(job_context(app_id, job_type, params, dry_run=dry_run), kind)


def pages_of(ctx: JobContext, kind: JobKind | None = None) -> list[list[ReportRow]]:
    """The rows of each page of a run, in order: what the engine stores, and a confirmation replays."""
    pages: list[list[ReportRow]] = []
    run_inline(ctx, kind, on_page=lambda _item, page: pages.append(page.rows))
    return pages


def confirm(ctx: JobContext, pages: Sequence[Sequence[ReportRow]], kind: JobKind | None = None) -> list[ReportRow]:
    """A confirmed run: each page of the dry run's rows rechecked, then applied (``ctx`` is a real run's)."""
    kind = kind or kind_for(ctx.job.type)
    return [row for rows in pages for row in kind.apply(ctx, kind.recheck(ctx, rows))]


def run_applying_twice(ctx: JobContext, kind: JobKind | None = None) -> tuple[list[ReportRow], list[ReportRow]]:
    """A real run whose every page is applied twice, as by a retried worker: the first and the second outcomes."""
    kind = kind or kind_for(ctx.job.type)
    first: list[ReportRow] = []
    second: list[ReportRow] = []
    plan = kind.plan(ctx)
    for item in plan.items:
        position: JsonObject | None = None
        while True:
            page = kind.select(ctx, item, position)
            first.extend(kind.apply(ctx, page.rows))
            second.extend(kind.apply(ctx, page.rows))
            if page.next is None:
                break
            position = page.next
    return first, second


def stored_items() -> list[str]:
    """Every item of the devices, profiles and catalog tables, as sorted JSON: to tell that nothing changed."""
    client = boto3.client("dynamodb")
    items: list[str] = []
    for model in (DeviceRecord, ProfileRecord, TagRecord):  # TagRecord: the catalog table
        for page in client.get_paginator("scan").paginate(TableName=model.Meta.table_name, ConsistentRead=True):
            items.extend(json.dumps(item, sort_keys=True) for item in page["Items"])
    return sorted(items)


def add_counts(total: JobCounts, more: JobCounts) -> JobCounts:
    return JobCounts(**{name: getattr(total, name) + getattr(more, name) for name in JobCounts.model_fields})


def add_tally(total: dict[str, int], more: dict[str, int]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0) + value


def listed(rows: Sequence[ReportRow]) -> list[tuple[str, str, str]]:
    """What a report lists, order aside: (entity, id, detail) per row, for comparing dry and real runs."""
    return sorted((row.entity.value, row.id, row.detail) for row in rows)


__all__ = [
    "KEY_ID",
    "SHARD_COUNT",
    "InlineRun",
    "confirm",
    "job_context",
    "listed",
    "pages_of",
    "run_applying_twice",
    "run_inline",
    "run_job",
    "stored_items",
]
