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
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from steward.conversations.models import RunStatus, RunSummary
from steward.conversations.retention_repository import RetentionRunRepository, RetentionSettingsRepository
from steward.errors import MAX_MESSAGE_CHARS, clip

StartExecution = Callable[[str, dict[str, Any]], str]
# The ARN of the execution of that name if Step Functions has it, else None (StartFailed when it cannot tell).
FindExecution = Callable[[str], str | None]
# Finalizes an app's run as failed with the error given (app id, run id, error).
Finalize = Callable[[str, str, str], object]

# Apps one scheduler call starts: about four requests each, well inside the function's 60 s.
APPS_PER_CALL = 100


class StartFailed(Exception):
    """Step Functions refused to start an execution, after the client's own retries."""


RUN_TIMEOUT = timedelta(hours=12)
LOCK_TTL = RUN_TIMEOUT + timedelta(minutes=10)  # the sweep function's 120 s, and clock skew


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
    # Where the shard's next call resumes; None once the shard is done.
    cursor: str | None = None


class RetentionScheduler:
    def __init__(
        self,
        settings: RetentionSettingsRepository,
        runs: RetentionRunRepository,
        start_execution: StartExecution,
        find_execution: FindExecution,
        finalize: Finalize,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.runs = runs
        self.start_execution = start_execution
        self.find_execution = find_execution
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
            self._start(app_id, scheduled_at, result)
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
                cursor = page.cursor
                if cursor is None:
                    break
        return result

    def _start(self, app_id: str, scheduled_at: datetime, result: SweepStarts) -> None:
        run_id = run_id_for(app_id, scheduled_at)
        holder = self.runs.acquire_lock(app_id, run_id, self.clock(), LOCK_TTL)
        if holder is not None and self._finalize_ended(app_id, holder):
            holder = self.runs.acquire_lock(app_id, run_id, self.clock(), LOCK_TTL)
        if holder is not None:
            result.skipped.append({"app_id": app_id, "running": holder})
            return
        run = self.runs.create(app_id, run_id, scheduled_at)
        if run.finished_at is not None:  # a late retry of a finished run: nothing to start, nothing to hold
            self.runs.release_lock(app_id, run_id)
            return
        payload = {"app_id": app_id, "run_id": run_id, "now": scheduled_at.isoformat(), "generation": 0}
        try:
            execution_arn = self._start_or_find(run_id, payload)
        except StartFailed as exc:
            # Nothing will run or finalize this run: it must not stay running, nor hold the app for hours.
            error = clip(f"The sweep could not start: {exc}", MAX_MESSAGE_CHARS)
            self.runs.finish(app_id, run_id, RunSummary(), RunStatus.FAILED, self.clock(), None, error)
            self.runs.release_lock(app_id, run_id)
            result.failed.append({"app_id": app_id, "run_id": run_id, "error": error})
            return
        result.started.append({"app_id": app_id, "run_id": run_id, "execution_arn": execution_arn})

    def _finalize_ended(self, app_id: str, run_id: str) -> bool:
        """Finalize the app's run if its execution timed out or was stopped and the last page it may have been
        applying is over (see ``RetentionExecutions.execution_ended``); True when it did."""
        state = self.runs.state(app_id, run_id)
        if state is None or not state.due_to_finalize(self.clock()):
            return False
        self.finalize(app_id, run_id, state.error or "States.ABORTED")
        return True

    def _start_or_find(self, run_id: str, payload: dict[str, Any]) -> str:
        """Start the run's execution; a start that failed may still have been accepted (a throttled or timed-out
        retry of a start that went through, or a start answered late): the execution of that name, if it
        exists, is the run's, and runs it. Only an execution known to be absent fails the run."""
        try:
            return self.start_execution(run_id, payload)
        except StartFailed:
            found = self.find_execution(run_id)
            if found is None:
                raise
            return found
