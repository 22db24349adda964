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
found over by the scheduler's next pass (steward/conversations/scheduler.py).
Either way a page's Lambda may still be applying (a failed Map abandons its
other iterations, which run on up to their 120 s timeout): the run is marked
ending (``finalize_after``, still running, the lock kept) and handed to a
finalize-only execution of the same state machine (``<run id>_f<n>``), which
waits until ``finalize_after`` and finalizes the run, failed, step after step.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from steward.conversations.models import RetentionRun
from steward.conversations.retention_repository import RUN_MAX_AGE, RetentionRunRepository
from steward.conversations.scheduler import LOCK_TTL, ExecutionState, end_run, generation_name, hand_off
from steward.errors import Conflict
from steward.usecases.retention_sweep import RetentionSweep

# A run that needs more generations is not converging (each one sweeps up to 800 pages of 500 entries).
MAX_GENERATIONS = 10_000

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
        ended: ExecutionState,
        state_machine: str,
    ) -> RetentionRun | None:
        """Hand the run of an execution that ended without finalizing it (failed, timed out, stopped) to a
        finalize-only execution of ``state_machine``: nothing if the run is finalized, or if the execution had
        handed it on to the next generation (which finalizes it).

        Its status change event calls this; should the event be lost, the scheduler's next pass does the same
        (``RetentionScheduler._settle``). The run is marked ending at once (it holds the app meanwhile) and
        finalized only after the last page's grace: a page's Lambda may still be applying."""
        now = self.clock()
        state = end_run(self.runs, app_id, run_id, generation, ended, now)
        if state is not None and not state.finished and state.finalize_after is not None and state.handoff == 0:

            def start(name: str, payload: dict[str, Any]) -> str:
                return self.start_execution(state_machine, name, payload)

            hand_off(self.runs, start, app_id, run_id, state, now)
        return self.runs.get(app_id, run_id)
