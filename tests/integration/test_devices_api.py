"""Every device transition through the local API: gateway, authorizer, handler, DynamoDB."""

import uuid
from typing import Any

import pytest

from tests.support.client import RunningStack, all_items, device_path, fresh_id, identify, tilde_encoded


def report(stack: RunningStack, device_id: str, accepted: bool, code: str | None = None) -> dict[str, Any]:
    response = stack.api(
        "POST", device_path(device_id, "/push-results"), stack.key(0), json={"accepted": accepted, "error_code": code}
    )
    body: dict[str, Any] = response.json()
    body["_status"] = response.status_code
    return body


def test_new_device_starts_unused_and_active(stack: RunningStack) -> None:
    device = identify(stack, fresh_id("fcm:"))

    assert device["last_status"] == ""
    assert device["active"] is True
    assert device["has_succeeded"] is False


def test_accepted_push_marks_sent(stack: RunningStack) -> None:
    device_id = fresh_id("fcm:")
    identify(stack, device_id)

    device = report(stack, device_id, accepted=True)

    assert (device["last_status"], device["has_succeeded"], device["failure_streak"]) == ("sent", True, 0)


def test_first_failure_bounces_and_second_suppresses_and_deactivates(stack: RunningStack) -> None:
    device_id = fresh_id("fcm:")
    identify(stack, device_id)

    bounced = report(stack, device_id, accepted=False, code="UNREGISTERED")
    suppressed = report(stack, device_id, accepted=False, code="UNREGISTERED")

    assert (bounced["last_status"], bounced["active"], bounced["last_error_code"]) == ("bounced", True, "UNREGISTERED")
    assert (suppressed["last_status"], suppressed["active"]) == ("suppressed", False)
    assert suppressed["deactivation_reason"] == "delivery_error"
    assert suppressed["deactivated_at"] is not None


def test_success_between_failures_resets_the_streak(stack: RunningStack) -> None:
    device_id = fresh_id("fcm:")
    identify(stack, device_id)

    report(stack, device_id, accepted=False)
    report(stack, device_id, accepted=True)
    device = report(stack, device_id, accepted=False)

    assert (device["last_status"], device["active"], device["has_succeeded"]) == ("bounced", True, True)


def test_suppressed_device_refuses_results_until_identified_again(stack: RunningStack) -> None:
    device_id = fresh_id("fcm:")
    identify(stack, device_id)
    report(stack, device_id, accepted=False)
    report(stack, device_id, accepted=False)

    refused = report(stack, device_id, accepted=True)
    revived = identify(stack, device_id)

    assert refused["_status"] == 409
    assert refused["error"]["code"] == "device_inactive"
    assert (revived["last_status"], revived["active"], revived["deactivation_reason"]) == ("", True, None)
    assert revived["last_error_code"] is None


def test_identifying_a_bounced_device_returns_it_to_unused(stack: RunningStack) -> None:
    device_id = fresh_id("fcm:")
    identify(stack, device_id)
    report(stack, device_id, accepted=False)

    device = identify(stack, device_id)

    assert (device["last_status"], device["failure_streak"]) == ("", 0)


def test_identifying_a_sent_device_keeps_it_sent(stack: RunningStack) -> None:
    device_id = fresh_id("fcm:")
    identify(stack, device_id)
    report(stack, device_id, accepted=True)

    assert identify(stack, device_id)["last_status"] == "sent"


def test_moving_a_device_to_another_user_reassociates_it(stack: RunningStack) -> None:
    device_id = fresh_id("fcm:")
    old_user, new_user = f"u-{uuid.uuid4().hex}", f"u-{uuid.uuid4().hex}"
    identify(stack, device_id, user_id=old_user)

    identify(stack, device_id, user_id=new_user)

    old_list = stack.api("GET", f"/v1/users/{old_user}/devices", stack.key(0)).json()["items"]
    new_list = stack.api("GET", f"/v1/users/{new_user}/devices", stack.key(0)).json()["items"]
    assert old_list == []
    assert [device["device_id"] for device in new_list] == [device_id]


@pytest.mark.parametrize(
    "device_id",
    [
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABl-Xk",
        "fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH-1ZmaK7j5h",
        "web push/with spaces+plus%percent",
    ],
)
def test_url_encoded_device_ids_round_trip(stack: RunningStack, device_id: str) -> None:
    unique = f"{device_id}-{uuid.uuid4().hex}"
    identify(stack, unique, transport="WebPush")

    read = stack.api("GET", device_path(unique), stack.key(0))
    reported = stack.api("POST", device_path(unique, "/push-results"), stack.key(0), json={"accepted": True})

    assert read.json()["device_id"] == unique
    assert reported.json()["device_id"] == unique


@pytest.mark.parametrize(
    "device_id",
    [
        "https://db5p.notify.windows.com/w/?token={unique}",  # a WNS endpoint: '?' would cut the path
        "https://push.example.com/{unique}/user",  # ends like the dissociate route
        "~starts-with-the-mark-{unique}#fragment",
    ],
)
def test_ids_the_path_cannot_carry_travel_base64url_encoded(stack: RunningStack, device_id: str) -> None:
    unique = device_id.format(unique=uuid.uuid4().hex)
    encoded = tilde_encoded(unique)

    identified = stack.api("PUT", f"/v1/devices/{encoded}", stack.key(0), json={"user_id": "u", "transport": "WebPush"})
    dissociated = stack.api("DELETE", f"/v1/devices/{encoded}/user", stack.key(0))

    assert identified.json()["device_id"] == unique
    assert (dissociated.json()["device_id"], dissociated.json()["user_id"]) == (unique, None)


def test_logout_deletes_the_device(stack: RunningStack) -> None:
    device_id = fresh_id("fcm:")
    identify(stack, device_id, user_id="logout-user")

    deleted = stack.api("DELETE", device_path(device_id), stack.key(0), params={"user_id": "logout-user"})
    after = stack.api("GET", device_path(device_id), stack.key(0))

    assert deleted.status_code == 204
    assert after.status_code == 404
    assert after.json()["error"]["code"] == "device_not_found"


def test_logout_of_a_device_now_owned_by_someone_else_is_refused(stack: RunningStack) -> None:
    device_id = fresh_id("fcm:")
    identify(stack, device_id, user_id="new-owner")

    refused = stack.api("DELETE", device_path(device_id), stack.key(0), params={"user_id": "old-owner"})

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "device_owned_by_other_user"
    assert stack.api("GET", device_path(device_id), stack.key(0)).status_code == 200


def test_dissociating_keeps_the_device_without_its_user(stack: RunningStack) -> None:
    device_id = fresh_id("fcm:")
    user_id = f"u-{uuid.uuid4().hex}"
    identify(stack, device_id, user_id=user_id)

    response = stack.api("DELETE", device_path(device_id, "/user"), stack.key(0))

    assert response.status_code == 200
    assert response.json()["user_id"] is None
    assert stack.api("GET", f"/v1/users/{user_id}/devices", stack.key(0)).json()["items"] == []


def test_batch_results_apply_each_item_in_order(stack: RunningStack) -> None:
    healthy, failing, missing = fresh_id("fcm:"), fresh_id("fcm:"), fresh_id("fcm:")
    identify(stack, healthy)
    identify(stack, failing)
    batch = [
        {"device_id": healthy, "accepted": True},
        {"device_id": failing, "accepted": False, "error_code": "BadDeviceToken"},
        {"device_id": failing, "accepted": False, "error_code": "BadDeviceToken"},
        {"device_id": missing, "accepted": True},
    ]

    response = stack.api("POST", "/v1/push-results", stack.key(0), json={"results": batch})

    outcome = response.json()
    assert response.status_code == 200
    assert (outcome["succeeded"], outcome["failed"]) == (3, 1)
    assert [item["ok"] for item in outcome["results"]] == [True, True, True, False]
    assert outcome["results"][2]["device"]["last_status"] == "suppressed"
    assert outcome["results"][3]["error"]["code"] == "device_not_found"


def test_listing_filters_and_paginates_across_shards(stack: RunningStack) -> None:
    marker = uuid.uuid4().hex
    created = {f"hms:{marker}-{index}" for index in range(7)}
    for device_id in created:
        identify(stack, device_id, transport="HMS")
    bounced = f"hms:{marker}-0"
    report(stack, bounced, accepted=False)

    listed = all_items(stack, "/v1/devices", limit=3, transport="HMS")
    seen = [device["device_id"] for device in listed if marker in device["device_id"]]
    bounced_only = stack.api(
        "GET", "/v1/devices", stack.key(0), params={"transport": "HMS", "last_status": "bounced", "limit": 200}
    ).json()["items"]

    assert sorted(seen) == sorted(created)
    assert [device["device_id"] for device in bounced_only if marker in device["device_id"]] == [bounced]
