"""Health check and API documentation: the only routes that need no key."""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel

from steward.http.openapi import without_unused_schemas

PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs"})


class Health(BaseModel):
    status: str


def configure(app: APIGatewayHttpResolver) -> None:
    app.configure_openapi(
        title="Steward API",
        version="1.0.0",
        description="Devices, audiences and maintenance jobs for customer-engagement platforms.",
        security_schemes={
            "apiKey": HTTPBearer(
                description=(
                    "An API key of the app, as `Authorization: Bearer <api key>`. A route needs the `read` scope "
                    "for GET and `write` otherwise, unless its 403 response names another. Without the header, "
                    'API Gateway answers 401 `{"message": "Unauthorized"}` itself.'
                ),
                bearerFormat="stw_<app id>.<key id>.<secret>",
            )
        },
        security=[{"apiKey": []}],
    )
    app.enable_swagger(path="/docs", compress=True)


def build_router(app: APIGatewayHttpResolver) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    # [{}] is the empty requirement: no key. Powertools leaves an empty list out of the document.
    @router.get("/health", tags=["Meta"], summary="Liveness check", security=[{}])
    def health() -> Health:
        return Health(status="ok")

    @router.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        schema: dict[str, Any] = app.get_openapi_schema().model_dump(mode="json", by_alias=True, exclude_none=True)
        return without_unused_schemas(schema)

    return router
