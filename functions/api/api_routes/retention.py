"""Retention routes: an app's settings (admin), a preview of the sweep, and the sweeps' runs and reports."""

from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from api_routes.jobs import ReportLink
from steward.apps.models import Scope
from steward.composition import Services
from steward.conversations.models import (
    RUN_ID_PATTERN,
    RetentionPreview,
    RetentionRun,
    RetentionSettings,
    RetentionSettingsView,
)
from steward.http.auth import RequireScope, current_principal
from steward.http.openapi import errors
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page

TAG = "Retention"
ADMIN: list[Callable[..., Any]] = [RequireScope(Scope.ADMIN)]
READ: list[Callable[..., Any]] = [RequireScope(Scope.READ)]
RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="`ret_<UTC start time>_<12 hex>`.")]
RUN_NOT_FOUND = ["retention_run_not_found"]

_PREVIEW_DESCRIPTION = """\
What a sweep started now would do, without changing anything: the same `counts` and
`by_channel` as a run, plus `sample`, up to 20 conversation ids per transition. It reads
only the due-index entries of conversations that are due. A preview followed by a sweep
with no activity in between gives the same counts. One preview reads at most 10,000
entries in 400 queries: past that it stops, with `complete` false, and its counts are
of what it read (`read` entries).
"""


_PUT_DESCRIPTION = """\
Replaces the app's settings. Each setting is a whole number of days (0-36,500) or null.
`archive_after_days` (open, pending, automated, sent -> archive; null: never),
`delete_after_days` (archive, irrelevant, resolved -> delete; null: stays; 0: at once),
`purge_after_days` (days in delete before the conversation is deleted for good; null: 30;
0: at once), `delete_user_data`, and `channels`: the same keys for one channel, overriding
the app's key by key (a status left out keeps the app's value, an explicit null overrides
it). In the app's maps, a status left out is null. A negative number, a fraction, more than
36,500 or an unknown key is 422 with the path in `field`.
"""


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.get(
        "/v1/retention-settings",
        tags=[TAG],
        summary="The app's retention settings, and what applies to each overridden channel",
        middlewares=ADMIN,
    )
    def get_retention_settings() -> RetentionSettingsView:
        return services.retention_settings.get(app_id())

    @router.put(
        "/v1/retention-settings",
        tags=[TAG],
        summary="Replace the app's retention settings",
        description=_PUT_DESCRIPTION,
        middlewares=ADMIN,
        responses=errors({409: ["concurrent_update"]}),
    )
    def put_retention_settings(body: RetentionSettings) -> RetentionSettingsView:
        return services.retention_settings.put(app_id(), body)

    @router.post(
        "/v1/retention/preview",
        tags=[TAG],
        summary="What a sweep started now would do",
        description=_PREVIEW_DESCRIPTION,
        middlewares=READ,
    )
    def preview_retention() -> RetentionPreview:
        return services.retention_preview.preview(app_id())

    @router.get("/v1/retention/runs", tags=[TAG], summary="The app's sweeps, newest first")
    def list_retention_runs(
        cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> Page[RetentionRun]:
        return services.retention_runs.list_page(app_id(), cursor, limit)

    @router.get(
        "/v1/retention/runs/<run_id>",
        tags=[TAG],
        summary="One sweep: its counts, users deleted and kept, start and end",
        responses=errors({404: RUN_NOT_FOUND}),
    )
    def get_retention_run(run_id: RunIdPath) -> RetentionRun:
        return services.retention_runs.get(app_id(), run_id)

    @router.get(
        "/v1/retention/runs/<run_id>/report",
        tags=[TAG],
        summary="A link to download a sweep's report",
        responses=errors({404: RUN_NOT_FOUND, 409: ["report_not_ready"]}),
    )
    def retention_run_report(run_id: RunIdPath) -> ReportLink:
        link = services.retention_runs.report(app_id(), run_id)
        return ReportLink(url=link.url, expires_at=link.expires_at)

    return router
