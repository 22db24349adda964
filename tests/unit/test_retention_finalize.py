"""A finalize too big for one invocation, on moto's DynamoDB and S3: it saves how far it got after every unit of work
and goes on from there, in the state machine's loop, in the finalize-only executions a failed execution's end and
the scheduler's passes hand it to, and a step retried or overlapping another counts every user once and joins the
same report."""

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest

from steward.composition import Services
from steward.conversations.models import CreateConversation, RetentionSettings, RunStatus
from steward.conversations.reports import REPORT_HEADER, UploadGone, report_key, run_prefix
from steward.conversations.retention_repository import RUN_MAX_AGE, RunState
from steward.conversations.scheduler import LAST_PAGE_GRACE, LOCK_TTL, ExecutionState, finalize_name, run_id_for
from steward.settings import StoreSettings
from steward.usecases import retention_sweep
from steward.usecases.retention_executions import RetentionRunStopped
from steward.usecases.retention_sweep import Finalized, RetentionSweep
from tests.support.job_engine import Clock
from tests.support.service import new_users
from tests.support.spies import FailsOnce

APP = "app-a"
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
RUN = "ret_20260601100000_3f2a9c1b7d4e"
BUCKET = "steward-test-reports"
DELETED = [f"gone-{n}" for n in range(7)]
KEPT = [f"kept-{n}" for n in range(3)]
ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "statemachines" / "retention.asl.json").read_text())


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


def one_unit_a_step(sweeper: RetentionSweep) -> None:
    """Each finalize step has time for one unit of work (a page of users, a part of the report), no more."""
    sweeper.finalize = partial(RetentionSweep.finalize, sweeper, remaining=lambda: 0.0)  # type: ignore[method-assign]


def services_with(store: StoreSettings, clock: Clock, **kwargs: Any) -> Services:
    found = Services(store.shard_count, clock=clock, reports_bucket=BUCKET, **kwargs)
    one_unit_a_step(found.retention_sweep)
    return found


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of two users (1,000 in Lambda), so that ten users take several units."""
    monkeypatch.setattr(retention_sweep, "USERS_PAGE", 2)


@pytest.fixture
def services(store: StoreSettings, clock: Clock) -> Services:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return services_with(store, clock)


def swept(services: Services, run_id: str = RUN) -> None:
    """Purge every user's conversation with delete_user_data, every page committed: what finalize then counts."""
    document = {"purge_after_days": 0, "delete_user_data": True}
    services.retention_settings.put(APP, RetentionSettings.model_validate(document))
    new_users(APP, *DELETED, *KEPT)
    at = (NOW - timedelta(days=1)).isoformat()
    for user_id in [*DELETED, *KEPT]:
        body = {"channel": "chat", "status": "delete", "user_id": user_id, "created_at": at, "last_activity_at": at}
        services.conversations.create(APP, CreateConversation.model_validate(body))
    for user_id in KEPT:
        body = {"channel": "chat", "status": "open", "user_id": user_id, "created_at": at, "last_activity_at": at}
        services.conversations.create(APP, CreateConversation.model_validate(body))
    services.retention_executions.plan(APP, run_id, NOW, 0)
    for shard in range(services.shard_count):
        while not services.retention_sweep.sweep_page(APP, run_id, NOW, shard):
            pass


def report_lines(run_id: str = RUN) -> list[str]:
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=report_key(APP, run_id))["Body"].read().decode()
    return body.splitlines()


def finalize_steps(services: Services, caught: dict[str, str] | None = None, generation: int | None = 0) -> list[bool]:
    """What the Finalize loop does: the step again while it is not done; each step's done."""
    steps = []
    while True:
        finalized = services.retention_sweep.finalize(APP, RUN, caught, generation)
        steps.append(finalized.done)
        if finalized.done:
            return steps


def assert_counted_once(services: Services) -> None:
    run = services.retention_run_repository.get(APP, RUN)
    assert run is not None
    assert (run.status, run.counts) == (RunStatus.SUCCEEDED, {"delete->purged": len(DELETED) + len(KEPT)})
    assert (run.users_deleted, run.users_deleted_sample) == (len(DELETED), DELETED)
    assert (run.users_kept, run.users_kept_sample) == (len(KEPT), KEPT)
    users = [line.split(",")[1:4:2] for line in report_lines() if line.startswith("user,")]
    assert users == sorted([[user_id, "deleted"] for user_id in DELETED] + [[user_id, "kept"] for user_id in KEPT])


def test_a_finalize_too_big_for_one_step_goes_on_from_where_it_saved(services: Services) -> None:
    swept(services)
    runs = services.retention_run_repository
    first = services.retention_sweep.finalize(APP, RUN, None, 0)
    state = runs.state(APP, RUN)

    assert not first.done
    assert first.run.status == RunStatus.RUNNING  # not finished: the state machine calls the step again
    assert state is not None
    assert state.finalizing is not None
    assert (state.finalizing.users.users_deleted + state.finalizing.users.users_kept, state.finalizing.seq) == (2, 1)
    assert runs.acquire_lock(APP, "ret_20260601110000_000000000000", NOW, LOCK_TTL) == RUN  # still held

    steps = finalize_steps(services)

    # Ten users, two a step: five steps count them (the first above), and the next joins the report.
    assert steps == [False, False, False, False, True]
    assert_counted_once(services)
    finished = runs.state(APP, RUN)
    assert finished is not None
    assert finished.finalizing is None  # the progress goes with the run's end
    assert runs.acquire_lock(APP, "ret_20260601110000_000000000000", NOW, LOCK_TTL) is None  # released
    assert ASL["States"]["Finalized"]["Choices"] == [
        {"Variable": "$.finalized.done", "BooleanEquals": False, "Next": "Finalize"}
    ]
    assert ASL["States"]["FailureRecorded"]["Choices"][0]["Next"] == "RecordFailure"


def _dies_once(call: Any) -> FailsOnce:
    """A step that dies (a Lambda timeout) at that call, once."""
    return FailsOnce(call, lambda *args: TimeoutError("Task timed out"))


def _gone_once(join_part: Any) -> FailsOnce:
    """S3's NoSuchUpload for the upload (which RunReports raises as UploadGone), once."""
    return FailsOnce(join_part, lambda app_id, run_id, upload, *rest: UploadGone(upload))


@pytest.mark.parametrize("dies_at", ["save_finalizing", "finish"])
def test_a_step_retried_after_it_died_counts_no_user_twice(
    services: Services, monkeypatch: pytest.MonkeyPatch, dies_at: str
) -> None:
    swept(services)
    sweeper = services.retention_sweep
    assert not sweeper.finalize(APP, RUN, None, 0).done
    if dies_at == "finish":  # after the report was completed: the retry finds it
        del sweeper.finalize  # a step with the time for every unit
    # The step dies after its users' report pages (or the report itself) but before its progress is saved.
    monkeypatch.setattr(sweeper.runs, dies_at, _dies_once(getattr(sweeper.runs, dies_at)))
    with pytest.raises(TimeoutError):
        sweeper.finalize(APP, RUN, None, 0)

    finalize_steps(services)  # the state machine's retries, then its loop

    assert_counted_once(services)


def test_an_overlapping_step_that_read_the_same_progress_saves_nothing(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    swept(services)
    sweeper = services.retention_sweep
    assert not sweeper.finalize(APP, RUN, None, 0).done
    stale = sweeper.runs.state(APP, RUN)
    assert not sweeper.finalize(APP, RUN, None, 0).done  # one attempt goes on and saves

    # Another attempt of the same step read the progress before that save.
    state = sweeper.runs.state

    def read_before_the_save(app_id: str, run_id: str) -> RunState | None:
        monkeypatch.setattr(sweeper.runs, "state", state)
        return stale

    monkeypatch.setattr(sweeper.runs, "state", read_before_the_save)
    overlapping = sweeper.finalize(APP, RUN, None, 0)

    assert not overlapping.done  # its save was refused: the loop calls again, from the saved progress
    finalize_steps(services)
    assert_counted_once(services)


def test_the_first_error_given_is_the_runs(services: Services) -> None:
    swept(services)
    caught = {"Error": "Lambda.ServiceException", "Cause": "the sweep's step failed"}
    assert not services.retention_sweep.finalize(APP, RUN, caught, 0).done  # RecordFailure's first step
    finalize_steps(services, {"Error": "States.TaskFailed", "Cause": "RecordFailure's own step failed"})
    run = services.retention_run_repository.get(APP, RUN)
    assert run is not None
    assert (run.status, run.error) == (RunStatus.FAILED, "Lambda.ServiceException: the sweep's step failed")
    assert run.users_deleted == len(DELETED)


def big_report_pages(count: int) -> list[bytes]:
    """``count`` report pages of 3 MiB each under the run's pages, as a run moving millions would leave them."""
    s3 = boto3.client("s3")
    pages = []
    for number in range(count):
        line = f"conversation,cnv_{number:032x},u{number},open->archive,email\n".encode()
        body = line * (3 * 1024 * 1024 // len(line) + 1)
        s3.put_object(Bucket=BUCKET, Key=f"{run_prefix(APP, RUN)}pages/{number:03d}/00000001.csv", Body=body)
        pages.append(body)
    return pages


def test_a_report_of_many_parts_is_joined_over_several_steps(
    store: StoreSettings, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    services = services_with(store, clock)  # one part of the report a step
    swept(services)
    pages = big_report_pages(7)  # 21 MiB: three parts of at least 8 MiB
    sweeper = services.retention_sweep
    join_part = sweeper.reports.join_part
    steps: list[Finalized] = []
    aborted = died = completed = False
    while not steps or not steps[-1].done:
        state = sweeper.runs.state(APP, RUN)
        assert state is not None
        saved = state.finalizing
        if saved is not None and saved.upload is not None and saved.part == 2 and not aborted:
            # A finalize left for more than a day: the bucket's lifecycle rule aborted its upload. S3 then answers
            # NoSuchUpload, which RunReports raises as UploadGone (moto's upload_part fails with a KeyError).
            boto3.client("s3").abort_multipart_upload(Bucket=BUCKET, Key=report_key(APP, RUN), UploadId=saved.upload)
            monkeypatch.setattr(sweeper.reports, "join_part", _gone_once(join_part))
            aborted = True
        elif saved is not None and saved.part == 2 and not died:
            # A step dies after uploading its part, before saving: its retry uploads the part again.
            monkeypatch.setattr(sweeper.runs, "save_finalizing", _dies_once(sweeper.runs.save_finalizing))
            with pytest.raises(TimeoutError):
                sweeper.finalize(APP, RUN, None, 0)
            died = True
        elif saved is not None and saved.part == 3:
            # The last step completes the report, then dies before the run's end is recorded: its retry uploads
            # the last part to an upload S3 no longer has, finds the report, and records the end.
            monkeypatch.setattr(sweeper.runs, "finish", _dies_once(sweeper.runs.finish))
            with pytest.raises(TimeoutError):
                sweeper.finalize(APP, RUN, None, 0)
            monkeypatch.setattr(sweeper.reports, "join_part", _gone_once(join_part))
            completed = True
        steps.append(sweeper.finalize(APP, RUN, None, 0))

    assert (aborted, died, completed) == (True, True, True)
    head = boto3.client("s3").head_object(Bucket=BUCKET, Key=report_key(APP, RUN))
    assert head["ETag"].strip('"').endswith("-3")  # one upload of three parts
    lines = report_lines()
    users = [line for line in lines if line.startswith("user,")]
    body = b"".join(pages).decode()
    # The conversations' pages, in order, then the users' rows (the users' pages sort after the shards').
    assert "\n".join(lines[: len(lines) - len(users)]) + "\n" == REPORT_HEADER + body
    assert len(users) == len(DELETED) + len(KEPT)
    assert steps[-1].run.status == RunStatus.SUCCEEDED


def test_a_failed_execution_is_handed_to_one_finalize_and_the_schedulers_passes_follow_it_up(
    store: StoreSettings, clock: Clock
) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    stepfunctions = boto3.client("stepfunctions")
    machine = stepfunctions.create_state_machine(
        name="retention",
        definition=json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/retention",
    )["stateMachineArn"]
    services = services_with(store, clock, retention_state_machine=machine)
    swept(services)
    runs = services.retention_run_repository

    def started() -> list[str]:
        return sorted(item["name"] for item in stepfunctions.list_executions(stateMachineArn=machine)["executions"])

    failed = ExecutionState("arn", "FAILED", "States.Runtime", "no path")
    ended = services.retention_executions.execution_ended(APP, RUN, 0, failed, machine)

    # Nothing finalized in the handler: the run is ending, handed to a finalize-only execution, and keeps the app.
    assert ended is not None
    assert ended.finished_at is None
    state = runs.state(APP, RUN)
    assert state is not None
    assert (state.finalize_after, state.error, state.handoff) == (NOW + LAST_PAGE_GRACE, "States.Runtime: no path", 1)
    assert services.retention_sweep.finalize(APP, RUN, None, 0).done  # no generation of the run goes on with it
    assert runs.get(APP, RUN) == ended
    assert started() == [finalize_name(RUN, 1)]

    # A pass while that execution runs leaves the run to it; should it end unfinished, the next pass hands on.
    clock.now += timedelta(hours=1)
    assert services.retention_scheduler.start_sweeps(clock.now).skipped == [{"app_id": APP, "running": RUN}]
    assert started() == [finalize_name(RUN, 1)]
    stepfunctions.stop_execution(executionArn=f"{machine.replace(':stateMachine:', ':execution:')}:{RUN}_f1")
    clock.now += timedelta(hours=1)
    assert services.retention_scheduler.start_sweeps(clock.now).skipped == [{"app_id": APP, "running": RUN}]
    assert started() == [finalize_name(RUN, 1), finalize_name(RUN, 2)]
    later = clock.now + timedelta(hours=12)
    assert runs.acquire_lock(APP, "ret_20260602000000_000000000000", later, LOCK_TTL) == RUN  # renewed

    # That execution's RecordFailure loop, one unit a step.
    assert finalize_steps(services, {"Error": "States.Runtime: no path", "Cause": ""}, None) == [False] * 5 + [True]
    clock.now += timedelta(hours=1)
    after = services.retention_scheduler.start_sweeps(clock.now)
    assert [item["run_id"] for item in after.started] == [run_id_for(APP, clock.now)]
    run = runs.get(APP, RUN)
    assert run is not None
    assert (run.status, run.error) == (RunStatus.FAILED, "States.Runtime: no path")
    assert (run.users_deleted, run.users_kept) == (len(DELETED), len(KEPT))


def test_a_run_of_a_week_keeps_its_users_outcomes_to_the_end_and_is_stopped_there(
    services: Services, clock: Clock
) -> None:
    swept(services)  # every user's outcome is written on the run's first day
    runs, executions = services.retention_run_repository, services.retention_executions
    # The run goes on in later executions for almost the longest a run may sweep; each renews its parts, and
    # none rewrites its users' outcomes (one write per user).
    assert runs.advance_generation(APP, RUN, 0, clock.now)
    clock.now = NOW + RUN_MAX_AGE - timedelta(hours=1)
    assert not executions.plan(APP, RUN, NOW, 1).stop
    assert runs.advance_generation(APP, RUN, 1, clock.now)
    clock.now = NOW + RUN_MAX_AGE + timedelta(hours=11)  # that execution ran for 12 hours

    with pytest.raises(RetentionRunStopped) as stopped:
        executions.plan(APP, RUN, NOW, 2)
    # RecordFailure finalizes it; say its steps are left to the scheduler's passes for days.
    clock.now += timedelta(days=6)
    caught = {"Error": "RetentionRunStopped", "Cause": json.dumps({"errorMessage": str(stopped.value)})}
    finalize_steps(services, caught, generation=2)

    assert stopped.value.code == "retention_run_too_long"
    run = runs.get(APP, RUN)
    assert run is not None
    assert (run.status, run.error) == (
        RunStatus.FAILED,
        "RetentionRunStopped: The run did not finish within 7 days of its start.",
    )
    assert run.counts == {"delete->purged": len(DELETED) + len(KEPT)}
    assert (run.users_deleted, run.users_kept) == (len(DELETED), len(KEPT))  # the first day's outcomes are there
