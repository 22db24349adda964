"""The jobs worker's steps, as the state machine calls them: plan, work, advance, finalize.

``work`` is where a retry must not change anything twice. A page goes:
select (or, for a confirmed dry run, the dry run's stored rows through
``recheck``) -> rows written to S3 under this attempt's own key -> the part
records the page as pending, naming that key -> ``apply`` -> rows written to
the page's key with their outcomes -> the part commits the page (counts,
next position), conditioned on the page number. A step
that dies anywhere in between is retried on the same part: a pending page
is re-applied from its stored rows, never selected again, and a page
already committed is never counted again. A dry run skips the pending stage:
it changes nothing that a retry could repeat.

Cancelling is cooperative: DELETE marks the job, and each worker checks the
mark before every page. ``finalize`` then writes the audit entry with status
cancelled and removes the job, so the audit log records every job, and only
the worker's role can write it.
"""

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from steward.audit.models import JobAudit, ReauthMethod
from steward.audit.models import JobStatus as AuditStatus
from steward.errors import StewardError, clip
from steward.jobs.engine import (
    JobContext,
    JobKind,
    JobRefused,
    JsonObject,
    Page,
    PageCost,
    ReportRow,
    RetryPage,
    WorkItem,
    counts_of,
)
from steward.jobs.kinds import kind_for
from steward.jobs.models import MAX_ERROR_MESSAGE_CHARS, JobError, JobEstimate, JobRecord, JobStatus
from steward.jobs.params import parse_params
from steward.jobs.pricing import Usage, estimate, lambda_gb_seconds
from steward.jobs.reports import ReportStore, held_key, item_prefix, page_key
from steward.jobs.repository import JobRepository, PartState, PendingPage, sum_parts
from steward.retryable import causes, refused_for_now

if TYPE_CHECKING:
    from steward.audit.service import AuditLog
    from steward.composition import Services

logger = logging.getLogger(__name__)


class WorkRefused(Exception):
    """A page met a ``JobRefused`` (an audience replaced, a dry run deleted): the job fails with its code.

    Lambda reports the class name as the error, with the job error as JSON for its message: the state
    machine never retries it (a retry cannot change it), and its Catch hands it to finalize, where
    ``error_from_state_machine`` reads the code back.
    """

    def __init__(self, error: JobError) -> None:
        super().__init__(error.model_dump_json())


# A worker stops taking pages when less than this is left, or less than twice its slowest page.
MIN_TIME_LEFT_MS = 30_000
# The state machine's transitions, as its execution history counts them: Plan, HasWork and Finalize once;
# per phase its Map, Advance and HasWork; per work item its Done; per invocation the work task and its choice.
FIXED_TRANSITIONS = 3
TRANSITIONS_PER_PHASE = 3
TRANSITIONS_PER_INVOCATION = 2
TRANSITIONS_PER_ITEM = 1


class EventNotPublished(RuntimeError):
    """EventBridge refused the `Job Finished` event; the finalize step fails and is retried."""


@dataclass(frozen=True)
class WorkerLimits:
    memory_mb: int
    time_left_ms: Callable[[], int]


class JobRunner:
    def __init__(
        self,
        services: "Services",
        jobs: JobRepository,
        reports: ReportStore,
        audit: "AuditLog",
        publish: Callable[[JobRecord], None],
        region: str,
        max_concurrency: int = 16,
    ) -> None:
        self.services = services
        self.jobs = jobs
        self.reports = reports
        self.audit = audit
        self.publish = publish
        self.region = region
        self.max_concurrency = max_concurrency
        self.clock = services.clock

    # Steps

    def plan(self, app_id: str, job_id: str) -> JsonObject:
        """List the first phase's work. A refused job goes straight to finalize with the reason."""
        job = self.jobs.get(app_id, job_id)
        # Finished already: the API marked it failed when its start seemed to fail (and freed its lock)
        # although the execution started. Running it would change data outside the app's lock.
        if job is None or job.deleted or job.status.finished:
            return self._step(app_id, job_id, items=[], stop=True)
        self.jobs.mark_started(app_id, job_id, self.clock())
        kind = kind_for(job.type)
        ctx = self._context(job, kind, phase=0, state={})
        try:
            if job.confirms is not None:
                dry = self.jobs.get(app_id, job.confirms)
                if dry is None:
                    raise JobRefused("The dry run this job confirms was deleted.", code="dry_run_deleted")
                state = kind.plan_confirmed(ctx, dry.state)
                # The replay walks the dry run's last phase, item by item, and as that phase: the type
                # applies the rows in the phase that listed them, as in a real run that was not confirmed.
                items = [WorkItem.from_json(item) for item in dry.items]
                phase, phases = dry.phase, dry.phase + 1
            else:
                plan = kind.plan(ctx)
                items, state, phase, phases = plan.items, plan.state, 0, kind.phases
        except JobRefused as refused:
            return self._step(app_id, job_id, items=[], stop=True, error=_error(refused))
        if not self.jobs.plan(app_id, job_id, phase, phases, [item.as_json() for item in items], state):
            return self._step(app_id, job_id, items=[], stop=True)  # it ended meanwhile (the API gave up its start)
        return self._step(app_id, job_id, items=[item.index for item in items])

    def work(self, app_id: str, job_id: str, index: int, limits: WorkerLimits) -> JsonObject:
        """Take pages of one item until it is done or time runs short; the state machine loops on ``done``."""
        slowest_ms = 0
        # Not ``slowest_ms == 0``: a page can take under a millisecond, and each invocation counts once
        # (a dry run's estimate prices them).
        first = True
        while True:
            job = self.jobs.get(app_id, job_id)
            # A job that ended (another item failed and it was finalized) takes no more pages: Step Functions
            # cannot stop the workers still running, and the app's lock may already be another job's.
            if job is None or job.deleted or job.status.finished:
                return {"app_id": app_id, "job_id": job_id, "index": index, "done": True}
            kind = kind_for(job.type)
            ctx = self._context(job, kind, phase=job.phase, state=job.state)
            part = self.jobs.part(app_id, job_id, job.phase, index)
            if first:
                self.jobs.count_invocation(app_id, job_id, job.phase, index, self.clock())
                first = False
            if part.done:
                return {"app_id": app_id, "job_id": job_id, "index": index, "done": True}
            started = time.monotonic()
            try:
                done = self._page(ctx, kind, part)
            except JobRefused as refused:
                raise WorkRefused(_error(refused)) from refused
            slowest_ms = max(slowest_ms, int((time.monotonic() - started) * 1000))
            # The item's last page ends the item: no further invocation (and its transitions) to learn it.
            if done or limits.time_left_ms() < max(MIN_TIME_LEFT_MS, 2 * slowest_ms):
                return {"app_id": app_id, "job_id": job_id, "index": index, "done": done}

    def advance(self, app_id: str, job_id: str) -> JsonObject:
        """After a phase: the next phase's work, or ``stop`` when the job has none left."""
        job = self.jobs.get(app_id, job_id)
        if job is None or job.deleted:
            return self._step(app_id, job_id, items=[], stop=True)
        parts = {part.index: part for part in self.jobs.parts(app_id, job_id, job.phase)}
        indexes = [int(item["index"]) for item in job.items]
        if not all(index in parts and parts[index].done for index in indexes):
            # The Map finished this phase before calling advance: this is a retried advance that already
            # planned the phase. Its items again, rather than skipping (or stopping before) the phase.
            return self._step(app_id, job_id, items=indexes)
        if job.phase + 1 >= job.phases:
            return self._step(app_id, job_id, items=[], stop=True)
        kind = kind_for(job.type)
        ctx = self._context(job, kind, phase=job.phase, state=job.state)
        tallies = {index: part.tally for index, part in parts.items()}
        try:
            plan = kind.advance(ctx, tallies)
        except JobRefused as refused:
            return self._step(app_id, job_id, items=[], stop=True, error=_error(refused))
        self.jobs.plan(app_id, job_id, job.phase + 1, job.phases, [item.as_json() for item in plan.items], plan.state)
        return self._step(app_id, job_id, items=[item.index for item in plan.items])

    def finalize(self, app_id: str, job_id: str, error: JobError | None, memory_mb: int) -> JsonObject:
        """Finish the job: its type's last step, the report, the estimate, the audit entry, the record, the event."""
        job = self.jobs.get(app_id, job_id)
        if job is None:
            return {"app_id": app_id, "job_id": job_id, "status": "gone"}
        status = job.status if job.status.finished else self._finish(job, error, memory_mb)
        # Idempotent, and done again by a retried finalize: one that died after finishing the job
        # would otherwise leave the lock held and a cancelled job's record, parts and pages stored.
        if not job.dry_run:
            self.jobs.release_lock(app_id, job_id)
        self._publish_once(app_id, job_id)
        if job.deleted:
            self.reports.delete_job(app_id, job_id)
            self.jobs.delete(app_id, job_id)
        return {"app_id": app_id, "job_id": job_id, "status": status.value}

    def _finish(self, job: JobRecord, error: JobError | None, memory_mb: int) -> JobStatus:
        """Record how the unfinished ``job`` ended: its type's last step, the report, the audit entry, the record."""
        app_id, job_id = job.app_id, job.job_id
        parts = [part for phase in range(job.phases) for part in self.jobs.parts(app_id, job_id, phase)]
        counts, _, cost = sum_parts(parts)
        status = JobStatus.CANCELLED if job.deleted else JobStatus.FAILED if error else JobStatus.SUCCEEDED
        if status is JobStatus.SUCCEEDED and not job.dry_run:
            kind = kind_for(job.type)
            last = [part for part in parts if part.phase == job.phase]
            _, tally, _ = sum_parts(last)
            try:
                kind.finish(self._context(job, kind, phase=job.phase, state=job.state), tally)
            except StewardError as exc:
                status, error = JobStatus.FAILED, _error(exc)
        report = self.reports.join(app_id, job_id)
        job_estimate = self._estimate(parts, cost, memory_mb) if job.dry_run and status is JobStatus.SUCCEEDED else None
        self.audit.append(
            app_id,
            JobAudit(
                key_id=job.key_id,
                job_id=job_id,
                type=job.type.value,
                params={**job.params, "dry_run": job.dry_run, **({"confirms": job.confirms} if job.confirms else {})},
                reauth=ReauthMethod(job.reauth),
                status=AuditStatus(status.value),
                counts=counts.model_dump(),
                report_sha256=report.sha256,
            ),
        )
        self.jobs.finish(
            app_id,
            job_id,
            status,
            counts,
            now=self.clock(),
            error=error,
            estimate=None if job_estimate is None else job_estimate.model_dump(mode="json"),
            report_key=report.key,
            report_sha256=report.sha256,
        )
        return status

    def _publish_once(self, app_id: str, job_id: str) -> None:
        """The `Job Finished` event, at least once: a finalize that fails to publish raises and is retried.

        The job records that its event went out, so a retried or concurrent finalize after a
        publish that succeeded sends it again only in the window between the two calls.
        """
        job = self.jobs.get(app_id, job_id)
        if job is None or not job.status.finished or job.event_published:
            return
        self.publish(job)
        self.jobs.mark_published(app_id, job_id)

    def _step(
        self, app_id: str, job_id: str, *, items: list[int], stop: bool = False, error: JobError | None = None
    ) -> JsonObject:
        """What plan and advance hand the state machine: the Map's items, or ``stop`` to finalize."""
        return {
            "app_id": app_id,
            "job_id": job_id,
            "items": items,
            "max_concurrency": self.max_concurrency,
            "stop": stop,
            "error": None if error is None else error.model_dump(),
        }

    # A page

    def _page(self, ctx: JobContext, kind: JobKind, part: PartState) -> bool:
        """Take one page of the part; whether this page's commit ended the item."""
        job = ctx.job
        started = time.monotonic()
        key = page_key(job.app_id, job.job_id, part.phase, part.index, part.seq)
        pending = part.pending
        held: str | None = None
        if pending is not None:
            # A retried step: the held page's rows are stored; apply them again, never select again.
            held = pending.rows_key or key
            rows = self._apply(ctx, kind, self.reports.read_page(held))
            self.reports.write_page(key, rows)
            scanned = pending.counts.scanned
            page = PendingPage(part.seq, pending.next, counts_of(rows, scanned), pending.tally, pending.cost)
        else:
            page_rows, scanned, next_position, tally, cost = self._select(ctx, kind, part)
            page = PendingPage(part.seq, next_position, counts_of(page_rows, scanned), tally, cost)
            if not job.dry_run and any(row.is_change for row in page_rows):
                held = held_key(job.app_id, job.job_id, part.phase, part.index, part.seq, uuid.uuid4().hex[:16])
                self.reports.write_page(held, page_rows)
                page = replace(page, rows_key=held)
                if not self.jobs.hold_page(job.app_id, job.job_id, part, page):
                    self.reports.delete_page(held)
                    return False  # another attempt holds or passed this page
                part = replace(part, pending=page)
                rows = self._apply(ctx, kind, page_rows)
                self.reports.write_page(key, rows)
                page = PendingPage(part.seq, next_position, counts_of(rows, scanned), tally, cost)
            elif page_rows:
                # Nothing to apply: the rows are final as selected (a dry run's, or skips and drifts).
                self.reports.write_page(key, page_rows)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        committed = self.jobs.commit_page(job.app_id, job.job_id, part, page, elapsed_ms, self.clock())
        if committed is not None and held is not None and held != key:
            self.reports.delete_page(held)
        return committed is not None and committed.done

    def _select(
        self, ctx: JobContext, kind: JobKind, part: PartState
    ) -> tuple[list[ReportRow], int, JsonObject | None, dict[str, int], PageCost]:
        job = ctx.job
        item = WorkItem.from_json(job.items[_position_in(job.items, part.index)])
        if job.confirms is None:
            page: Page = kind.select(ctx, item, part.position)
            return page.rows, page.scanned, page.next, page.tally, page.cost
        # A confirmed run: the dry run's next stored page of this item, re-checked now.
        dry = self.jobs.get(job.app_id, job.confirms)
        if dry is None:
            # Deleted with its pages since plan: replaying nothing would end the job as succeeded, and short.
            raise JobRefused("The dry run this job confirms was deleted.", code="dry_run_deleted")
        prefix = item_prefix(job.app_id, job.confirms, dry.phase, item.index)
        after = None if part.position is None else str(part.position["after"])
        stored = next(self.reports.page_keys(prefix, after), None)
        if stored is None:
            return [], 0, None, {}, PageCost()
        dry_rows = self.reports.read_page(stored)
        changes = [row for row in dry_rows if row.is_change]
        checked = iter(kind.recheck(ctx, changes))
        rows = [next(checked) if row.is_change else row for row in dry_rows]
        # What the replay reads is the entities the dry run listed: consequence rows are not read, as in the dry run.
        scanned = sum(1 for row in dry_rows if not row.consequence)
        return rows, scanned, {"after": stored}, {}, PageCost()

    def _apply(self, ctx: JobContext, kind: JobKind, rows: list[ReportRow]) -> list[ReportRow]:
        """Apply the rows that are changes; the others (skipped, drifted...) are reported as they are."""
        changes = [row for row in rows if row.is_change]
        if not changes:
            return rows
        applied = kind.apply(ctx, changes)
        if len(applied) != len(changes):
            raise RuntimeError(f"{type(kind).__name__}.apply returned {len(applied)} rows for {len(changes)}")
        outcomes = iter(applied)
        return [next(outcomes) if row.is_change else row for row in rows]

    def _context(self, job: JobRecord, kind: JobKind, *, phase: int, state: JsonObject) -> JobContext:
        return JobContext(
            job=job,
            params=parse_params(job.type, job.params),
            services=self.services,
            phase=phase,
            state=state,
            now=job.created_at,
        )

    def _estimate(self, parts: list[PartState], cost: PageCost, memory_mb: int) -> JobEstimate:
        """What the real run would cost: the types' unit counts, and this run's own steps and compute."""
        invocations = sum(max(1, part.invocations) for part in parts)
        worker_ms = sum(part.worker_ms for part in parts)
        usage = Usage(
            read_units=cost.read_units,
            write_units=cost.write_units,
            state_transitions=FIXED_TRANSITIONS
            + TRANSITIONS_PER_PHASE * len({part.phase for part in parts})
            + TRANSITIONS_PER_ITEM * len(parts)
            + TRANSITIONS_PER_INVOCATION * invocations,
            lambda_gb_seconds=lambda_gb_seconds(memory_mb, worker_ms),
            lambda_requests=invocations + 3,
            s3_puts=2 * sum(part.seq for part in parts) + 1,
            s3_gets=sum(part.seq for part in parts) + cost.s3_gets,
            events=cost.events,
        )
        priced = estimate(usage, self.region)
        return JobEstimate(
            read_units=float(usage.read_units),
            write_units=float(usage.write_units),
            state_transitions=usage.state_transitions,
            lambda_gb_seconds=float(usage.lambda_gb_seconds),
            s3_gets=usage.s3_gets,
            events=usage.events,
            put_events_calls=cost.put_events_calls,
            usd=priced.usd_exact,
        )


def job_finished_event(job: JobRecord) -> JsonObject:
    """The `Job Finished` event: what a subscriber needs to act on a job's end without calling the API."""
    detail = {
        "app_id": job.app_id,
        "job_id": job.job_id,
        "type": job.type.value,
        "dry_run": job.dry_run,
        "status": job.status.value,
        "counts": job.counts.model_dump(),
        "report_key": job.report_key,
    }
    return {"Source": "steward", "DetailType": "Job Finished", "Detail": json.dumps(detail)}


def _position_in(items: list[JsonObject], index: int) -> int:
    for position, item in enumerate(items):
        if int(item["index"]) == index:
            return position
    raise ValueError(f"no work item {index}")


def _error(exc: StewardError) -> JobError:
    return JobError(code=exc.code, message=clip(str(exc), MAX_ERROR_MESSAGE_CHARS))


TIMEOUT_ERRORS = frozenset({"States.Timeout", "States.HeartbeatTimeout", "Sandbox.Timedout"})


def is_throttling(exc: BaseException) -> bool:
    """A refusal to retry later (DynamoDB, S3, EventBridge), however deep pynamodb wrapped it, or a page the
    engine asked to retry."""
    asked = any(isinstance(error, RetryPage) for error in causes(exc, while_handling=True))
    return asked or refused_for_now(exc, while_handling=True)


def error_from_state_machine(caught: Mapping[str, Any] | None) -> JobError | None:
    """The Catch's ``{"Error", "Cause"}`` as a job error; a Lambda's Cause is its JSON error, whose type is kept."""
    if not caught:
        return None
    if "code" in caught:
        return JobError.model_validate(caught)
    name = str(caught.get("Error", "States.TaskFailed"))
    cause = str(caught.get("Cause", ""))
    try:
        message = str(json.loads(cause).get("errorMessage", cause))
    except (ValueError, AttributeError):
        message = cause
    if name == WorkRefused.__name__:
        with contextlib.suppress(ValidationError):  # not as a worker wrote it: a failure like any other
            return JobError.model_validate_json(message)
    # A Lambda killed at its timeout reports Sandbox.Timedout (older runtimes: "Task timed out after").
    timed_out = name in TIMEOUT_ERRORS or message.startswith("Task timed out after")
    code = "timed_out" if timed_out else "worker_failed"
    return JobError(code=code, message=clip(f"{name}: {message}" if message else name, MAX_ERROR_MESSAGE_CHARS))


__all__ = [
    "EventNotPublished",
    "JobRunner",
    "WorkRefused",
    "WorkerLimits",
    "error_from_state_machine",
    "is_throttling",
    "job_finished_event",
]
