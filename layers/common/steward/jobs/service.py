"""Maintenance jobs as the API offers them: submit, confirm, read, list, delete, download the report.

The API validates a job and starts its execution; the job types' code is
not imported here (it runs in the jobs worker). A real run needs the admin
scope and re-authentication in the same request, and at most one real job
runs per app: the lock is taken before the execution starts, and the worker
releases it when the job ends.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from steward.apps.models import Principal, Scope
from steward.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from steward.jobs.models import ConfirmJob, Job, JobError, JobRecord, JobStatus, JobType, SubmitJob
from steward.jobs.params import JobParams, parse_params
from steward.jobs.references import JobReferences
from steward.jobs.reports import ReportLink, ReportStore
from steward.jobs.repository import JobRepository, add_counts, new_job_id, sum_parts
from steward.pagination import Page

if TYPE_CHECKING:
    from steward.apps.reauth import Reauthentication

CONFIRM_WITHIN = timedelta(hours=24)
START_GRACE = timedelta(minutes=5)
# Step Functions' statuses of an execution that will not run again by itself, and MISSING: none was started.
_OVER = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "MISSING"})
START_RETRY_AFTER_SECONDS = 5

logger = logging.getLogger(__name__)


def job_not_found(job_id: str) -> NotFound:
    return NotFound(f"Job {job_id!r} does not exist.", code="job_not_found", field="job_id")


class JobService:
    def __init__(
        self,
        jobs: JobRepository,
        reports: ReportStore,
        reauthentication: "Reauthentication",
        references: JobReferences,
        start_execution: Callable[[str, dict[str, Any]], str],
        clock: Callable[[], datetime],
        execution_status: Callable[[str], str] | None = None,
    ) -> None:
        self.jobs = jobs
        self.reports = reports
        self.reauthentication = reauthentication
        self.references = references
        self.start_execution = start_execution
        self.clock = clock
        # Step Functions' status of the execution a job id names (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED;
        # MISSING when none was started); None: not asked.
        self.execution_status = execution_status

    def submit(self, principal: Principal, body: SubmitJob) -> Job:
        """Validate and start a job (201). A real run: admin scope, re-authentication, and the app's lock."""
        params = parse_params(body.type, body.params)
        self.references.check(principal.app_id, params)
        if body.dry_run:
            return self._start(principal, body.type, params, dry_run=True, reauth="none").public()
        self._require_admin(principal)
        reauth = self.reauthentication.check(principal.app_id, body.admin_password, body.totp_code, params.describe())
        return self._start(principal, body.type, params, dry_run=False, reauth=reauth).public()

    def confirm(self, principal: Principal, dry_job_id: str, body: ConfirmJob) -> Job:
        """Run a finished dry run for real, on exactly the entities it listed (201)."""
        self._require_admin(principal)
        dry = self._job(principal.app_id, dry_job_id)
        if not dry.dry_run:
            raise Conflict(f"Job {dry_job_id!r} is not a dry run.", code="not_a_dry_run", field="job_id")
        if dry.status is not JobStatus.SUCCEEDED:
            raise Conflict(
                f"Only a dry run that succeeded can be confirmed; {dry_job_id!r} is {dry.status.value}.",
                code="dry_run_not_succeeded",
                field="job_id",
            )
        if self.clock() - dry.created_at > CONFIRM_WITHIN:
            raise Conflict(
                "A dry run older than 24 hours cannot be confirmed: run it again.",
                code="dry_run_expired",
                field="job_id",
            )
        if dry.confirmed_by is not None:
            raise _already_confirmed(dry_job_id, dry.confirmed_by)
        params = parse_params(dry.type, dry.params)
        self.references.check(principal.app_id, params)
        reauth = self.reauthentication.check(principal.app_id, body.admin_password, body.totp_code, params.describe())
        job_id = new_job_id(self.clock())
        if not self.jobs.claim_confirmation(principal.app_id, dry_job_id, job_id):
            current = self.jobs.get(principal.app_id, dry_job_id)
            raise _already_confirmed(dry_job_id, None if current is None else current.confirmed_by)
        try:
            job = self._start(
                principal, dry.type, params, dry_run=False, reauth=reauth, confirms=dry_job_id, job_id=job_id
            )
        except Exception:
            self.jobs.release_confirmation(principal.app_id, dry_job_id, job_id)
            raise
        return job.public()

    def get(self, app_id: str, job_id: str) -> Job:
        """The job; while it runs, its counts are the pages committed so far."""
        job = self._job(app_id, job_id)
        if job.status.finished:
            return job.public()
        counts = job.counts
        for phase in range(job.phase + 1):
            counts = add_counts(counts, sum_parts(self.jobs.parts(app_id, job_id, phase))[0])
        return job.model_copy(update={"counts": counts}).public()

    def list_page(
        self, app_id: str, job_type: JobType | None, status: JobStatus | None, cursor: str | None, limit: int
    ) -> Page[Job]:
        page = self.jobs.list_page(app_id, job_type, status, cursor, limit)
        return Page(items=[job.public() for job in page.items], next_cursor=page.next_cursor)

    def delete(self, principal: Principal, job_id: str) -> None:
        """Stop the job if it runs (it ends as cancelled, and its worker removes it), or remove it now (204).

        A real run's record and report are the evidence of what changed: removing them, or stopping
        the run halfway, takes the scope that started it (admin). A dry run's take write.
        """
        app_id = principal.app_id
        job = self._job(app_id, job_id)
        if not job.dry_run:
            self._require_admin(principal, "Stopping or deleting a real run needs an API key with the `admin` scope.")
        if job.confirmed_by is not None:
            confirmation = self.jobs.get(app_id, job.confirmed_by)
            if confirmation is not None and not confirmation.status.finished:
                # Its confirmed run replays this dry run's report: removing it would cut that run short.
                raise Conflict(
                    f"Job {job.confirmed_by} is applying this dry run; delete it, or wait for it to end.",
                    code="confirmation_running",
                    field="job_id",
                )
        if not job.status.finished and self.jobs.mark_deleted(app_id, job_id, self.clock()):
            return
        self.reports.delete_job(app_id, job_id)
        self.jobs.delete(app_id, job_id)

    def report(self, app_id: str, job_id: str) -> ReportLink:
        """A presigned GET of the report, valid 15 minutes; 409 before the job has one."""
        job = self._job(app_id, job_id)
        if job.report_key is None:
            raise Conflict(
                f"Job {job_id!r} has no report yet: it is {job.status.value}.", code="report_not_ready", field="job_id"
            )
        return self.reports.link(job.report_key, self.clock())

    def _start(
        self,
        principal: Principal,
        job_type: JobType,
        params: JobParams,
        *,
        dry_run: bool,
        reauth: str,
        confirms: str | None = None,
        job_id: str | None = None,
    ) -> JobRecord:
        now = self.clock()
        job = JobRecord(
            job_id=job_id or new_job_id(now),
            app_id=principal.app_id,
            key_id=principal.key_id,
            type=job_type,
            params=params.to_json(),
            dry_run=dry_run,
            status=JobStatus.QUEUED,
            created_at=now,
            reauth=reauth,
            confirms=confirms,
        )
        if not dry_run:
            self._lock(job)
        self.jobs.create(job)
        try:
            arn = self.start_execution(job.job_id, {"app_id": job.app_id, "job_id": job.job_id})
        except Exception as exc:
            # Step Functions refused (throttled, or out of service). The job never ran, so it is not kept:
            # every job on record has its audit entry, which only its worker writes. An execution that
            # started although the call failed finds no job and stops before any change.
            logger.exception("The job's execution could not be started", extra={"job_id": job.job_id})
            self.jobs.delete(job.app_id, job.job_id)
            if not dry_run:
                self.jobs.release_lock(job.app_id, job.job_id)
            raise ServiceUnavailable(
                "The job could not be started; nothing ran. Try again.",
                code="job_not_started",
                retry_after=START_RETRY_AFTER_SECONDS,
            ) from exc
        try:
            self.jobs.start(job.app_id, job.job_id, arn, now)
        except Exception:
            # The execution runs whatever this write does, and the lock finds it by the job id: an error here
            # would have the client start the job a second time.
            logger.warning("The job's execution started; its ARN was not recorded", exc_info=True)
        return job

    def _lock(self, job: JobRecord) -> None:
        """One real job per app: 409 naming the running one. A lock left by a job that ended is taken over."""
        if self.jobs.acquire_lock(job.app_id, job.job_id, job.created_at):
            return
        holder = self.jobs.lock_holder(job.app_id)
        running = None if holder is None else self.jobs.get(job.app_id, holder)
        if running is not None and not running.status.finished and self._abandoned(running):
            # Its execution ended without finalizing it (stopped by hand, out of retries): it is over.
            ended = JobError(code="execution_ended", message="The job's execution ended before the job could finish.")
            self.jobs.finish(
                job.app_id, running.job_id, JobStatus.FAILED, running.counts, now=self.clock(), error=ended
            )
            running = self.jobs.get(job.app_id, running.job_id)
        if (holder is None or running is None or running.status.finished) and self.jobs.acquire_lock(
            job.app_id, job.job_id, job.created_at, stale=holder
        ):
            return
        raise Conflict(
            f"Job {holder} is running for this app; one real job runs at a time. Try again when it ends.",
            code="job_running",
        )

    def _abandoned(self, job: JobRecord) -> bool:
        """Whether a job that holds the lock has no execution left that could finish it."""
        if job.execution_arn is None and self.clock() - job.created_at <= START_GRACE:
            return False  # a start in flight records itself
        if self.execution_status is None:
            return job.execution_arn is None
        # Asked by the job id, which names the execution: a start whose ARN was not recorded is still found.
        # Only an ended or missing execution frees the lock: one waiting for a redrive may go on.
        return self.execution_status(job.job_id) in _OVER

    def _require_admin(
        self,
        principal: Principal,
        message: str = "A real run needs an API key with the `admin` scope; a dry run needs `write`.",
    ) -> None:
        if Scope.ADMIN not in principal.scopes:
            raise Forbidden(message, code="insufficient_scope")

    def _job(self, app_id: str, job_id: str) -> JobRecord:
        job = self.jobs.get(app_id, job_id)
        if job is None or job.deleted:
            raise job_not_found(job_id)
        return job


def _already_confirmed(dry_job_id: str, by: str | None) -> Conflict:
    return Conflict(
        f"Dry run {dry_job_id!r} was already confirmed" + (f" by job {by}." if by else "."),
        code="already_confirmed",
        field="job_id",
    )
