"""What the retention schedule starts: one sweep execution per app that has settings.

The schedule starts the scheduler's state machine, which runs one page of
apps at a time per shard of the index of apps with settings
(statemachines/retention_scheduler.asl.json): each call does a few small,
idempotent requests per app and ends its page when its Lambda's time runs
low, so no number of apps outlasts a Lambda's timeout.

Idempotent, as the Scheduler delivers at least once and may overlap: the run
id is derived from the app and the scheduled time, and names the execution;
the sweep's 'now' is the scheduled time. An app whose run is still going (its
lock held) is skipped; a lock expires after ``LOCK_TTL``: the state machine's
own run time (``TimeoutSeconds`` in statemachines/retention.asl.json), plus the
last page a timed-out execution's Lambda may still be applying, plus a margin.
A run whose lock expired unfinalized gets the lock back and is handed to a
finalize, failed (``retention_lock_expired``), when the next pass finds it; a
run whose ``MAX_HANDOFFS`` finalizes all failed ends failed without a report.

The run's execution reports its end through an EventBridge rule, which
delivers at least once but may still lose an event. So a pass that finds an
app held by a run also asks Step Functions about the run's current execution:
one that is no longer running is handled as its event would have been, and a
run whose execution never started (the start failed unseen, or a step died
between handing the run on and starting the next execution) is failed once
``START_GRACE`` has passed, instead of holding the app until its lock expires.

Neither the event's handler nor a pass finalizes a run itself (a finalize of
a big run takes many Lambda invocations): each hands it to a finalize-only
execution of the sweep's state machine (``hand_off``), which waits for the
pages that may still be in flight, then finalizes the run step after step.
"""

import contextlib
import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from steward.conversations.models import RunStatus, RunSummary
from steward.conversations.retention_repository import (
    RetentionRunRepository,
    RetentionSettingsRepository,
    RunState,
)
from steward.errors import MAX_MESSAGE_CHARS, clip

StartExecution = Callable[[str, dict[str, Any]], str]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutionState:
    """What DescribeExecution says of one execution."""

    arn: str
    status: str  # RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED or PENDING_REDRIVE
    error: str | None = None
    cause: str | None = None
    stopped_at: datetime | None = None

    @property
    def running(self) -> bool:
        # A failed execution waiting to be redriven may run again: it is left alone like a running one.
        return self.status in ("RUNNING", "PENDING_REDRIVE")


class ExecutionUnknown(Exception):
    """Step Functions could not say whether an execution exists (throttled, timed out, refused)."""


# The execution of that name, or None when Step Functions has none (ExecutionUnknown when it cannot tell).
DescribeExecution = Callable[[str], ExecutionState | None]
# Seconds left in the Lambda invocation.
Remaining = Callable[[], float]

# Apps one scheduler call reads: a few requests each; the call ends its page early when its time runs low.
APPS_PER_CALL = 100
# A call starts no other app with less time than this left (an app's requests take well under a second each).
CALL_MARGIN_SECONDS = 15.0
# An execution that did not end in a finalize may have left a page in flight (a failed Map abandons its other
# iterations, whose Lambdas run on up to their 120 s): its run is finalized after that page's time and clock skew.
LAST_PAGE_GRACE = timedelta(minutes=10)


class StartFailed(Exception):
    """Step Functions refused to start an execution, after the client's own retries."""


RUN_TIMEOUT = timedelta(hours=12)
LOCK_TTL = RUN_TIMEOUT + timedelta(minutes=10)  # the sweep function's 120 s, and clock skew
# A run's execution is started within seconds of the write that names it (the run's creation, or the hand-on to
# its next generation): one still absent this long after is counted as never started.
START_GRACE = timedelta(minutes=10)
# Finalize-only executions a run is handed to: one that fails every time (a bug, a broken report bucket) does not
# hold the app for ever; the last ends the run failed without a report.
MAX_HANDOFFS = 5


def generation_name(run_id: str, generation: int) -> str:
    """The first execution is named by the run; the next ones add their generation (a retry finds its own)."""
    return run_id if generation == 0 else f"{run_id}_g{generation}"


def caught_error(caught: Mapping[str, Any] | None) -> str | None:
    """A Catch's ``{"Error", "Cause"}`` as one line; a Lambda's Cause is its JSON error."""
    if not caught:
        return None
    name, cause = str(caught.get("Error", "States.TaskFailed")), str(caught.get("Cause", ""))
    with contextlib.suppress(ValueError, AttributeError):
        cause = str(json.loads(cause).get("errorMessage", cause))
    return clip(f"{name}: {cause}" if cause else name, MAX_MESSAGE_CHARS)


def finalize_name(run_id: str, handoff: int) -> str:
    """The ``handoff``-th finalize-only execution of the run (a retried hand-off finds its own)."""
    return f"{run_id}_f{handoff}"


def end_run(
    runs: RetentionRunRepository, app_id: str, run_id: str, generation: int, ended: ExecutionState, now: datetime
) -> RunState | None:
    """Mark the run of an execution that ended without finalizing it as ending (unless it is finished, or
    carried on by another generation): finalized after the last page's grace, failed with the execution's error
    unless it succeeded. Its lock is renewed, so it holds the app until the run is finalized."""
    state = runs.state(app_id, run_id)
    if state is None or not state.carried_by(generation):
        return state
    error = None
    finalize_after = now
    if ended.status != "SUCCEEDED":
        error = caught_error({"Error": ended.error or f"States.{ended.status}", "Cause": ended.cause or ""})
        finalize_after = min(now, ended.stopped_at or now) + LAST_PAGE_GRACE
    marked = runs.mark_ending(app_id, run_id, generation, finalize_after, error)
    state = runs.state(app_id, run_id)
    if marked or (state is not None and not state.finished and state.finalize_after is not None):
        # Only an ending run keeps the app: a run finished meanwhile has released its lock for good.
        runs.acquire_lock(app_id, run_id, now, LOCK_TTL)
    return state


def finalize_input(app_id: str, run_id: str, state: RunState, now: datetime) -> dict[str, Any]:
    """The input of a finalize-only execution of RetentionStateMachine: it waits ``wait_seconds`` (until the
    run's ``finalize_after``), then finalizes the run, failed with ``caught`` when the run has an error."""
    wait = 0 if state.finalize_after is None else max(0, math.ceil((state.finalize_after - now).total_seconds()))
    payload: dict[str, Any] = {
        "app_id": app_id,
        "run_id": run_id,
        "now": now.isoformat(),
        "generation": None,
        "finalize_only": True,
        "wait_seconds": wait,
    }
    if state.error:
        payload["caught"] = {"Error": state.error, "Cause": ""}
    return payload


def hand_off(
    runs: RetentionRunRepository,
    start: StartExecution,
    app_id: str,
    run_id: str,
    state: RunState,
    now: datetime,
    keep_lock: bool = True,
) -> str | None:
    """Hand the unfinished run to its next finalize-only execution (``<run>_f<n>``): counted on the run first,
    so a retried or overlapping hand-off starts none twice. None when another hand-off counted it first."""
    if not runs.advance_handoff(app_id, run_id, state.handoff):
        return None
    if keep_lock:  # the finalize may run up to the state machine's timeout: the run keeps the app for as long
        runs.acquire_lock(app_id, run_id, now, LOCK_TTL)
    return start(finalize_name(run_id, state.handoff + 1), finalize_input(app_id, run_id, state, now))


def run_id_for(app_id: str, scheduled_at: datetime) -> str:
    """``ret_<UTC scheduled time>_<12 hex of the app and that time>``: sorts by time, the same on every retry."""
    at = scheduled_at.astimezone(UTC)
    digest = hashlib.sha256(f"{app_id}\n{at.isoformat()}".encode()).hexdigest()[:12]
    return f"ret_{at.strftime('%Y%m%d%H%M%S')}_{digest}"


@dataclass
class SweepStarts:
    started: list[dict[str, str]] = field(default_factory=list)
    # Apps left alone because another of their runs still holds the lock.
    skipped: list[dict[str, str]] = field(default_factory=list)
    # Apps whose execution could not be started: their run is failed and their lock released.
    failed: list[dict[str, str]] = field(default_factory=list)
    # Apps whose start failed and whose execution could not be looked up either: the run may be live, so it
    # stays running and holds the lock, and the next pass checks its execution.
    unconfirmed: list[dict[str, str]] = field(default_factory=list)
    # Apps this call could not settle or start (an error of their own): the other apps went on, and the next
    # pass tries them again.
    errors: list[dict[str, str]] = field(default_factory=list)
    # Where the shard's next call resumes; None once the shard is done.
    cursor: str | None = None


class RetentionScheduler:
    def __init__(
        self,
        settings: RetentionSettingsRepository,
        runs: RetentionRunRepository,
        start_execution: StartExecution,
        describe_execution: DescribeExecution,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.runs = runs
        self.start_execution = start_execution
        self.describe_execution = describe_execution
        self.clock = clock

    def shards(self) -> list[int]:
        """The shards of the index of apps with settings: the scheduler's state machine runs them in parallel."""
        return list(range(self.settings.shard_count))

    def start_page(
        self,
        scheduled_at: datetime,
        shard: int,
        cursor: str | None,
        limit: int = APPS_PER_CALL,
        remaining: Remaining | None = None,
    ) -> SweepStarts:
        """Start the sweeps of the next ``limit`` apps of one index shard; they all share the scheduled time as 'now'.

        Each run is recorded (running) before its execution starts, so it can be read at once. The page ends
        early, where the next call resumes, once less than ``CALL_MARGIN_SECONDS`` of the call's time is left.
        An app that fails is listed in ``errors``; the page goes on with the others.
        """
        app_ids, after = self.settings.apps_page(shard, cursor, limit)
        result = SweepStarts(cursor=after)
        for index, app_id in enumerate(app_ids):
            if index > 0 and remaining is not None and remaining() < CALL_MARGIN_SECONDS:
                result.cursor = app_ids[index - 1]
                break
            try:
                self._start(app_id, scheduled_at, result)
            except Exception as exc:
                logger.exception("Retention scheduler: app %s failed", app_id)
                result.errors.append({"app_id": app_id, "error": _error(exc)})
        return result

    def start_sweeps(self, scheduled_at: datetime) -> SweepStarts:
        """Every shard, page after page, in one call (what the state machine does in parallel)."""
        result = SweepStarts()
        for shard in self.shards():
            cursor: str | None = None
            while True:
                page = self.start_page(scheduled_at, shard, cursor)
                result.started += page.started
                result.skipped += page.skipped
                result.failed += page.failed
                result.unconfirmed += page.unconfirmed
                result.errors += page.errors
                cursor = page.cursor
                if cursor is None:
                    break
        return result

    def _start(self, app_id: str, scheduled_at: datetime, result: SweepStarts) -> None:
        """Start the app's sweep unless another run holds it (settling that run if it is over)."""
        run_id = run_id_for(app_id, scheduled_at)
        now = self.clock()
        previous = self.runs.lock_holder(app_id)
        holder = self.runs.acquire_lock(app_id, run_id, now, LOCK_TTL)
        if holder is not None and self._settle(app_id, holder):
            holder = self.runs.acquire_lock(app_id, run_id, self.clock(), LOCK_TTL)
        if holder is not None:
            result.skipped.append({"app_id": app_id, "running": holder})
            return
        if previous is not None and previous != run_id:
            try:
                if self._lock_expired(app_id, previous, run_id, result):
                    result.skipped.append({"app_id": app_id, "running": previous})
                    return
            except Exception as exc:  # the old run's trouble does not stop the new one, which holds the lock
                logger.exception("Retention scheduler: the expired run %s of %s could not be read", previous, app_id)
                result.errors.append({"app_id": app_id, "run_id": previous, "error": _error(exc)})
        try:
            run = self.runs.create(app_id, run_id, scheduled_at, self.clock())
        except Exception:
            # A lock taken for a run that does not exist would hold the app until it expires. Free it only when no
            # run was recorded: a concurrent call for the same run, or a write whose answer was lost, may have
            # recorded it (and started its execution).
            if previous != run_id:
                with contextlib.suppress(Exception):
                    if self.runs.state(app_id, run_id) is None:
                        self.runs.release_lock(app_id, run_id)
            raise
        if run.finished_at is not None:  # a late retry of a finished run: nothing to start, nothing to hold
            self.runs.release_lock(app_id, run_id)
            return
        payload = {"app_id": app_id, "run_id": run_id, "now": scheduled_at.isoformat(), "generation": 0}
        try:
            execution_arn = self._start_or_find(run_id, payload)
        except ExecutionUnknown as exc:
            logger.warning("Retention scheduler: the start of %s is unknown: %s", run_id, exc)
            result.unconfirmed.append({"app_id": app_id, "run_id": run_id, "error": clip(str(exc), MAX_MESSAGE_CHARS)})
            return
        except StartFailed as exc:
            # Nothing will run or finalize this run: it must not stay running, nor hold the app for hours.
            error = clip(f"The sweep could not start: {exc}", MAX_MESSAGE_CHARS)
            self.runs.finish(app_id, run_id, RunSummary(), RunStatus.FAILED, self.clock(), None, error)
            self.runs.release_lock(app_id, run_id)
            result.failed.append({"app_id": app_id, "run_id": run_id, "error": error})
            return
        result.started.append({"app_id": app_id, "run_id": run_id, "execution_arn": execution_arn})

    def _lock_expired(self, app_id: str, expired: str, run_id: str, result: SweepStarts) -> bool:
        """The run whose lock expired unfinalized (its executions' lookups kept failing, say) must not stay
        running for ever: the lock ``run_id`` just took goes back to it, and it is marked ending, failed, and
        handed to a finalize, which later passes follow up (``_settle``) until it is finished. True when the
        expired run keeps the app (``run_id`` waits for the next pass)."""
        state = self.runs.state(app_id, expired)
        if state is None or state.finished:
            return False
        now = self.clock()
        if not self.runs.pass_lock(app_id, run_id, expired, now, LOCK_TTL):
            return True  # taken by another pass meanwhile: not this one's to start
        logger.warning("Retention scheduler: the lock of %s's run %s expired unfinalized", app_id, expired)
        error = f"retention_lock_expired: the run's lock expired after {LOCK_TTL} before the run was finalized."
        try:
            if state.finalize_after is None:
                self.runs.mark_ending(app_id, expired, state.generation, now, error)
            self._settle(app_id, expired)  # hands it off, unless its last finalize still runs
        except Exception as exc:  # it holds the lock again: the next pass settles it
            logger.exception("Retention scheduler: the expired run %s of %s could not be handed on", expired, app_id)
            result.errors.append({"app_id": app_id, "run_id": expired, "error": _error(exc)})
        return True

    def _settle(self, app_id: str, run_id: str) -> bool:
        """Settle the run that holds the app's lock, if it is over; True when it released the lock.

        A finished run's leftover lock is released. A run whose current execution is no longer running is
        marked ending, as that execution's status change event would have done (the event may have been lost).
        An ending run is handed to a finalize-only execution, unless its last one is still running: the pass
        itself only makes these few small, idempotent requests.
        """
        state = self.runs.state(app_id, run_id)
        if state is None:
            # A lock taken for a run whose creation failed: free once that run would have been created.
            taken = self.runs.lock_taken_at(app_id, run_id)
            if taken is None or self.clock() - taken < START_GRACE:
                return False
            self.runs.release_lock(app_id, run_id)
            return True
        if state.finished:
            self.runs.release_lock(app_id, run_id)
            return True
        if state.finalize_after is None:
            found = self._ended_execution(run_id, state)
            if found is None:
                return False
            state = end_run(self.runs, app_id, run_id, state.generation, found, self.clock())
            if state is None or state.finished or state.finalize_after is None:
                return False  # handed on, or finalized, meanwhile: the next pass looks again
        if state.handoff > 0:
            try:
                last = self.describe_execution(finalize_name(run_id, state.handoff))
            except ExecutionUnknown as exc:
                logger.warning("Retention scheduler: the finalize of %s is unknown: %s", run_id, exc)
                return False
            if last is None:
                # Counted, but its start failed or is on its way: started again by its name (found if it runs),
                # and the run keeps the app for as long as that finalize may run.
                now = self.clock()
                self.runs.acquire_lock(app_id, run_id, now, LOCK_TTL)
                self.start_execution(finalize_name(run_id, state.handoff), finalize_input(app_id, run_id, state, now))
                return False
            if last.running:
                return False
            if state.handoff >= MAX_HANDOFFS:
                self._give_up(app_id, run_id, state)
                return True
        hand_off(self.runs, self.start_execution, app_id, run_id, state, self.clock())
        return False

    def _give_up(self, app_id: str, run_id: str, state: RunState) -> None:
        """A run whose finalizes keep failing must not hold the app for ever: it ends failed, counted from its
        parts, without a report, and frees the app."""
        now = self.clock()
        summary = RunSummary()
        for part in self.runs.parts(app_id, run_id, now):
            summary.add(part)
        error = clip(
            f"retention_finalize_failed: {state.handoff} finalize executions ended without finalizing the run"
            + (f" ({state.error})" if state.error else ""),
            MAX_MESSAGE_CHARS,
        )
        logger.error("Retention scheduler: run %s of %s: %s", run_id, app_id, error)
        self.runs.finish(app_id, run_id, summary, RunStatus.FAILED, now, None, error)
        self.runs.release_lock(app_id, run_id)

    def _ended_execution(self, run_id: str, state: RunState) -> ExecutionState | None:
        """How the execution of the run's current generation ended; None while it runs (or cannot be told)."""
        name = generation_name(run_id, state.generation)
        try:
            found = self.describe_execution(name)
        except ExecutionUnknown as exc:
            # The next pass asks again; should the lookups fail until the lock expires, the next run takes the lock
            # and hands this run to a finalize.
            logger.warning("Retention scheduler: the execution %s is unknown: %s", name, exc)
            return None
        if found is not None:
            return None if found.running else found
        # Absent: its start may still be on its way, just after the write that named it.
        if state.updated_at is None or self.clock() - state.updated_at < START_GRACE:
            return None
        return ExecutionState(name, "FAILED", "ExecutionDoesNotExist", f"The execution {name} never started.")

    def _start_or_find(self, run_id: str, payload: dict[str, Any]) -> str:
        """Start the run's execution; a start that failed may still have been accepted (a throttled or timed-out
        retry of a start that went through, or a start answered late): the execution of that name, if it
        exists, is the run's, and runs it. Only an execution known to be absent fails the run; when the lookup
        fails too, ExecutionUnknown: the run stays for the next pass to check."""
        try:
            return self.start_execution(run_id, payload)
        except StartFailed:
            found = self.describe_execution(run_id)
            if found is None:
                raise
            return found.arn


def _error(exc: Exception) -> str:
    return clip(f"{type(exc).__name__}: {exc}", MAX_MESSAGE_CHARS)
