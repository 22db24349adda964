"""What the retention schedule starts: one sweep execution per app that has settings.

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

from steward.conversations.retention_repository import RetentionRunRepository, RetentionSettingsRepository

StartExecution = Callable[[str, dict[str, Any]], str]

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


class RetentionScheduler:
    def __init__(
        self,
        settings: RetentionSettingsRepository,
        runs: RetentionRunRepository,
        start_execution: StartExecution,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.runs = runs
        self.start_execution = start_execution
        self.clock = clock

    def start_sweeps(self, scheduled_at: datetime) -> SweepStarts:
        """Start one execution per app with settings; they all share the scheduled time as their 'now'.

        Each run is recorded (running) before its execution starts, so it can be read at once.
        """
        result = SweepStarts()
        for app_id in self.settings.apps():
            run_id = run_id_for(app_id, scheduled_at)
            holder = self.runs.acquire_lock(app_id, run_id, self.clock(), LOCK_TTL)
            if holder is not None:
                result.skipped.append({"app_id": app_id, "running": holder})
                continue
            run = self.runs.create(app_id, run_id, scheduled_at)
            if run.finished_at is not None:  # a late retry of a finished run: nothing to start, nothing to hold
                self.runs.release_lock(app_id, run_id)
                continue
            payload = {"app_id": app_id, "run_id": run_id, "now": scheduled_at.isoformat()}
            execution_arn = self.start_execution(run_id, payload)
            result.started.append({"app_id": app_id, "run_id": run_id, "execution_arn": execution_arn})
        return result
