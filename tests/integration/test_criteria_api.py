"""POST /v1/criteria/preview through the local stack: every target, pages, scopes and 422 paths.

Users are written straight into the emulator's ProfilesTable, in the item
layout of ``steward.tables.ProfileRecord`` (the users routes are built
separately); devices go through the devices API. Every test marks its data
with a fresh ``batch`` custom field, so other tests' data never counts.
"""

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from tests.support.client import (
    NOW,
    PREVIEW,
    A,
    RunningStack,
    assert_error,
    batch_rule,
    contacts,
    create_key,
    device_path,
    identify,
    preview,
    preview_ok,
    preview_pages,
    seed_users,
)
from tests.support.criteria import ACTIVE, nested


def fail_push(stack: RunningStack, device_id: str) -> None:
    body = {"accepted": False, "error_code": "UNREGISTERED"}
    response = stack.api("POST", device_path(device_id, "/push-results"), key=stack.key(A), json=body)
    assert response.status_code == 200, response.text


class Seeded:
    """Three users of app A with contacts and devices, marked with a fresh batch tag."""

    def __init__(self, stack: RunningStack) -> None:
        self.tag = uuid4().hex
        self.gold, self.gold_quiet, self.free = (f"crit-{name}-{self.tag}" for name in ("gold", "quiet", "free"))
        seed_users(
            stack,
            {
                self.gold: {
                    "fields": {"batch": self.tag, "plan": "gold", "score": 10},
                    "created_at": NOW - timedelta(days=1),
                    "emails": contacts(("gold@x.io", True)),
                    "phones": contacts(("+447700900001", False)),
                    "subscriptions": {"news|email": "Subscribed"},
                },
                self.gold_quiet: {"fields": {"batch": self.tag, "plan": "gold", "score": 3}},
                self.free: {
                    "fields": {"batch": self.tag, "plan": "free", "score": 7.5},
                    "last_activity_at": NOW - timedelta(days=40),
                    "emails": contacts(("free@x.io", True), ("old@x.io", False)),
                    "subscriptions": {"news|email": "Unsubscribed"},
                },
            },
        )
        self.gold_device = f"fcm:crit-{self.tag}"
        self.free_device = f"apns-crit-{self.tag}"
        identify(stack, self.gold_device, self.gold)
        identify(stack, self.free_device, self.free, transport="APNS")
        fail_push(stack, self.free_device)


@pytest.fixture(scope="module")
def seeded(stack: RunningStack) -> Seeded:
    return Seeded(stack)


def sample_ids(page: dict[str, Any], key: str) -> list[str]:
    return sorted(item[key] for item in page["sample"])


def test_users_preview_counts_and_returns_users(stack: RunningStack, seeded: Seeded) -> None:
    criteria = {"all": [batch_rule(seeded.tag), {"field": "fields.plan", "op": "eq", "value": "gold"}]}

    page = preview_ok(stack, {"target": "users", "criteria": criteria})

    assert (page["matched"], page["complete"], page["next_cursor"]) == (2, True, None)
    assert sample_ids(page, "user_id") == sorted([seeded.gold, seeded.gold_quiet])
    gold = next(user for user in page["sample"] if user["user_id"] == seeded.gold)
    assert gold["fields"] == {"batch": seeded.tag, "plan": "gold", "score": 10}
    assert gold["subscriptions"] == [{"resource_id": "news", "channel": "email", "status": "Subscribed"}]
    assert page["scanned"] >= 3


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"field": "fields.score", "op": "gt", "value": 5}, {"gold", "free"}),
        ({"field": "created_at", "op": "within_last_days", "value": 7}, {"gold"}),
        # Identifying a device records the user's activity, whatever was stored before.
        ({"field": "last_activity_at", "op": "within_last_days", "value": 7}, {"gold", "free"}),
        ({"field": "last_activity_at", "op": "not_exists"}, {"quiet"}),
        ({"field": "subscription.news.email", "op": "ne", "value": "Subscribed"}, {"free"}),
        ({"field": "email.active", "op": "eq", "value": False}, {"free"}),
        ({"field": "device.transport", "op": "eq", "value": "APNS"}, {"free"}),
        ({"field": "device.last_status", "op": "not_exists"}, {"quiet"}),
        (
            {
                "any": [
                    {"field": "phone.number", "op": "starts_with", "value": "+44"},
                    {"field": "fields.score", "op": "lt", "value": 5},
                ]
            },
            {"gold", "quiet"},
        ),
    ],
)
def test_users_preview_rules(stack: RunningStack, seeded: Seeded, rule: dict[str, Any], expected: set[str]) -> None:
    names = {seeded.gold: "gold", seeded.gold_quiet: "quiet", seeded.free: "free"}

    page = preview_ok(stack, {"target": "users", "criteria": {"all": [batch_rule(seeded.tag), rule]}})

    assert {names[user_id] for user_id in sample_ids(page, "user_id")} == expected
    assert page["matched"] == len(expected)


def test_devices_preview_returns_devices_and_reads_owners(stack: RunningStack, seeded: Seeded) -> None:
    everything = preview_ok(stack, {"target": "devices", "criteria": batch_rule(seeded.tag)})
    bounced = preview_ok(
        stack,
        {
            "target": "devices",
            "criteria": {
                "all": [{"field": "device.last_status", "op": "eq", "value": "bounced"}, batch_rule(seeded.tag)]
            },
        },
    )

    assert sample_ids(everything, "device_id") == sorted([seeded.gold_device, seeded.free_device])
    assert everything["matched"] == 2
    assert sample_ids(bounced, "device_id") == [seeded.free_device]
    assert bounced["sample"][0]["user_id"] == seeded.free
    assert bounced["sample"][0]["failure_streak"] == 1


def test_emails_and_phones_previews_return_contacts(stack: RunningStack, seeded: Seeded) -> None:
    emails = preview_ok(stack, {"target": "emails", "criteria": batch_rule(seeded.tag)})
    active = preview_ok(
        stack,
        {
            "target": "emails",
            "criteria": {"all": [batch_rule(seeded.tag), {"field": "email.active", "op": "eq", "value": True}]},
        },
    )
    phones = preview_ok(stack, {"target": "phones", "criteria": batch_rule(seeded.tag)})

    assert emails["matched"] == 3
    assert sorted(item["address"] for item in emails["sample"]) == ["free@x.io", "gold@x.io", "old@x.io"]
    assert sorted(item["address"] for item in active["sample"]) == ["free@x.io", "gold@x.io"]
    assert phones["sample"] == [{"user_id": seeded.gold, "address": "+447700900001", "active": False}]


def test_sample_size_caps_the_sample(stack: RunningStack, seeded: Seeded) -> None:
    page = preview_ok(stack, {"target": "emails", "criteria": batch_rule(seeded.tag), "sample_size": 1})

    assert page["matched"] == 3
    assert len(page["sample"]) == 1


def test_pages_follow_the_cursor_and_add_up(stack: RunningStack) -> None:
    tag = uuid4().hex
    count = 230
    seed_users(stack, {f"crit-page-{tag}-{n:03}": {"fields": {"batch": tag}} for n in range(count)})
    # A rule on devices makes each user cost an index query, so a page holds at most 200 users.
    criteria = {"all": [batch_rule(tag), {"field": "device.transport", "op": "not_exists"}]}

    pages = preview_pages(stack, {"target": "users", "criteria": criteria, "sample_size": 50})

    assert len(pages) >= 2
    assert pages[0]["next_cursor"] is not None
    assert pages[0]["complete"] is False
    assert sum(page["matched"] for page in pages) == count
    sampled = [item["user_id"] for page in pages for item in page["sample"]]
    assert len(sampled) == len(set(sampled))


def test_a_cursor_only_continues_its_own_preview(stack: RunningStack) -> None:
    tag = uuid4().hex
    seed_users(stack, {f"crit-cur-{tag}-{n:03}": {"fields": {"batch": tag}} for n in range(201)})
    criteria = {"all": [batch_rule(tag), {"field": "device.active", "op": "not_exists"}]}
    first = preview_ok(stack, {"target": "users", "criteria": criteria})
    assert first["next_cursor"] is not None

    other_criteria = preview(stack, {"target": "users", "criteria": batch_rule(tag), "cursor": first["next_cursor"]})
    other_target = preview(stack, {"target": "emails", "criteria": criteria, "cursor": first["next_cursor"]})
    garbage = preview(stack, {"target": "users", "criteria": criteria, "cursor": "%%%"})

    assert_error(other_criteria, 422, "invalid_cursor", "cursor")
    assert_error(other_target, 422, "invalid_cursor", "cursor")
    assert_error(garbage, 422, "invalid_cursor", "cursor")


def test_a_read_only_key_may_preview_and_a_write_only_key_may_not(stack: RunningStack) -> None:
    keys = {scope: create_key(stack, [scope], name=f"crit-{scope}")["api_key"] for scope in ("read", "write")}
    body = {"target": "devices", "criteria": {"field": "device.active", "op": "eq", "value": True}}

    assert preview(stack, body, keys["read"]).status_code == 200
    assert_error(preview(stack, body, keys["write"]), 403, "insufficient_scope")


def test_preview_needs_a_key(stack: RunningStack) -> None:
    response = stack.api("POST", PREVIEW, json={"target": "users", "criteria": {"field": "user_id", "op": "exists"}})

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("criteria", "field"),
    [
        ({"all": [ACTIVE, {"any": [{"field": "active", "op": "gt", "value": True}]}]}, "criteria.all[1].any[0].op"),
        ({"all": [ACTIVE, {"field": "plan", "op": "eq", "value": "gold"}]}, "criteria.all[1].field"),
        ({"any": []}, "criteria.any"),
        ({"all": [ACTIVE, {"any": [ACTIVE, {"all": []}]}]}, "criteria.all[1].any[1].all"),
        ({"field": "device.transport", "op": "eq", "value": "Pigeon"}, "criteria.value"),
        ({"field": "fields.plan", "op": "in", "value": ["gold", 3]}, "criteria.value[1]"),
        ({"field": "last_activity_at", "op": "within_last_days", "value": -3}, "criteria.value"),
        ({"field": "created_at", "op": "before", "value": "last week"}, "criteria.value"),
        ({"field": "active", "op": "exists", "value": True}, "criteria.value"),
        ({"field": "active", "op": "eq"}, "criteria.value"),
        ({"field": "active", "op": "eq", "value": True, "extra": 1}, "criteria.extra"),
        (nested(11), "criteria" + ".any[0]" * 10 + ".all"),
        ({"all": [ACTIVE] * 201}, "criteria.all[200]"),
        ("active", "criteria"),
    ],
)
def test_bad_criteria_are_422_with_the_path(stack: RunningStack, criteria: Any, field: str) -> None:
    response = preview(stack, {"target": "users", "criteria": criteria})

    assert_error(response, 422, "invalid_criteria", field)


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"target": "accounts", "criteria": ACTIVE}, "invalid_input", "target"),
        ({"target": "users", "criteria": ACTIVE, "sample_size": 0}, "invalid_input", "sample_size"),
        ({"target": "users", "criteria": ACTIVE, "sample_size": 51}, "invalid_input", "sample_size"),
        ({"target": "users", "criteria": ACTIVE, "offset": 3}, "invalid_input", "offset"),
        ({"criteria": ACTIVE}, "missing_field", "target"),
        ({"target": "users"}, "missing_field", "criteria"),
    ],
)
def test_bad_bodies_are_422(stack: RunningStack, body: dict[str, Any], code: str, field: str) -> None:
    assert_error(preview(stack, body), 422, code, field)


def test_the_route_is_documented(stack: RunningStack) -> None:
    schema = stack.api("GET", "/openapi.json").json()
    operation = schema["paths"][PREVIEW]["post"]

    assert operation["tags"] == ["Criteria"]
    assert "invalid_criteria" in operation["description"]
    request = schema["components"]["schemas"]["PreviewRequest"]
    assert {"target", "criteria", "sample_size", "cursor"} <= set(request["properties"])
    assert all(request["properties"][name].get("description") for name in ("target", "criteria", "sample_size"))


def test_the_preview_counts_deliverable_users_and_contacts_apart(stack: RunningStack) -> None:
    tag = uuid4().hex
    seed_users(
        stack,
        {
            f"ok-{tag}": {"fields": {"batch": tag}, "emails": contacts(("ok@x.io", True), ("old@x.io", False))},
            f"gone-{tag}": {
                "fields": {"batch": tag},
                "emails": contacts(("gone@x.io", True)),
                "global_unsubscribed": True,
            },
        },
    )
    users = preview_ok(stack, {"target": "users", "criteria": batch_rule(tag)})
    emails = preview_ok(stack, {"target": "emails", "criteria": batch_rule(tag)})

    assert (users["matched"], users["deliverable"]) == (2, 1)
    assert (emails["matched"], emails["deliverable"]) == (3, 1)
