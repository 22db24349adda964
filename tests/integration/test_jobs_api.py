"""Maintenance jobs through the HTTP API of the local stack, with Step Functions really executing.

These tests cover the engine, whatever the type: scopes, validation,
re-authentication, the one-real-job lock, reports, deletion, the audit entry
and the `Job Finished` event. Each job type's own rules, and the agreement of
its dry, real and confirmed runs, are in test_job_types_api.py.
"""

import hashlib
import json
import time
from typing import Any

import pyotp
import pytest
import requests

from tests.support.client import (
    JOBS,
    JobApp,
    RunningStack,
    all_items,
    assert_error,
    fresh_tag,
    job_app,
    listen_to_job_events,
    ok,
    report_rows,
    run_job,
    submit_job,
    tag_devices_path,
    wait_for_job,
)

HARMLESS = ("delete_tags", {"tags": ["no-such-tag"]})


@pytest.fixture(scope="module")
def app(stack: RunningStack) -> JobApp:
    return job_app(stack, "jobs")


def audit_entry(stack: RunningStack, app: JobApp, job_id: str) -> dict[str, Any]:
    entries = [entry for entry in all_items(stack, "/v1/audit", key=app.key) if entry["job_id"] == job_id]
    assert len(entries) == 1, entries
    return entries[0]


def tagged_devices(stack: RunningStack, app: JobApp, count: int) -> tuple[str, list[str]]:
    """A fresh tag on ``count`` new devices of the app."""
    devices = [f"jobs-device-{time.monotonic_ns()}-{n}" for n in range(count)]
    for device_id in devices:
        ok(stack.api("PUT", f"/v1/devices/{device_id}", app.key, json={"user_id": "u1", "transport": "FCM"}))
    tag = fresh_tag()
    ok(stack.api("POST", tag_devices_path(tag), app.key, json={"add": devices, "remove": []}))
    return tag, devices


# Scopes and validation


def test_a_job_is_dry_unless_told_and_a_write_key_may_run_it(stack: RunningStack, app: JobApp) -> None:
    key = _key(stack, app, ["write"])

    job = ok(submit_job(stack, key, *HARMLESS), 201)

    assert job["dry_run"] is True
    assert job["status"] in ("queued", "running", "succeeded")
    assert wait_for_job(stack, app.key, job["job_id"])["status"] == "succeeded"


@pytest.mark.parametrize(("scopes", "dry_run"), [(["read"], True), (["write"], False), (["read", "write"], False)])
def test_a_dry_run_needs_write_and_a_real_run_admin(
    stack: RunningStack, app: JobApp, scopes: list[str], dry_run: bool
) -> None:
    key = _key(stack, app, scopes)

    response = submit_job(stack, key, *HARMLESS, dry_run=dry_run, admin_password=app.password)

    assert_error(response, 403, "insufficient_scope")


def test_bad_params_name_the_field_and_start_nothing(stack: RunningStack, app: JobApp) -> None:
    before = len(all_items(stack, JOBS, key=app.key))

    response = submit_job(stack, app.key, "split_audience", {"prefix": "p", "num_segments": 1})

    assert_error(response, 422, "invalid_params", "params.num_segments")
    assert len(all_items(stack, JOBS, key=app.key)) == before


# Re-authentication of real runs (every type asks for it the same way: see test_job_types_api.py too)


def test_a_real_run_without_the_password_is_428_and_says_what_it_would_do(stack: RunningStack, app: JobApp) -> None:
    tag = fresh_tag()

    error = assert_error(
        submit_job(stack, app.key, "delete_tags", {"tags": [tag]}, dry_run=False), 428, "reauthentication_required"
    )

    assert "delete the device tags listed (1)" in error["message"]


def test_five_wrong_passwords_lock_real_runs_for_a_while(stack: RunningStack) -> None:
    app = job_app(stack, "lockout")
    for _ in range(5):
        wrong = submit_job(stack, app.key, *HARMLESS, dry_run=False, admin_password="wrong password")
        assert assert_error(wrong, 401, "reauthentication_failed")["field"] is None  # never says which factor

    locked = submit_job(stack, app.key, *HARMLESS, dry_run=False, admin_password=app.password)

    assert_error(locked, 429, "too_many_attempts")
    assert int(locked.headers["Retry-After"]) > 0
    assert ok(submit_job(stack, app.key, *HARMLESS), 201)["dry_run"] is True  # dry runs need no re-authentication


def test_a_totp_app_needs_both_factors_and_a_code_works_once(stack: RunningStack) -> None:
    app = job_app(stack, "totp", totp=True)
    assert app.totp_secret is not None
    code = pyotp.TOTP(app.totp_secret).now()

    # Without a code the password is not even looked at: a wrong one still gets 428.
    assert_error(
        submit_job(stack, app.key, *HARMLESS, dry_run=False, admin_password="wrong"), 428, "reauthentication_required"
    )
    first = submit_job(stack, app.key, *HARMLESS, dry_run=False, admin_password=app.password, totp_code=code)
    job = ok(first, 201)
    wait_for_job(stack, app.key, job["job_id"])
    replay = submit_job(stack, app.key, *HARMLESS, dry_run=False, admin_password=app.password, totp_code=code)

    assert_error(replay, 401, "reauthentication_failed")
    assert audit_entry(stack, app, job["job_id"])["reauth"] == "password+totp"


# Running, reports, audit, events


def test_a_real_run_changes_reports_audits_and_announces(stack: RunningStack, app: JobApp) -> None:
    queue_url = listen_to_job_events(stack)
    tag, _devices = tagged_devices(stack, app, 3)

    job = run_job(stack, app, "delete_tags", {"tags": [tag, "never-made"]}, dry_run=False)

    assert job["status"] == "succeeded", job
    assert job["counts"] == {"scanned": 2, "matched": 1, "changed": 1, "skipped": 1, "failed": 0}
    rows = report_rows(stack, app.key, job["job_id"])
    assert sorted((row["entity"], row["id"], row["action"]) for row in rows) == [
        ("tag", "never-made", "not_found"),
        ("tag", tag, "deleted"),
    ]
    assert [row["detail"] for row in rows if row["id"] == tag] == ["3 devices untagged"]
    assert not any(item["tag"] == tag for item in all_items(stack, "/v1/tags", key=app.key))
    entry = audit_entry(stack, app, job["job_id"])
    link = ok(stack.api("GET", f"{JOBS}/{job['job_id']}/report", app.key))
    report = requests.get(link["url"], timeout=30).content
    assert entry["report_sha256"] == hashlib.sha256(report).hexdigest()
    assert (entry["reauth"], entry["status"], entry["key_id"]) == ("password", "succeeded", app.key_id)
    assert entry["params"] == {"tags": [tag, "never-made"], "dry_run": False}
    event = _job_event(stack, queue_url, job["job_id"])
    assert event["source"] == "steward"
    assert event["detail-type"] == "Job Finished"
    assert event["detail"]["status"] == "succeeded"
    assert event["detail"]["counts"] == job["counts"]
    assert event["detail"]["report_key"].endswith("/report.csv")


def test_a_dry_run_changes_nothing_and_prices_the_real_one(stack: RunningStack, app: JobApp) -> None:
    tag, _devices = tagged_devices(stack, app, 2)

    job = run_job(stack, app, "delete_tags", {"tags": [tag]}, dry_run=True)

    assert job["status"] == "succeeded"
    assert job["counts"]["changed"] == 1
    assert any(item["tag"] == tag and item["device_count"] == 2 for item in all_items(stack, "/v1/tags", key=app.key))
    estimate = job["estimate"]
    assert estimate["write_units"] > 0
    assert estimate["state_transitions"] > 0
    assert float(estimate["usd"]) > 0
    assert audit_entry(stack, app, job["job_id"])["reauth"] == "none"


def test_one_real_job_runs_at_a_time(stack: RunningStack) -> None:
    app = job_app(stack, "one-at-a-time")
    tags = [tagged_devices(stack, app, 1)[0] for _ in range(40)]
    first = ok(
        submit_job(stack, app.key, "delete_tags", {"tags": tags}, dry_run=False, admin_password=app.password), 201
    )

    second = submit_job(stack, app.key, *HARMLESS, dry_run=False, admin_password=app.password)

    error = assert_error(second, 409, "job_running")
    assert first["job_id"] in error["message"]
    assert wait_for_job(stack, app.key, first["job_id"])["status"] == "succeeded"
    # The lock went with the job.
    third = ok(submit_job(stack, app.key, *HARMLESS, dry_run=False, admin_password=app.password), 201)
    assert wait_for_job(stack, app.key, third["job_id"])["status"] == "succeeded"


def test_deleting_a_job_removes_it_and_its_report_but_not_its_audit_entry(stack: RunningStack, app: JobApp) -> None:
    job = run_job(stack, app, *HARMLESS, dry_run=True)
    job_id = job["job_id"]
    s3 = stack.client("s3")
    bucket = stack.state["buckets"]["ReportsBucket"]
    prefix = f"jobs/{app.app_id}/{job_id}/"
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0) > 0

    assert stack.api("DELETE", f"{JOBS}/{job_id}", app.key).status_code == 204

    assert_error(stack.api("GET", f"{JOBS}/{job_id}", app.key), 404, "job_not_found", "job_id")
    assert_error(stack.api("GET", f"{JOBS}/{job_id}/report", app.key), 404, "job_not_found", "job_id")
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0) == 0
    assert audit_entry(stack, app, job_id)["status"] == "succeeded"


def test_jobs_are_listed_newest_first_and_filtered(stack: RunningStack) -> None:
    app = job_app(stack, "listing")
    dry = run_job(stack, app, *HARMLESS, dry_run=True)
    refused = run_job(stack, app, "split_audience", {"prefix": "taken", "num_segments": 2}, dry_run=True)
    ok(stack.api("POST", "/v1/segments", app.key, json={"name": "taken-1", "kind": "static"}), 201)
    failed = run_job(stack, app, "split_audience", {"prefix": "taken", "num_segments": 2}, dry_run=True)

    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "segment_name_taken"
    listed = [job["job_id"] for job in all_items(stack, JOBS, key=app.key, limit=1)]
    assert listed == [failed["job_id"], refused["job_id"], dry["job_id"]]
    by_type = all_items(stack, JOBS, key=app.key, type="split_audience")
    assert [job["job_id"] for job in by_type] == [failed["job_id"], refused["job_id"]]
    by_status = all_items(stack, JOBS, key=app.key, status="failed")
    assert [job["job_id"] for job in by_status] == [failed["job_id"]]


def _key(stack: RunningStack, app: JobApp, scopes: list[str]) -> str:
    created = ok(stack.api("POST", "/v1/api-keys", app.key, json={"name": "scoped", "scopes": scopes}), 201)
    return str(created["api_key"])


def _job_event(stack: RunningStack, queue_url: str, job_id: str) -> dict[str, Any]:
    sqs = stack.client("sqs")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            event: dict[str, Any] = json.loads(message["Body"])
            if event["detail"]["job_id"] == job_id:
                return event
    raise AssertionError(f"no Job Finished event for {job_id}")
