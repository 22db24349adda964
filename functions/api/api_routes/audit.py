"""Audit log route (admin scope): the app's maintenance-job entries, newest first. Nothing changes them."""

from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from steward.apps.models import Scope
from steward.audit.models import AuditEntry
from steward.composition import Services
from steward.http.auth import RequireScope, current_principal
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page

TAG = "Audit log"
ADMIN: list[Callable[..., Any]] = [RequireScope(Scope.ADMIN)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    @router.get(
        "/v1/audit",
        tags=[TAG],
        summary="List the audit log of maintenance jobs, newest first",
        description=(
            "One entry per job, dry or real, that no route can change or delete. Each entry's `hash` is the "
            "SHA-256 of its canonical JSON (RFC 8785) without `hash`, and `prev_hash` is the previous entry's "
            "`hash` (null for the first), so a changed or removed entry breaks the chain. See the README's "
            "Audit log section to verify it offline."
        ),
        middlewares=ADMIN,
    )
    def list_audit(cursor: Cursor = None, limit: Limit = DEFAULT_PAGE_SIZE) -> Page[AuditEntry]:
        return services.audit_log.list_page(current_principal(router).app_id, cursor, limit)

    return router
