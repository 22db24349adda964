"""Bad input gets a 4xx with a stable code and the offending field, and loses nothing.

Every error body is exactly ``{"error": {"code", "message", "field"}}``. Where a
bad request targets an existing device, the device is read back afterwards to
check that the request changed nothing.
"""

import base64
import json
from typing import Any
from uuid import uuid4

import pytest

from tests.support.client import RunningStack, assert_error, device_path, fresh_id, identify, read_device

MAX_DEVICE_ID_BYTES = 1024
MAX_BATCH_RESULTS = 100


def assert_no_device(stack: RunningStack, device_id: str) -> None:
    response = stack.api("GET", device_path(device_id), key=stack.key(0))
    assert_error(response, 404, "device_not_found", "device_id")


@pytest.fixture
def device(stack: RunningStack) -> dict[str, Any]:
    """An existing device of the first demo app, with a fresh id and user."""
    return identify(stack, fresh_id("bad:dev-"), fresh_id("bad-user-"))


def cursor_of(position: Any) -> str:
    """A cursor built the way the API builds its own (base64url JSON, unpadded)."""
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- PUT /v1/devices/{device_id} -------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        pytest.param(
            {"user_id": "u", "transport": "Carrier pigeon"}, "invalid_input", "transport", id="unknown-transport"
        ),
        pytest.param({"user_id": "u", "transport": "fcm"}, "invalid_input", "transport", id="transport-wrong-case"),
        pytest.param({"transport": "FCM"}, "missing_field", "user_id", id="missing-user-id"),
        pytest.param({"user_id": "u"}, "missing_field", "transport", id="missing-transport"),
        pytest.param({"user_id": "", "transport": "FCM"}, "invalid_input", "user_id", id="empty-user-id"),
        pytest.param({"user_id": 42, "transport": "FCM"}, "invalid_input", "user_id", id="user-id-not-a-string"),
        pytest.param({"user_id": "u", "transport": "FCM", "owner": "x"}, "invalid_input", "owner", id="unknown-field"),
        pytest.param(
            {"user_id": "u", "transport": "FCM", "attributes": {"bad name!": "v"}},
            "invalid_input",
            "attributes.bad name!.[key]",
            id="bad-attribute-name",
        ),
    ],
)
def test_identify_rejects_bad_body_and_keeps_the_device(
    stack: RunningStack, device: dict[str, Any], body: dict[str, Any], code: str, field: str
) -> None:
    response = stack.api("PUT", device_path(device["device_id"]), key=stack.key(0), json=body)

    assert_error(response, 422, code, field)
    assert read_device(stack, device["device_id"]) == device


def test_identify_rejects_bad_body_and_creates_nothing(stack: RunningStack) -> None:
    device_id = fresh_id("bad:new-")
    response = stack.api("PUT", device_path(device_id), key=stack.key(0), json={"user_id": "u", "transport": "Pigeon"})

    assert_error(response, 422, "invalid_input", "transport")
    assert_no_device(stack, device_id)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"user_id": "u", "transport": ', id="truncated"),
        pytest.param(b"{'user_id': 'u'}", id="single-quotes"),
        pytest.param(b"not json at all", id="text"),
    ],
)
def test_identify_rejects_malformed_json(stack: RunningStack, device: dict[str, Any], raw: bytes) -> None:
    response = stack.api(
        "PUT",
        device_path(device["device_id"]),
        key=stack.key(0),
        data=raw,
        headers={"content-type": "application/json"},
    )

    assert_error(response, 422, "malformed_json", None)
    assert read_device(stack, device["device_id"]) == device


def test_device_id_of_max_bytes_is_accepted(stack: RunningStack) -> None:
    prefix = fresh_id("bad:max-")
    device_id = prefix + "a" * (MAX_DEVICE_ID_BYTES - len(prefix))

    assert identify(stack, device_id, "u")["device_id"] == device_id
    assert read_device(stack, device_id)["device_id"] == device_id


@pytest.mark.parametrize(
    "device_id",
    [
        pytest.param("a" * (MAX_DEVICE_ID_BYTES + 1), id="ascii"),
        # 512 two-byte characters are 1024 bytes; one more ASCII character is too many.
        pytest.param("é" * (MAX_DEVICE_ID_BYTES // 2) + "a", id="utf-8"),
    ],
)
def test_device_id_over_max_bytes_is_rejected(stack: RunningStack, device_id: str) -> None:
    response = stack.api("PUT", device_path(device_id), key=stack.key(0), json={"user_id": "u", "transport": "FCM"})
    assert_error(response, 422, "invalid_path_parameter", "device_id")

    response = stack.api("GET", device_path(device_id), key=stack.key(0))
    assert_error(response, 422, "invalid_path_parameter", "device_id")


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PUT", "", {"user_id": "u", "transport": "FCM"}),
        ("GET", "", None),
        ("DELETE", "", None),
        ("DELETE", "/user", None),
        ("POST", "/push-results", {"accepted": True}),
    ],
)
@pytest.mark.parametrize("raw_id", ["%00", "~not*base64", "~__8"])
def test_undecodable_device_id_is_rejected(
    stack: RunningStack, method: str, suffix: str, body: dict[str, Any] | None, raw_id: str
) -> None:
    # A control character once decoded, invalid base64url after '~', or base64url of invalid UTF-8.
    response = stack.api(method, f"/v1/devices/{raw_id}{suffix}", key=stack.key(0), json=body)

    assert_error(response, 422, "invalid_path_parameter", "device_id")


@pytest.mark.parametrize("raw_path", ["/v1/devices/%ff%fe", "/v1/devices/ok%c3", "/v1/users/%ff%fe/devices"])
def test_path_that_is_not_utf8_is_refused_before_steward_runs(stack: RunningStack, raw_path: str) -> None:
    response = stack.api("GET", raw_path, key=stack.key(0))

    assert response.status_code == 400
    assert response.json() == {"message": "Bad Request"}


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        pytest.param("GET", "", None, id="get"),
        pytest.param("POST", "/push-results", {"accepted": True}, id="push-accepted"),
        pytest.param("POST", "/push-results", {"accepted": False}, id="push-failed"),
        pytest.param("DELETE", "", None, id="delete"),
        pytest.param("DELETE", "/user", None, id="dissociate"),
    ],
)
def test_unknown_device_is_not_found_with_its_field(
    stack: RunningStack, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    device_id = fresh_id("bad:unknown-")
    response = stack.api(method, device_path(device_id, suffix), key=stack.key(0), json=body)

    assert_error(response, 404, "device_not_found", "device_id")
    assert_no_device(stack, device_id)


# --- POST /v1/devices/{device_id}/push-results ----------------------------


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        pytest.param({"accepted": "maybe"}, "invalid_input", "accepted", id="accepted-not-a-bool"),
        pytest.param({}, "missing_field", "accepted", id="missing-accepted"),
        pytest.param({"accepted": False, "error_code": ""}, "invalid_input", "error_code", id="empty-error-code"),
        pytest.param({"accepted": True, "device_id": "x"}, "invalid_input", "device_id", id="unknown-field"),
    ],
)
def test_push_result_rejects_bad_body_and_keeps_the_device(
    stack: RunningStack, device: dict[str, Any], body: dict[str, Any], code: str, field: str
) -> None:
    response = stack.api("POST", device_path(device["device_id"], "/push-results"), key=stack.key(0), json=body)

    assert_error(response, 422, code, field)
    assert read_device(stack, device["device_id"]) == device


def test_push_result_rejects_malformed_json(stack: RunningStack, device: dict[str, Any]) -> None:
    response = stack.api(
        "POST",
        device_path(device["device_id"], "/push-results"),
        key=stack.key(0),
        data=b'{"accepted": tru',
        headers={"content-type": "application/json"},
    )

    assert_error(response, 422, "malformed_json", None)
    assert read_device(stack, device["device_id"]) == device


# --- POST /v1/push-results --------------------------------------------------


def test_batch_of_more_than_max_results_is_rejected_whole(stack: RunningStack, device: dict[str, Any]) -> None:
    results = [{"device_id": device["device_id"], "accepted": True}] * (MAX_BATCH_RESULTS + 1)
    response = stack.api("POST", "/v1/push-results", key=stack.key(0), json={"results": results})

    assert_error(response, 422, "batch_too_large", "results")
    assert read_device(stack, device["device_id"]) == device


def test_batch_of_max_results_is_accepted(stack: RunningStack, device: dict[str, Any]) -> None:
    results = [{"device_id": device["device_id"], "accepted": True}] * MAX_BATCH_RESULTS
    response = stack.api("POST", "/v1/push-results", key=stack.key(0), json={"results": results})

    assert response.status_code == 200, response.text
    assert response.json()["succeeded"] == MAX_BATCH_RESULTS
    assert read_device(stack, device["device_id"])["last_status"] == "sent"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"results": {"device_id": "x", "accepted": True}}, "invalid_input", id="object"),
        pytest.param({"results": "all of them"}, "invalid_input", id="string"),
        pytest.param({"results": None}, "invalid_input", id="null"),
        pytest.param({}, "missing_field", id="missing"),
    ],
)
def test_batch_results_must_be_a_list(stack: RunningStack, body: dict[str, Any], code: str) -> None:
    response = stack.api("POST", "/v1/push-results", key=stack.key(0), json=body)

    assert_error(response, 422, code, "results")


def test_batch_rejects_malformed_json(stack: RunningStack) -> None:
    response = stack.api(
        "POST",
        "/v1/push-results",
        key=stack.key(0),
        data=b'{"results": [',
        headers={"content-type": "application/json"},
    )

    assert_error(response, 422, "malformed_json", None)


def test_batch_with_one_bad_item_applies_the_good_ones(stack: RunningStack) -> None:
    first, second, third = (identify(stack, fresh_id(f"bad:batch{n}-"), fresh_id("bad-user-")) for n in range(3))
    results = [
        {"device_id": first["device_id"], "accepted": True},
        {"device_id": second["device_id"], "error_code": "Unregistered"},  # no "accepted"
        {"device_id": third["device_id"], "accepted": False, "error_code": "Unregistered"},
    ]
    response = stack.api("POST", "/v1/push-results", key=stack.key(0), json={"results": results})

    assert response.status_code == 200, response.text
    outcome = response.json()
    assert (outcome["succeeded"], outcome["failed"]) == (2, 1)
    assert [item["index"] for item in outcome["results"]] == [0, 1, 2]
    assert [item["ok"] for item in outcome["results"]] == [True, False, True]
    bad = outcome["results"][1]
    assert bad["device_id"] == second["device_id"]
    assert bad["device"] is None
    assert set(bad["error"]) == {"code", "message", "field"}
    assert bad["error"]["code"] == "invalid_input"
    assert bad["error"]["message"].strip()
    assert bad["error"]["field"] == "results[1].accepted"

    assert read_device(stack, first["device_id"])["last_status"] == "sent"
    assert read_device(stack, second["device_id"]) == second
    applied = read_device(stack, third["device_id"])
    assert applied["last_status"] == "bounced"
    assert applied["last_error_code"] == "Unregistered"


@pytest.mark.parametrize(
    ("item", "field"),
    [
        pytest.param("not an object", "results[0]", id="not-an-object"),
        pytest.param({"accepted": True}, "results[0].device_id", id="missing-device-id"),
        pytest.param({"device_id": "", "accepted": True}, "results[0].device_id", id="empty-device-id"),
        pytest.param({"device_id": "d", "accepted": "maybe"}, "results[0].accepted", id="accepted-not-a-bool"),
    ],
)
def test_batch_item_errors_name_the_item_field(stack: RunningStack, item: Any, field: str) -> None:
    response = stack.api("POST", "/v1/push-results", key=stack.key(0), json={"results": [item]})

    assert response.status_code == 200, response.text
    outcome = response.json()
    assert (outcome["succeeded"], outcome["failed"]) == (0, 1)
    error = outcome["results"][0]["error"]
    assert error["code"] == "invalid_input"
    assert error["message"].strip()
    assert error["field"] == field


# --- GET /v1/devices and the other list routes ------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("limit=0", "limit", id="limit-0"),
        pytest.param("limit=201", "limit", id="limit-201"),
        pytest.param("limit=-1", "limit", id="limit-negative"),
        pytest.param("limit=ten", "limit", id="limit-not-a-number"),
        pytest.param("last_status=nope", "last_status", id="last-status"),
        pytest.param("transport=nope", "transport", id="transport"),
        pytest.param("active=perhaps", "active", id="active"),
    ],
)
def test_list_devices_rejects_bad_query(stack: RunningStack, query: str, field: str) -> None:
    response = stack.api("GET", f"/v1/devices?{query}", key=stack.key(0))

    assert_error(response, 422, "invalid_input", field)


@pytest.mark.parametrize("limit", [1, 200])
def test_list_devices_limit_bounds_are_accepted(stack: RunningStack, limit: int) -> None:
    response = stack.api("GET", "/v1/devices", key=stack.key(0), params={"limit": limit})

    assert response.status_code == 200, response.text
    assert 1 <= len(response.json()["items"]) <= limit


GARBAGE_CURSORS = [
    pytest.param("garbage", id="text"),
    pytest.param("!!!***", id="not-base64"),
    pytest.param(cursor_of([1, 2]), id="json-list"),
    pytest.param(cursor_of("after"), id="json-string"),
    pytest.param(cursor_of({}), id="empty-object"),
    pytest.param(cursor_of({"after": 5}), id="after-not-a-string"),
]


@pytest.mark.parametrize(
    "cursor",
    [
        *GARBAGE_CURSORS,
        pytest.param(cursor_of({"shard": 10_000, "after": "x"}), id="shard-out-of-range"),
        pytest.param(cursor_of({"shard": -1}), id="shard-negative"),
        pytest.param(cursor_of({"shard": "0", "after": "x"}), id="shard-not-an-int"),
    ],
)
def test_list_devices_rejects_garbage_cursor(stack: RunningStack, cursor: str) -> None:
    response = stack.api("GET", "/v1/devices", key=stack.key(0), params={"cursor": cursor})

    assert_error(response, 422, "invalid_cursor", "cursor")


@pytest.mark.parametrize("cursor", GARBAGE_CURSORS)
def test_list_user_devices_rejects_garbage_cursor(stack: RunningStack, cursor: str) -> None:
    response = stack.api("GET", "/v1/users/alice/devices", key=stack.key(0), params={"cursor": cursor})

    assert_error(response, 422, "invalid_cursor", "cursor")


@pytest.mark.parametrize(("query", "field"), [("limit=0", "limit"), ("limit=201", "limit")])
def test_list_user_devices_rejects_bad_query(stack: RunningStack, query: str, field: str) -> None:
    response = stack.api("GET", f"/v1/users/alice/devices?{query}", key=stack.key(0))

    assert_error(response, 422, "invalid_input", field)


# --- /v1/api-keys -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        pytest.param({"name": "x", "scopes": []}, "invalid_input", "scopes", id="no-scopes"),
        pytest.param({"name": "x", "scopes": ["root"]}, "invalid_input", "scopes[0]", id="unknown-scope"),
        pytest.param({"name": "x", "scopes": "read"}, "invalid_input", "scopes", id="scopes-not-a-list"),
        pytest.param({"name": "", "scopes": ["read"]}, "invalid_input", "name", id="empty-name"),
        pytest.param({"scopes": ["read"]}, "missing_field", "name", id="missing-name"),
        pytest.param({"name": "x", "scopes": ["read"], "app_id": "demo-news"}, "invalid_input", "app_id", id="extra"),
    ],
)
def test_create_api_key_rejects_bad_body_and_creates_nothing(
    stack: RunningStack, body: dict[str, Any], code: str, field: str
) -> None:
    before = stack.api("GET", "/v1/api-keys", key=stack.key(0), params={"limit": 200})
    assert before.status_code == 200, before.text

    response = stack.api("POST", "/v1/api-keys", key=stack.key(0), json=body)

    assert_error(response, 422, code, field)
    after = stack.api("GET", "/v1/api-keys", key=stack.key(0), params={"limit": 200})
    assert after.status_code == 200, after.text
    assert after.json() == before.json()


@pytest.mark.parametrize("cursor", GARBAGE_CURSORS)
def test_list_api_keys_rejects_garbage_cursor(stack: RunningStack, cursor: str) -> None:
    response = stack.api("GET", "/v1/api-keys", key=stack.key(0), params={"cursor": cursor})

    assert_error(response, 422, "invalid_cursor", "cursor")


def test_get_unknown_api_key_is_not_found(stack: RunningStack) -> None:
    response = stack.api("GET", f"/v1/api-keys/{uuid4().hex}", key=stack.key(0))

    assert_error(response, 404, "api_key_not_found", "key_id")


# --- Routing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nope"),
        ("POST", "/v1/devices"),
        ("PATCH", "/v1/devices/some-device"),
        ("POST", "/v1/devices/some-device/nope"),
    ],
)
def test_unknown_route_is_not_found(stack: RunningStack, method: str, path: str) -> None:
    response = stack.api(method, path, key=stack.key(0))

    assert_error(response, 404, "route_not_found", None)
