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
    MAX_MESSAGE_CHARS,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ReauthenticationRequired,
    ServiceUnavailable,
    StewardError,
    TooManyRequests,
    Unauthenticated,
    UnsupportedMediaType,
    clip,
)
from steward.retryable import refused_for_now

STATUS_BY_ERROR: dict[type[StewardError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    Unauthenticated: 401,
    Forbidden: 403,
    ReauthenticationRequired: 428,
    UnsupportedMediaType: 415,
    TooManyRequests: 429,
    ServiceUnavailable: 503,
}


# The seconds a client waits before sending again a request AWS refused for the moment.
REFUSED_FOR_NOW_RETRY_AFTER_SECONDS = 1
REFUSED_FOR_NOW_MESSAGE = (
    "A service Steward depends on refused the request for the moment (throttling, or an item busy with another "
    "change). Send it again after Retry-After; what it changed before the refusal, if anything, stays changed."
)

# pydantic prefixes the messages of custom validators; the message itself says what is wrong.
VALUE_ERROR_PREFIX = "Value error, "


def error_body(code: str, message: str, field: str | None = None) -> str:
    clipped_field = None if field is None else clip(field)
    return json.dumps({"error": {"code": code, "message": clip(message, MAX_MESSAGE_CHARS), "field": clipped_field}})


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response[str]:
    return Response(
        status_code=status, content_type="application/json", body=error_body(code, message, field), headers=headers
    )


def domain_error_response(exc: StewardError) -> Response[str]:
    """The response of a domain error: its status, the error body, and the headers its status calls for."""
    retry_after = exc.retry_after if isinstance(exc, TooManyRequests | ServiceUnavailable) else None
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
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
            reason = str((first.get("ctx") or {}).get("error") or "")  # the parser's, or steward.http.body's
            detail = f": {reason}." if reason else "."
            return error_response(422, "malformed_json", f"The request body is not valid JSON{detail}")
        field = validation_field(tuple(first.get("loc", ())))
        message = str(first.get("msg", "Invalid input.")).removeprefix(VALUE_ERROR_PREFIX)
        code = "missing_field" if first.get("type") == "missing" else "invalid_input"
        return error_response(422, code, f"{field}: {message}" if field else message, field)

    @app.not_found
    def handle_unknown_route(exc: Exception) -> Response[str]:
        return error_response(404, "route_not_found", "No such route.")

    @app.exception_handler(Exception)
    def handle_unexpected(exc: Exception) -> Response[str]:
        if refused_for_now(exc):
            # Not a fault of Steward's nor of the request: DynamoDB's own retries ran out on a hot key.
            logger.warning("Refused for the moment", exc_info=exc)
            refused = ServiceUnavailable(REFUSED_FOR_NOW_MESSAGE, retry_after=REFUSED_FOR_NOW_RETRY_AFTER_SECONDS)
            return domain_error_response(refused)
        logger.exception("Unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
