"""The one place that turns exceptions into HTTP errors.

Every error body is ``{"error": {"code", "message", "field"}}`` with a
stable ``code`` that clients can branch on.
"""

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from steward.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ReauthenticationRequired,
    StewardError,
    TooManyRequests,
    Unauthenticated,
)

STATUS_BY_ERROR: dict[type[StewardError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    Unauthenticated: 401,
    Forbidden: 403,
    ReauthenticationRequired: 428,
    TooManyRequests: 429,
}


def error_body(code: str, message: str, field: str | None = None) -> str:
    return json.dumps({"error": {"code": code, "message": message, "field": field}})


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response[str]:
    return Response(
        status_code=status, content_type="application/json", body=error_body(code, message, field), headers=headers
    )


def domain_error_response(exc: StewardError) -> Response[str]:
    """The response of a domain error: its status, the error body, and the headers its status calls for."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
    return error_response(status_of(exc), exc.code, exc.message, exc.field, headers)


def status_of(exc: StewardError) -> int:
    for error_type, status in STATUS_BY_ERROR.items():
        if isinstance(exc, error_type):
            return status
    return 500


def validation_field(location: tuple[Any, ...]) -> str | None:
    """'body.results.3.accepted' -> 'results[3].accepted'; drops the request part."""
    parts = [part for part in location if part not in ("body", "query", "path", "header")]
    field = ""
    for part in parts:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return field or None


def register_error_handlers(app: APIGatewayHttpResolver, logger: Logger) -> None:
    @app.exception_handler(StewardError)
    def handle_domain_error(exc: StewardError) -> Response[str]:
        return domain_error_response(exc)

    @app.exception_handler(RequestValidationError)
    def handle_validation_error(exc: RequestValidationError) -> Response[str]:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            return error_response(422, "malformed_json", "The request body is not valid JSON.")
        field = validation_field(tuple(first.get("loc", ())))
        message = str(first.get("msg", "Invalid input."))
        code = "missing_field" if first.get("type") == "missing" else "invalid_input"
        return error_response(422, code, f"{field}: {message}" if field else message, field)

    @app.not_found
    def handle_unknown_route(exc: Exception) -> Response[str]:
        return error_response(404, "route_not_found", "No such route.")

    @app.exception_handler(Exception)
    def handle_unexpected(exc: Exception) -> Response[str]:
        logger.exception("Unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
