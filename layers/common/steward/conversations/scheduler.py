"""What the retention schedule starts: one sweep execution per app that has settings."""

from collections.abc import Callable
from datetime import datetime
from secrets import token_hex
from typing import Any

from steward.conversations.retention_repository import RetentionRunRepository, RetentionSettingsRepository

StartExecution = Callable[[str, dict[str, Any]], str]


def new_run_id(now: datetime) -> str:
    """``ret_<UTC start time>_<12 hex>``: sorts by start time, and names the run's execution."""
    return f"ret_{now.strftime('%Y%m%d%H%M%S')}_{token_hex(6)}"


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

    def start_sweeps(self) -> list[dict[str, str]]:
        """Start one execution per app with settings; they all share the same 'now'.

        Each run is recorded (running) before its execution starts, so it can be read at once.
        """
        now = self.clock()
        started = []
        for app_id in self.settings.apps():
            run_id = new_run_id(now)
            self.runs.create(app_id, run_id, now)
            execution_arn = self.start_execution(run_id, {"app_id": app_id, "run_id": run_id, "now": now.isoformat()})
            started.append({"app_id": app_id, "run_id": run_id, "execution_arn": execution_arn})
        return started
