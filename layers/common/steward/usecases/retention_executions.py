"""A retention run across executions of bounded history, and runs whose execution ended without finalizing.

Step Functions caps one execution's history at 25,000 events, and a page of
the sweep costs about 9. A run therefore sweeps at most ``pages_per_execution``
pages per execution (split over the shards not done yet); then its progress
step starts the next generation of the same state machine (``<run id>_g<n>``:
a retried start finds it) and the execution ends; only the generation that
finds every shard done finalizes. The step starts it rather than a
``states:startExecution`` task: moto's interpreter, which the local stack and
the tests run, cannot call Step Functions from a task (it sends the
parameters unconverted, and botocore rejects them). Each
generation renews the app's lock, so a run of any size keeps it while it
works, and loses nothing if it stops: the shards' parts hold its progress.

An execution that fails, times out or is stopped is heard through its
"Step Functions Execution Status Change" event, or, should the event be lost,
found over by the scheduler's next pass (steward/conversations/scheduler.py). After a failure (a step failed
after its retries: no page is in flight) its run is finalized as failed and its
lock released. After a time-out or a stop, the last page's Lambda may still be
applying (up to its 120 s timeout): the run is marked ending instead
(``finalize_after``, still running, the lock kept), and the scheduler's next
pass finalizes it once that has passed, before it starts the app's next run.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from steward.conversations.models import RetentionRun
from steward.conversations.retention_repository import RUN_MAX_AGE, RetentionRunRepository
from steward.conversations.scheduler import LOCK_TTL, STOPPED, generation_name
from steward.errors import Conflict
from steward.usecases.retention_sweep import RetentionSweep, caught_error

# A run that needs more generations is not converging (each one sweeps up to 800 pages of 500 entries).
MAX_GENERATIONS = 10_000
# After a time-out or a stop, the run is finalized after the page a Lambda may still be applying (120 s) and
# clock skew.
LAST_PAGE_GRACE = timedelta(minutes=10)

# (state machine ARN, execution name, input): starts it, or finds the execution of that name started already.
StartExecution = Callable[[str, str, dict[str, Any]], str]


class RetentionRunStopped(Conflict):
    """The run cannot go on (its lock was taken, or it took too many executions or too long). Lambda reports the
    class name as the error: the definition's Plan never retries this one, as a retry cannot change it."""


@dataclass(frozen=True)
class GenerationPlan:
    """What one execution sweeps: the shards not done yet, and how many pages each may sweep."""

    shards: list[int]
    pages: int
    # The run is over (finished, or carried on by another generation): this execution stops at once.
    stop: bool = False


class RetentionExecutions:
    def __init__(
        self,
        sweep: RetentionSweep,
        runs: RetentionRunRepository,
        shard_count: int,
        pages_per_execution: int,
        start_execution: StartExecution,
        clock: Callable[[], datetime],
    ) -> None:
        self.sweep = sweep
        self.runs = runs
        self.shard_count = shard_count
        self.pages_per_execution = pages_per_execution
        self.start_execution = start_execution
        self.clock = clock

    def plan(self, app_id: str, run_id: str, now: datetime, generation: int) -> GenerationPlan:
        """Record the run (first generation), renew its lock, and share this execution's pages among the
        shards not done yet (at least one page each)."""
        if generation > MAX_GENERATIONS:
            message = f"The run did not finish in {MAX_GENERATIONS} executions."
            raise RetentionRunStopped(message, code="retention_run_too_long")
        state = self.runs.state(app_id, run_id)
        if (state is None and generation > 0) or (state is not None and not state.carried_by(generation)):
            # A late execution of a run that is over (one the scheduler counted failed, say), or of a generation
            # the run has been handed on from: it must not take the lock of the app's next run, nor sweep.
            return GenerationPlan([], 0, stop=True)
        if self.clock() - now > RUN_MAX_AGE:
            # Its users' outcomes, written once, are kept for a run of this age (USER_OUTCOME_TTL).
            message = f"The run did not finish within {RUN_MAX_AGE.days} days of its start."
            raise RetentionRunStopped(message, code="retention_run_too_long")
        if generation == 0:
            self.sweep.plan(app_id, run_id, now)
        holder = self.runs.acquire_lock(app_id, run_id, self.clock(), LOCK_TTL)
        if holder is not None:  # it expired and another run took it: two sweeps must not overlap
            raise RetentionRunStopped(f"The app's lock is held by run {holder}.", code="retention_lock_lost")
        done = self.runs.keep_parts(app_id, run_id, self.clock())  # each generation keeps the run's counts
        shards = [shard for shard in range(self.shard_count) if shard not in done]
        return GenerationPlan(shards, max(1, self.pages_per_execution // max(1, len(shards))))

    def progress(self, app_id: str, run_id: str, now: datetime, generation: int, state_machine: str) -> bool:
        """True when every shard is done (this execution finalizes); else start the run's next execution."""
        if len(self.runs.done_shards(app_id, run_id, self.clock())) >= self.shard_count:
            return True
        if not self.runs.advance_generation(app_id, run_id, generation, self.clock()):
            return False  # the run is finished, or carried on by a later generation: nothing to start
        following = generation + 1
        payload = {"app_id": app_id, "run_id": run_id, "now": now.isoformat(), "generation": following}
        self.start_execution(state_machine, generation_name(run_id, following), payload)
        return False

    def execution_ended(
        self,
        app_id: str,
        run_id: str,
        generation: int,
        status: str,
        error: str | None,
        cause: str | None,
        stopped_at: datetime | None = None,
    ) -> RetentionRun | None:
        """Finalize the run of an execution that failed, timed out or was stopped: nothing if it is finalized,
        or if the execution had handed the run on to the next generation (which finalizes it).

        Its status change event calls this, or the scheduler's pass when it finds the execution over (the
        event may have been lost), with when the execution stopped."""
        state = self.runs.state(app_id, run_id)
        if state is None or not state.carried_by(generation):
            return self.runs.get(app_id, run_id)  # a run finalized twice, or by a later generation, changes nothing
        caught = {"Error": error or f"States.{status}", "Cause": cause or ""}
        now = self.clock()
        if status not in STOPPED:
            if not self.sweep.finalize(app_id, run_id, caught, generation).done:
                # More than one invocation's work: marked ending at once, so the scheduler's passes go on with it.
                self.runs.acquire_lock(app_id, run_id, now, LOCK_TTL)
                self.runs.mark_ending(app_id, run_id, generation, now, caught_error(caught) or status)
            return self.runs.get(app_id, run_id)
        # Held until the scheduler's pass finalizes the run (the lock's own expiry frees it if none comes).
        self.runs.acquire_lock(app_id, run_id, now, LOCK_TTL)
        finalize_after = min(now, stopped_at or now) + LAST_PAGE_GRACE
        self.runs.mark_ending(app_id, run_id, generation, finalize_after, caught_error(caught) or status)
        return self.runs.get(app_id, run_id)
