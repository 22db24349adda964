"""The authorizer and scopes, through the local gateway as a client sees them."""

import json
import uuid

from tests.support.client import RunningStack, all_items, create_key, operator


def test_public_routes_need_no_key(stack: RunningStack) -> None:
    assert stack.api("GET", "/health").json() == {"status": "ok"}
    assert stack.api("GET", "/openapi.json").json()["info"]["title"] == "Steward API"
    assert "swagger" in stack.api("GET", "/docs").text.lower()


def test_the_docs_page_serves_the_same_document_as_json(stack: RunningStack) -> None:
    document = stack.api("GET", "/openapi.json").json()
    as_json = stack.api("GET", "/docs?format=json")

    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json() == document
    scheme = document["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert scheme["bearerFormat"] == "stw_<app id>.<key id>.<secret>"
    assert "Authorization: Bearer <api key>" in scheme["description"]


def test_missing_header_is_refused_by_the_gateway(stack: RunningStack) -> None:
    response = stack.api("GET", "/v1/devices")

    assert response.status_code == 401


def test_unknown_malformed_and_non_bearer_keys_get_401(stack: RunningStack) -> None:
    real = stack.key(0)
    forged = real[: real.rindex(".") + 1] + "A" * 43
    for header in (f"Bearer {forged}", "Bearer nonsense", f"Basic {real}"):
        response = stack.api("GET", "/v1/devices", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] in {"invalid_api_key", "missing_api_key"}


def test_revoked_key_gets_401(stack: RunningStack) -> None:
    key = create_key(stack, ["read"])
    assert stack.api("GET", "/v1/devices", key["api_key"]).status_code == 200

    revoked = stack.api("DELETE", f"/v1/api-keys/{key['key_id']}", stack.key(0))
    response = stack.api("GET", "/v1/devices", key["api_key"])

    assert revoked.json()["revoked_at"] is not None
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "revoked_api_key"


def test_read_key_cannot_write_and_write_key_cannot_read(stack: RunningStack) -> None:
    reader, writer = create_key(stack, ["read"]), create_key(stack, ["write"])
    device = f"/v1/devices/fcm%3A{uuid.uuid4().hex}"

    write_with_reader = stack.api("PUT", device, reader["api_key"], json={"user_id": "u", "transport": "FCM"})
    write_with_writer = stack.api("PUT", device, writer["api_key"], json={"user_id": "u", "transport": "FCM"})
    read_with_writer = stack.api("GET", device, writer["api_key"])
    read_with_reader = stack.api("GET", device, reader["api_key"])

    assert write_with_reader.status_code == 403
    assert write_with_reader.json()["error"]["code"] == "insufficient_scope"
    assert write_with_writer.status_code == 200
    assert read_with_writer.status_code == 403
    assert read_with_reader.status_code == 200


def test_key_management_needs_admin(stack: RunningStack) -> None:
    ordinary = create_key(stack, ["read", "write"])

    for method, route in (("GET", "/v1/api-keys"), ("POST", "/v1/api-keys"), ("DELETE", "/v1/api-keys/x")):
        response = stack.api(method, route, ordinary["api_key"], json={"name": "n", "scopes": ["read"]})
        assert response.status_code == 403, route
        assert response.json()["error"]["code"] == "insufficient_scope"


def test_keys_are_listed_without_secrets(stack: RunningStack) -> None:
    key = create_key(stack, ["read"])
    listed = all_items(stack, "/v1/api-keys", limit=2)

    assert key["key_id"] in {item["key_id"] for item in listed}
    assert key["api_key"] not in json.dumps(listed)
    assert all("api_key" not in item and "secret_hash" not in item for item in listed)


def test_the_last_admin_key_cannot_be_revoked(stack: RunningStack) -> None:
    own_key_id = stack.key(1).split(".")[1]

    response = stack.api("DELETE", f"/v1/api-keys/{own_key_id}", stack.key(1))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_admin_key"


def test_operator_cli_bootstraps_an_app_whose_key_works(stack: RunningStack) -> None:
    app_id = f"ops-{uuid.uuid4().hex[:8]}"

    created = json.loads(operator(stack, "create-app", "--app-id", app_id, "--name", "Ops test").stdout)

    assert created["app"]["app_id"] == app_id
    assert stack.api("GET", "/v1/devices", created["api_key"]["api_key"]).json() == {"items": [], "next_cursor": None}
