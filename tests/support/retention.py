"""What the retention tests share: the issue's example settings, and sweeps fired through the local stack."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.client import RunningStack, bootstrap_app, fire, ok

STATUSES = ["open", "pending", "automated", "sent", "archive", "irrelevant", "resolved", "delete"]
ARCHIVABLE = STATUSES[:4]
DELETABLE = STATUSES[4:7]

EXAMPLE_SETTINGS: dict[str, Any] = {
    "archive_after_days": {"open": 30, "pending": 30, "automated": 7, "sent": 14},
    "delete_after_days": {"archive": 90, "irrelevant": 0, "resolved": None},
    "purge_after_days": None,
    "delete_user_data": False,
    "channels": {"whatsapp": {"archive_after_days": {"open": 5}, "purge_after_days": 0}},
}


RUN_SECONDS = 120
APP_OF_KEY: dict[str, str] = {}


def every_status(days: int | None) -> dict[str, Any]:
    """A channel override that sets every setting to ``days``."""
    return {
        "archive_after_days": dict.fromkeys(ARCHIVABLE, days),
        "delete_after_days": dict.fromkeys(DELETABLE, days),
        "purge_after_days": days,
    }


def new_app(stack: RunningStack, settings: dict[str, Any] | None) -> str:
    """A fresh app's key (every scope) with these retention settings; the app id is noted for sweep()."""
    created = bootstrap_app(stack, "sweep", "Sweep")
    key = str(created["api_key"]["api_key"])
    APP_OF_KEY[key] = str(created["app"]["app_id"])
    if settings is not None:
        ok(stack.api("PUT", "/v1/retention-settings", key, json=settings))
    return key


def conversation(stack: RunningStack, key: str, channel: str, status: str, idle_days: float, **body: Any) -> str:
    at = (datetime.now(UTC) - timedelta(days=idle_days)).isoformat()
    fields = {"channel": channel, "status": status, "created_at": at, "last_activity_at": at, "status_changed_at": at}
    return str(ok(stack.api("POST", "/v1/conversations", key, json={**fields, **body}), 201)["conversation_id"])


def status_of(stack: RunningStack, key: str, conversation_id: str) -> str | None:
    response = stack.api("GET", f"/v1/conversations/{conversation_id}", key)
    if response.status_code == 404:
        return None
    return str(ok(response)["status"])


def fire_schedule(stack: RunningStack) -> dict[str, Any]:
    """Fire the retention schedule; wait for the scheduler's execution (every app with settings started)."""
    fired = fire(stack, stack.state["schedules"]["RetentionSchedule"])
    stepfunctions = stack.client("stepfunctions")
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        execution: dict[str, Any] = stepfunctions.describe_execution(executionArn=fired["execution_arn"])
        if execution["status"] != "RUNNING":
            assert execution["status"] == "SUCCEEDED", execution
            return execution
        time.sleep(0.5)
    raise AssertionError("the retention scheduler did not finish")


def run_ids(stack: RunningStack, key: str) -> list[str]:
    return [run["run_id"] for run in ok(stack.api("GET", "/v1/retention/runs?limit=100", key))["items"]]


def sweep(stack: RunningStack, key: str) -> dict[str, Any]:
    """Fire the retention schedule and wait for this app's new run to finish."""
    before = set(run_ids(stack, key))
    fire_schedule(stack)
    [run_id] = [run_id for run_id in run_ids(stack, key) if run_id not in before]
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        run = ok(stack.api("GET", f"/v1/retention/runs/{run_id}", key))
        if run["finished_at"] is not None:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish")
