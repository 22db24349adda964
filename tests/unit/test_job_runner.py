"""The jobs worker's steps on moto (DynamoDB, S3, EventBridge) with a fake job type: runs, retries, budgets, reports."""

import json
import types
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from steward.composition import Services
from steward.errors import NotFound
from steward.jobs.engine import Entity, ReportRow, RetryPage
from steward.jobs.models import JobCounts, JobError, JobStatus
from steward.jobs.reports import page_key
from steward.jobs.repository import JobRepository
from steward.jobs.runner import EventNotPublished, error_from_state_machine, is_throttling
from steward.settings import StoreSettings
from steward.tables import JobPartRecord, job_parts_pk
from tests.support.aws_errors import raised_while_handling, wrapped_by_pynamodb
from tests.support.job_engine import (
    APP,
    BUCKET,
    BUS,
    COUNTS,
    DEVICES,
    EXISTING_TAGS,
    MEMORY_MB,
    REPORT_HEADER,
    REPORT_ROWS,
    TAGS,
    Engine,
    TwoPhaseKind,
    WorkerDied,
    csv_rows,
    sha256,
    start_engine,
)
from tests.support.service import SHARD_COUNT, refusal

PAGES = 5  # two pages per item of four names, one for the last item's two


@pytest.fixture
def engine(store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> Engine:
    return start_engine(store, monkeypatch)


def part_records(job_id: str) -> list[JobPartRecord]:
    return list(JobPartRecord.query(job_parts_pk(APP, job_id), consistent_read=True))


def fail_once(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[int]:
    """``owner.name`` raises WorkerDied on its first call (before doing anything), then works; returns the calls."""
    original = getattr(owner, name)
    calls: list[int] = []

    def flaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise WorkerDied(f"{name} died")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    return calls


def assert_applied_exactly_once(engine: Engine) -> None:
    """The world changed exactly as one clean real run changes it."""
    assert sorted(engine.kind.world.deleted) == EXISTING_TAGS  # each tag removed once
    assert sorted(engine.kind.world.untagged) == sorted(DEVICES.values())
    assert engine.kind.world.tags == set()


# A dry run


def test_a_dry_run_reports_counts_prices_audits_and_announces_without_changing_anything(engine: Engine) -> None:
    job = engine.submit(dry_run=True)
    assert engine.started == [(job.job_id, {"app_id": APP, "job_id": job.job_id})]
    assert engine.lock_holder() is None  # a dry run takes no lock

    done = engine.run(job.job_id)

    assert done.status is JobStatus.SUCCEEDED
    assert done.counts == COUNTS
    assert done.started_at is not None
    assert done.finished_at is not None
    # The report: the header, the rows in job order, the consequence column left out.
    report = engine.report(done)
    assert report.decode().splitlines()[0] == REPORT_HEADER
    assert csv_rows(report) == REPORT_ROWS
    # Priced from the type's page costs and the run's own steps.
    assert done.estimate is not None
    assert (done.estimate.read_units, done.estimate.write_units) == (5.0, 11.0)
    assert done.estimate.state_transitions > 0
    assert done.estimate.lambda_gb_seconds >= 0
    assert done.estimate.usd > 0
    # The audit entry: the report's hash, the params with dry_run.
    entry = engine.audit_entry(job.job_id)
    assert entry is not None
    assert entry.report_sha256 == sha256(report)
    assert entry.params == {"tags": TAGS, "dry_run": True}
    assert (entry.status.value, entry.reauth.value, entry.key_id) == ("succeeded", "none", engine.app.api_key.key_id)
    assert entry.counts == COUNTS.model_dump()
    # The event.
    stored = engine.services.job_repository.get(APP, job.job_id)
    assert stored is not None
    assert engine.events() == [
        {
            "app_id": APP,
            "job_id": job.job_id,
            "type": "delete_tags",
            "dry_run": True,
            "status": "succeeded",
            "counts": COUNTS.model_dump(),
            "report_key": stored.report_key,
        }
    ]
    # Nothing applied.
    assert engine.kind.apply_calls == 0
    assert engine.kind.finished == []
    assert engine.kind.world.deleted == []
    assert engine.kind.world.untagged == []


# A real run


def test_a_real_run_applies_the_rows_under_the_apps_lock(engine: Engine) -> None:
    job = engine.submit(dry_run=False)
    assert engine.lock_holder() == job.job_id

    done = engine.run(job.job_id)

    assert done.status is JobStatus.SUCCEEDED
    assert done.counts == COUNTS
    assert done.estimate is None
    assert_applied_exactly_once(engine)
    assert engine.kind.applied == {name: 1 for name in [*EXISTING_TAGS, *DEVICES.values()]}
    assert engine.kind.finished == [{"deleted": 9}]
    assert csv_rows(engine.report(done)) == REPORT_ROWS
    assert engine.lock_holder() is None
    entry = engine.audit_entry(job.job_id)
    assert entry is not None
    assert (entry.params["dry_run"], entry.reauth.value) == (False, "password")
    assert [event["status"] for event in engine.events()] == ["succeeded"]


def test_failed_rows_are_counted_as_failed(engine: Engine) -> None:
    engine.kind.world.refused = {"tag-02", "tag-08"}
    job = engine.submit(dry_run=False)

    done = engine.run(job.job_id)

    assert done.counts == JobCounts(scanned=10, matched=9, changed=9, skipped=1, failed=2)
    failed = [row[1] for row in csv_rows(engine.report(done)) if row[3] == "failed"]
    assert failed == ["tag-02", "tag-08"]


# Retries: nothing applied or counted twice


def test_a_worker_that_dies_inside_apply_reapplies_the_stored_page_and_never_selects_again(engine: Engine) -> None:
    engine.kind.crash_on_apply = 2  # item 0's second page: dies after its first row (tag-02)
    job = engine.submit(dry_run=False)
    step = engine.runner.plan(APP, job.job_id)
    with pytest.raises(WorkerDied):
        engine.work(job.job_id, 0)
    assert engine.kind.world.deleted == ["tag-00", "tag-01", "tag-02"]  # half applied

    engine.finish(job.job_id, step)  # the state machine retries the step

    done = engine.service.get(APP, job.job_id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.counts == COUNTS
    assert_applied_exactly_once(engine)
    assert engine.kind.selects == PAGES  # the dead page came back from its stored rows
    assert engine.kind.applied["tag-02"] == 2
    assert engine.kind.applied["tag-03"] == 1
    assert csv_rows(engine.report(done)) == REPORT_ROWS


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_worker_that_dies_before_its_commit_counts_and_reports_each_row_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, dry_run: bool
) -> None:
    job = engine.submit(dry_run=dry_run)
    step = engine.runner.plan(APP, job.job_id)
    calls = fail_once(monkeypatch, JobRepository, "commit_page")
    with pytest.raises(WorkerDied):
        engine.work(job.job_id, 0)  # the first page is stored (and applied) but not committed

    engine.finish(job.job_id, step)

    done = engine.service.get(APP, job.job_id)
    assert done.counts == COUNTS
    assert csv_rows(engine.report(done)) == REPORT_ROWS
    assert len(calls) == PAGES + 1
    if dry_run:
        assert engine.kind.selects == PAGES + 1  # a dry run changed nothing: it selects the page again
        assert engine.kind.apply_calls == 0
    else:
        assert engine.kind.selects == PAGES  # a real run re-applies the page it held
        assert_applied_exactly_once(engine)


def test_a_concurrent_attempt_of_a_held_page_cannot_change_the_rows_its_retry_applies(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempt A holds a page and dies in apply; attempt B, which read the part before A held it, selects
    again (the world has changed: A deleted some tags) and loses the hold. What is re-applied is A's rows."""
    engine.kind.crash_on_apply = 1
    job = engine.submit(dry_run=False)
    step = engine.runner.plan(APP, job.job_id)
    stale = engine.services.job_repository.part(APP, job.job_id, 0, 0)
    with pytest.raises(WorkerDied):
        engine.work(job.job_id, 0)  # A: held, half applied
    original = JobRepository.part
    snapshots = [stale]

    def part(self: JobRepository, *args: Any) -> Any:
        return snapshots.pop() if snapshots else original(self, *args)

    monkeypatch.setattr(JobRepository, "part", part)
    # B selects, loses the hold and applies nothing of its own; it then takes the page A held, as a retry.
    engine.work(job.job_id, 0)

    engine.finish(job.job_id, step)

    done = engine.service.get(APP, job.job_id)
    assert done.counts == COUNTS
    assert csv_rows(engine.report(done)) == REPORT_ROWS
    assert_applied_exactly_once(engine)
    assert engine.kind.selects == PAGES + 1  # B's selection, never applied
    assert not [key for key in engine.stored_keys(job.job_id) if "/held/" in key]


def test_a_step_retried_after_its_commit_counts_nothing_twice(engine: Engine) -> None:
    job = engine.submit(dry_run=False)
    step = engine.runner.plan(APP, job.job_id)
    engine.work_all(job.job_id, step["items"])
    before = engine.service.get(APP, job.job_id).counts

    assert all(engine.work(job.job_id, index) for index in step["items"])  # retried after each item finished
    engine.finish(job.job_id, engine.runner.advance(APP, job.job_id))

    assert engine.service.get(APP, job.job_id).counts == before == COUNTS
    assert engine.kind.selects == PAGES
    assert engine.kind.applied == {name: 1 for name in [*EXISTING_TAGS, *DEVICES.values()]}


def test_finalize_twice_writes_one_audit_entry_and_one_event(engine: Engine) -> None:
    job = engine.submit(dry_run=False)
    engine.run(job.job_id)

    again = engine.runner.finalize(APP, job.job_id, None, MEMORY_MB)

    assert again["status"] == "succeeded"
    assert [entry.job_id for entry in engine.audit_entries()] == [job.job_id]
    assert len(engine.events()) == 1
    assert engine.kind.finished == [{"deleted": 9}]


def test_an_event_the_bus_refuses_fails_finalize_and_its_retry_publishes_it_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PutEvents answers 200 with FailedEntryCount: the job is finished, but its event must still go out."""
    original = BaseClient._make_api_call
    refusals = [{"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]}]

    def make_api_call(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "PutEvents" and refusals:
            return refusals.pop()
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    job = engine.submit(dry_run=False)
    with pytest.raises(EventNotPublished, match="InternalFailure"):
        engine.run(job.job_id)
    assert engine.service.get(APP, job.job_id).status is JobStatus.SUCCEEDED
    assert engine.lock_holder() is None  # the lock does not wait for the bus
    assert engine.events() == []

    engine.runner.finalize(APP, job.job_id, None, MEMORY_MB)
    engine.runner.finalize(APP, job.job_id, None, MEMORY_MB)

    assert [(event["job_id"], event["status"]) for event in engine.events()] == [(job.job_id, "succeeded")]
    assert [entry.job_id for entry in engine.audit_entries()] == [job.job_id]


@pytest.mark.parametrize("step", ["release_lock", "delete"])
def test_a_finalize_that_dies_after_finishing_the_job_completes_its_cleanup_when_retried(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """The lock of a real run, and a cancelled job's record, must not outlive a retried finalize."""
    job = engine.submit(dry_run=False)
    first = engine.runner.plan(APP, job.job_id)
    if step == "delete":
        engine.service.delete(engine.admin, job.job_id)
    fail_once(monkeypatch, JobRepository, step)
    with pytest.raises(WorkerDied):
        engine.finish(job.job_id, first)

    engine.runner.finalize(APP, job.job_id, None, MEMORY_MB)

    assert engine.lock_holder() is None
    if step == "delete":
        assert engine.services.job_repository.get(APP, job.job_id) is None
        assert part_records(job.job_id) == []
        assert engine.stored_keys(job.job_id) == []
    assert len(engine.audit_entries()) == 1
    assert len(engine.events()) == 1


# The worker's time budget


def test_a_worker_short_of_time_stops_after_a_page_and_the_next_call_goes_on_from_there(engine: Engine) -> None:
    job = engine.submit(dry_run=False)
    step = engine.runner.plan(APP, job.job_id)

    answers = [engine.work(job.job_id, 0, time_left_ms=1_000)]
    part = engine.services.job_repository.part(APP, job.job_id, 0, 0)
    assert (part.seq, part.position, part.done) == (1, {"offset": 2}, False)
    assert engine.kind.world.deleted == ["tag-00", "tag-01"]
    answers.append(engine.work(job.job_id, 0, time_left_ms=1_000))

    # The item's last page ends it: no extra invocation just to learn that it is done.
    assert answers == [False, True]
    part = engine.services.job_repository.part(APP, job.job_id, 0, 0)
    assert (part.seq, part.position, part.done, part.invocations) == (2, None, True, 2)
    assert part.counts == JobCounts(scanned=4, matched=4, changed=5)
    engine.finish(job.job_id, step)
    assert engine.service.get(APP, job.job_id).counts == COUNTS
    assert engine.kind.selects == PAGES


def test_one_invocation_is_counted_once_however_many_fast_pages_it_takes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages faster than a millisecond: the dry run's estimate prices invocations, so each must count once.
    monkeypatch.setattr("steward.jobs.runner.time", types.SimpleNamespace(monotonic=lambda: 100.0))
    job = engine.submit(dry_run=True)
    engine.runner.plan(APP, job.job_id)

    assert engine.work(job.job_id, 0)

    assert engine.services.job_repository.part(APP, job.job_id, 0, 0).invocations == 1


def test_the_map_runs_as_many_items_at_once_as_the_function_is_configured_for(engine: Engine) -> None:
    job = engine.submit(dry_run=True)
    services = Services(SHARD_COUNT, reports_bucket=BUCKET, job_event_bus=BUS, job_max_concurrency=3)

    assert services.job_runner.plan(APP, job.job_id)["max_concurrency"] == 3


# A type that refuses the job


def test_a_job_the_type_refuses_fails_with_its_code_before_any_change(engine: Engine) -> None:
    engine.kind.refusal = "segment_name_taken"
    job = engine.submit(dry_run=False)

    step = engine.runner.plan(APP, job.job_id)

    assert (step["stop"], step["items"]) == (True, [])
    assert step["error"]["code"] == "segment_name_taken"
    engine.finish(job.job_id, step)
    done = engine.service.get(APP, job.job_id)
    assert done.status is JobStatus.FAILED
    assert done.error is not None
    assert done.error.code == "segment_name_taken"
    assert done.counts == JobCounts()
    entry = engine.audit_entry(job.job_id)
    assert entry is not None
    assert entry.status.value == "failed"
    assert entry.report_sha256 == sha256(engine.report(done)) == sha256(f"{REPORT_HEADER}\n".encode())
    assert engine.kind.selects == engine.kind.apply_calls == 0
    assert engine.kind.finished == []
    assert engine.lock_holder() is None
    assert [(event["status"], event["job_id"]) for event in engine.events()] == [("failed", job.job_id)]


def test_a_type_that_cannot_finish_fails_the_job_with_its_code(engine: Engine) -> None:
    engine.kind.finish_refusal = "segment_count_unknown"
    job = engine.submit(dry_run=False)

    done = engine.run(job.job_id)

    assert done.status is JobStatus.FAILED
    assert done.error is not None
    assert done.error.code == "segment_count_unknown"
    assert done.counts == COUNTS  # what it changed is still counted
    entry = engine.audit_entry(job.job_id)
    assert entry is not None
    assert (entry.status.value, entry.counts) == ("failed", COUNTS.model_dump())
    assert engine.lock_holder() is None


def test_a_step_that_failed_in_the_state_machine_fails_the_job_with_its_cause(engine: Engine) -> None:
    job = engine.submit(dry_run=False)
    engine.runner.plan(APP, job.job_id)
    caught = {"Error": "WorkerDied", "Cause": json.dumps({"errorMessage": "boom", "errorType": "WorkerDied"})}

    engine.runner.finalize(APP, job.job_id, error_from_state_machine(caught), MEMORY_MB)

    done = engine.service.get(APP, job.job_id)
    assert done.status is JobStatus.FAILED
    assert done.error == JobError(code="worker_failed", message="WorkerDied: boom")
    assert engine.kind.finished == []
    assert engine.lock_holder() is None


# Cancelling


def test_deleting_a_running_job_stops_its_worker_which_audits_and_removes_it(engine: Engine) -> None:
    job = engine.submit(dry_run=False)
    step = engine.runner.plan(APP, job.job_id)
    assert not engine.work(job.job_id, 0, time_left_ms=1_000)
    assert engine.stored_keys(job.job_id) != []

    engine.service.delete(engine.admin, job.job_id)

    assert refusal(NotFound, engine.service.get, APP, job.job_id).code == "job_not_found"
    assert engine.service.list_page(APP, None, None, None, 10).items == []
    assert engine.work(job.job_id, 0)  # the next call stops
    assert engine.kind.selects == engine.kind.apply_calls == 1
    result = engine.finish(job.job_id, engine.runner.advance(APP, job.job_id))
    assert result["status"] == "cancelled"
    entry = engine.audit_entry(job.job_id)
    assert entry is not None
    assert entry.status.value == "cancelled"
    assert entry.counts == JobCounts(scanned=2, matched=2, changed=3).model_dump()
    assert [event["status"] for event in engine.events()] == ["cancelled"]
    assert engine.services.job_repository.get(APP, job.job_id) is None
    assert part_records(job.job_id) == []
    assert engine.stored_keys(job.job_id) == []
    assert engine.lock_holder() is None
    assert step["items"] == [0, 1, 2]


def test_deleting_a_finished_job_removes_it_and_its_report_at_once_and_keeps_its_audit_entry(engine: Engine) -> None:
    job = engine.submit(dry_run=True)
    engine.run(job.job_id)
    assert engine.stored_keys(job.job_id) != []

    engine.service.delete(engine.admin, job.job_id)

    assert engine.services.job_repository.get(APP, job.job_id) is None
    assert part_records(job.job_id) == []
    assert engine.stored_keys(job.job_id) == []
    assert [entry.job_id for entry in engine.audit_entries()] == [job.job_id]


# Reports


def test_a_report_over_one_part_is_joined_in_order_and_hashed(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    part_bytes = 5 * 1024 * 1024  # S3's (and moto's) smallest part but the last
    monkeypatch.setattr("steward.jobs.reports.PART_BYTES", part_bytes)
    store = engine.services.report_store
    detail = "x" * 1000
    pages: dict[str, bytes] = {}
    # About 1 MB per page: parts of six, six and two pages. Two items, their pages interleaved in time.
    for seq in range(14):
        rows = [ReportRow(Entity.TAG, f"tag-{seq}-{n}", "deleted", detail=detail) for n in range(1000)]
        rows.append(ReportRow(Entity.DEVICE, f"dev-{seq}", "untagged", "u", "with, a comma", consequence=True))
        key = page_key(APP, "job_x", 0, seq % 2, seq)
        store.write_page(key, rows)
        lines = [f"tag,tag-{seq}-{n},,deleted,{detail}\n" for n in range(1000)]
        pages[key] = "".join([*lines, f'device,dev-{seq},u,untagged,"with, a comma"\n']).encode()
    want = f"{REPORT_HEADER}\n".encode() + b"".join(pages[key] for key in sorted(pages))

    report = store.join(APP, "job_x")

    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=report.key)
    data = body["Body"].read()
    assert len(data) > 2 * part_bytes
    assert body["ETag"].strip('"').endswith("-3")  # a multipart upload of three parts
    assert data == want
    assert (report.sha256, report.bytes, report.rows) == (sha256(data), len(data), 14 * 1001)


def test_a_report_page_round_trips_consequences_and_quoting(engine: Engine) -> None:
    store = engine.services.report_store
    rows = [
        ReportRow(Entity.USER, "u-1", "deleted", "u-1", 'said "hi",\nthen left', consequence=True),
        ReportRow(Entity.EMAIL, "a@example.com", "not_found"),
    ]
    key = page_key(APP, "job_y", 1, 2, 3)

    store.write_page(key, rows)

    assert store.read_page(key) == rows


# The state machine's errors, and throttling


@pytest.mark.parametrize(
    ("caught", "expected"),
    [
        (None, None),
        ({}, None),
        ({"code": "segment_name_taken", "message": "taken"}, JobError(code="segment_name_taken", message="taken")),
        (
            {
                "Error": "Throttled",
                "Cause": json.dumps(
                    {
                        "errorMessage": "An error occurred (ProvisionedThroughputExceededException)",
                        "errorType": "Throttled",
                        "requestId": "4c3f0d53-2c84-4d8a-9d5b-3b52f6c8d6a1",
                        "stackTrace": ['  File "/var/task/app.py", line 60, in lambda_handler\n'],
                    }
                ),
            },
            JobError(
                code="worker_failed", message="Throttled: An error occurred (ProvisionedThroughputExceededException)"
            ),
        ),
        ({"Error": "States.Timeout", "Cause": ""}, JobError(code="timed_out", message="States.Timeout")),
        (  # a refusal a page met: its own code
            {
                "Error": "WorkRefused",
                "Cause": json.dumps(
                    {
                        "errorMessage": JobError(code="audience_replaced", message="replaced").model_dump_json(),
                        "errorType": "WorkRefused",
                    }
                ),
            },
            JobError(code="audience_replaced", message="replaced"),
        ),
        (
            {"Error": "WorkRefused", "Cause": json.dumps({"errorMessage": "not a job error"})},
            JobError(code="worker_failed", message="WorkRefused: not a job error"),
        ),
        (
            {"Error": "Sandbox.Timedout", "Cause": json.dumps({"errorMessage": "RequestId: 1 Error: Task timed out"})},
            JobError(code="timed_out", message="Sandbox.Timedout: RequestId: 1 Error: Task timed out"),
        ),
        (
            {
                "Error": "States.TaskFailed",
                "Cause": json.dumps({"errorMessage": "Task timed out after 900.10 seconds"}),
            },
            JobError(code="timed_out", message="States.TaskFailed: Task timed out after 900.10 seconds"),
        ),
        (
            {"Error": "States.TaskFailed", "Cause": "not JSON at all"},
            JobError(code="worker_failed", message="States.TaskFailed: not JSON at all"),
        ),
        (
            {"Error": "States.TaskFailed", "Cause": "[1, 2]"},
            JobError(code="worker_failed", message="States.TaskFailed: [1, 2]"),
        ),
    ],
)
def test_error_from_state_machine(caught: dict[str, Any] | None, expected: JobError | None) -> None:
    assert error_from_state_machine(caught) == expected


def test_a_long_cause_is_clipped_to_an_error_message() -> None:
    error = error_from_state_machine({"Error": "Lambda.Unknown", "Cause": "x" * 5000})

    assert error is not None
    assert error.code == "worker_failed"
    assert len(error.message) <= 1024


@pytest.mark.parametrize(
    ("error", "throttled"),
    [
        (RetryPage("a change the store refused for now"), True),
        (raised_while_handling(RetryPage("raced")), True),
        (wrapped_by_pynamodb("ProvisionedThroughputExceededException"), True),  # any refusal for now: steward.retryable
        (wrapped_by_pynamodb("ConditionalCheckFailedException"), False),
        (ValueError("no"), False),
    ],
)
def test_is_throttling(error: BaseException, throttled: bool) -> None:
    assert is_throttling(error) is throttled


# Phases


def test_a_two_phase_job_advances_on_the_first_phases_tallies_once_even_when_advance_is_retried(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = TwoPhaseKind()
    engine = start_engine(store, monkeypatch, kind)
    job = engine.submit(dry_run=False)
    step = engine.runner.plan(APP, job.job_id)
    engine.work_all(job.job_id, step["items"])
    assert kind.apply_calls == 0  # the first phase only counts

    following = engine.runner.advance(APP, job.job_id)

    assert (following["stop"], following["items"]) == (False, [0, 1, 2])
    assert kind.advanced == [{0: {"counted": 4}, 1: {"counted": 4}, 2: {"counted": 2}}]
    # Advance retried after it planned the second phase (its answer lost): the same phase, not the end.
    assert engine.runner.advance(APP, job.job_id) == following
    assert len(kind.advanced) == 1
    assert not engine.work(job.job_id, 0, time_left_ms=1_000)
    assert engine.service.get(APP, job.job_id).counts == JobCounts(scanned=12, matched=2, changed=3)
    engine.finish(job.job_id, following)
    done = engine.service.get(APP, job.job_id)
    assert done.counts == JobCounts(scanned=20, matched=9, changed=11, skipped=1)
    assert csv_rows(engine.report(done)) == REPORT_ROWS
    assert kind.applied_in == {1}
    assert kind.finished == [{"deleted": 9}]  # the last phase's tally
    stored = engine.services.job_repository.get(APP, job.job_id)
    assert stored is not None
    assert stored.state == {"names": 10, "counted": 10}
    assert_applied_exactly_once(engine)
