"""Conversations through the local API: gateway, authorizer, handler, DynamoDB.

The stack is shared by the session, so every test gives its conversations a
fresh channel and lists only that channel.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.client import A, RunningStack, all_items, assert_error, create_key, fresh_id, ok

PATH = "/v1/conversations"


def create(stack: RunningStack, app: int = A, **body: Any) -> dict[str, Any]:
    return ok(stack.api("POST", PATH, stack.key(app), json=body), 201)


def test_create_read_activity_status_delete(stack: RunningStack) -> None:
    channel = fresh_id("ch-")
    created = create(stack, channel=channel, user_id="alice", subject="Order 42")
    assert created["status"] == "open"
    path = f"{PATH}/{created['conversation_id']}"
    assert ok(stack.api("GET", path, stack.key(A))) == created

    active = ok(stack.api("POST", f"{path}/activity", stack.key(A), json={"direction": "inbound"}))
    assert active["status"] == "open"
    assert active["last_activity_at"] >= created["last_activity_at"]

    archived = ok(stack.api("PUT", f"{path}/status", stack.key(A), json={"status": "archive"}))
    assert archived["status"] == "archive"
    assert archived["status_changed_at"] == archived["last_activity_at"]

    assert stack.api("DELETE", path, stack.key(A)).status_code == 204
    assert_error(stack.api("GET", path, stack.key(A)), 404, "conversation_not_found")
    assert_error(stack.api("DELETE", path, stack.key(A)), 404, "conversation_not_found")
    assert_error(stack.api("POST", f"{path}/activity", stack.key(A), json={"direction": "in"}), 422, "invalid_input")


def test_import_validation_names_the_field(stack: RunningStack) -> None:
    now = datetime.now(UTC)
    future = (now + timedelta(days=1)).isoformat()
    created = (now - timedelta(days=5)).isoformat()
    before = (now - timedelta(days=6)).isoformat()
    response = stack.api("POST", PATH, stack.key(A), json={"channel": "sms", "last_activity_at": future})
    assert_error(response, 422, "timestamp_in_future", "last_activity_at")
    body = {"channel": "sms", "created_at": created, "status_changed_at": before}
    assert_error(
        stack.api("POST", PATH, stack.key(A), json=body), 422, "timestamp_before_created_at", "status_changed_at"
    )
    assert_error(stack.api("POST", PATH, stack.key(A), json={"channel": "x" * 65}), 422, "invalid_input", "channel")
    assert_error(
        stack.api("POST", PATH, stack.key(A), json={"channel": "sms", "status": "closed"}),
        422,
        "invalid_input",
        "status",
    )
    imported = create(stack, channel="sms", created_at=created, last_activity_at=created)
    assert imported["status_changed_at"] == imported["created_at"]


def test_list_filters_with_pagination(stack: RunningStack) -> None:
    channel = fresh_id("ch-")
    user = fresh_id("u-")
    ids = {
        status: [create(stack, channel=channel, status=status, user_id=user)["conversation_id"] for _ in range(3)]
        for status in ("open", "resolved")
    }
    create(stack, channel=fresh_id("other-"), status="open", user_id=user)

    def listed(**query: str) -> list[str]:
        return sorted(item["conversation_id"] for item in all_items(stack, PATH, limit=2, **query))

    assert listed(channel=channel) == sorted(ids["open"] + ids["resolved"])
    assert listed(channel=channel, status="resolved") == sorted(ids["resolved"])
    assert listed(user_id=user, status="open", channel=channel) == sorted(ids["open"])
    assert len(listed(user_id=user)) == 7
    assert_error(stack.api("GET", PATH, stack.key(A), params={"cursor": "bm9wZQ"}), 422, "invalid_cursor")


def test_scopes(stack: RunningStack) -> None:
    reader = create_key(stack, ["read"])["api_key"]
    assert_error(stack.api("POST", PATH, reader, json={"channel": "sms"}), 403, "insufficient_scope")
    assert ok(stack.api("GET", PATH, reader, params={"channel": fresh_id("ch-")}))["items"] == []
