"""Data access for maintenance jobs (CatalogTable): job records, their work items' progress, and the app's lock.

Layout:
- ``<app>#job`` / job id: the job. Ids start with the creation time in hex,
  so a reverse query lists the newest first;
- ``<app>#job-part#<job_id>`` / ``<phase>#<index>``: one work item's
  position, page number and committed counts;
- ``<app>#job-lock`` / ``lock``: the app's running real job.
"""

import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pynamodb.exceptions import DeleteError, PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from steward.conditions import condition_failed
from steward.jobs.engine import JsonObject, PageCost
from steward.jobs.models import JOB_ID_PATTERN, JOB_ID_PREFIX, JobCounts, JobError, JobRecord, JobStatus, JobType
from steward.pagination import Page, decode_cursor, encode_cursor, invalid_cursor
from steward.tables import (
    JOB_LOCK_SK,
    JobItemRecord,
    JobLockRecord,
    JobPartRecord,
    job_lock_pk,
    job_parts_pk,
    jobs_pk,
)

_JOB_ID = re.compile(JOB_ID_PATTERN)
# A list call reads at most this many jobs (about 250 read units at 1 KB each) before it answers.
MAX_SCANNED_JOBS = 1000
_FILTERED_PAGE = 100


def new_job_id(now: datetime) -> str:
    """``job_`` + 12 hex digits of milliseconds since the epoch + 20 random hex digits: sorts by creation."""
    return f"{JOB_ID_PREFIX}{int(now.timestamp() * 1000):012x}{secrets.token_hex(10)}"


def part_sk(phase: int, index: int) -> str:
    return f"{phase:02d}#{index:05d}"


@dataclass(frozen=True)
class PendingPage:
    """A page whose rows are stored: what its commit will record."""

    seq: int
    next: JsonObject | None
    counts: JobCounts
    tally: dict[str, int]
    cost: PageCost
    # The held page's rows, as the attempt that holds it selected them (reports.held_key).
    rows_key: str | None = None

    def as_json(self) -> JsonObject:
        return {
            "seq": self.seq,
            "next": self.next,
            "counts": self.counts.model_dump(),
            "tally": self.tally,
            "cost": _cost_json(self.cost),
            "rows_key": self.rows_key,
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> "PendingPage":
        return cls(
            seq=int(data["seq"]),
            next=data["next"],
            counts=JobCounts.model_validate(data["counts"]),
            tally={str(k): int(v) for k, v in data["tally"].items()},
            cost=_cost_of(data["cost"]),
            rows_key=data.get("rows_key"),
        )


@dataclass(frozen=True)
class PartState:
    phase: int
    index: int
    seq: int = 0
    position: JsonObject | None = None
    done: bool = False
    counts: JobCounts = field(default_factory=JobCounts)
    tally: dict[str, int] = field(default_factory=dict)
    cost: PageCost = field(default_factory=PageCost)
    pending: PendingPage | None = None
    worker_ms: int = 0
    invocations: int = 0


class JobRepository:
    # Jobs

    def create(self, job: JobRecord) -> None:
        _record(job).save(JobItemRecord.sk.does_not_exist())

    def get(self, app_id: str, job_id: str) -> JobRecord | None:
        """The job (read consistently); None when it does not exist or was deleted."""
        if not _JOB_ID.match(job_id):
            return None
        try:
            record = JobItemRecord.get(jobs_pk(app_id), job_id, consistent_read=True)
        except JobItemRecord.DoesNotExist:
            return None
        return to_job(app_id, record)

    def list_page(
        self, app_id: str, job_type: JobType | None, status: JobStatus | None, cursor: str | None, limit: int
    ) -> Page[JobRecord]:
        """Newest first. The cursor holds only a job id; filters are applied by DynamoDB under a read budget.

        A rare filter stops after ``MAX_SCANNED_JOBS`` jobs read and hands back a cursor, so a page may
        be short (or empty) and still have a next one.
        """
        position = decode_cursor(cursor)
        after: str | None = None
        if position is not None:
            after = position.get("before")
            if not isinstance(after, str) or not _JOB_ID.match(after):
                raise invalid_cursor()
        condition: Condition = JobItemRecord.deleted == False  # noqa: E712 (a DynamoDB condition, not a test)
        filtered = job_type is not None or status is not None
        if job_type is not None:
            condition &= JobItemRecord.job_type == job_type.value
        if status is not None:
            condition &= JobItemRecord.status == status.value
        partition = jobs_pk(app_id)
        # One more than the page, so the last page never hands out a cursor to an empty one.
        wanted = limit + 1
        records: list[JobItemRecord] = []
        scanned = 0
        more = True
        while more and len(records) < wanted and scanned < MAX_SCANNED_JOBS:
            size = _FILTERED_PAGE if filtered else wanted - len(records)
            start_key = None if after is None else {"pk": {"S": partition}, "sk": {"S": after}}
            page: dict[str, Any] = next(
                JobItemRecord.query(
                    partition,
                    filter_condition=condition,
                    scan_index_forward=False,
                    page_size=min(size, MAX_SCANNED_JOBS - scanned),
                    last_evaluated_key=start_key,
                ).page_iter
            )
            scanned += page.get("ScannedCount", 0)
            for raw in page.get("Items", []):
                records.append(JobItemRecord.from_raw_data(raw))
                if len(records) == wanted:
                    break
            last_key = page.get("LastEvaluatedKey")
            more = last_key is not None
            after = str(last_key["sk"]["S"]) if last_key is not None else None
        jobs = [to_job(app_id, record) for record in records[:limit]]
        if len(records) > limit:
            next_cursor: str | None = encode_cursor({"before": jobs[-1].job_id})
        elif more and after is not None:
            next_cursor = encode_cursor({"before": after})  # the budget ran out first: go on from there
        else:
            next_cursor = None
        return Page(items=jobs, next_cursor=next_cursor)

    def update(self, app_id: str, job_id: str, actions: list[Action], condition: Condition | None = None) -> bool:
        """Change a job that exists; False when ``condition`` (or existence) fails."""
        record = JobItemRecord(pk=jobs_pk(app_id), sk=job_id)
        exists = JobItemRecord.sk.exists()
        try:
            record.update(actions, exists if condition is None else exists & condition)
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def start(self, app_id: str, job_id: str, execution_arn: str, now: datetime) -> bool:
        return self.update(
            app_id,
            job_id,
            [JobItemRecord.execution_arn.set(execution_arn), JobItemRecord.updated_at.set(now)],
        )

    def plan(
        self, app_id: str, job_id: str, phase: int, phases: int, items: list[JsonObject], state: JsonObject
    ) -> bool:
        """Record a phase's work (running from now on); False when the job has ended meanwhile."""
        return self.update(
            app_id,
            job_id,
            [
                JobItemRecord.status.set(JobStatus.RUNNING.value),
                JobItemRecord.phase.set(phase),
                JobItemRecord.phases.set(phases),
                JobItemRecord.items.set(_dumps(items)),
                JobItemRecord.state.set(_dumps(state)),
            ],
            # Never brings back a job marked failed (a start the API gave up on) outside the app's lock.
            JobItemRecord.status.is_in(JobStatus.QUEUED.value, JobStatus.RUNNING.value),
        )

    def mark_started(self, app_id: str, job_id: str, now: datetime) -> None:
        self.update(
            app_id,
            job_id,
            [JobItemRecord.started_at.set(now), JobItemRecord.status.set(JobStatus.RUNNING.value)],
            JobItemRecord.started_at.does_not_exist(),
        )

    def finish(
        self,
        app_id: str,
        job_id: str,
        status: JobStatus,
        counts: JobCounts,
        *,
        now: datetime,
        error: JobError | None = None,
        estimate: JsonObject | None = None,
        report_key: str | None = None,
        report_sha256: str | None = None,
    ) -> bool:
        """Mark the job finished, once: False when it already was."""
        actions: list[Action] = [
            JobItemRecord.status.set(status.value),
            JobItemRecord.counts.set(_dumps(counts.model_dump())),
            JobItemRecord.finished_at.set(now),
            JobItemRecord.updated_at.set(now),
        ]
        if error is not None:
            actions.append(JobItemRecord.error.set(_dumps(error.model_dump())))
        if estimate is not None:
            actions.append(JobItemRecord.estimate.set(_dumps(estimate)))
        if report_key is not None:
            actions.append(JobItemRecord.report_key.set(report_key))
        if report_sha256 is not None:
            actions.append(JobItemRecord.report_sha256.set(report_sha256))
        unfinished = JobItemRecord.status.is_in(JobStatus.QUEUED.value, JobStatus.RUNNING.value)
        return self.update(app_id, job_id, actions, unfinished)

    def mark_published(self, app_id: str, job_id: str) -> bool:
        """Record that the job's `Job Finished` event went out."""
        return self.update(app_id, job_id, [JobItemRecord.event_published.set(True)])

    def mark_deleted(self, app_id: str, job_id: str, now: datetime) -> bool:
        """Hide an unfinished job from every route; its worker stops and removes it. False when it finished."""
        unfinished = JobItemRecord.status.is_in(JobStatus.QUEUED.value, JobStatus.RUNNING.value)
        return self.update(
            app_id, job_id, [JobItemRecord.deleted.set(True), JobItemRecord.updated_at.set(now)], unfinished
        )

    def claim_confirmation(self, app_id: str, dry_job_id: str, real_job_id: str) -> bool:
        """A dry run is confirmed once: False when another confirmation got it first."""
        return self.update(
            app_id,
            dry_job_id,
            [JobItemRecord.confirmed_by.set(real_job_id)],
            JobItemRecord.confirmed_by.does_not_exist(),
        )

    def release_confirmation(self, app_id: str, dry_job_id: str, real_job_id: str) -> None:
        """Undo a claim whose real run could not start, so the dry run can be confirmed again."""
        self.update(
            app_id, dry_job_id, [JobItemRecord.confirmed_by.remove()], JobItemRecord.confirmed_by == real_job_id
        )

    def delete(self, app_id: str, job_id: str) -> None:
        """Remove the job and its parts (the audit entry stays, in its own items)."""
        for record in JobPartRecord.query(job_parts_pk(app_id, job_id), attributes_to_get=["pk", "sk"]):
            record.delete()
        try:
            JobItemRecord(pk=jobs_pk(app_id), sk=job_id).delete()
        except DeleteError as exc:
            if not condition_failed(exc):
                raise

    # The app's one running real job

    def acquire_lock(self, app_id: str, job_id: str, now: datetime, stale: str | None = None) -> bool:
        """Take the lock when free (or held by ``stale``, a job known to be over); False when another job holds it."""
        record = JobLockRecord(pk=job_lock_pk(app_id), sk=JOB_LOCK_SK, job_id=job_id, created_at=now, updated_at=now)
        free: Condition = JobLockRecord.sk.does_not_exist()
        if stale is not None:
            free |= JobLockRecord.job_id == stale
        try:
            record.save(free)
        except PutError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def lock_holder(self, app_id: str) -> str | None:
        try:
            return JobLockRecord.get(job_lock_pk(app_id), JOB_LOCK_SK, consistent_read=True).job_id
        except JobLockRecord.DoesNotExist:
            return None

    def release_lock(self, app_id: str, job_id: str) -> None:
        try:
            JobLockRecord(pk=job_lock_pk(app_id), sk=JOB_LOCK_SK).delete(JobLockRecord.job_id == job_id)
        except DeleteError as exc:
            if not condition_failed(exc):
                raise

    # Work items

    def part(self, app_id: str, job_id: str, phase: int, index: int) -> PartState:
        try:
            record = JobPartRecord.get(job_parts_pk(app_id, job_id), part_sk(phase, index), consistent_read=True)
        except JobPartRecord.DoesNotExist:
            return PartState(phase, index)
        return to_part(record)

    def parts(self, app_id: str, job_id: str, phase: int) -> list[PartState]:
        records = JobPartRecord.query(
            job_parts_pk(app_id, job_id), JobPartRecord.sk.startswith(f"{phase:02d}#"), consistent_read=True
        )
        return [to_part(record) for record in records]

    def hold_page(self, app_id: str, job_id: str, part: PartState, pending: PendingPage) -> bool:
        """Record a stored, not yet applied page; False when the part moved on (another attempt got there)."""
        return self._write_part(
            app_id,
            job_id,
            part,
            [JobPartRecord.pending.set(_dumps(pending.as_json()))],
        )

    def commit_page(
        self, app_id: str, job_id: str, part: PartState, page: PendingPage, worker_ms: int, now: datetime
    ) -> PartState | None:
        """Count a page and move the part past it; None when the part already moved (a retried step)."""
        committed = PartState(
            phase=part.phase,
            index=part.index,
            seq=part.seq + 1,
            position=page.next,
            done=page.next is None,
            counts=add_counts(part.counts, page.counts),
            tally=add_tally(part.tally, page.tally),
            cost=part.cost + page.cost,
            pending=None,
            worker_ms=part.worker_ms + worker_ms,
            invocations=part.invocations,
        )
        actions: list[Action] = [
            JobPartRecord.seq.set(committed.seq),
            JobPartRecord.position.remove() if page.next is None else JobPartRecord.position.set(_dumps(page.next)),
            JobPartRecord.done.set(committed.done),
            JobPartRecord.counts.set(_dumps(committed.counts.model_dump())),
            JobPartRecord.tally.set(_dumps(committed.tally)),
            JobPartRecord.cost.set(_dumps(_cost_json(committed.cost))),
            JobPartRecord.pending.remove(),
            JobPartRecord.worker_ms.set(committed.worker_ms),
            JobPartRecord.updated_at.set(now),
        ]
        return committed if self._write_part(app_id, job_id, part, actions) else None

    def count_invocation(self, app_id: str, job_id: str, phase: int, index: int, now: datetime) -> None:
        record = JobPartRecord(pk=job_parts_pk(app_id, job_id), sk=part_sk(phase, index))
        record.update(
            [
                JobPartRecord.invocations.add(1),
                JobPartRecord.created_at.set(JobPartRecord.created_at | now),
                JobPartRecord.updated_at.set(now),
            ]
        )

    def _write_part(self, app_id: str, job_id: str, part: PartState, actions: list[Action]) -> bool:
        record = JobPartRecord(pk=job_parts_pk(app_id, job_id), sk=part_sk(part.phase, part.index))
        # The part is where this attempt read it: same page number, same pending page.
        at_seq: Condition = (
            (JobPartRecord.seq == part.seq)
            if part.seq
            else JobPartRecord.seq.does_not_exist() | (JobPartRecord.seq == 0)
        )
        same_pending = (
            JobPartRecord.pending.does_not_exist()
            if part.pending is None
            else JobPartRecord.pending == _dumps(part.pending.as_json())
        )
        try:
            record.update(actions, at_seq & same_pending)
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True


def add_counts(total: JobCounts, more: JobCounts) -> JobCounts:
    return JobCounts(**{name: getattr(total, name) + getattr(more, name) for name in JobCounts.model_fields})


def add_tally(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    merged = dict(total)
    for name, value in more.items():
        merged[name] = merged.get(name, 0) + value
    return merged


def sum_parts(parts: Iterable[PartState]) -> tuple[JobCounts, dict[str, int], PageCost]:
    counts, cost = JobCounts(), PageCost()
    tally: dict[str, int] = {}
    for part in parts:
        counts = add_counts(counts, part.counts)
        tally = add_tally(tally, part.tally)
        cost = cost + part.cost
    return counts, tally, cost


def to_job(app_id: str, record: JobItemRecord) -> JobRecord:
    return JobRecord(
        job_id=record.sk,
        app_id=app_id,
        type=JobType(record.job_type),
        params=json.loads(record.params),
        dry_run=record.dry_run,
        status=JobStatus(record.status),
        counts=JobCounts.model_validate(_loads(record.counts) or {}),
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        error=_loads(record.error),
        estimate=_loads(record.estimate),
        confirms=record.confirms,
        key_id=record.key_id,
        reauth=record.reauth,
        report_key=record.report_key,
        report_sha256=record.report_sha256,
        execution_arn=record.execution_arn,
        confirmed_by=record.confirmed_by,
        phase=int(record.phase),
        phases=int(record.phases),
        state=_loads(record.state) or {},
        items=_loads(record.items) or [],
        deleted=bool(record.deleted),
        event_published=bool(record.event_published),
    )


def _record(job: JobRecord) -> JobItemRecord:
    return JobItemRecord(
        pk=jobs_pk(job.app_id),
        sk=job.job_id,
        job_type=job.type.value,
        status=job.status.value,
        dry_run=job.dry_run,
        params=_dumps(job.params),
        key_id=job.key_id,
        reauth=job.reauth,
        confirms=job.confirms,
        counts=_dumps(job.counts.model_dump()),
        created_at=job.created_at,
        updated_at=job.created_at,
        phase=0,
        phases=1,
        deleted=False,
    )


def to_part(record: JobPartRecord) -> PartState:
    phase, _, index = record.sk.partition("#")
    pending = _loads(record.pending)
    return PartState(
        phase=int(phase),
        index=int(index),
        seq=int(record.seq or 0),
        position=_loads(record.position),
        done=bool(record.done),
        counts=JobCounts.model_validate(_loads(record.counts) or {}),
        tally={str(k): int(v) for k, v in (_loads(record.tally) or {}).items()},
        cost=_cost_of(_loads(record.cost) or {}),
        pending=None if pending is None else PendingPage.from_json(pending),
        worker_ms=int(record.worker_ms or 0),
        invocations=int(record.invocations or 0),
    )


def _cost_json(cost: PageCost) -> JsonObject:
    return {
        "read_units": str(cost.read_units),
        "write_units": cost.write_units,
        "s3_gets": cost.s3_gets,
        "events": cost.events,
        "put_events_calls": cost.put_events_calls,
    }


def _cost_of(data: JsonObject) -> PageCost:
    return PageCost(
        Decimal(str(data.get("read_units", "0"))),
        int(data.get("write_units", 0)),
        int(data.get("s3_gets", 0)),
        int(data.get("events", 0)),
        int(data.get("put_events_calls", 0)),
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
