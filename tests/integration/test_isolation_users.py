"""App B's key can neither read nor change app A's users, contacts, subscriptions or resources."""

import uuid

from tests.support.client import A, B, RunningStack, all_items, assert_error, new_resource, new_user, user_path

ROUTES_COVERED = {
    ("PUT", "/v1/users/{user_id}"),
    ("GET", "/v1/users/{user_id}"),
    ("DELETE", "/v1/users/{user_id}"),
    ("GET", "/v1/users"),
    ("POST", "/v1/users/batch"),
    ("PUT", "/v1/users/{user_id}/emails/{email}"),
    ("DELETE", "/v1/users/{user_id}/emails/{email}"),
    ("PUT", "/v1/users/{user_id}/phones/{phone}"),
    ("DELETE", "/v1/users/{user_id}/phones/{phone}"),
    ("PUT", "/v1/users/{user_id}/subscriptions/{resource_id}/{channel}"),
    ("GET", "/v1/users/{user_id}/subscriptions"),
    ("POST", "/v1/resources"),
    ("GET", "/v1/resources"),
    ("GET", "/v1/resources/{resource_id}"),
    ("DELETE", "/v1/resources/{resource_id}"),
}


def a_user_as_a_sees_it(stack: RunningStack, user_id: str) -> object:
    return stack.api("GET", user_path(user_id), stack.key(A)).json()


def test_b_cannot_read_or_delete_a_user_of_a(stack: RunningStack) -> None:
    user_id = new_user(stack, {"secret": "a"})
    before = a_user_as_a_sees_it(stack, user_id)

    assert_error(stack.api("GET", user_path(user_id), stack.key(B)), 404, "user_not_found")
    assert_error(stack.api("DELETE", user_path(user_id), stack.key(B)), 404, "user_not_found")
    assert stack.api("GET", user_path(user_id, "/subscriptions"), stack.key(B)).status_code == 404
    assert a_user_as_a_sees_it(stack, user_id) == before


def test_b_writing_the_same_user_id_touches_only_b(stack: RunningStack) -> None:
    user_id = new_user(stack, {"owner": "a"})
    before = a_user_as_a_sees_it(stack, user_id)

    stack.api("PUT", user_path(user_id), stack.key(B), json={"fields": {"owner": "b"}})
    stack.api("POST", "/v1/users/batch", stack.key(B), json={"users": [{"user_id": user_id, "fields": {"x": 1}}]})

    assert a_user_as_a_sees_it(stack, user_id) == before
    assert stack.api("GET", user_path(user_id), stack.key(B)).json()["fields"] == {"owner": "b", "x": 1}


def test_b_cannot_change_contacts_of_a(stack: RunningStack) -> None:
    user_id = new_user(stack)
    stack.api("PUT", user_path(user_id, "/emails/a%40example.com"), stack.key(A))
    stack.api("PUT", user_path(user_id, "/phones/%2B4790000001"), stack.key(A))
    before = a_user_as_a_sees_it(stack, user_id)

    for method, suffix in (
        ("PUT", "/emails/b%40example.com"),
        ("DELETE", "/emails/a%40example.com"),
        ("PUT", "/phones/%2B4790000002"),
        ("DELETE", "/phones/%2B4790000001"),
    ):
        assert_error(stack.api(method, user_path(user_id, suffix), stack.key(B)), 404, "user_not_found")
    assert a_user_as_a_sees_it(stack, user_id) == before


def test_b_cannot_use_or_see_resources_of_a(stack: RunningStack) -> None:
    user_id = new_user(stack)
    resource_id = new_resource(stack, ["email"])
    stack.api("PUT", f"/v1/users/{user_id}", stack.key(B), json={})  # B has its own user with that id

    subscribe = stack.api(
        "PUT", user_path(user_id, f"/subscriptions/{resource_id}/email"), stack.key(B), json={"status": "Subscribed"}
    )
    listed = stack.api("GET", "/v1/resources", stack.key(B), params={"limit": 200}).json()["items"]

    assert_error(subscribe, 404, "resource_not_found")
    assert resource_id not in {item["resource_id"] for item in listed}
    assert_error(stack.api("GET", f"/v1/resources/{resource_id}", stack.key(B)), 404, "resource_not_found")
    assert_error(stack.api("DELETE", f"/v1/resources/{resource_id}", stack.key(B)), 404, "resource_not_found")
    assert stack.api("GET", f"/v1/resources/{resource_id}", stack.key(A)).status_code == 200
    created = stack.api("POST", "/v1/resources", stack.key(B), json={"name": "B's", "channels": ["sms"]})
    assert created.json()["resource_id"] not in {
        item["resource_id"]
        for item in stack.api("GET", "/v1/resources", stack.key(A), params={"limit": 200}).json()["items"]
    }


def test_user_listing_of_b_never_shows_a(stack: RunningStack) -> None:
    user_id = new_user(stack, {"marker": uuid.uuid4().hex})
    seen = {user["user_id"] for user in all_items(stack, "/v1/users", app=B) if user["fields"].get("marker")}
    assert user_id not in seen
