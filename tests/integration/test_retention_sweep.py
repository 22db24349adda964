"""The retention sweep through the local stack: the schedule's target (`make fire`) really starts the state machine.

Each test works in apps of its own (settings are per app). Conversations
import their history, so "idle 11 days" is a conversation whose last
activity (or entry into delete) was 11 days ago.
"""

import csv
import io

import requests

from tests.support.client import RunningStack, assert_error, ok, user_path
from tests.support.retention import (
    ARCHIVABLE,
    DELETABLE,
    STATUSES,
    conversation,
    every_status,
    fire_schedule,
    new_app,
    status_of,
    sweep,
)


def test_every_row_null_zero_and_n_days_and_the_purge_default(stack: RunningStack) -> None:
    key = new_app(stack, {"channels": {"null": every_status(None), "zero": every_status(0), "ten": every_status(10)}})
    made: dict[tuple[str, str, int], str] = {}
    for status in STATUSES:
        for channel in ("null", "zero", "ten"):
            made[(channel, status, 11)] = conversation(stack, key, channel, status, 11)
        made[("ten", status, 9)] = conversation(stack, key, "ten", status, 9)
    made[("null", "delete", 31)] = conversation(stack, key, "null", "delete", 31)

    preview = ok(stack.api("POST", "/v1/retention/preview", key))
    run = sweep(stack, key)

    expected_zero = {f"{status}->archive": 1 for status in ARCHIVABLE}
    expected_zero.update({f"{status}->delete": 1 for status in DELETABLE})
    expected_zero["archive->delete"] = 1 + len(ARCHIVABLE)  # chained on from archive at once
    expected_zero["delete->purged"] = len(STATUSES)
    expected_ten = {f"{status}->archive": 1 for status in ARCHIVABLE}
    expected_ten.update({f"{status}->delete": 1 for status in DELETABLE})
    expected_ten["delete->purged"] = 1
    assert run["by_channel"] == {"zero": expected_zero, "ten": expected_ten, "null": {"delete->purged": 1}}
    assert preview["counts"] == run["counts"]
    assert preview["by_channel"] == run["by_channel"]
    assert run["status"] == "succeeded"

    for (channel, status, idle), conversation_id in made.items():
        now = status_of(stack, key, conversation_id)
        if channel == "null":
            expected = None if (status, idle) == ("delete", 31) else status  # null: stays; purge: 30 days
        elif channel == "zero":
            expected = None  # 0 days chain to the purge
        elif idle == 9:
            expected = status
        else:
            expected = {"delete": None, **dict.fromkeys(ARCHIVABLE, "archive"), **dict.fromkeys(DELETABLE, "delete")}[
                status
            ]
        assert now == expected, (channel, status, idle)

    # The next sweep moves the archived ones on one more step, and no further.
    again = sweep(stack, key)
    assert again["by_channel"] == {"ten": {"archive->delete": len(ARCHIVABLE)}}


def test_delete_user_data_with_and_without_another_conversation(stack: RunningStack) -> None:
    key = new_app(stack, {"purge_after_days": 0, "delete_user_data": True})
    for user_id in ("leaver", "stayer"):
        ok(stack.api("PUT", user_path(user_id), key, json={"fields": {"plan": "pro"}}))
    device = "fcm:sweep-leaver"
    ok(stack.api("PUT", f"/v1/devices/{device}", key, json={"user_id": "leaver", "transport": "FCM"}))
    conversation(stack, key, "chat", "delete", 1, user_id="leaver")
    conversation(stack, key, "chat", "delete", 1, user_id="stayer")
    kept_by = conversation(stack, key, "chat", "resolved", 1, user_id="stayer")

    run = sweep(stack, key)

    assert (run["users_deleted"], run["users_deleted_sample"]) == (1, ["leaver"])
    assert (run["users_kept"], run["users_kept_sample"]) == (1, ["stayer"])
    assert_error(stack.api("GET", user_path("leaver"), key), 404, "user_not_found")
    assert_error(stack.api("GET", f"/v1/devices/{device}", key), 404, "device_not_found")
    assert ok(stack.api("GET", user_path("stayer"), key))["fields"] == {"plan": "pro"}
    assert status_of(stack, key, kept_by) == "resolved"

    link = ok(stack.api("GET", f"/v1/retention/runs/{run['run_id']}/report", key))
    rows = list(csv.DictReader(io.StringIO(requests.get(link["url"], timeout=30).text)))
    assert sorted((row["entity"], row["action"], row["user_id"]) for row in rows) == [
        ("conversation", "delete->purged", "leaver"),
        ("conversation", "delete->purged", "stayer"),
        ("user", "deleted", "leaver"),
        ("user", "kept", "stayer"),
    ]


def test_activity_after_the_preview_wins_and_runs_are_listed(stack: RunningStack) -> None:
    key = new_app(stack, {"archive_after_days": {"open": 3}})
    quiet = conversation(stack, key, "email", "open", 5)
    talking = conversation(stack, key, "email", "open", 5)
    assert ok(stack.api("POST", "/v1/retention/preview", key))["counts"] == {"open->archive": 2}
    ok(stack.api("POST", f"/v1/conversations/{talking}/activity", key, json={"direction": "inbound"}))

    run = sweep(stack, key)

    assert run["counts"] == {"open->archive": 1}
    assert (status_of(stack, key, quiet), status_of(stack, key, talking)) == ("archive", "open")
    listed = ok(stack.api("GET", "/v1/retention/runs", key))["items"]
    assert [item["run_id"] for item in listed] == [run["run_id"]]
    assert_error(
        stack.api("GET", "/v1/retention/runs/ret_20200101000000_000000000000", key), 404, "retention_run_not_found"
    )


def test_an_app_without_settings_is_not_swept(stack: RunningStack) -> None:
    key = new_app(stack, None)
    idle = conversation(stack, key, "email", "delete", 400)
    fire_schedule(stack)
    preview = {"counts": {}, "by_channel": {}, "sample": {}, "complete": True, "read": 0}
    assert ok(stack.api("POST", "/v1/retention/preview", key)) == preview
    assert ok(stack.api("GET", "/v1/retention/runs", key))["items"] == []
    assert status_of(stack, key, idle) == "delete"
