"""Users, contacts, subscriptions and resources through the local API."""

import uuid

from tests.support.client import RunningStack, assert_error, new_resource, new_user, pages, user_path


def test_upsert_get_and_delete_a_user(stack: RunningStack) -> None:
    user_id = new_user(stack, {"age": 30, "signup": "2024-02-29"})

    merged = stack.api("PUT", user_path(user_id), stack.key(0), json={"fields": {"age": None, "plan": "pro"}})
    deleted = stack.api("DELETE", user_path(user_id), stack.key(0))

    assert merged.json()["fields"] == {"signup": "2024-02-29T00:00:00Z", "plan": "pro"}
    assert deleted.status_code == 204
    assert_error(stack.api("GET", user_path(user_id), stack.key(0)), 404, "user_not_found", "user_id")


def test_user_ids_with_slashes_work(stack: RunningStack) -> None:
    user_id = f"team/{uuid.uuid4().hex}/alice"

    created = stack.api("PUT", user_path(user_id), stack.key(0), json={})
    read = stack.api("GET", user_path(user_id), stack.key(0))

    assert created.status_code == 200
    assert read.json()["user_id"] == user_id


def test_batch_reports_each_user(stack: RunningStack) -> None:
    good, other = f"b-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    batch = [{"user_id": good, "fields": {"n": 1}}, {"user_id": other, "fields": {"bad key": 1}}]

    response = stack.api("POST", "/v1/users/batch", stack.key(0), json={"users": batch})

    outcome = response.json()
    assert (outcome["succeeded"], outcome["failed"]) == (1, 1)
    assert outcome["results"][1]["error"]["field"].startswith("users[1].fields")
    assert stack.api("GET", user_path(good), stack.key(0)).json()["fields"] == {"n": 1}
    assert_error(stack.api("GET", user_path(other), stack.key(0)), 404, "user_not_found", "user_id")


def test_users_are_listed_with_a_cursor(stack: RunningStack) -> None:
    created = {new_user(stack) for _ in range(3)}
    seen: list[str] = []
    # Stops once it has seen them: the session's other users may fill many pages.
    for items in pages(stack, "/v1/users", limit=3):
        seen += [user["user_id"] for user in items]
        if created <= set(seen):
            break
    assert created <= set(seen)
    assert len(seen) == len(set(seen))


def test_emails_and_phones_are_validated_and_kept(stack: RunningStack) -> None:
    user_id = new_user(stack)

    email = stack.api("PUT", user_path(user_id, "/emails/Alice%40Example.COM"), stack.key(0))
    phone = stack.api("PUT", user_path(user_id, "/phones/%2B4791234567"), stack.key(0), json={"active": False})
    bad_email = stack.api("PUT", user_path(user_id, "/emails/not-an-email"), stack.key(0))
    bad_phone = stack.api("PUT", user_path(user_id, "/phones/0047912"), stack.key(0))
    removed = stack.api("DELETE", user_path(user_id, "/emails/alice%40example.com"), stack.key(0))

    assert [item["address"] for item in email.json()["emails"]] == ["Alice@example.com"]
    assert [(item["address"], item["active"]) for item in phone.json()["phones"]] == [("+4791234567", False)]
    assert_error(bad_email, 422, "invalid_path_parameter", "email")
    assert_error(bad_phone, 422, "invalid_path_parameter", "phone")
    assert_error(removed, 404, "contact_not_found", "email")


def test_subscriptions_follow_the_resource_channels(stack: RunningStack) -> None:
    user_id = new_user(stack)
    resource_id = new_resource(stack, ["email", "push"])

    subscribed = stack.api(
        "PUT", user_path(user_id, f"/subscriptions/{resource_id}/email"), stack.key(0), json={"status": "Complainer"}
    )
    wrong_channel = stack.api(
        "PUT", user_path(user_id, f"/subscriptions/{resource_id}/sms"), stack.key(0), json={"status": "Subscribed"}
    )
    bad_status = stack.api(
        "PUT", user_path(user_id, f"/subscriptions/{resource_id}/push"), stack.key(0), json={"status": "Maybe"}
    )
    listed = stack.api("GET", user_path(user_id, "/subscriptions"), stack.key(0))

    assert subscribed.json() == {"resource_id": resource_id, "channel": "email", "status": "Complainer"}
    assert_error(wrong_channel, 422, "channel_not_offered", "channel")
    assert_error(bad_status, 422, "invalid_input", "status")
    assert listed.json() == [subscribed.json()]


def test_resources_are_created_listed_and_deleted(stack: RunningStack) -> None:
    resource_id = new_resource(stack, ["sms"])

    listed = stack.api("GET", "/v1/resources", stack.key(0), params={"limit": 200}).json()["items"]
    deleted = stack.api("DELETE", f"/v1/resources/{resource_id}", stack.key(0))

    assert resource_id in {item["resource_id"] for item in listed}
    assert deleted.status_code == 204
    assert_error(stack.api("GET", f"/v1/resources/{resource_id}", stack.key(0)), 404, "resource_not_found")
    assert_error(
        stack.api("POST", "/v1/resources", stack.key(0), json={"name": "x", "channels": []}), 422, "invalid_input"
    )
