"""App B's key can neither read nor change app A's conversations, nor see them in its lists."""

from typing import Any

from tests.support.client import A, B, RunningStack, all_items, assert_error, bootstrap_app, fresh_id, ok
from tests.support.retention import conversation, new_app, status_of, sweep

ROUTES_COVERED = {
    ("POST", "/v1/conversations"),
    ("GET", "/v1/conversations"),
    ("GET", "/v1/conversations/{conversation_id}"),
    ("DELETE", "/v1/conversations/{conversation_id}"),
    ("POST", "/v1/conversations/{conversation_id}/activity"),
    ("PUT", "/v1/conversations/{conversation_id}/status"),
    ("GET", "/v1/retention-settings"),
    ("PUT", "/v1/retention-settings"),
    ("POST", "/v1/retention/preview"),
    ("GET", "/v1/retention/runs"),
    ("GET", "/v1/retention/runs/{run_id}"),
    ("GET", "/v1/retention/runs/{run_id}/report"),
}


def test_b_cannot_reach_conversations_of_a(stack: RunningStack) -> None:
    channel = fresh_id("ch-")
    user = fresh_id("u-")
    body: dict[str, Any] = {"channel": channel, "user_id": user}
    mine = ok(stack.api("POST", "/v1/conversations", stack.key(A), json=body), 201)
    path = f"/v1/conversations/{mine['conversation_id']}"

    assert_error(stack.api("GET", path, stack.key(B)), 404, "conversation_not_found")
    assert_error(
        stack.api("POST", f"{path}/activity", stack.key(B), json={"direction": "inbound"}),
        404,
        "conversation_not_found",
    )
    assert_error(
        stack.api("PUT", f"{path}/status", stack.key(B), json={"status": "delete"}), 404, "conversation_not_found"
    )
    assert_error(stack.api("DELETE", path, stack.key(B)), 404, "conversation_not_found")
    for query in ({"channel": channel}, {"user_id": user}):
        assert all_items(stack, "/v1/conversations", app=B, **query) == []

    # B's own conversation with the same user id and channel stays B's.
    theirs = ok(stack.api("POST", "/v1/conversations", stack.key(B), json=body), 201)
    assert [item["conversation_id"] for item in all_items(stack, "/v1/conversations", app=A, user_id=user)] == [
        mine["conversation_id"]
    ]
    assert [item["conversation_id"] for item in all_items(stack, "/v1/conversations", app=B, channel=channel)] == [
        theirs["conversation_id"]
    ]
    assert ok(stack.api("GET", path, stack.key(A))) == mine


def test_settings_of_one_app_are_not_the_others(stack: RunningStack) -> None:
    first, second = (bootstrap_app(stack, "iso-ret", name)["api_key"]["api_key"] for name in ("First", "Second"))
    stored = ok(stack.api("PUT", "/v1/retention-settings", first, json={"purge_after_days": 3}))
    assert ok(stack.api("GET", "/v1/retention-settings", second))["settings"] is None
    ok(stack.api("PUT", "/v1/retention-settings", second, json={"purge_after_days": 9}))
    assert ok(stack.api("GET", "/v1/retention-settings", first)) == stored


def test_a_sweep_and_its_runs_stay_in_their_app(stack: RunningStack) -> None:
    mine = new_app(stack, {"archive_after_days": {"open": 1}})
    theirs = new_app(stack, None)  # no settings: a sweep leaves its conversations alone
    my_conversation = conversation(stack, mine, "email", "open", 5)
    their_conversation = conversation(stack, theirs, "email", "open", 5)
    assert ok(stack.api("POST", "/v1/retention/preview", theirs))["counts"] == {}

    run = sweep(stack, mine)

    assert run["counts"] == {"open->archive": 1}
    assert status_of(stack, mine, my_conversation) == "archive"
    assert status_of(stack, theirs, their_conversation) == "open"
    path = f"/v1/retention/runs/{run['run_id']}"
    assert_error(stack.api("GET", path, theirs), 404, "retention_run_not_found")
    assert_error(stack.api("GET", f"{path}/report", theirs), 404, "retention_run_not_found")
    assert ok(stack.api("GET", "/v1/retention/runs", theirs))["items"] == []
    assert ok(stack.api("GET", f"{path}/report", mine))["url"]
