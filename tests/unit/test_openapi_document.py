"""/openapi.json lists every status a route can answer, with the bodies Steward really sends.

The contract test (tests/integration/test_openapi_contract.py) checks the
running API against the document; these tests pin the document's own rules.
"""

import json
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from steward.http.errors import error_body
from steward.http.openapi import ErrorResponse, GatewayError, document_responses, errors, without_unused_schemas
from steward.settings import StoreSettings
from tests.support.service import call, load_event, load_function

PUBLIC = {"/health"}
ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
STEWARD_OR_GATEWAY = {"anyOf": [ERROR, {"$ref": "#/components/schemas/GatewayError"}]}
CREATES = {
    ("post", "/v1/api-keys"),
    ("post", "/v1/resources"),
    ("post", "/v1/regions"),
    ("post", "/v1/loyalty-programs"),
    ("post", "/v1/segments"),
    ("post", "/v1/jobs"),
    ("post", "/v1/jobs/{job_id}/confirm"),
    ("post", "/v1/conversations"),
}
NO_CONTENT = {
    ("delete", "/v1/devices/{device_id}"),
    ("delete", "/v1/users/{user_id}"),
    ("delete", "/v1/resources/{resource_id}"),
    ("delete", "/v1/regions/{region_id}"),
    ("delete", "/v1/segments/{segment_id}"),
    ("delete", "/v1/jobs/{job_id}"),
    ("delete", "/v1/conversations/{conversation_id}"),
    ("delete", "/v1/audiences/{name}/tombstone"),
}


@pytest.fixture
def document(store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    api = load_function("api", store, monkeypatch)
    return fetch_document(api)


def fetch_document(api: ModuleType) -> dict[str, Any]:
    event = load_event("http-api-identify-device.json")
    event.update(rawPath="/openapi.json", body=None)
    event["requestContext"]["http"].update(method="GET", path="/openapi.json")
    status, document = call(api, event)
    assert status == 200
    result: dict[str, Any] = document
    return result


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "put", "post", "delete", "patch"}
    ]


def schema_of(response: dict[str, Any]) -> Any:
    schema = dict(response["content"]["application/json"]["schema"])
    schema.pop("title", None)
    return schema


def test_every_authenticated_route_documents_the_errors_every_route_can_give(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        responses = operation["responses"]
        assert schema_of(responses["422"]) == ERROR, (method, path)
        # Routes that re-authenticate send their own 429 (too_many_attempts) besides the gateway's throttling.
        own_429 = "428" in responses
        gateway_429 = {"$ref": "#/components/schemas/GatewayError"}
        assert schema_of(responses["429"]) == (STEWARD_OR_GATEWAY if own_429 else gateway_429), (method, path)
        assert schema_of(responses["500"]) == STEWARD_OR_GATEWAY, (method, path)
        # Throttling past botocore's retries answers 503 on any route (steward.http.errors).
        assert schema_of(responses["503"]) == ERROR, (method, path)
        assert "`unavailable`" in responses["503"]["description"], (method, path)
        if path in PUBLIC:
            assert not {"401", "403", "415"} & set(responses), (method, path)
            continue
        assert schema_of(responses["401"]) == STEWARD_OR_GATEWAY, (method, path)
        assert schema_of(responses["403"]) == ERROR, (method, path)
        assert ("415" in responses) == ("requestBody" in operation), (method, path)


def test_every_error_response_references_the_one_error_model(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert schema_of(response) in (ERROR, STEWARD_OR_GATEWAY, {"$ref": "#/components/schemas/GatewayError"})
            assert "HTTPValidationError" not in json.dumps(response), (method, path, status)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_routes_with_path_parameters_document_404(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if "{" in path:
            assert "route_not_found" in operation["responses"]["404"]["description"], (method, path)


def test_success_statuses_are_the_ones_the_routes_send(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        success = {status for status in operation["responses"] if int(status) < 300}
        if (method, path) in CREATES:
            assert success == {"201"}, (method, path)
        elif (method, path) == ("delete", "/v1/segments/{segment_id}"):
            assert success == {"202", "204"}
        elif (method, path) in NO_CONTENT:
            assert success == {"204"}, (method, path)
        else:
            assert success == {"200"}, (method, path)
        if "204" in operation["responses"]:
            assert operation["responses"]["204"].get("content", {}) == {}, (method, path)


def test_declared_codes_and_scopes_reach_the_descriptions(document: dict[str, Any]) -> None:
    revoke = document["paths"]["/v1/api-keys/{key_id}"]["delete"]["responses"]
    preview = document["paths"]["/v1/criteria/preview"]["post"]["responses"]

    assert "`last_admin_key`" in revoke["409"]["description"]
    assert "`admin` scope" in revoke["403"]["description"]
    assert "`read` scope" in preview["403"]["description"]
    assert "`invalid_criteria`" in preview["422"]["description"]
    assert "`write` scope" in document["paths"]["/v1/users/{user_id}"]["put"]["responses"]["403"]["description"]


def test_the_bearer_scheme_guards_every_route_but_the_public_ones(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["apiKey"]

    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"apiKey": []}]
    assert document["paths"]["/health"]["get"]["security"] == [{}]


def test_ids_that_cannot_travel_in_a_path_are_excluded_by_the_patterns(document: dict[str, Any]) -> None:
    parameters = {
        parameter["name"]: parameter["schema"].get("pattern")
        for _, _, operation in operations(document)
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }

    assert parameters["device_id"] == parameters["user_id"] == "^[^?#]+$"
    assert parameters["region_id"] == parameters["email"] == "^[^/?#]+$"
    assert all(pattern is not None for name, pattern in parameters.items() if name != "channel"), parameters


def test_the_error_model_describes_the_error_bodies() -> None:
    for body in (error_body("device_not_found", "No such device.", "device_id"), error_body("x", "y")):
        assert ErrorResponse.model_validate_json(body).model_dump() == json.loads(body)
    assert GatewayError.model_validate({"message": "Unauthorized"}).message == "Unauthorized"


def test_unused_schemas_are_dropped_and_used_ones_kept() -> None:
    document = {
        "paths": {
            "/a": {"get": {"responses": {"200": {"content": {"x": {"schema": {"$ref": "#/components/schemas/A"}}}}}}}
        },
        "components": {
            "schemas": {
                "A": {"properties": {"b": {"$ref": "#/components/schemas/B"}}},
                "B": {"type": "string"},
                "Unused": {"type": "string"},
            }
        },
    }

    assert set(without_unused_schemas(document)["components"]["schemas"]) == {"A", "B"}


def test_a_routes_own_401_and_429_add_to_the_shared_ones() -> None:
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.post("/v1/example", responses=errors({401: ["reauthentication_failed"], 429: ["too_many_attempts"]}))
    def example() -> dict[str, str]:
        return {}

    document_responses(app, frozenset())
    route = next(route for route in app._static_routes if route.path == "/v1/example")
    responses = route.responses or {}

    for status, codes in ((401, ["missing_api_key", "reauthentication_failed"]), (429, ["too_many_attempts"])):
        assert all(code in responses[status]["description"] for code in codes)
        assert responses[status]["content"]["application/json"]["model"] == ErrorResponse | GatewayError
    assert "Too Many Requests" in responses[429]["description"]


def test_a_routes_own_503_adds_to_the_shared_one(document: dict[str, Any]) -> None:
    start = document["paths"]["/v1/jobs"]["post"]["responses"]["503"]["description"]
    assert "`job_not_started`" in start
    assert "`unavailable`" in start
    # A route whose own 503 is `unavailable` keeps its own description, once.
    lift = document["paths"]["/v1/audiences/{name}/tombstone"]["delete"]["responses"]["503"]["description"]
    assert lift.count("`unavailable`") == 1
    assert "AWS refused" not in lift


AUDIENCE_SCHEMAS = [
    "Audience", "Counts", "Failure", "InvalidLine", "MemberPage", "MembersCheck", "MembersCheckResult", "Membership",
    "UploadUrl",
]  # fmt: skip


def test_the_audience_schemas_describe_every_field(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    for model in AUDIENCE_SCHEMAS:
        properties = schemas[model]["properties"]
        assert [name for name, field in properties.items() if not field.get("description")] == [], model
    assert schemas["MembersCheck"]["properties"]["user_ids"]["items"]["maxLength"] == 256


def test_the_audience_name_parameter_says_how_a_name_starting_with_a_tilde_travels(document: dict[str, Any]) -> None:
    for _, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if path.startswith("/v1/audiences/") and parameter["name"] == "name":
                assert "starting with '~'" in parameter["description"], path
                assert "`~fllR`" in parameter["description"], path
