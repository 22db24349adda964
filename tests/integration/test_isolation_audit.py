"""App B's key never reads app A's audit log, and only admin keys read a log at all."""

from typing import Any

import pytest

from tests.support.client import (
    A,
    B,
    RunningStack,
    all_items,
    assert_error,
    create_key,
    first_cursor,
    ok,
    seed_audit_log,
)

ROUTES_COVERED = {("GET", "/v1/audit")}
AUDIT = "/v1/audit"


@pytest.fixture(scope="module")
def a_entries(stack: RunningStack) -> list[dict[str, Any]]:
    """Three entries appended to app A's log (no route writes the log; the jobs engine will)."""
    return seed_audit_log(stack, str(stack.state["apps"][A]["id"]), 3)


def job_ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["job_id"] for item in items}


def test_each_app_lists_only_its_own_log(stack: RunningStack, a_entries: list[dict[str, Any]]) -> None:
    a_listing = all_items(stack, AUDIT, app=A, limit=2)
    b_listing = all_items(stack, AUDIT, app=B)

    assert a_listing[: len(a_entries)] == a_entries[::-1]  # newest first, exactly as appended
    assert [item["prev_hash"] for item in a_listing[:-1]] == [item["hash"] for item in a_listing[1:]]
    assert not job_ids(a_entries) & job_ids(b_listing)
    assert all(item["prev_hash"] != entry["hash"] for item in b_listing for entry in a_entries)


def test_a_cursor_of_a_pages_only_bs_own_log(stack: RunningStack, a_entries: list[dict[str, Any]]) -> None:
    a_cursor = first_cursor(stack, AUDIT, app=A)

    response = stack.api("GET", AUDIT, stack.key(B), params={"cursor": a_cursor, "limit": 200})

    page = ok(response)
    assert not job_ids(a_entries) & job_ids(page["items"])
    assert job_ids(page["items"]) <= job_ids(all_items(stack, AUDIT, app=B))


def test_a_forged_cursor_is_refused(stack: RunningStack, a_entries: list[dict[str, Any]]) -> None:
    response = stack.api("GET", AUDIT, stack.key(B), params={"cursor": "eyJwayI6ICJkZW1vLXNob3AjYXVkaXQifQ"})

    assert_error(response, 422, "invalid_cursor", "cursor")


@pytest.mark.parametrize("scopes", [["read"], ["read", "write"], ["write"]])
def test_keys_without_admin_cannot_read_the_log(
    stack: RunningStack, a_entries: list[dict[str, Any]], scopes: list[str]
) -> None:
    key = create_key(stack, scopes, app=A)["api_key"]

    assert_error(stack.api("GET", AUDIT, key), 403, "insufficient_scope")


def test_an_admin_only_key_reads_its_apps_log(stack: RunningStack, a_entries: list[dict[str, Any]]) -> None:
    key = create_key(stack, ["admin"], app=A)["api_key"]

    page = ok(stack.api("GET", AUDIT, key, params={"limit": 200}))

    assert job_ids(a_entries) <= job_ids(page["items"])
