"""Criteria routes: preview what criteria select before a maintenance job uses them."""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from steward.apps.models import Scope
from steward.composition import Services
from steward.criteria.models import PreviewRequest, PreviewResult
from steward.http.auth import RequireScope, current_principal
from steward.http.openapi import errors

TAG = "Criteria"
# A preview only reads, so a read-only key may run it although it is a POST (the criteria need a body).
READ: list[Callable[..., Any]] = [RequireScope(Scope.READ)]

_DESCRIPTION = """\
Counts the users, devices, emails or phones that `criteria` select, one page at a
time, and returns up to `sample_size` of them.

One request reads at most 5,000 items of the target's table (fewer when the criteria
need each user's devices or each device's owner) and returns `next_cursor` when it
stopped early. Send the same body with `cursor` set to continue, and add up `matched`
over the pages: the total is known once `complete` is true. A page may match nothing
and still have a next one.

Errors in the criteria are 422 with code `invalid_criteria` and `field` set to the
JSON path of the bad part, such as `criteria.all[1].any[0].op`.
"""


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    @router.post(
        "/v1/criteria/preview",
        tags=[TAG],
        summary="Preview what criteria select (count and sample)",
        description=_DESCRIPTION,
        responses=errors({422: ["invalid_criteria"]}),
        middlewares=READ,
    )
    def preview_criteria(body: PreviewRequest) -> PreviewResult:
        return services.criteria.preview(current_principal(router).app_id, body)

    return router
