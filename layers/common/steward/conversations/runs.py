"""Reading sweep runs over the API: one run, the app's runs, and a link to a run's report."""

from collections.abc import Callable
from datetime import datetime

from steward.conversations.models import RetentionRun
from steward.conversations.reports import Link, ReportFiles
from steward.conversations.retention_repository import RetentionRunRepository
from steward.errors import Conflict, NotFound
from steward.pagination import Page


def run_not_found(run_id: str) -> NotFound:
    return NotFound(f"Retention run {run_id!r} does not exist.", code="retention_run_not_found", field="run_id")


class RetentionRunService:
    def __init__(self, runs: RetentionRunRepository, reports: ReportFiles, clock: Callable[[], datetime]) -> None:
        self.runs = runs
        self.reports = reports
        self.clock = clock

    def get(self, app_id: str, run_id: str) -> RetentionRun:
        run = self.runs.get(app_id, run_id)
        if run is None:
            raise run_not_found(run_id)
        return run

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[RetentionRun]:
        return self.runs.list_page(app_id, cursor, limit)

    def report(self, app_id: str, run_id: str) -> Link:
        run = self.get(app_id, run_id)
        key = self.runs.report_key(app_id, run_id)
        if run.finished_at is None or key is None:
            raise Conflict("The run has not finished: its report is not ready.", code="report_not_ready")
        return self.reports.link(key, self.clock())
