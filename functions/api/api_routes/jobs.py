"""Maintenance job routes: submit (dry or real), confirm a dry run, read, list, delete, and download the report.

The API only validates a job and starts its execution; the job types run in
the jobs worker, off this function's import path.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import Field

from api_routes.params import SegmentPath
from steward.apps.models import Scope
from steward.composition import Services
from steward.criteria.parse import INVALID_CRITERIA
from steward.http.auth import RequireScope, current_principal
from steward.http.openapi import errors
from steward.jobs.models import ConfirmJob, Job, JobStatus, JobType, SubmitJob
from steward.jobs.params import INVALID_PARAMS, SELECTION_CONDITIONS_REQUIRED
from steward.jobs.references import REFERENCE_ERROR_CODES
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from steward.regions.area import AREA_ERROR_CODES
from steward.schema import Schema

TAG = "Maintenance jobs"
ADMIN: list[Callable[..., Any]] = [RequireScope(Scope.ADMIN)]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
NOT_FOUND = errors({404: ["job_not_found"]})
NOT_STARTED = {503: ["job_not_started"]}
# Params refused at submission: their own checks, criteria, an area's geometry, and names the app lacks.
BAD_PARAMS = [INVALID_PARAMS, INVALID_CRITERIA, SELECTION_CONDITIONS_REQUIRED, *sorted(AREA_ERROR_CODES)]
REAUTH = {401: ["reauthentication_failed"], 428: ["reauthentication_required"], 429: ["too_many_attempts"]}

_SUBMIT_DESCRIPTION = """\
Starts a job. `dry_run` (default true) counts and reports what a real run would change,
changes nothing, and estimates what the real run would cost. A dry run needs the write
scope; a real run needs the admin scope and re-authentication in the same body:
`admin_password`, plus `totp_code` when the app has TOTP. They are never stored,
logged or returned. One real job runs per app at a time (409 `job_running`). The
parameters of each type are in the README's "Maintenance jobs".
"""

_CONFIRM_DESCRIPTION = """\
Runs a dry run for real, on exactly the entities its report lists: each is checked
again when it is changed, and one that no longer qualifies is reported as `drifted`.
Admin scope and re-authentication. A dry run can be confirmed once, within 24 hours.
"""

_DELETE_DESCRIPTION = """\
Removes the job and its report. A job still running is stopped first: its workers stop
before their next page and it ends as cancelled. The audit entry stays. A dry run needs
the write scope; a real run (its record is the evidence of what changed) needs admin.
"""


class ReportLink(Schema):
    url: str = Field(description="A presigned S3 GET of the report (CSV: entity,id,user_id,action,detail).")
    expires_at: datetime = Field(description="When the URL stops working (15 minutes).")


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.post(
        "/v1/jobs",
        tags=[TAG],
        summary="Start a maintenance job, dry (the default) or real",
        description=_SUBMIT_DESCRIPTION,
        status_code=201,
        responses=errors(
            {
                **REAUTH,
                403: ["insufficient_scope"],
                409: ["job_running"],
                422: [*BAD_PARAMS, *REFERENCE_ERROR_CODES],
                **NOT_STARTED,
            }
        ),
    )
    def submit_job(body: SubmitJob) -> Job:
        return services.jobs.submit(current_principal(router), body)

    @router.get(
        "/v1/jobs",
        tags=[TAG],
        summary="List the app's jobs, newest first",
    )
    def list_jobs(
        type: Annotated[JobType | None, Query(description="Only jobs of this type.")] = None,
        status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_PAGE_SIZE,
    ) -> Page[Job]:
        return services.jobs.list_page(app_id(), type, status, cursor, limit)

    @router.get(
        "/v1/jobs/<job_id>",
        tags=[TAG],
        summary="Get a job, with its counts so far",
        responses=NOT_FOUND,
    )
    def get_job(job_id: SegmentPath) -> Job:
        return services.jobs.get(app_id(), job_id)

    @router.delete(
        "/v1/jobs/<job_id>",
        tags=[TAG],
        summary="Stop a job if it runs, then delete it and its report",
        description=_DELETE_DESCRIPTION,
        status_code=204,
        responses={
            204: {"description": "The job is gone; no body.", "content": {}},
            **errors({403: ["insufficient_scope"], 404: ["job_not_found"], 409: ["confirmation_running"]}),
        },
    )
    def delete_job(job_id: SegmentPath) -> Response[None]:
        services.jobs.delete(current_principal(router), job_id)
        return Response(status_code=204)

    @router.post(
        "/v1/jobs/<job_id>/confirm",
        tags=[TAG],
        summary="Run a finished dry run for real",
        description=_CONFIRM_DESCRIPTION,
        status_code=201,
        middlewares=ADMIN,
        responses=errors(
            {
                **REAUTH,
                404: ["job_not_found"],
                409: ["not_a_dry_run", "dry_run_not_succeeded", "dry_run_expired", "already_confirmed", "job_running"],
                # The names the dry run's params hold are checked again: the app may have deleted one since.
                422: list(REFERENCE_ERROR_CODES),
                **NOT_STARTED,
            }
        ),
    )
    def confirm_job(job_id: SegmentPath, body: ConfirmJob) -> Job:
        return services.jobs.confirm(current_principal(router), job_id, body)

    @router.get(
        "/v1/jobs/<job_id>/report",
        tags=[TAG],
        summary="A link to download the job's report",
        responses=errors({404: ["job_not_found"], 409: ["report_not_ready"]}),
    )
    def job_report(job_id: SegmentPath) -> ReportLink:
        link = services.jobs.report(app_id(), job_id)
        return ReportLink(url=link.url, expires_at=link.expires_at)

    return router
