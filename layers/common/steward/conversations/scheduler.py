"""What the retention schedule starts: one sweep execution per app that has settings.

The schedule starts the scheduler's state machine, which runs one page of
apps at a time per shard of the index of apps with settings
(statemachines/retention_scheduler.asl.json): each call does a bounded
amount of work, so no number of apps outlasts a Lambda's timeout.

Idempotent, as the Scheduler delivers at least once and may overlap: the run
id is derived from the app and the scheduled time, and names the execution;
the sweep's 'now' is the scheduled time. An app whose run is still going (its
lock held) is skipped; a lock expires after ``LOCK_TTL``: the state machine's
own run time (``TimeoutSeconds`` in statemachines/retention.asl.json), plus the
last page a timed-out execution's Lambda may still be applying, plus a margin.

The run's execution reports its abrupt end through an EventBridge rule, which
delivers at least once but may still lose an event. So a pass that finds an
app held by a run also asks Step Functions about the run's current execution:
one that is no longer running is handled as its event would have been, and a
run whose execution never started (the start failed unseen, or a step died
between handing the run on and starting the next execution) is failed once
``START_GRACE`` has passed, instead of holding the app until its lock expires.
"""

import hashlib
from collections.abc import Callable
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
# Handles the end of a run's execution as its status change event would (app id, run id, generation, end).
ExecutionEnded = Callable[[str, str, int, ExecutionState], object]
# Finalizes an app's run as failed with the error given (app id, run id, error), as far as one invocation's budget
# allows: True once the run is finished and its lock released.
Finalize = Callable[[str, str, str], bool]

# Apps one scheduler call starts: about four requests each, well inside the function's 60 s.
APPS_PER_CALL = 100


class StartFailed(Exception):
    """Step Functions refused to start an execution, after the client's own retries."""


# An execution that ended so may have left a page in flight: its run is finalized only after that page's time.
STOPPED = ("TIMED_OUT", "ABORTED")
RUN_TIMEOUT = timedelta(hours=12)
LOCK_TTL = RUN_TIMEOUT + timedelta(minutes=10)  # the sweep function's 120 s, and clock skew
# A run's execution is started within seconds of the write that names it (the run's creation, or the hand-on to
# its next generation): one still absent this long after is counted as never started.
START_GRACE = timedelta(minutes=10)


def generation_name(run_id: str, generation: int) -> str:
    """The first execution is named by the run; the next ones add their generation (a retry finds its own)."""
    return run_id if generation == 0 else f"{run_id}_g{generation}"


def run_id_for(app_id: str, scheduled_at: datetime) -> str:
    """``ret_<UTC scheduled time>_<12 hex of the app and that time>``: sorts by time, the same on every retry."""
    at = scheduled_at.astimezone(UTC)
    digest = hashlib.sha256(f"{app_id}\n{at.isoformat()}".encode()).hexdigest()[:12]
    return f"ret_{at.strftime('%Y%m%d%H%M%S')}_{digest}"


@dataclass(frozen=True)
class _Settled:
    free: bool  # the run is finished and the lock released
    worked: bool  # finalize work was done, which may have taken much of the call's time


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
    # Where the shard's next call resumes; None once the shard is done.
    cursor: str | None = None


class RetentionScheduler:
    def __init__(
        self,
        settings: RetentionSettingsRepository,
        runs: RetentionRunRepository,
        start_execution: StartExecution,
        describe_execution: DescribeExecution,
        execution_ended: ExecutionEnded,
        finalize: Finalize,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.runs = runs
        self.start_execution = start_execution
        self.describe_execution = describe_execution
        self.execution_ended = execution_ended
        self.finalize = finalize
        self.clock = clock

    def shards(self) -> list[int]:
        """The shards of the index of apps with settings: the scheduler's state machine runs them in parallel."""
        return list(range(self.settings.shard_count))

    def start_page(
        self, scheduled_at: datetime, shard: int, cursor: str | None, limit: int = APPS_PER_CALL
    ) -> SweepStarts:
        """Start the sweeps of the next ``limit`` apps of one index shard; they all share the scheduled time as 'now'.

        Each run is recorded (running) before its execution starts, so it can be read at once.
        """
        app_ids, after = self.settings.apps_page(shard, cursor, limit)
        result = SweepStarts(cursor=after)
        for app_id in app_ids:
            if self._start(app_id, scheduled_at, result) and app_id != app_ids[-1]:
                # A run was finalized, which may have taken much of this call's time: the next call goes on.
                result.cursor = app_id
                break
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
                cursor = page.cursor
                if cursor is None:
                    break
        return result

    def _start(self, app_id: str, scheduled_at: datetime, result: SweepStarts) -> bool:
        """Start the app's sweep unless another run holds it; True when settling that run did finalize work."""
        run_id = run_id_for(app_id, scheduled_at)
        holder = self.runs.acquire_lock(app_id, run_id, self.clock(), LOCK_TTL)
        settled = _Settled(free=False, worked=False) if holder is None else self._settle(app_id, holder)
        if settled.free:
            holder = self.runs.acquire_lock(app_id, run_id, self.clock(), LOCK_TTL)
        if holder is not None:
            result.skipped.append({"app_id": app_id, "running": holder})
            return settled.worked
        run = self.runs.create(app_id, run_id, scheduled_at, self.clock())
        if run.finished_at is not None:  # a late retry of a finished run: nothing to start, nothing to hold
            self.runs.release_lock(app_id, run_id)
            return settled.worked
        payload = {"app_id": app_id, "run_id": run_id, "now": scheduled_at.isoformat(), "generation": 0}
        try:
            execution_arn = self._start_or_find(run_id, payload)
        except ExecutionUnknown as exc:
            result.unconfirmed.append({"app_id": app_id, "run_id": run_id, "error": clip(str(exc), MAX_MESSAGE_CHARS)})
            return settled.worked
        except StartFailed as exc:
            # Nothing will run or finalize this run: it must not stay running, nor hold the app for hours.
            error = clip(f"The sweep could not start: {exc}", MAX_MESSAGE_CHARS)
            self.runs.finish(app_id, run_id, RunSummary(), RunStatus.FAILED, self.clock(), None, error)
            self.runs.release_lock(app_id, run_id)
            result.failed.append({"app_id": app_id, "run_id": run_id, "error": error})
            return settled.worked
        result.started.append({"app_id": app_id, "run_id": run_id, "execution_arn": execution_arn})
        return settled.worked

    def _settle(self, app_id: str, run_id: str) -> "_Settled":
        """Settle the run that holds the app's lock, if it is over.

        A run whose current execution is no longer running is handled as that execution's status change event
        would have been (the event may have been lost). A run ending (its execution timed out or was stopped)
        is finalized once the last page it may have been applying is over (see
        ``RetentionExecutions.execution_ended``), as far as one invocation's budget allows: a finalize left
        unfinished keeps the lock, and the next pass goes on with it. A finished run whose lock was left is
        released.
        """
        state = self.runs.state(app_id, run_id)
        if state is None:
            return _Settled(free=False, worked=False)
        worked = False
        if not state.finished and state.finalize_after is None:
            found = self._ended_execution(run_id, state)
            if found is None:
                return _Settled(free=False, worked=False)
            self.execution_ended(app_id, run_id, state.generation, found)
            worked = True
            state = self.runs.state(app_id, run_id)
            if state is None or found.status not in STOPPED:
                # The end of a failed execution finalized the run (released), or went on with it for a budget.
                return _Settled(free=state is not None and state.finished, worked=True)
        if not state.finished and not state.due_to_finalize(self.clock()):
            return _Settled(free=False, worked=worked)
        if self.finalize(app_id, run_id, state.error or "States.ABORTED"):
            return _Settled(free=True, worked=True)
        self.runs.acquire_lock(app_id, run_id, self.clock(), LOCK_TTL)  # the run keeps the app until it is finalized
        return _Settled(free=False, worked=True)

    def _ended_execution(self, run_id: str, state: RunState) -> ExecutionState | None:
        """How the execution of the run's current generation ended; None while it runs (or cannot be told)."""
        name = generation_name(run_id, state.generation)
        try:
            found = self.describe_execution(name)
        except ExecutionUnknown:
            return None  # the next pass asks again
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
