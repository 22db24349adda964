"""App B's criteria previews never count, sample or page into app A's users, devices or contacts.

App A is the first demo app, app B the second (see test_isolation.py). A's
data is marked with a fresh batch tag; B previews every target with criteria
that select exactly that data, with criteria that select everything, and with
a cursor that A's own preview issued.
"""

from typing import Any
from uuid import uuid4

import pytest

from tests.support.client import (
    A,
    B,
    RunningStack,
    batch_rule,
    contacts,
    identify,
    preview_ok,
    preview_pages,
    seed_users,
)

ROUTES_COVERED = {("POST", "/v1/criteria/preview")}
TARGETS = ("users", "devices", "emails", "phones")
EVERYTHING: dict[str, Any] = {"any": [{"field": "user_id", "op": "exists"}, {"field": "user_id", "op": "not_exists"}]}


class AppAData:
    def __init__(self, stack: RunningStack) -> None:
        self.tag = uuid4().hex
        self.user_ids = [f"iso-crit-{self.tag}-{n}" for n in range(3)]
        seed_users(
            stack,
            {
                user_id: {
                    "fields": {"batch": self.tag},
                    "emails": contacts((f"{n}-{self.tag}@a.example", True)),
                    "phones": contacts((f"+4470{n}", True)),
                }
                for n, user_id in enumerate(self.user_ids)
            },
            app=A,
        )
        self.device_ids = [f"fcm:iso-crit-{self.tag}-{n}" for n in range(2)]
        for device_id, user_id in zip(self.device_ids, self.user_ids, strict=False):
            identify(stack, device_id, user_id, app=A)
        self.addresses = {f"{n}-{self.tag}@a.example" for n in range(3)}


@pytest.fixture(scope="module")
def a_data(stack: RunningStack) -> AppAData:
    return AppAData(stack)


def sampled(pages: list[dict[str, Any]]) -> tuple[set[str], set[str], set[str]]:
    """User ids, device ids and contact addresses found in the samples."""
    items = [item for page in pages for item in page["sample"]]
    return (
        {item["user_id"] for item in items if item.get("user_id")},
        {item["device_id"] for item in items if "device_id" in item},
        {item["address"] for item in items if "address" in item},
    )


@pytest.mark.parametrize("target", TARGETS)
def test_criteria_selecting_app_a_data_find_nothing_in_app_b(
    stack: RunningStack, a_data: AppAData, target: str
) -> None:
    body = {"target": target, "criteria": batch_rule(a_data.tag), "sample_size": 50}
    assert sum(page["matched"] for page in preview_pages(stack, body, stack.key(A))) > 0  # A sees its own

    pages = preview_pages(stack, body, stack.key(B))

    assert sum(page["matched"] for page in pages) == 0
    assert all(page["sample"] == [] for page in pages)


@pytest.mark.parametrize("target", TARGETS)
def test_everything_in_app_b_holds_nothing_of_app_a(stack: RunningStack, a_data: AppAData, target: str) -> None:
    pages = preview_pages(stack, {"target": target, "criteria": EVERYTHING, "sample_size": 50}, stack.key(B))

    users, devices, addresses = sampled(pages)
    assert not users & set(a_data.user_ids)
    assert not devices & set(a_data.device_ids)
    assert not addresses & a_data.addresses
    assert "fcm:demo-token-alice-1" not in devices  # seeded into A only


def test_app_a_cursor_reads_only_app_b_shards(stack: RunningStack) -> None:
    tag = uuid4().hex
    a_users = {f"iso-crit-page-{tag}-{n:03}": {"fields": {"batch": tag}} for n in range(201)}
    seed_users(stack, a_users, app=A)
    # A device rule costs an index query per user, so A's first page stops at 200 users with a cursor.
    body = {"target": "users", "criteria": {"all": [batch_rule(tag), {"field": "device.active", "op": "not_exists"}]}}
    a_first = preview_ok(stack, body, stack.key(A))
    assert a_first["next_cursor"] is not None

    pages = preview_pages(stack, {**body, "cursor": a_first["next_cursor"], "sample_size": 50}, stack.key(B))

    assert sum(page["matched"] for page in pages) == 0
    assert not sampled(pages)[0] & set(a_users)
