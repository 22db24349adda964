"""The retention schedule's target on moto: one run per app and scheduled time, and one running run per app."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import ValidationError

from steward.composition import Services
from steward.conversations.models import CreateConversation, RetentionSettings
from steward.conversations.retention_repository import RunState
from steward.conversations.scheduler import (
    CALL_MARGIN_SECONDS,
    LAST_PAGE_GRACE,
    LOCK_TTL,
    MAX_HANDOFFS,
    START_GRACE,
    ExecutionState,
    ExecutionUnknown,
    StartFailed,
    end_run,
    finalize_name,
    generation_name,
    run_id_for,
)
from steward.settings import StoreSettings
from steward.sharding import shard_of
from steward_local.template import load_and_transform
from tests.support.job_engine import Clock
from tests.support.service import context, load_function

APP = "app-a"
SCHEDULED = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clock() -> Clock:
    return Clock(SCHEDULED)


@pytest.fixture
def services(store: StoreSettings, clock: Clock) -> Services:
    boto3.client("s3").create_bucket(Bucket="steward-test-reports")
    machine = boto3.client("stepfunctions").create_state_machine(
        name="retention",
        definition=json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/retention",
    )["stateMachineArn"]
    found = Services(
        store.shard_count, clock=clock, retention_state_machine=machine, reports_bucket="steward-test-reports"
    )
    found.retention_settings.put(APP, RetentionSettings.model_validate({"archive_after_days": {"open": 1}}))
    return found


def executions() -> list[str]:
    client = boto3.client("stepfunctions")
    [machine] = client.list_state_machines()["stateMachines"]
    return sorted(
        item["name"] for item in client.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
    )


def execution_input(name: str) -> dict[str, object]:
    client = boto3.client("stepfunctions")
    [machine] = client.list_state_machines()["stateMachines"]
    arn = f"{machine['stateMachineArn'].replace(':stateMachine:', ':execution:')}:{name}"
    found: dict[str, object] = json.loads(client.describe_execution(executionArn=arn)["input"])
    return found


def handed_finalize(services: Services, run_id: str, handoff: int = 1) -> dict[str, object]:
    """The run's finalize-only execution (``<run>_f<n>``), as statemachines/retention.asl.json runs it after its
    Wait: the RecordFailure loop with its ``caught`` (the Finalize loop without); its input."""
    payload = execution_input(finalize_name(run_id, handoff))
    assert (payload["finalize_only"], payload["generation"]) == (True, None)
    caught = payload.get("caught")
    assert caught is None or isinstance(caught, dict)
    while not services.retention_sweep.finalize(APP, run_id, caught, None).done:
        pass
    return payload


def test_a_retried_schedule_starts_one_run(services: Services) -> None:
    first = services.retention_scheduler.start_sweeps(SCHEDULED)
    again = services.retention_scheduler.start_sweeps(SCHEDULED)  # the Scheduler's retry of the same event
    [run] = services.retention_runs.list_page(APP, None, 10).items
    assert first.started[0]["run_id"] == again.started[0]["run_id"] == run.run_id
    assert run.started_at == SCHEDULED  # the sweep's 'now' is the scheduled time, the same on every retry
    assert executions() == [run.run_id]  # the execution is named by the run


def test_an_overlapping_schedule_skips_an_app_whose_run_is_running(services: Services, clock: Clock) -> None:
    first = services.retention_scheduler.start_sweeps(SCHEDULED)
    run_id = first.started[0]["run_id"]
    clock.now = SCHEDULED + timedelta(hours=1)
    overlapping = services.retention_scheduler.start_sweeps(clock.now)
    assert overlapping.started == []
    assert overlapping.skipped == [{"app_id": APP, "running": run_id}]
    services.retention_sweep.finalize(APP, run_id, None)  # releases the app's lock
    clock.now = SCHEDULED + timedelta(hours=2)
    after = services.retention_scheduler.start_sweeps(clock.now)
    assert [started["app_id"] for started in after.started] == [APP]
    assert len(services.retention_runs.list_page(APP, None, 10).items) == 2


def test_a_crashed_runs_lock_expires(services: Services, clock: Clock) -> None:
    [crashed] = services.retention_scheduler.start_sweeps(SCHEDULED).started  # never finalized
    clock.now = SCHEDULED + LOCK_TTL + timedelta(seconds=1)
    expired = services.retention_scheduler.start_sweeps(clock.now)
    # The expired run is handed to a finalize first, which holds the app until it is done.
    assert (expired.started, expired.skipped) == ([], [{"app_id": APP, "running": crashed["run_id"]}])
    handed_finalize(services, crashed["run_id"])
    later = services.retention_scheduler.start_sweeps(clock.now)
    assert [started["app_id"] for started in later.started] == [APP]


def test_a_finished_runs_retried_schedule_neither_restarts_it_nor_keeps_the_lock(
    services: Services, clock: Clock
) -> None:
    run_id = services.retention_scheduler.start_sweeps(SCHEDULED).started[0]["run_id"]
    services.retention_sweep.finalize(APP, run_id, None)
    late_retry = services.retention_scheduler.start_sweeps(SCHEDULED)
    assert late_retry.started == []
    clock.now = SCHEDULED + timedelta(hours=1)
    assert [started["app_id"] for started in services.retention_scheduler.start_sweeps(clock.now).started] == [APP]


def test_the_state_machine_stops_before_the_lock_expires() -> None:
    # Once a crashed run's lock expires, its execution must be over: another run may start.
    definition = json.loads((ROOT / "statemachines" / "retention.asl.json").read_text())
    # The lock outlives a timed-out execution and the last page its Lambda may still be applying.
    assert definition["TimeoutSeconds"] + 120 < LOCK_TTL.total_seconds()


def test_the_handler_takes_the_schedules_input_and_a_redelivery_starts_nothing_new(
    services: Services, store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    [machine] = boto3.client("stepfunctions").list_state_machines()["stateMachines"]
    monkeypatch.setenv("STEWARD_RETENTION_STATE_MACHINE", machine["stateMachineArn"])
    handler = load_function("retention_scheduler", store, monkeypatch)
    event = json.loads((ROOT / "events" / "scheduler-retention.json").read_text())
    # What statemachines/retention_scheduler.asl.json does: list the shards, then page through each one.
    shards = handler.lambda_handler(event, context())["shards"]
    assert shards == list(range(store.shard_count))

    def started() -> list[dict[str, str]]:
        found = []
        for shard in shards:
            page = handler.lambda_handler({**event, "shard": shard, "cursor": None}, context())
            assert page["cursor"] is None
            assert page["failed"] == []
            found += page["started"]
        return found

    first, again = started(), started()
    assert [run["app_id"] for run in first] == [APP]
    assert again == first
    assert executions() == [first[0]["run_id"]]
    with pytest.raises(ValidationError):
        handler.lambda_handler({}, context())  # no scheduled time: no way to name the run


def test_a_shard_is_started_a_page_of_apps_at_a_time(services: Services, store: StoreSettings) -> None:
    many = [f"app-{n:03d}" for n in range(60)]
    for app_id in many:
        services.retention_settings.put(app_id, RetentionSettings.model_validate({"archive_after_days": {"open": 1}}))
    scheduler = services.retention_scheduler
    per_shard: dict[int, list[str]] = {}
    calls = 0
    for shard in scheduler.shards():
        cursor: str | None = None
        while True:
            page = scheduler.start_page(SCHEDULED, shard, cursor, limit=5)
            calls += 1
            assert len(page.started) <= 5
            per_shard.setdefault(shard, []).extend(run["app_id"] for run in page.started)
            cursor = page.cursor
            if cursor is None:
                break
    started = sorted(app_id for app_ids in per_shard.values() for app_id in app_ids)
    assert started == sorted([*many, APP])  # every app once, whatever the pages
    assert calls > store.shard_count  # shards of more than 5 apps took several calls
    assert len(executions()) == len(started)


def test_an_execution_that_cannot_start_fails_its_run_and_releases_the_lock(store: StoreSettings, clock: Clock) -> None:
    boto3.client("s3").create_bucket(Bucket="steward-test-reports")
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:no-such-machine"
    found = Services(
        store.shard_count, clock=clock, retention_state_machine=missing, reports_bucket="steward-test-reports"
    )
    found.retention_settings.put(APP, RetentionSettings.model_validate({"archive_after_days": {"open": 1}}))

    result = found.retention_scheduler.start_sweeps(SCHEDULED)

    assert result.started == []
    [failed] = result.failed
    [run] = found.retention_runs.list_page(APP, None, 10).items
    assert (failed["run_id"], run.status.value) == (run.run_id, "failed")
    assert run.finished_at is not None
    assert run.error is not None
    assert "could not start" in run.error
    # The lock is free: the next schedule starts the app at once, not 12 hours later.
    clock.now = SCHEDULED + timedelta(hours=1)
    later = found.retention_scheduler.start_sweeps(clock.now)
    assert later.skipped == []
    assert [item["app_id"] for item in later.failed] == [APP]


def test_a_start_answered_with_an_error_after_step_functions_took_it_counts_as_started(
    services: Services, clock: Clock
) -> None:
    scheduler = services.retention_scheduler
    start = scheduler.start_execution

    def accepted_then_timed_out(name: str, payload: dict[str, object]) -> str:
        start(name, payload)  # Step Functions accepted it; the answer was lost
        raise StartFailed("Read timeout on endpoint URL")

    scheduler.start_execution = accepted_then_timed_out
    first = scheduler.start_sweeps(SCHEDULED)
    again = scheduler.start_sweeps(SCHEDULED)  # a retried scheduler page, whose start is throttled

    assert first.failed == again.failed == []
    [run] = services.retention_runs.list_page(APP, None, 10).items
    assert [item["run_id"] for item in first.started + again.started] == [run.run_id, run.run_id]
    assert first.started[0]["execution_arn"].endswith(f":{run.run_id}")
    assert (run.status.value, run.finished_at) == ("running", None)  # the live execution's run is left to it
    assert executions() == [run.run_id]
    clock.now = SCHEDULED + timedelta(hours=1)
    assert services.retention_run_repository.acquire_lock(APP, "ret_20260601110000_000000000000", clock.now, LOCK_TTL)


def test_a_stopped_run_is_finalized_by_its_hand_off_after_its_last_page_then_the_app_starts(
    services: Services, store: StoreSettings, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = (SCHEDULED - timedelta(days=3)).isoformat()
    for _ in range(2):
        body = {"channel": "email", "created_at": at, "last_activity_at": at, "status_changed_at": at}
        services.conversations.create(APP, CreateConversation.model_validate(body))
    scheduler = services.retention_scheduler
    [started] = scheduler.start_sweeps(SCHEDULED).started
    run_id = started["run_id"]
    services.retention_executions.plan(APP, run_id, SCHEDULED, 0)
    handler = load_function("retention", store, monkeypatch)
    handler.services.clock = clock
    event = json.loads((ROOT / "events" / "eventbridge-retention-execution-timed-out.json").read_text())
    [machine] = boto3.client("stepfunctions").list_state_machines()["stateMachines"]
    event["detail"].update(
        status="ABORTED",
        input=json.dumps({"app_id": APP, "run_id": run_id, "generation": 0}),
        stateMachineArn=machine["stateMachineArn"],
    )
    clock.now = SCHEDULED + timedelta(minutes=1)

    assert handler.lambda_handler(event, context())["status"] == "running"
    # Handed to a finalize-only execution that first waits out the last page's grace.
    assert execution_input(finalize_name(run_id, 1))["wait_seconds"] == LAST_PAGE_GRACE.total_seconds()
    # The pages in flight when the stop landed commit after it; a pass meanwhile leaves the run to its finalize.
    for shard in range(store.shard_count):
        assert services.retention_sweep.sweep_page(APP, run_id, SCHEDULED, shard)
    clock.now += timedelta(minutes=5)
    early = scheduler.start_sweeps(clock.now)
    assert executions() == sorted([run_id, finalize_name(run_id, 1)])
    clock.now += LAST_PAGE_GRACE
    handed_finalize(services, run_id)
    later = scheduler.start_sweeps(clock.now)

    assert (early.started, early.skipped) == ([], [{"app_id": APP, "running": run_id}])
    run = services.retention_run_repository.get(APP, run_id)
    assert run is not None
    assert (run.status.value, run.error, run.counts) == ("failed", "States.ABORTED", {"open->archive": 2})
    assert [item["app_id"] for item in later.started] == [APP]  # then the app's next run starts


def test_a_pass_hands_off_a_run_whose_failed_executions_event_was_lost(services: Services, clock: Clock) -> None:
    scheduler = services.retention_scheduler
    [started] = scheduler.start_sweeps(SCHEDULED).started
    run_id = started["run_id"]
    services.retention_executions.plan(APP, run_id, SCHEDULED, 0)
    describe = scheduler.describe_execution
    asked: list[str] = []
    stopped_at = SCHEDULED + timedelta(minutes=50)

    def failed_without_its_event(name: str) -> ExecutionState | None:
        asked.append(name)
        found = describe(name)  # the real lookup, by the run's name
        assert found is not None
        if name != run_id:
            return found
        cause = "The JSONPath '$.plan' was not found"
        return replace(found, status="FAILED", error="States.Runtime", cause=cause, stopped_at=stopped_at)

    scheduler.describe_execution = failed_without_its_event
    clock.now = SCHEDULED + timedelta(hours=1)
    first = scheduler.start_sweeps(clock.now)

    # Only small requests in the pass: the run is marked ending and handed to a finalize-only execution, which
    # waits until 10 minutes after the failure (a failed Map's other pages may still be applying).
    assert asked == [run_id]
    assert first.skipped == [{"app_id": APP, "running": run_id}]
    state = services.retention_run_repository.state(APP, run_id)
    assert state is not None
    assert state.finalize_after == stopped_at + LAST_PAGE_GRACE
    assert execution_input(finalize_name(run_id, 1))["wait_seconds"] == 0
    error = "States.Runtime: The JSONPath '$.plan' was not found"
    assert handed_finalize(services, run_id)["caught"] == {"Error": error, "Cause": ""}
    clock.now += timedelta(hours=1)
    later = scheduler.start_sweeps(clock.now)

    run = services.retention_run_repository.get(APP, run_id)
    assert run is not None
    assert (run.status.value, run.error) == ("failed", error)
    assert [item["app_id"] for item in later.started] == [APP]  # the lock was released: the app's next run starts


def test_a_pass_hands_off_a_stopped_execution_whose_event_was_lost(services: Services, clock: Clock) -> None:
    # Step Functions records the stop's own time; the test's clock follows it.
    clock.now = datetime.now(UTC).replace(microsecond=0)
    scheduled = clock.now
    scheduler = services.retention_scheduler
    [started] = scheduler.start_sweeps(scheduled).started
    run_id = started["run_id"]
    services.retention_executions.plan(APP, run_id, scheduled, 0)
    boto3.client("stepfunctions").stop_execution(executionArn=started["execution_arn"])
    stopped = boto3.client("stepfunctions").describe_execution(executionArn=started["execution_arn"])["stopDate"]

    clock.now = stopped + LAST_PAGE_GRACE - timedelta(minutes=1)  # its last page may still be applying
    early = scheduler.start_sweeps(clock.now)
    state = services.retention_run_repository.state(APP, run_id)
    again = scheduler.start_sweeps(clock.now)  # a pass that overlaps: its hand-off starts nothing more

    assert (early.started, early.skipped) == ([], [{"app_id": APP, "running": run_id}])
    assert again.skipped == early.skipped
    assert state is not None
    assert (state.finalize_after, state.error, state.handoff) == (stopped + LAST_PAGE_GRACE, "States.ABORTED", 1)
    assert executions() == sorted([run_id, finalize_name(run_id, 1)])
    assert execution_input(finalize_name(run_id, 1))["wait_seconds"] == 60
    handed_finalize(services, run_id)
    clock.now = stopped + LAST_PAGE_GRACE + timedelta(seconds=1)
    later = scheduler.start_sweeps(clock.now)
    run = services.retention_run_repository.get(APP, run_id)
    assert run is not None
    assert (run.status.value, run.error) == ("failed", "States.ABORTED")
    assert [item["app_id"] for item in later.started] == [APP]


def test_a_start_whose_lookup_fails_too_leaves_the_run_for_the_next_pass(services: Services, clock: Clock) -> None:
    scheduler = services.retention_scheduler
    start, describe = scheduler.start_execution, scheduler.describe_execution

    def refused(name: str, payload: dict[str, object]) -> str:
        raise StartFailed("Rate exceeded")

    def unknown(name: str) -> ExecutionState | None:
        raise ExecutionUnknown("Read timeout on endpoint URL")

    scheduler.start_execution, scheduler.describe_execution = refused, unknown
    first = scheduler.start_sweeps(SCHEDULED)

    [unconfirmed] = first.unconfirmed
    run_id = unconfirmed["run_id"]
    assert (first.started, first.failed) == ([], [])
    run = services.retention_run_repository.get(APP, run_id)
    assert run is not None
    assert (run.status.value, run.finished_at) == ("running", None)  # it may be live: not marked failed
    # Step Functions answers again: it has no such execution.
    scheduler.start_execution, scheduler.describe_execution = start, describe
    clock.now = SCHEDULED + START_GRACE - timedelta(minutes=1)
    assert scheduler.start_sweeps(clock.now).skipped == [{"app_id": APP, "running": run_id}]  # may be starting

    clock.now = SCHEDULED + timedelta(hours=1)
    assert scheduler.start_sweeps(clock.now).skipped == [{"app_id": APP, "running": run_id}]  # handed off
    handed_finalize(services, run_id)
    later = scheduler.start_sweeps(clock.now)

    run = services.retention_run_repository.get(APP, run_id)
    assert run is not None
    assert (run.status.value, run.error) == ("failed", f"ExecutionDoesNotExist: The execution {run_id} never started.")
    assert [item["app_id"] for item in later.started] == [APP]


def test_a_pass_fails_a_run_whose_next_execution_never_started(services: Services, clock: Clock) -> None:
    scheduler = services.retention_scheduler
    [started] = scheduler.start_sweeps(SCHEDULED).started
    run_id = started["run_id"]
    runs = services.retention_run_repository
    services.retention_executions.plan(APP, run_id, SCHEDULED, 0)
    boto3.client("stepfunctions").stop_execution(executionArn=started["execution_arn"])  # long over
    # The first execution's progress step handed the run on, then died before starting generation 1.
    clock.now = SCHEDULED + timedelta(hours=3)
    assert runs.advance_generation(APP, run_id, 0, clock.now)

    clock.now += START_GRACE - timedelta(seconds=1)
    early = scheduler.start_sweeps(clock.now)
    clock.now += timedelta(seconds=2)
    scheduler.start_sweeps(clock.now)
    handed_finalize(services, run_id)
    later = scheduler.start_sweeps(clock.now)

    assert early.skipped == [{"app_id": APP, "running": run_id}]
    run = runs.get(APP, run_id)
    assert run is not None
    name = generation_name(run_id, 1)
    assert (run.status.value, run.error) == ("failed", f"ExecutionDoesNotExist: The execution {name} never started.")
    assert [item["app_id"] for item in later.started] == [APP]


def test_the_schedulers_failed_and_timed_out_executions_are_alarmed() -> None:
    resources = load_and_transform(ROOT / "template.yaml", {}).cloudformation["Resources"]
    scheduler = [{"Name": "StateMachineArn", "Value": {"Ref": "RetentionSchedulerStateMachine"}}]
    watched = {
        resource["Properties"]["MetricName"]
        for resource in resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"].get("Namespace") == "AWS/States"
        and resource["Properties"]["Dimensions"] == scheduler
    }
    assert watched == {"ExecutionsFailed", "ExecutionsTimedOut"}
    # A shard that fails is caught in its own iteration, and the execution fails once every shard had its pass.
    definition = json.loads((ROOT / "statemachines" / "retention_scheduler.asl.json").read_text())
    start = definition["States"]["Shards"]["ItemProcessor"]["States"]["Start"]
    assert start["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.caught", "Next": "ShardFailed"}]
    assert definition["States"]["ShardsFailed"]["Type"] == "Fail"


def test_a_call_ends_its_page_when_its_time_runs_low(services: Services, clock: Clock) -> None:
    shard = shard_of(APP, services.shard_count)
    later_app = next(app_id for n in range(1000) if shard_of(app_id := f"app-b{n}", services.shard_count) == shard)
    services.retention_settings.put(later_app, RetentionSettings.model_validate({"archive_after_days": {"open": 1}}))
    scheduler = services.retention_scheduler
    left = iter([CALL_MARGIN_SECONDS - 1])

    page = scheduler.start_page(SCHEDULED, shard, None, remaining=lambda: next(left))
    following = scheduler.start_page(SCHEDULED, shard, page.cursor)

    first_app = min(APP, later_app)
    assert ([item["app_id"] for item in page.started], page.cursor) == ([first_app], first_app)
    assert ([item["app_id"] for item in following.started], following.cursor) == ([max(APP, later_app)], None)


def test_an_app_that_fails_is_listed_and_the_page_goes_on(services: Services, clock: Clock) -> None:
    shard = shard_of(APP, services.shard_count)
    later_app = next(app_id for n in range(1000) if shard_of(app_id := f"app-b{n}", services.shard_count) == shard)
    services.retention_settings.put(later_app, RetentionSettings.model_validate({"archive_after_days": {"open": 1}}))
    scheduler = services.retention_scheduler
    runs = services.retention_run_repository
    create = runs.create
    broken = min(APP, later_app)

    def refuses_one_app(app_id: str, *args: object) -> object:
        if app_id == broken:
            raise RuntimeError("ProvisionedThroughputExceededException")
        return create(app_id, *args)  # type: ignore[arg-type]

    runs.create = refuses_one_app  # type: ignore[method-assign,assignment]
    page = scheduler.start_page(SCHEDULED, shard, None)

    assert page.errors == [{"app_id": broken, "error": "RuntimeError: ProvisionedThroughputExceededException"}]
    assert [item["app_id"] for item in page.started] == [max(APP, later_app)]


def planned_run(services: Services) -> dict[str, str]:
    """The app's run, started by a pass and planned by its execution's first step: the pass's entry for it."""
    [started] = services.retention_scheduler.start_sweeps(SCHEDULED).started
    services.retention_executions.plan(APP, started["run_id"], SCHEDULED, 0)
    return started


def test_a_run_whose_lookups_failed_until_its_lock_expired_is_handed_to_a_finalize(
    services: Services, clock: Clock
) -> None:
    scheduler = services.retention_scheduler
    started = planned_run(services)
    old = started["run_id"]
    boto3.client("stepfunctions").stop_execution(executionArn=started["execution_arn"])  # its event was lost
    describe = scheduler.describe_execution

    def unknown(name: str) -> ExecutionState | None:
        raise ExecutionUnknown("Read timeout on endpoint URL")

    scheduler.describe_execution = unknown
    clock.now = SCHEDULED + timedelta(hours=1)
    assert scheduler.start_sweeps(clock.now).skipped == [{"app_id": APP, "running": old}]
    scheduler.describe_execution = describe
    clock.now = SCHEDULED + LOCK_TTL + timedelta(minutes=1)

    expired = scheduler.start_sweeps(clock.now)

    # The old run is not left running for ever: handed to a finalize, which keeps the app (a successful hand-off
    # is no error); the next run waits for it.
    assert (expired.started, expired.errors) == ([], [])
    assert expired.skipped == [{"app_id": APP, "running": old}]
    assert executions() == sorted([old, finalize_name(old, 1)])
    # That finalize ended without finalizing the run: the next pass hands the run to another one.
    arn = started["execution_arn"]
    boto3.client("stepfunctions").stop_execution(executionArn=f"{arn}_f1")
    clock.now += timedelta(hours=1)
    failed_finalize = scheduler.start_sweeps(clock.now)
    assert failed_finalize.skipped == [{"app_id": APP, "running": old}]
    assert executions() == sorted([old, finalize_name(old, 1), finalize_name(old, 2)])
    handed_finalize(services, old, 2)
    run = services.retention_run_repository.get(APP, old)
    assert run is not None
    assert run.status.value == "failed"
    assert run.error is not None
    assert run.error.startswith("retention_lock_expired")
    later = scheduler.start_sweeps(clock.now)
    [new] = [item["run_id"] for item in later.started]
    assert (
        services.retention_run_repository.acquire_lock(APP, "ret_20260610000000_000000000000", clock.now, LOCK_TTL)
        == new
    )


def test_a_succeeded_execution_that_left_its_run_unfinished_is_finalized_without_an_error(
    services: Services, clock: Clock
) -> None:
    scheduler = services.retention_scheduler
    run_id = planned_run(services)["run_id"]
    describe = scheduler.describe_execution

    def succeeded(name: str) -> ExecutionState | None:
        found = describe(name)
        return None if found is None else replace(found, status="SUCCEEDED") if name == run_id else found

    scheduler.describe_execution = succeeded
    clock.now = SCHEDULED + timedelta(hours=1)
    scheduler.start_sweeps(clock.now)

    payload = execution_input(finalize_name(run_id, 1))
    assert ("caught" not in payload, payload["wait_seconds"]) == (True, 0)  # no page in flight, no error
    handed_finalize(services, run_id)
    run = services.retention_run_repository.get(APP, run_id)
    assert run is not None
    assert (run.status.value, run.error) == ("succeeded", None)
    state = services.retention_run_repository.state(APP, run_id)
    assert state is not None
    assert (state.finished, state.finalize_after) == (True, None)  # the end clears the ending mark


def test_a_run_that_could_not_be_recorded_does_not_hold_the_app(services: Services, clock: Clock) -> None:
    scheduler = services.retention_scheduler
    runs = services.retention_run_repository
    create = runs.create

    def throttled(app_id: str, *args: object) -> object:
        raise RuntimeError("ProvisionedThroughputExceededException")

    runs.create = throttled  # type: ignore[method-assign,assignment]
    first = scheduler.start_sweeps(SCHEDULED)
    runs.create = create  # type: ignore[method-assign]
    clock.now = SCHEDULED + timedelta(hours=1)
    later = scheduler.start_sweeps(clock.now)

    assert [item["app_id"] for item in first.errors] == [APP]
    assert [item["app_id"] for item in later.started] == [APP]  # the lock it took was released


def test_a_run_recorded_by_a_write_whose_answer_was_lost_keeps_its_lock(services: Services, clock: Clock) -> None:
    scheduler = services.retention_scheduler
    runs = services.retention_run_repository
    create = runs.create

    def recorded_then_lost(app_id: str, *args: Any) -> object:
        create(app_id, *args)  # the write lands; its answer does not
        raise RuntimeError("ReadTimeoutError")

    runs.create = recorded_then_lost  # type: ignore[method-assign,assignment]
    first = scheduler.start_sweeps(SCHEDULED)
    runs.create = create  # type: ignore[method-assign]
    [failed] = first.errors
    run_id = run_id_for(APP, SCHEDULED)

    assert failed["app_id"] == APP
    assert runs.lock_holder(APP) == run_id  # the recorded run keeps the app: another run would sweep beside it


def test_a_lock_that_names_no_run_is_free_after_the_start_grace(services: Services, clock: Clock) -> None:
    scheduler = services.retention_scheduler
    ghost = "ret_20260601090000_000000000000"  # its lock was taken, then the process died before recording it
    assert services.retention_run_repository.acquire_lock(APP, ghost, SCHEDULED, LOCK_TTL) is None

    clock.now = SCHEDULED + START_GRACE - timedelta(seconds=1)
    early = scheduler.start_sweeps(clock.now)  # it may still be on its way
    clock.now = SCHEDULED + START_GRACE + timedelta(seconds=1)
    later = scheduler.start_sweeps(clock.now)

    assert (early.started, early.skipped) == ([], [{"app_id": APP, "running": ghost}])
    assert [item["app_id"] for item in later.started] == [APP]


def test_an_expired_run_that_cannot_be_read_does_not_stop_the_next_run(services: Services, clock: Clock) -> None:
    scheduler = services.retention_scheduler
    old = planned_run(services)["run_id"]
    runs = services.retention_run_repository
    state = runs.state

    def unreadable(app_id: str, run_id: str) -> RunState | None:
        if run_id == old:
            raise RuntimeError("InternalServerError")
        return state(app_id, run_id)

    runs.state = unreadable  # type: ignore[method-assign]
    clock.now = SCHEDULED + LOCK_TTL + timedelta(minutes=1)
    later = scheduler.start_sweeps(clock.now)

    assert [item["app_id"] for item in later.started] == [APP]
    assert later.errors == [{"app_id": APP, "run_id": old, "error": "RuntimeError: InternalServerError"}]


def test_an_expired_run_whose_finalize_still_runs_is_not_handed_to_another(services: Services, clock: Clock) -> None:
    scheduler = services.retention_scheduler
    started = planned_run(services)
    run_id = started["run_id"]
    boto3.client("stepfunctions").stop_execution(executionArn=started["execution_arn"])
    clock.now = SCHEDULED + timedelta(hours=1)
    scheduler.start_sweeps(clock.now)  # handed to <run>_f1, which renews the lock and keeps running
    assert executions() == sorted([run_id, finalize_name(run_id, 1)])

    clock.now += LOCK_TTL + timedelta(minutes=1)
    expired = scheduler.start_sweeps(clock.now)

    assert (expired.started, expired.skipped) == ([], [{"app_id": APP, "running": run_id}])
    assert executions() == sorted([run_id, finalize_name(run_id, 1)])  # no second finalize alongside the first


def test_a_run_whose_finalizes_keep_failing_ends_failed_and_frees_the_app(services: Services, clock: Clock) -> None:
    scheduler = services.retention_scheduler
    started = planned_run(services)
    run_id = started["run_id"]
    client = boto3.client("stepfunctions")
    client.stop_execution(executionArn=started["execution_arn"])
    passes = []
    for handoff in range(1, MAX_HANDOFFS + 1):
        clock.now += timedelta(hours=1)
        passes.append(scheduler.start_sweeps(clock.now))
        client.stop_execution(executionArn=f"{started['execution_arn']}_f{handoff}")  # failed, run unfinished
    clock.now += timedelta(hours=1)
    last = scheduler.start_sweeps(clock.now)

    assert all(item.skipped == [{"app_id": APP, "running": run_id}] for item in passes)
    assert executions() == sorted(
        [run_id, *(finalize_name(run_id, n) for n in range(1, MAX_HANDOFFS + 1))]
        + [item["run_id"] for item in last.started]
    )
    runs = services.retention_run_repository
    run = runs.get(APP, run_id)
    assert run is not None
    assert (run.status.value, runs.report_key(APP, run_id)) == ("failed", None)
    assert run.error is not None
    assert run.error.startswith(f"retention_finalize_failed: {MAX_HANDOFFS} finalize executions")
    assert [item["app_id"] for item in last.started] == [APP]


def test_an_ended_execution_does_not_take_the_lock_of_a_run_finished_meanwhile(
    services: Services, clock: Clock
) -> None:
    run_id = planned_run(services)["run_id"]
    runs = services.retention_run_repository
    read = runs.state
    reads: list[str] = []

    def finalized_after_the_first_read(app_id: str, run: str) -> RunState | None:
        found = read(app_id, run)
        reads.append(run)
        if len(reads) == 1:
            # The run's execution finalized it and released the lock just after end_run's first read.
            assert services.retention_sweep.finalize(APP, run_id, None).done
        return found

    runs.state = finalized_after_the_first_read  # type: ignore[method-assign,assignment]
    ended = ExecutionState("arn", "ABORTED", stopped_at=SCHEDULED)
    state = end_run(runs, APP, run_id, 0, ended, SCHEDULED + timedelta(minutes=5))

    assert state is not None
    assert state.finished
    assert runs.lock_holder(APP) is None


def test_an_app_the_handler_could_not_start_is_counted_in_an_alarmed_metric(
    services: Services, store: StoreSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    [machine] = boto3.client("stepfunctions").list_state_machines()["stateMachines"]
    monkeypatch.setenv("STEWARD_RETENTION_STATE_MACHINE", machine["stateMachineArn"])
    handler = load_function("retention_scheduler", store, monkeypatch)
    runs = handler.services.retention_run_repository

    def throttled(app_id: str, *args: object) -> object:
        raise RuntimeError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(runs, "create", throttled)
    event = json.loads((ROOT / "events" / "scheduler-retention.json").read_text())
    capsys.readouterr()
    page = handler.lambda_handler({**event, "shard": shard_of(APP, store.shard_count), "cursor": None}, context())

    assert [item["app_id"] for item in page["errors"]] == [APP]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [metric] = [item for item in emitted if "RetentionAppErrors" in item]
    assert metric["RetentionAppErrors"] in (1, [1])
    # The alarm watches that metric, with the dimension the deployed function emits it under.
    resources = load_and_transform(ROOT / "template.yaml", {}).cloudformation["Resources"]
    environment = resources["RetentionSchedulerFunction"]["Properties"]["Environment"]["Variables"]
    service, namespace = environment["POWERTOOLS_SERVICE_NAME"], environment["POWERTOOLS_METRICS_NAMESPACE"]
    [alarm] = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"].get("MetricName") == "RetentionAppErrors"
    ]
    assert metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert (alarm["Namespace"], alarm["Dimensions"]) == (namespace, [{"Name": "service", "Value": service}])
    assert metric["service"] == handler.metrics.service
