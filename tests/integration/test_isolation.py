"""One app's key can neither read nor change another app's data, on every route that exists.

App A is the first demo app (``stack.key(0)``), app B the second (``stack.key(1)``);
both keys hold every scope. Each test sets up fresh data in A, then calls one
route with B's key and checks that nothing of A leaks out or changes.
``test_every_route_has_an_isolation_test`` fails when a route is added to the
API without being added (and tested) here.
"""

import ast
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.support.client import (
    A,
    B,
    RunningStack,
    all_items,
    assert_error,
    create_key,
    device_path,
    every_cursor,
    first_cursor,
    identify,
    read_device,
    user_path,
)

# Every (METHOD, path) the tests below call with another app's key, spelled as
# /openapi.json prints them.
ROUTES_COVERED = {
    ("PUT", "/v1/devices/{device_id}"),
    ("GET", "/v1/devices/{device_id}"),
    ("DELETE", "/v1/devices/{device_id}"),
    ("DELETE", "/v1/devices/{device_id}/user"),
    ("POST", "/v1/devices/{device_id}/push-results"),
    ("POST", "/v1/push-results"),
    ("GET", "/v1/users/{user_id}/devices"),
    ("GET", "/v1/devices"),
    ("POST", "/v1/api-keys"),
    ("GET", "/v1/api-keys"),
    ("GET", "/v1/api-keys/{key_id}"),
    ("DELETE", "/v1/api-keys/{key_id}"),
}
# Served without a key and holding no app data.
PUBLIC_PATHS = {"/health", "/openapi.json", "/docs"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def devices_path(user_id: str) -> str:
    return user_path(user_id, "/devices")


def device_ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["device_id"] for item in items}


def key_ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["key_id"] for item in items}


class AppAData:
    """A device of app A with its user, fresh for one test."""

    def __init__(self, stack: RunningStack) -> None:
        tag = uuid4().hex
        # ':' and '/' make the encoding matter, as in FCM tokens and WebPush URLs.
        self.device_id = f"fcm:iso-{tag}/token"
        self.user_id = f"iso-user-{tag}"
        self.device = identify(stack, self.device_id, self.user_id, app=A)


class AppAKey:
    """An extra read-only API key of app A, fresh for one test."""

    def __init__(self, stack: RunningStack) -> None:
        created = create_key(stack, ["read"], name="x", app=A)
        self.key_id: str = created["key_id"]
        self.key: str = created["api_key"]


@pytest.fixture
def a_data(stack: RunningStack) -> AppAData:
    return AppAData(stack)


def assert_a_untouched(stack: RunningStack, a_data: AppAData) -> None:
    assert read_device(stack, a_data.device_id, app=A) == a_data.device


def test_get_device_of_another_app_is_not_found(stack: RunningStack, a_data: AppAData) -> None:
    error = assert_error(stack.api("GET", device_path(a_data.device_id), key=stack.key(B)), 404, "device_not_found")
    assert error["field"] == "device_id"


def test_get_demo_device_of_another_app_is_not_found(stack: RunningStack) -> None:
    # Seeded into demo-shop (A) only at start-up.
    assert_error(stack.api("GET", device_path("fcm:demo-token-alice-1"), key=stack.key(B)), 404, "device_not_found")


@pytest.mark.parametrize("accepted", [True, False])
def test_push_result_for_another_apps_device_is_not_found(
    stack: RunningStack, a_data: AppAData, accepted: bool
) -> None:
    body = {"accepted": accepted, "error_code": None if accepted else "Unregistered"}
    response = stack.api("POST", device_path(a_data.device_id, "/push-results"), key=stack.key(B), json=body)

    assert_error(response, 404, "device_not_found")
    device = read_device(stack, a_data.device_id, app=A)
    assert device["last_status"] == ""
    assert device == a_data.device


def test_batch_push_result_for_another_apps_device_is_not_found(stack: RunningStack, a_data: AppAData) -> None:
    results = [
        {"device_id": a_data.device_id, "accepted": True},
        {"device_id": a_data.device_id, "accepted": False, "error_code": "Unregistered"},
        {"device_id": a_data.device_id, "accepted": False, "error_code": "Unregistered"},
    ]
    response = stack.api("POST", "/v1/push-results", key=stack.key(B), json={"results": results})

    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["succeeded"] == 0
    assert outcome["failed"] == len(results)
    for index, item in enumerate(outcome["results"]):
        assert item["index"] == index
        assert item["ok"] is False
        assert item["device"] is None
        assert item["error"]["code"] == "device_not_found"
    assert_a_untouched(stack, a_data)


def test_delete_another_apps_device_is_not_found(stack: RunningStack, a_data: AppAData) -> None:
    assert_error(stack.api("DELETE", device_path(a_data.device_id), key=stack.key(B)), 404, "device_not_found")
    response = stack.api("DELETE", device_path(a_data.device_id), key=stack.key(B), params={"user_id": a_data.user_id})
    assert_error(response, 404, "device_not_found")
    assert_a_untouched(stack, a_data)


def test_dissociate_another_apps_device_is_not_found(stack: RunningStack, a_data: AppAData) -> None:
    path = device_path(a_data.device_id, "/user")
    assert_error(stack.api("DELETE", path, key=stack.key(B)), 404, "device_not_found")
    assert_error(
        stack.api("DELETE", path, key=stack.key(B), params={"user_id": a_data.user_id}), 404, "device_not_found"
    )
    device = read_device(stack, a_data.device_id, app=A)
    assert device["user_id"] == a_data.user_id
    assert device == a_data.device


def test_user_devices_of_another_app_are_empty(stack: RunningStack, a_data: AppAData) -> None:
    response = stack.api("GET", devices_path(a_data.user_id), key=stack.key(B))
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}
    # The demo user only exists in A.
    assert all_items(stack, devices_path("alice"), app=B) == []
    # Sanity check: A sees its own.
    assert device_ids(all_items(stack, devices_path(a_data.user_id), app=A)) == {a_data.device_id}


def test_user_devices_cursor_of_another_app_reveals_nothing(stack: RunningStack, a_data: AppAData) -> None:
    identify(stack, f"{a_data.device_id}-2", a_data.user_id, app=A)
    cursor = first_cursor(stack, devices_path(a_data.user_id), app=A)

    assert all_items(stack, devices_path(a_data.user_id), app=B, cursor=cursor) == []


def assert_b_listing_is_b_only(stack: RunningStack, items: list[dict[str, Any]], a_data: AppAData) -> None:
    listed = device_ids(items)
    assert a_data.device_id not in listed
    assert "fcm:demo-token-alice-1" not in listed
    # Anything B lists, B can read: an item of A would be 404 for B (B never
    # identifies a device id of A without creating its own).
    for item in items:
        assert read_device(stack, item["device_id"], app=B) == item


def test_list_devices_of_another_app_hides_them(stack: RunningStack, a_data: AppAData) -> None:
    assert a_data.device_id in device_ids(all_items(stack, "/v1/devices", app=A))

    assert_b_listing_is_b_only(stack, all_items(stack, "/v1/devices", app=B), a_data)
    for query in ("transport=FCM", "last_status=unused", "active=true"):
        assert_b_listing_is_b_only(stack, all_items(stack, f"/v1/devices?{query}", app=B), a_data)


def test_list_devices_cursor_of_another_app_reveals_nothing(stack: RunningStack, a_data: AppAData) -> None:
    # Every cursor A can get, so every shard position of A is tried on B.
    cursors = every_cursor(stack, "/v1/devices", app=A)
    assert cursors

    for cursor in cursors:
        assert_b_listing_is_b_only(stack, all_items(stack, "/v1/devices", app=B, cursor=cursor), a_data)


def test_identify_same_device_id_creates_a_separate_device(stack: RunningStack, a_data: AppAData) -> None:
    b_user = f"iso-b-user-{uuid4().hex}"
    b_device = identify(stack, a_data.device_id, b_user, app=B)

    assert b_device["user_id"] == b_user
    assert read_device(stack, a_data.device_id, app=B)["user_id"] == b_user
    assert_a_untouched(stack, a_data)
    # A's user lists only A's device, B's user only B's, each in its own app.
    assert device_ids(all_items(stack, devices_path(a_data.user_id), app=A)) == {a_data.device_id}
    assert all_items(stack, devices_path(b_user), app=A) == []
    assert device_ids(all_items(stack, devices_path(b_user), app=B)) == {a_data.device_id}
    assert all_items(stack, devices_path(a_data.user_id), app=B) == []

    # What B then does to its own device stays in B.
    response = stack.api(
        "POST", device_path(a_data.device_id, "/push-results"), key=stack.key(B), json={"accepted": True}
    )
    assert response.status_code == 200, response.text
    assert stack.api("DELETE", device_path(a_data.device_id), key=stack.key(B)).status_code == 204
    assert_a_untouched(stack, a_data)


def test_create_api_key_belongs_to_the_calling_app(stack: RunningStack, a_data: AppAData) -> None:
    b_key = create_key(stack, ["read"], name="b-key", app=B)

    assert b_key["key_id"] not in key_ids(all_items(stack, "/v1/api-keys", app=A))
    assert b_key["key_id"] in key_ids(all_items(stack, "/v1/api-keys", app=B))
    # The new key reads B's data, not A's.
    assert_error(stack.api("GET", device_path(a_data.device_id), key=b_key["api_key"]), 404, "device_not_found")


def test_list_api_keys_of_another_app_hides_them(stack: RunningStack) -> None:
    a_key = AppAKey(stack)
    a_keys = key_ids(all_items(stack, "/v1/api-keys", app=A))
    assert a_key.key_id in a_keys

    b_keys = key_ids(all_items(stack, "/v1/api-keys", app=B))
    assert b_keys
    assert not a_keys & b_keys


def test_list_api_keys_cursor_of_another_app_reveals_nothing(stack: RunningStack) -> None:
    AppAKey(stack)  # A holds at least two keys, so its first page has a cursor.
    a_keys = key_ids(all_items(stack, "/v1/api-keys", app=A))
    cursor = first_cursor(stack, "/v1/api-keys", app=A)

    assert not key_ids(all_items(stack, "/v1/api-keys", app=B, cursor=cursor)) & a_keys


def test_get_api_key_of_another_app_is_not_found(stack: RunningStack) -> None:
    a_key = AppAKey(stack)
    response = stack.api("GET", f"/v1/api-keys/{a_key.key_id}", key=stack.key(B))

    error = assert_error(response, 404, "api_key_not_found")
    assert error["field"] == "key_id"


def test_revoke_api_key_of_another_app_is_not_found(stack: RunningStack, a_data: AppAData) -> None:
    a_key = AppAKey(stack)
    response = stack.api("DELETE", f"/v1/api-keys/{a_key.key_id}", key=stack.key(B))

    assert_error(response, 404, "api_key_not_found")
    response = stack.api("GET", f"/v1/api-keys/{a_key.key_id}", key=stack.key(A))
    assert response.status_code == 200, response.text
    assert response.json()["revoked_at"] is None
    # The key still authenticates as A.
    assert read_device(stack, a_data.device_id, key=a_key.key) == a_data.device


def declared_routes(module_path: Path) -> set[tuple[str, str]]:
    """A module's ROUTES_COVERED, read from its source: test modules never import each other."""
    for statement in ast.parse(module_path.read_text()).body:
        match statement:
            case ast.Assign(targets=[ast.Name(id="ROUTES_COVERED")], value=routes):
                return set(ast.literal_eval(routes))
    raise AssertionError(f"{module_path.name} declares no ROUTES_COVERED")


def all_covered_routes() -> set[tuple[str, str]]:
    """This module's routes plus ROUTES_COVERED of every tests/integration/test_isolation_<area>.py."""
    covered = set(ROUTES_COVERED)
    for module_path in sorted(Path(__file__).parent.glob("test_isolation_*.py")):
        covered |= declared_routes(module_path)
    return covered


def test_every_route_has_an_isolation_test(stack: RunningStack) -> None:
    covered = all_covered_routes()
    response = stack.api("GET", "/openapi.json")
    assert response.status_code == 200, response.text
    routes = {
        (method.upper(), path)
        for path, operations in response.json()["paths"].items()
        if path not in PUBLIC_PATHS
        for method in operations
        if method in HTTP_METHODS
    }
    assert routes == covered, (
        f"Routes without an isolation test: {sorted(routes - covered)}; "
        f"covered routes that no longer exist: {sorted(covered - routes)}"
    )
