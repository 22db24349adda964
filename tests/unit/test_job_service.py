"""The jobs API's use cases on moto with a fake job type: the one-real-job lock, confirmation, listing, reading."""

import json
from typing import Any

import boto3
import pytest

from steward.apps.models import Scope
from steward.composition import Services
from steward.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ReauthenticationFailed,
    ReauthenticationRequired,
    ServiceUnavailable,
    StewardError,
)
from steward.http.errors import status_of
from steward.jobs.engine import JobRefused
from steward.jobs.models import ConfirmJob, Job, JobCounts, JobStatus, JobType
from steward.jobs.reports import REPORT_TTL
from steward.jobs.runner import WorkRefused, error_from_state_machine
from steward.jobs.service import START_GRACE, JobService
from steward.settings import StoreSettings
from tests.support.aws_errors import wrapped_by_pynamodb
from tests.support.job_engine import (
    APP,
    COUNTS,
    EXISTING_TAGS,
    MEMORY_MB,
    OTHER_APP,
    PASSWORD,
    REPORT_ROWS,
    Engine,
    TwoPhaseKind,
    WorkerDied,
    csv_rows,
    principal,
    start_engine,
    submission,
)
from tests.support.service import collect_pages, refusal

WRONG_PASSWORD = "wrong horse battery staple"


@pytest.fixture
def engine(store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> Engine:
    return start_engine(store, monkeypatch)


def finished_dry_run(engine: Engine) -> Job:
    job = engine.submit(dry_run=True)
    done = engine.run(job.job_id)
    assert done.status is JobStatus.SUCCEEDED
    return done


def stored_ids(engine: Engine) -> list[str]:
    return [job.job_id for job in engine.services.job_repository.list_page(APP, None, None, None, 100).items]


# A real run: admin scope, re-authentication, one at a time


def test_a_write_key_can_delete_a_dry_run_but_not_stop_or_delete_a_real_run(engine: Engine) -> None:
    writer = principal(engine.app, frozenset({Scope.READ, Scope.WRITE}))
    dry = engine.submit(dry_run=True)
    real = engine.submit(dry_run=False)

    refused = refusal(Forbidden, engine.service.delete, writer, real.job_id)
    engine.service.delete(writer, dry.job_id)

    assert (status_of(refused), refused.code) == (403, "insufficient_scope")
    assert stored_ids(engine) == [real.job_id]  # still there, and still running
    assert engine.service.get(APP, real.job_id).status is JobStatus.QUEUED
    engine.service.delete(engine.admin, real.job_id)
    assert stored_ids(engine) == []  # hidden at once; its worker removes it


def test_a_real_run_needs_the_admin_scope_and_re_authentication(engine: Engine) -> None:
    writer = principal(engine.app, frozenset({Scope.READ, Scope.WRITE}))
    refusals: list[StewardError] = [
        refusal(Forbidden, engine.submit, dry_run=False, as_principal=writer),
        refusal(ReauthenticationRequired, engine.submit, dry_run=False, password=None),
        refusal(ReauthenticationFailed, engine.submit, dry_run=False, password=WRONG_PASSWORD),
    ]

    assert [(status_of(error), error.code) for error in refusals] == [
        (403, "insufficient_scope"),
        (428, "reauthentication_required"),
        (401, "reauthentication_failed"),
    ]
    assert stored_ids(engine) == []
    assert engine.started == []
    assert engine.lock_holder() is None
    assert engine.submit(dry_run=True, as_principal=writer).dry_run  # a dry run needs neither


def test_a_second_real_run_is_refused_while_one_runs_and_accepted_once_it_ended(engine: Engine) -> None:
    running = engine.submit(dry_run=False)

    refused = refusal(Conflict, engine.submit, dry_run=False)
    dry = engine.submit(dry_run=True)  # dry runs take no lock

    assert (status_of(refused), refused.code) == (409, "job_running")
    assert running.job_id in refused.message
    assert engine.lock_holder() == running.job_id
    assert sorted(stored_ids(engine)) == sorted([dry.job_id, running.job_id])
    engine.run(running.job_id)
    assert engine.lock_holder() is None
    second = engine.submit(dry_run=False)
    assert engine.lock_holder() == second.job_id


@pytest.mark.parametrize("left_by", ["finished", "removed"])
def test_a_lock_left_by_a_job_that_is_over_is_taken_over(engine: Engine, left_by: str) -> None:
    old = engine.submit(dry_run=False)
    engine.run(old.job_id)
    if left_by == "removed":
        engine.service.delete(engine.admin, old.job_id)
    # A finalize that died before releasing the lock.
    assert engine.services.job_repository.acquire_lock(APP, old.job_id, engine.clock())

    new = engine.submit(dry_run=False)

    assert engine.lock_holder() == new.job_id


def test_a_lock_held_by_a_job_whose_execution_ended_unfinished_is_taken_over(engine: Engine) -> None:
    stuck = engine.submit(dry_run=False)
    engine.runner.plan(APP, stuck.job_id)
    assert refusal(Conflict, engine.submit, dry_run=False).code == "job_running"  # its execution still runs
    engine.executions[stuck.job_id] = "PENDING_REDRIVE"  # an operator redrives it: it goes on
    assert refusal(Conflict, engine.submit, dry_run=False).code == "job_running"
    engine.executions[stuck.job_id] = "ABORTED"  # stopped by hand: no finalize will come

    new = engine.submit(dry_run=False)

    assert engine.lock_holder() == new.job_id
    ended = engine.service.get(APP, stuck.job_id)
    assert ended.status is JobStatus.FAILED
    assert ended.error is not None
    assert ended.error.code == "execution_ended"


def test_a_started_job_whose_arn_was_not_recorded_is_answered_started_and_keeps_its_lock_while_it_runs(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def throttled(*args: Any, **kwargs: Any) -> bool:
        raise wrapped_by_pynamodb("ProvisionedThroughputExceededException")

    with monkeypatch.context() as patched:
        patched.setattr(engine.services.job_repository, "start", throttled)
        running = engine.submit(dry_run=False)  # not an error: its execution runs

    assert [name for name, _ in engine.started] == [running.job_id]
    stored = engine.services.job_repository.get(APP, running.job_id)
    assert stored is not None
    assert stored.execution_arn is None
    engine.clock.advance(seconds=START_GRACE.total_seconds() + 1)
    assert refusal(Conflict, engine.submit, dry_run=False).code == "job_running"  # found running by its job id
    engine.executions[running.job_id] = "ABORTED"

    new = engine.submit(dry_run=False)

    assert engine.lock_holder() == new.job_id
    assert engine.service.get(APP, running.job_id).status is JobStatus.FAILED


def test_the_composition_asks_step_functions_for_a_jobs_execution_by_its_job_id(store: StoreSettings) -> None:
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    machine = boto3.client("stepfunctions").create_state_machine(
        name="jobs", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/jobs"
    )["stateMachineArn"]
    jobs = Services(store.shard_count, reports_bucket="reports", job_state_machine=machine).jobs
    jobs.start_execution("job-started", {"app_id": APP, "job_id": "job-started"})

    assert jobs.execution_status is not None
    assert jobs.execution_status("job-started") == "RUNNING"
    assert jobs.execution_status("job-never-started") == "MISSING"


@pytest.mark.parametrize("started", [False, True])
@pytest.mark.parametrize("confirming", [False, True])
def test_a_job_whose_start_fails_is_not_kept_frees_the_lock_and_never_runs(
    engine: Engine, started: bool, confirming: bool
) -> None:
    """``started``: the execution started, but its answer was lost (the API cannot tell the two apart)."""
    executions: list[str] = []

    def failing_start(name: str, payload: dict[str, Any]) -> str:
        if started:
            executions.append(name)
        raise RuntimeError("StartExecution failed")

    services = engine.services
    broken = JobService(
        services.job_repository,
        services.report_store,
        services.reauthentication,
        services.job_references,
        failing_start,
        engine.clock,
    )
    dry = finished_dry_run(engine) if confirming else None
    plans = engine.kind.plans

    if dry is None:
        unavailable = refusal(ServiceUnavailable, broken.submit, engine.admin, submission(dry_run=False))
    else:
        unavailable = refusal(
            ServiceUnavailable, broken.confirm, engine.admin, dry.job_id, ConfirmJob(admin_password=PASSWORD)
        )

    assert (status_of(unavailable), unavailable.code, unavailable.retry_after) == (503, "job_not_started", 5)
    assert stored_ids(engine) == ([] if dry is None else [dry.job_id])  # no job without an audit entry
    assert engine.lock_holder() is None
    for job_id in executions:  # the execution that did start stops at once, outside the lock
        assert engine.runner.plan(APP, job_id)["stop"] is True
        assert engine.runner.finalize(APP, job_id, None, MEMORY_MB)["status"] == "gone"
    assert engine.kind.plans == plans
    assert engine.kind.apply_calls == 0
    # Nothing is left in the way: the same job can be started (and the dry run confirmed) again.
    retried = engine.submit(dry_run=False) if dry is None else engine.confirm(dry.job_id)
    assert retried.status is JobStatus.QUEUED


# Confirming a dry run


def test_a_confirmed_run_replays_the_dry_runs_rows_and_marks_the_drifted_ones(engine: Engine) -> None:
    dry = finished_dry_run(engine)
    selects = engine.kind.selects
    engine.kind.world.tags.remove("tag-03")  # the data changed since the dry run

    real = engine.confirm(dry.job_id)

    assert (real.dry_run, real.confirms, real.status) == (False, dry.job_id, JobStatus.QUEUED)
    assert engine.lock_holder() == real.job_id
    done = engine.run(real.job_id)
    assert engine.kind.selects == selects  # the dry run's rows, not a new selection
    assert engine.kind.rechecks > 0
    assert done.status is JobStatus.SUCCEEDED
    assert done.counts == JobCounts(scanned=10, matched=9, changed=10, skipped=2, failed=0)
    drifted = ["tag", "tag-03", "", "drifted", "gone since the dry run"]
    assert csv_rows(engine.report(done)) == [drifted if row[1] == "tag-03" else row for row in REPORT_ROWS]
    assert sorted(engine.kind.world.deleted) == [tag for tag in EXISTING_TAGS if tag != "tag-03"]
    entry = engine.audit_entry(real.job_id)
    assert entry is not None
    assert (entry.params["dry_run"], entry.params["confirms"], entry.reauth.value) == (False, dry.job_id, "password")
    assert engine.lock_holder() is None


def test_a_confirmed_run_retried_mid_apply_replays_and_counts_each_row_once(engine: Engine) -> None:
    dry = finished_dry_run(engine)
    selects, rechecks = engine.kind.selects, engine.kind.rechecks
    engine.kind.crash_on_apply = 2  # dies after tag-02, on item 0's second page
    real = engine.confirm(dry.job_id)
    step = engine.runner.plan(APP, real.job_id)
    with pytest.raises(WorkerDied):
        engine.work(real.job_id, 0)

    engine.finish(real.job_id, step)

    done = engine.service.get(APP, real.job_id)
    assert done.counts == COUNTS
    assert csv_rows(engine.report(done)) == REPORT_ROWS
    assert sorted(engine.kind.world.deleted) == EXISTING_TAGS
    assert engine.kind.selects == selects
    assert engine.kind.rechecks == rechecks + 5  # one per page: the held page is not re-checked again


def test_a_dry_run_is_confirmed_once(engine: Engine) -> None:
    dry = finished_dry_run(engine)
    real = engine.confirm(dry.job_id)
    engine.run(real.job_id)

    again = refusal(Conflict, engine.confirm, dry.job_id)

    assert (status_of(again), again.code, again.field) == (409, "already_confirmed", "job_id")
    assert real.job_id in again.message


def test_only_a_dry_run_that_succeeded_within_24_hours_is_confirmed(engine: Engine) -> None:
    real = engine.submit(dry_run=False)
    engine.run(real.job_id)
    unfinished = engine.submit(dry_run=True)
    dry = finished_dry_run(engine)

    codes = [
        refusal(Conflict, engine.confirm, real.job_id).code,
        refusal(Conflict, engine.confirm, unfinished.job_id).code,
    ]
    engine.clock.advance(hours=24, microseconds=1)
    codes.append(refusal(Conflict, engine.confirm, dry.job_id).code)

    assert codes == ["not_a_dry_run", "dry_run_not_succeeded", "dry_run_expired"]
    assert refusal(NotFound, engine.confirm, "job_" + "0" * 32).code == "job_not_found"


def test_a_dry_run_can_be_confirmed_until_24_hours_have_passed(engine: Engine) -> None:
    dry = finished_dry_run(engine)
    engine.clock.advance(hours=24)

    assert engine.confirm(dry.job_id).confirms == dry.job_id


def test_a_refused_confirmation_leaves_the_dry_run_confirmable(engine: Engine) -> None:
    dry = finished_dry_run(engine)
    writer = principal(engine.app, frozenset({Scope.READ, Scope.WRITE}))
    other = engine.submit(dry_run=False)

    refusals: list[StewardError] = [
        refusal(ReauthenticationRequired, engine.confirm, dry.job_id, password=None),
        refusal(ReauthenticationFailed, engine.confirm, dry.job_id, password=WRONG_PASSWORD),
        refusal(Forbidden, engine.confirm, dry.job_id, as_principal=writer),
        refusal(Conflict, engine.confirm, dry.job_id),  # another real run holds the lock
    ]

    assert [(status_of(error), error.code) for error in refusals] == [
        (428, "reauthentication_required"),
        (401, "reauthentication_failed"),
        (403, "insufficient_scope"),
        (409, "job_running"),
    ]
    engine.run(other.job_id)
    real = engine.confirm(dry.job_id, password=PASSWORD)
    assert real.confirms == dry.job_id
    assert [job_id for job_id, _ in engine.started] == [dry.job_id, other.job_id, real.job_id]


# Reading and listing


def test_a_running_job_shows_the_counts_of_the_pages_committed_so_far(engine: Engine) -> None:
    job = engine.submit(dry_run=True)
    engine.runner.plan(APP, job.job_id)

    assert not engine.work(job.job_id, 0, time_left_ms=1_000)
    first = engine.service.get(APP, job.job_id)
    assert not engine.work(job.job_id, 1, time_left_ms=1_000)
    second = engine.service.get(APP, job.job_id)

    assert first.status is second.status is JobStatus.RUNNING
    assert first.counts == JobCounts(scanned=2, matched=2, changed=3)  # tag-00, tag-01 and its device
    assert second.counts == JobCounts(scanned=4, matched=4, changed=6)  # and tag-04, tag-05 and its device


@pytest.mark.parametrize("budget", [1000, 2])
def test_jobs_are_listed_newest_first_filtered_and_paged_within_their_app(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """``budget``: the jobs one call may read. At 2, a rare filter answers short pages and goes on from a cursor."""
    monkeypatch.setattr("steward.jobs.repository.MAX_SCANNED_JOBS", budget)
    types = [JobType.DELETE_TAGS, JobType.DELETE_EMPTY_TAGS, JobType.DELETE_TAGS, JobType.DELETE_EMPTY_TAGS]
    jobs = []
    for job_type in [*types, JobType.DELETE_TAGS]:
        engine.clock.advance(seconds=1)
        jobs.append(engine.submit(job_type=job_type))
    for done in (jobs[0], jobs[3]):
        engine.run(done.job_id)
    other_app = engine.services.apps.bootstrap(OTHER_APP, "Globex", admin_password=PASSWORD)
    theirs = engine.service.submit(principal(other_app), submission())

    def listed(job_type: JobType | None = None, status: JobStatus | None = None, limit: int = 2) -> list[int]:
        found = collect_pages(lambda cursor: engine.service.list_page(APP, job_type, status, cursor, limit), limit)
        return [[job.job_id for job in jobs].index(job.job_id) for job in found]

    assert listed() == [4, 3, 2, 1, 0]
    assert listed(limit=1) == [4, 3, 2, 1, 0]
    assert listed(JobType.DELETE_TAGS) == [4, 2, 0]
    assert listed(status=JobStatus.SUCCEEDED) == [3, 0]
    assert listed(status=JobStatus.QUEUED, limit=1) == [4, 2, 1]
    assert listed(JobType.DELETE_EMPTY_TAGS, JobStatus.SUCCEEDED) == [3]
    assert listed(JobType.DELETE_EMPTY_TAGS, JobStatus.RUNNING) == []
    assert listed(JobType.DELETE_TAGS, JobStatus.SUCCEEDED) == [0]  # the oldest: the fifth job read
    first = engine.service.list_page(APP, JobType.DELETE_TAGS, JobStatus.SUCCEEDED, None, 2)
    assert (len(first.items), first.next_cursor is None) == ((1, True) if budget > 5 else (0, False))
    assert [job.job_id for job in engine.service.list_page(OTHER_APP, None, None, None, 10).items] == [theirs.job_id]
    assert refusal(NotFound, engine.service.get, APP, theirs.job_id).code == "job_not_found"


def test_a_report_is_linked_once_the_job_has_one(engine: Engine) -> None:
    job = engine.submit(dry_run=True)

    not_ready = refusal(Conflict, engine.service.report, APP, job.job_id)
    engine.run(job.job_id)
    link = engine.service.report(APP, job.job_id)

    assert not_ready.code == "report_not_ready"
    assert f"/{APP}/{job.job_id}/report.csv" in link.url
    assert link.expires_at == engine.clock() + REPORT_TTL


def test_a_confirmed_two_phase_run_replays_the_last_phase_as_that_phase(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = TwoPhaseKind()
    engine = start_engine(store, monkeypatch, kind)
    dry = finished_dry_run(engine)
    assert dry.counts == JobCounts(scanned=20, matched=9, changed=11, skipped=1)
    selects, plans = kind.selects, kind.plans

    done = engine.run(engine.confirm(dry.job_id).job_id)

    assert (kind.selects, kind.plans, len(kind.advanced)) == (selects, plans, 1)  # nothing planned or selected again
    assert kind.applied_in == {1}  # applied in the phase that listed the rows, as a real run applies them
    assert done.counts == JobCounts(scanned=10, matched=9, changed=11, skipped=1)
    assert csv_rows(engine.report(done)) == REPORT_ROWS
    assert sorted(kind.world.deleted) == EXISTING_TAGS


@pytest.mark.parametrize("deleted", ["before_plan", "after_plan"])
def test_a_confirmed_run_whose_dry_run_was_deleted_fails_instead_of_replaying_nothing(
    engine: Engine, deleted: str
) -> None:
    dry = finished_dry_run(engine)
    real = engine.confirm(dry.job_id)
    if deleted == "before_plan":
        remove_behind_the_api(engine, dry.job_id)
        step = engine.runner.plan(APP, real.job_id)
        assert step["stop"] is True
        error = error_from_state_machine(step["error"])
    else:
        step = engine.runner.plan(APP, real.job_id)
        remove_behind_the_api(engine, dry.job_id)
        refused = refusal(WorkRefused, engine.work, real.job_id, 0)
        assert isinstance(refused.__cause__, JobRefused)
        # The Map's Catch hands the worker's error to finalize, as Lambda reports it.
        cause = json.dumps({"errorMessage": str(refused), "errorType": "WorkRefused"})
        error = error_from_state_machine({"Error": "WorkRefused", "Cause": cause})

    engine.runner.finalize(APP, real.job_id, error, MEMORY_MB)

    done = engine.service.get(APP, real.job_id)
    assert done.status is JobStatus.FAILED
    assert done.error is not None
    assert done.error.code == "dry_run_deleted"
    assert "deleted" in done.error.message
    assert engine.kind.apply_calls == 0
    assert engine.lock_holder() is None


def remove_behind_the_api(engine: Engine, dry_job_id: str) -> None:
    """The API refuses to delete a dry run its confirmation is applying; an operator could still remove it."""
    conflict = refusal(Conflict, engine.service.delete, engine.admin, dry_job_id)
    assert conflict.code == "confirmation_running"
    engine.services.report_store.delete_job(APP, dry_job_id)
    engine.services.job_repository.delete(APP, dry_job_id)


def test_a_worker_takes_no_page_once_its_job_was_finalized(engine: Engine) -> None:
    job = engine.submit(dry_run=False)
    engine.runner.plan(APP, job.job_id)
    engine.runner.finalize(APP, job.job_id, error_from_state_machine({"Error": "States.TaskFailed"}), MEMORY_MB)

    assert engine.work(job.job_id, 0)

    assert engine.kind.selects == engine.kind.apply_calls == 0
