"""The one map from domain errors to HTTP responses: status, body shape and headers, up to what the client gets."""

import json
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pynamodb.connection.base import Connection

from steward.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ReauthenticationFailed,
    ReauthenticationRequired,
    StewardError,
    TooManyRequests,
    Unauthenticated,
)
from steward.http.errors import domain_error_response
from tests.support.service import context, load_event


@pytest.mark.parametrize(
    ("error", "status", "code", "field"),
    [
        (InvalidInput("Bad.", field="name"), 422, "invalid_input", "name"),
        (NotFound("Gone."), 404, "not_found", None),
        (Conflict("Taken.", code="segment_name_taken"), 409, "segment_name_taken", None),
        (Unauthenticated("Who?"), 401, "unauthenticated", None),
        (Forbidden("No."), 403, "forbidden", None),
        (ReauthenticationRequired("Send it.", field="totp_code"), 428, "reauthentication_required", "totp_code"),
        (ReauthenticationFailed("Not accepted."), 401, "reauthentication_failed", None),
        (TooManyRequests("Later.", retry_after=42), 429, "too_many_attempts", None),
    ],
)
def test_each_domain_error_gets_its_status_and_the_error_body(
    error: StewardError, status: int, code: str, field: str | None
) -> None:
    response = domain_error_response(error)

    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert isinstance(response.body, str)
    assert json.loads(response.body) == {"error": {"code": code, "message": error.message, "field": field}}


def test_too_many_requests_says_when_to_retry() -> None:
    response = domain_error_response(TooManyRequests("Later.", retry_after=300))

    assert response.headers["Retry-After"] == "300"


def test_other_errors_have_no_retry_after() -> None:
    assert "Retry-After" not in domain_error_response(ReauthenticationFailed("Not accepted.")).headers


def test_retry_after_reaches_the_client_through_the_api_function(api: ModuleType) -> None:
    """A route that raises TooManyRequests, in the real function: the header survives the resolver."""

    @api.app.post("/v1/test-only/throttled")
    def throttled() -> None:
        raise TooManyRequests("Too many failed re-authentications for this app; retry in 120 seconds.", retry_after=120)

    event = load_event("http-api-get-device.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/test-only/throttled"
    event["requestContext"]["http"]["method"] = "POST"

    response = api.lambda_handler(event, context())

    assert response["statusCode"] == 429
    assert response["headers"]["Retry-After"] == "120"
    assert json.loads(response["body"]) == {
        "error": {
            "code": "too_many_attempts",
            "message": "Too many failed re-authentications for this app; retry in 120 seconds.",
            "field": None,
        }
    }


@pytest.fixture
def dynamodb_refuses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every DynamoDB call gets the error code put in the list, as botocore raises it once its retries ran out."""
    refusal: list[str] = []
    original = Connection._make_api_call

    def make_api_call(connection: Connection, operation: str, request: dict[str, Any]) -> Any:
        if refusal:
            raise ClientError({"Error": {"Code": refusal[0], "Message": "refused"}}, operation)  # type: ignore[arg-type]
        return original(connection, operation, request)

    monkeypatch.setattr(Connection, "_make_api_call", make_api_call)
    return refusal


def test_a_request_dynamodb_throttles_gets_503_with_retry_after_not_500(
    api: ModuleType, dynamodb_refuses: list[str]
) -> None:
    dynamodb_refuses.append("ProvisionedThroughputExceededException")

    response = api.lambda_handler(load_event("http-api-get-device.json"), context())

    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "1"
    error = json.loads(response["body"])["error"]
    assert error["code"] == "unavailable"
    assert "Retry-After" in error["message"]


def test_a_refusal_that_sending_again_cannot_cure_stays_a_500(api: ModuleType, dynamodb_refuses: list[str]) -> None:
    dynamodb_refuses.append("AccessDeniedException")

    response = api.lambda_handler(load_event("http-api-get-device.json"), context())

    assert response["statusCode"] == 500
    assert "Retry-After" not in (response.get("headers") or {})
    assert json.loads(response["body"])["error"]["code"] == "internal_error"
