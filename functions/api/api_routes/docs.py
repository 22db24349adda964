"""Health check and API documentation: the only routes that need no key."""

import json
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from steward.http.openapi import without_unused_schemas
from steward.schema import Schema

PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs"})
_BEARER = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "stw_<app id>.<key id>.<secret>",
    "description": (
        "An API key of the app, as `Authorization: Bearer <api key>`. A route needs the `read` scope "
        "for GET and `write` otherwise, unless its 403 response names another. Without the header, "
        'API Gateway answers 401 `{"message": "Unauthorized"}` itself.'
    ),
}


class Health(Schema):
    status: str


def configure(app: APIGatewayHttpResolver) -> None:
    app.configure_openapi(
        title="Steward API",
        version="1.0.0",
        description="Devices, audiences and maintenance jobs for customer-engagement platforms.",
        # A plain mapping, validated into Powertools' model only when the document is built:
        # importing its OpenAPI models up front costs every cold start about 150 ms.
        security_schemes={"apiKey": _BEARER},  # type: ignore[dict-item]
        security=[{"apiKey": []}],
    )


def build_router(app: APIGatewayHttpResolver) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    # [{}] is the empty requirement: no key. Powertools leaves an empty list out of the document.
    @router.get("/health", tags=["Meta"], summary="Liveness check", security=[{}])
    def health() -> Health:
        return Health(status="ok")

    @router.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return _document(app)

    # Powertools' enable_swagger imports the OpenAPI models when the route is
    # registered, at every cold start; this route loads Swagger UI on first use.
    @router.get("/docs", include_in_schema=False, compress=True)
    def swagger_ui() -> Response[str]:
        if (app.current_event.query_string_parameters or {}).get("format") == "json":  # as enable_swagger answers
            return Response(status_code=200, content_type="application/json", body=_spec(app))
        return Response(status_code=200, content_type="text/html", body=_swagger_html(app))

    return router


def _swagger_html(app: APIGatewayHttpResolver) -> str:
    from aws_lambda_powertools.event_handler.openapi import swagger_ui

    assets = Path(swagger_ui.__file__).parent
    return swagger_ui.generate_swagger_html(
        _spec(app),
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        swagger_base_url="",
        oauth2_config=None,
    )


def _document(app: APIGatewayHttpResolver) -> dict[str, Any]:
    schema: dict[str, Any] = app.get_openapi_schema().model_dump(mode="json", by_alias=True, exclude_none=True)
    return without_unused_schemas(schema)


def _spec(app: APIGatewayHttpResolver) -> str:
    # "</" escaped: the HTML page embeds the spec in a <script> element.
    return json.dumps(_document(app), separators=(",", ":")).replace("</", "<\\/")
