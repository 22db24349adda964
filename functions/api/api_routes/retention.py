"""Retention routes: an app's settings (admin); the sweep's runs, reports and preview come with the sweep."""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from steward.apps.models import Scope
from steward.composition import Services
from steward.conversations.models import RetentionSettings, RetentionSettingsView
from steward.http.auth import RequireScope, current_principal

TAG = "Retention"
ADMIN: list[Callable[..., Any]] = [RequireScope(Scope.ADMIN)]

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
    )
    def put_retention_settings(body: RetentionSettings) -> RetentionSettingsView:
        return services.retention_settings.put(app_id(), body)

    return router
