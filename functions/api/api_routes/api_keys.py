"""API key routes (admin scope): create, list, get, revoke."""

from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import ConfigDict, Field

from api_routes.params import SegmentPath
from steward.apps.models import ApiKey, IssuedApiKey, Scope
from steward.composition import Services
from steward.http.auth import RequireScope, current_principal
from steward.http.openapi import errors
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from steward.schema import Schema

TAG = "API keys"
ADMIN: list[Callable[..., Any]] = [RequireScope(Scope.ADMIN)]


class CreateApiKey(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="What the key is for, e.g. 'ios-app'.")
    scopes: list[Scope] = Field(min_length=1, description="Any of read, write, admin.")


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    @router.post(
        "/v1/api-keys",
        tags=[TAG],
        summary="Create a key (the secret is shown once)",
        status_code=201,
        middlewares=ADMIN,
    )
    def create_api_key(body: CreateApiKey) -> IssuedApiKey:
        return services.apps.create_key(current_principal(router).app_id, body.name, body.scopes)

    @router.get("/v1/api-keys", tags=[TAG], summary="List keys, without secrets", middlewares=ADMIN)
    def list_api_keys(
        cursor: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> Page[ApiKey]:
        return services.apps.list_keys(current_principal(router).app_id, cursor, limit)

    @router.get(
        "/v1/api-keys/<key_id>",
        tags=[TAG],
        summary="Get one key, without its secret",
        responses=errors({404: ["api_key_not_found"]}),
        middlewares=ADMIN,
    )
    def get_api_key(key_id: SegmentPath) -> ApiKey:
        return services.apps.get_key(current_principal(router).app_id, key_id)

    @router.delete(
        "/v1/api-keys/<key_id>",
        tags=[TAG],
        summary="Revoke a key",
        description="The app's last active admin key cannot be revoked (409 `last_admin_key`).",
        responses=errors({404: ["api_key_not_found"], 409: ["api_key_revoked", "last_admin_key"]}),
        middlewares=ADMIN,
    )
    def revoke_api_key(key_id: SegmentPath) -> ApiKey:
        return services.apps.revoke_key(current_principal(router).app_id, key_id)

    return router
