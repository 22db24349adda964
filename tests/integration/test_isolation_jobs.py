"""App B's key never sees, confirms, downloads or deletes app A's jobs."""

from typing import Any

import pytest

from tests.support.client import (
    JOBS,
    A,
    B,
    RunningStack,
    all_items,
    assert_error,
    bulk_tag,
    first_cursor,
    fresh_id,
    fresh_tag,
    identify,
    listed_count,
    new_program,
    new_resource,
    ok,
    report_rows,
    submit_job,
    subscription_job,
    wait_for_job,
)

ROUTES_COVERED = {
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{job_id}"),
    ("DELETE", "/v1/jobs/{job_id}"),
    ("POST", "/v1/jobs/{job_id}/confirm"),
    ("GET", "/v1/jobs/{job_id}/report"),
}


@pytest.fixture(scope="module")
def a_jobs(stack: RunningStack) -> list[dict[str, Any]]:
    """Two finished dry runs of app A (tags that do not exist: nothing to change)."""
    finished = []
    for tag in ("isolation-one", "isolation-two"):
        job = ok(submit_job(stack, stack.key(A), "delete_tags", {"tags": [tag]}), 201)
        finished.append(wait_for_job(stack, stack.key(A), job["job_id"]))
    return finished


def ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["job_id"] for item in items}


def test_each_app_lists_only_its_own_jobs(stack: RunningStack, a_jobs: list[dict[str, Any]]) -> None:
    assert ids(a_jobs) <= ids(all_items(stack, JOBS, app=A, limit=1))
    assert not ids(a_jobs) & ids(all_items(stack, JOBS, app=B))


def test_a_cursor_of_a_pages_only_bs_own_jobs(stack: RunningStack, a_jobs: list[dict[str, Any]]) -> None:
    cursor = first_cursor(stack, JOBS, app=A)

    page = ok(stack.api("GET", JOBS, stack.key(B), params={"cursor": cursor, "limit": 200}))

    assert not ids(a_jobs) & ids(page["items"])


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/report", None),
        ("DELETE", "", None),
        ("POST", "/confirm", {"admin_password": "not-needed-to-find-nothing"}),
    ],
)
def test_another_apps_job_is_not_found(
    stack: RunningStack, a_jobs: list[dict[str, Any]], method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    job_id = a_jobs[0]["job_id"]

    response = stack.api(method, f"{JOBS}/{job_id}{suffix}", stack.key(B), json=body)

    assert_error(response, 404, "job_not_found", "job_id")
    assert ok(stack.api("GET", f"{JOBS}/{job_id}", stack.key(A)))["status"] == "succeeded"


def test_a_job_sees_only_its_own_apps_data(stack: RunningStack) -> None:
    """B's job for a tag that only A has finds nothing, and A's tag stays."""
    device_id = fresh_id("iso-job-device-")
    identify(stack, device_id, app=A)
    tag = fresh_tag()
    bulk_tag(stack, tag, [device_id], [], app=A)

    job = ok(submit_job(stack, stack.key(B), "delete_tags", {"tags": [tag]}), 201)
    finished = wait_for_job(stack, stack.key(B), job["job_id"])

    assert finished["status"] == "succeeded"
    assert [(row["id"], row["action"]) for row in report_rows(stack, stack.key(B), job["job_id"])] == [
        (tag, "not_found")
    ]
    assert listed_count(stack, tag, app=A) == 1


def test_a_bulk_update_cannot_name_another_apps_resource_or_program(stack: RunningStack) -> None:
    a_resource = new_resource(stack, ["email"])  # app A's
    a_program = new_program(stack, app=A)
    subscribe = subscription_job(a_resource, "email")
    codes = {"action": "promo_codes", "selection": {"source": "all"}, "operation": "attach", "program_id": a_program}

    refused = [
        submit_job(stack, stack.key(B), "bulk_update", subscribe),
        submit_job(stack, stack.key(B), "bulk_update", codes),
    ]

    assert_error(refused[0], 422, "unknown_resource", "params.resource_id")
    assert_error(refused[1], 422, "unknown_loyalty_program", "params.program_id")
    # App A's own names are accepted (a dry run).
    assert ok(submit_job(stack, stack.key(A), "bulk_update", subscribe), 201)["dry_run"] is True
