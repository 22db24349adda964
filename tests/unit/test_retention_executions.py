"""A run across executions of bounded history, and runs whose execution ended without finalizing (on moto).

The steps are called in statemachines/retention.asl.json's order; the
integration tests run the definition itself (tests/integration/test_retention_generations.py).
"""

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from steward.composition import Services
from steward.conversations.models import CreateConversation, RetentionSettings
from steward.conversations.retention_repository import PART_TTL
from steward.conversations.scheduler import LAST_PAGE_GRACE, LOCK_TTL, finalize_name, generation_name
from steward.errors import Conflict
from steward.settings import MAX_PAGES_PER_EXECUTION, MAX_SHARDS, StoreSettings
from tests.support.job_engine import Clock
from tests.support.service import context, load_function

APP = "app-a"
RUN = "ret_20260601100000_3f2a9c1b7d4e"  # the run of events/eventbridge-retention-execution-timed-out.json
NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
BUCKET = "steward-test-reports"
ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "statemachines" / "retention.asl.json").read_text())


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


def services_with(store: StoreSettings, clock: Clock, pages_per_execution: int) -> Services:
    found = Services(
        store.shard_count, clock=clock, reports_bucket=BUCKET, retention_pages_per_execution=pages_per_execution
    )
    found.retention_settings.put(APP, RetentionSettings.model_validate({"archive_after_days": {"open": 1}}))
    return found


@pytest.fixture
def services(store: StoreSettings, clock: Clock) -> Services:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return services_with(store, clock, MAX_PAGES_PER_EXECUTION)


def idle_conversations(services: Services, count: int) -> None:
    at = (NOW - timedelta(days=3)).isoformat()
    for _ in range(count):
        body = {"channel": "email", "created_at": at, "last_activity_at": at, "status_changed_at": at}
        services.conversations.create(APP, CreateConversation.model_validate(body))


def sweep_machine(name: str = "retention") -> str:
    """A state machine the progress step can start the next execution in (moto only records it here)."""
    definition = {"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}
    return str(
        boto3.client("stepfunctions").create_state_machine(
            name=name, definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/retention"
        )["stateMachineArn"]
    )


def event_machine() -> str:
    """The state machine of events/eventbridge-retention-execution-timed-out.json, where hand-offs start."""
    return sweep_machine("RetentionStateMachine-AbCdEf123456")


def started_executions(machine: str) -> list[dict[str, Any]]:
    client = boto3.client("stepfunctions")
    listed = client.list_executions(stateMachineArn=machine)["executions"]
    return [
        {
            "name": item["name"],
            "input": json.loads(client.describe_execution(executionArn=item["executionArn"])["input"]),
        }
        for item in sorted(listed, key=lambda item: item["name"])
    ]


def run_generation(services: Services, generation: int, page_entries: int, machine: str) -> dict[str, Any]:
    """One execution: plan, each shard's pages up to its budget, progress (the definition's order)."""
    executions = services.retention_executions
    plan = executions.plan(APP, RUN, NOW, generation)
    pages = 0
    for shard in plan.shards:
        for _ in range(plan.pages):
            pages += 1
            if services.retention_sweep.sweep_page(APP, RUN, NOW, shard, page_entries):
                break
    done = executions.progress(APP, RUN, NOW, generation, machine)
    return {"shards": plan.shards, "budget": plan.pages, "pages": pages, "done": done}


def test_a_run_goes_on_in_new_executions_until_every_shard_is_done_and_counts_once(
    store: StoreSettings, clock: Clock
) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    services = services_with(store, clock, pages_per_execution=1)  # one page per shard per execution
    idle_conversations(services, 24)
    machine = sweep_machine()

    generations = []
    while True:
        generations.append(run_generation(services, len(generations), page_entries=2, machine=machine))
        if generations[-1]["done"]:
            break
        if len(generations) == 1:  # the first progress step retried: it starts nothing more
            assert not services.retention_executions.progress(APP, RUN, NOW, 0, machine)
    run = services.retention_sweep.finalize(APP, RUN, None).run

    assert len(generations) > 2  # the run spanned several executions
    assert generations[0]["shards"] == list(range(store.shard_count))
    assert all(generation["budget"] == 1 for generation in generations)
    # A later execution sweeps only the shards not done yet.
    assert all(len(later["shards"]) <= len(earlier["shards"]) for earlier, later in itertools.pairwise(generations))
    # Each execution but the last started the next one, named by the run and its generation; a retried
    # progress step finds it started (Step Functions refuses a second execution of that name).
    started = started_executions(machine)
    assert [item["name"] for item in started] == sorted(f"{RUN}_g{n}" for n in range(1, len(generations)))
    assert started[0]["input"] == {"app_id": APP, "run_id": RUN, "now": NOW.isoformat(), "generation": 1}
    assert (run.status.value, run.counts) == ("succeeded", {"open->archive": 24})


def test_an_executions_pages_are_shared_among_the_shards_and_bounded() -> None:
    loop = ASL["States"]["Shards"]["ItemProcessor"]["States"]
    # A page: its Task (entered, scheduled, started, succeeded, exited), the Choice and the counter's Pass (2 each);
    # each retry adds scheduled, started and failed. A Map iteration adds its start and end, and its Done state's 2.
    assert set(loop) == {"Page", "ShardDone", "Count", "Done"}
    per_page, per_retry, per_iteration = 5 + 2 + 2, 3, 2 + 2
    [retry] = loop["Page"]["Retry"]
    worst_page = per_page + per_retry * retry["MaxAttempts"]  # 27
    # Plan gives each shard not done max(1, budget // shards) pages: the most pages any number of shards gets.
    pages = max(max(1, MAX_PAGES_PER_EXECUTION // shards) * shards for shards in range(1, MAX_SHARDS + 1))
    # Plus Plan, Planned, Shards, Progress, AllDone, Finished and the execution's own events: about 40.
    # And the Finalize loop: a step's Task (5) and its Choice (2), three more a retry. Room is left for 90 steps
    # with every attempt of every page and step retried: a run of 9 million users, or a report of some 3 GB, at
    # 100,000 users or four parts of 8 MiB a step.
    [finalize_retry] = ASL["States"]["Finalize"]["Retry"]
    worst_finalize = 5 + 2 + per_retry * finalize_retry["MaxAttempts"]
    assert pages * worst_page + MAX_SHARDS * per_iteration + 40 + 90 * worst_finalize < 25_000
    assert loop["ShardDone"]["Choices"][1] == {"Variable": "$.left", "NumericLessThanEquals": 1, "Next": "Done"}
    assert ASL["States"]["Shards"]["ItemSelector"]["left.$"] == "$.plan.pages"
    assert ASL["States"]["Progress"]["Parameters"]["Payload"]["state_machine.$"] == "$$.StateMachine.Id"


def test_each_execution_renews_the_lock_and_one_that_lost_it_stops(services: Services, clock: Clock) -> None:
    runs = services.retention_run_repository
    assert runs.acquire_lock(APP, RUN, NOW, LOCK_TTL) is None  # what the scheduler took
    services.retention_executions.plan(APP, RUN, NOW, 0)
    assert runs.advance_generation(APP, RUN, 0, clock.now)  # what the first execution's progress step does
    clock.now = NOW + LOCK_TTL - timedelta(minutes=1)
    services.retention_executions.plan(APP, RUN, NOW, 1)  # renewed from now
    clock.now = NOW + LOCK_TTL + timedelta(minutes=5)
    assert runs.acquire_lock(APP, "ret_20260601110000_000000000000", clock.now, LOCK_TTL) is not None  # still held

    clock.now = NOW + 3 * LOCK_TTL  # expired, and taken by another run
    assert runs.acquire_lock(APP, "ret_20260602100000_000000000000", clock.now, LOCK_TTL) is None
    assert runs.advance_generation(APP, RUN, 1, clock.now)
    with pytest.raises(Conflict) as refused:
        services.retention_executions.plan(APP, RUN, NOW, 2)
    assert refused.value.code == "retention_lock_lost"
    # Lambda names the error by the exception's class; Plan's first retrier matches it and never retries it
    # (States.TaskFailed, in the next retrier, matches every error a task raises).
    assert type(refused.value).__name__ == "RetentionRunStopped"
    first, *_ = ASL["States"]["Plan"]["Retry"]
    assert first == {"ErrorEquals": ["RetentionRunStopped"], "MaxAttempts": 0}


def test_the_first_execution_is_named_by_the_run() -> None:
    assert (generation_name(RUN, 0), generation_name(RUN, 3)) == (RUN, f"{RUN}_g3")


def _timed_out_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "eventbridge-retention-execution-timed-out.json").read_text())
    return event


def test_a_timed_out_execution_leaves_its_run_ending_and_locked_until_its_last_page_is_over(
    services: Services, store: StoreSettings, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = services.retention_run_repository
    executions = services.retention_executions
    executions.plan(APP, RUN, NOW, 0)  # records the run and holds the lock
    for generation in (0, 1):  # the event's execution is the run's third (generation 2)
        assert runs.advance_generation(APP, RUN, generation, clock.now)
    clock.now = NOW + timedelta(hours=12)
    machine = event_machine()
    handler = load_function("retention", store, monkeypatch)
    handler.services.clock = clock
    event = _timed_out_event()

    answer = handler.lambda_handler(event, context())

    # The last page's Lambda may still be applying: the run is not finalized yet, but no generation goes on.
    assert answer == {"run_id": RUN, "status": "running"}
    run = runs.get(APP, RUN)
    assert run is not None
    assert run.finished_at is None
    state = runs.state(APP, RUN)
    assert state is not None
    assert (state.finalize_after, state.error, state.handoff) == (clock.now + LAST_PAGE_GRACE, "States.TIMED_OUT", 1)
    assert executions.plan(APP, RUN, NOW, 2).stop
    assert not executions.progress(APP, RUN, NOW, 2, sweep_machine())
    # Handed to a finalize-only execution, which waits out the last page's grace first.
    wait = int(LAST_PAGE_GRACE.total_seconds())
    handed = {
        "app_id": APP,
        "run_id": RUN,
        "now": clock.now.isoformat(),
        "generation": None,
        "finalize_only": True,
        "wait_seconds": wait,
        "caught": {"Error": "States.TIMED_OUT", "Cause": ""},
    }
    assert started_executions(machine) == [{"name": finalize_name(RUN, 1), "input": handed}]
    # The lock stays with the run until that execution finalizes it.
    later = clock.now + LAST_PAGE_GRACE + timedelta(hours=1)
    assert runs.acquire_lock(APP, "ret_20260601230000_000000000000", later, LOCK_TTL) == RUN

    # EventBridge delivers at least once: the same event again changes nothing, and starts nothing.
    clock.now += timedelta(minutes=1)
    assert handler.lambda_handler(event, context()) == answer
    assert runs.state(APP, RUN) == state
    assert len(started_executions(machine)) == 1


def test_a_failed_execution_is_handed_to_a_finalize_and_one_finalized_already_is_left_alone(
    services: Services, store: StoreSettings, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = services.retention_run_repository
    services.retention_executions.plan(APP, RUN, NOW, 0)
    machine = event_machine()
    handler = load_function("retention", store, monkeypatch)
    handler.services.clock = clock
    event = _timed_out_event()
    event["detail"].update(status="FAILED", error="States.Runtime", cause="The JSONPath '$.plan' could not be found")
    event["detail"]["input"] = json.dumps({"app_id": APP, "run_id": RUN, "now": NOW.isoformat(), "generation": 0})

    # Finalized by the execution it is handed to, not by the handler (a finalize may take many steps).
    assert handler.lambda_handler(event, context())["status"] == "running"
    [handed] = started_executions(machine)
    assert handed["name"] == finalize_name(RUN, 1)
    error = "States.Runtime: The JSONPath '$.plan' could not be found"
    assert handed["input"]["caught"] == {"Error": error, "Cause": ""}
    # Its RecordFailure loop, after the Wait.
    step = {key: handed["input"][key] for key in ("app_id", "run_id", "now", "generation")}
    while not handler.lambda_handler({**step, "step": "finalize", "error": handed["input"]["caught"]}, context())[
        "done"
    ]:
        pass
    run = runs.get(APP, RUN)
    assert run is not None
    assert (run.status.value, run.error) == ("failed", error)
    assert runs.acquire_lock(APP, "ret_20260601110000_000000000000", clock.now, LOCK_TTL) is None  # released
    runs.release_lock(APP, "ret_20260601110000_000000000000")

    # A run that finalized itself (RecordFailure, then the Fail state) is not finalized again by its event.
    second = "ret_20260601120000_aaaaaaaaaaaa"
    services.retention_executions.plan(APP, second, NOW, 0)
    services.retention_sweep.finalize(APP, second, {"Error": "States.TaskFailed", "Cause": "boom"})
    before = runs.get(APP, second)
    clock.now = NOW + timedelta(hours=1)
    event["detail"]["input"] = json.dumps({"app_id": APP, "run_id": second, "now": NOW.isoformat(), "generation": 0})
    handler.lambda_handler(event, context())
    assert runs.get(APP, second) == before
    assert len(started_executions(machine)) == 1

    # The end of a finalize-only execution changes nothing: the scheduler's next pass follows it up.
    event["detail"]["input"] = json.dumps({**handed["input"], "run_id": second})
    assert handler.lambda_handler(event, context()) == {"run_id": second, "status": None}


def test_finalize_twice_changes_nothing(services: Services, clock: Clock) -> None:
    idle_conversations(services, 3)
    services.retention_executions.plan(APP, RUN, NOW, 0)
    for shard in range(services.shard_count):
        while not services.retention_sweep.sweep_page(APP, RUN, NOW, shard):
            pass
    first = services.retention_sweep.finalize(APP, RUN, None).run
    clock.now = NOW + timedelta(hours=1)
    again = services.retention_sweep.finalize(APP, RUN, {"Error": "States.Timeout", "Cause": ""}).run
    assert again == first
    assert (first.status.value, first.counts) == ("succeeded", {"open->archive": 3})


@pytest.mark.parametrize("generation", [0, 2])
def test_an_execution_of_a_finished_run_stops_without_the_lock(
    services: Services, clock: Clock, generation: int
) -> None:
    runs = services.retention_run_repository
    services.retention_executions.plan(APP, RUN, NOW, 0)
    services.retention_sweep.finalize(APP, RUN, {"Error": "States.TaskFailed", "Cause": "could not start"})
    finished = runs.get(APP, RUN)
    nxt = "ret_20260601110000_000000000000"
    assert runs.acquire_lock(APP, nxt, clock.now, LOCK_TTL) is None  # the app's next run holds the lock

    plan = services.retention_executions.plan(APP, RUN, NOW, generation)

    assert (plan.stop, plan.shards) == (True, [])
    assert runs.get(APP, RUN) == finished
    assert runs.acquire_lock(APP, "ret_20260601120000_000000000000", clock.now, LOCK_TTL) == nxt
    assert ASL["States"]["Planned"]["Choices"] == [
        {"Variable": "$.plan.stop", "BooleanEquals": True, "Next": "Stopped"}
    ]


def test_a_generation_that_handed_the_run_on_neither_finalizes_it_nor_plans_again(
    services: Services, store: StoreSettings, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = services.retention_run_repository
    idle_conversations(services, 3)
    machine = sweep_machine()
    executions = services.retention_executions
    executions.plan(APP, RUN, NOW, 0)
    assert not executions.progress(APP, RUN, NOW, 0, machine)  # nothing swept yet: generation 1 is started
    handler = load_function("retention", store, monkeypatch)
    handler.services.clock = clock
    caught = {"Error": "Lambda.ServiceException", "Cause": "the progress step's last attempt failed"}
    lost = "ret_20260601110000_000000000000"

    # Scenario A: generation 0's progress step fails after starting generation 1; its Catch runs RecordFailure.
    answer = handler.lambda_handler(
        {"step": "finalize", "app_id": APP, "run_id": RUN, "now": NOW.isoformat(), "generation": 0, "error": caught},
        context(),
    )
    # Scenario B: a stop lands on generation 0 after its progress step handed the run on.
    event = _timed_out_event()
    event["detail"].update(status="ABORTED", input=json.dumps({"app_id": APP, "run_id": RUN, "generation": 0}))
    ended = handler.lambda_handler(event, context())

    assert answer["status"] == ended["status"] == "running"
    run = runs.get(APP, RUN)
    assert run is not None
    assert (run.status.value, run.finished_at, run.error) == ("running", None, None)
    assert runs.acquire_lock(APP, lost, clock.now, LOCK_TTL) == RUN  # the run keeps its lock
    assert executions.plan(APP, RUN, NOW, 0).stop  # generation 0 again (a late retry): nothing
    assert not executions.progress(APP, RUN, NOW, 0, machine)  # nor its progress step: no generation 2
    assert [item["name"] for item in started_executions(machine)] == [f"{RUN}_g1"]

    # Generation 1 sweeps on and finalizes, with every count.
    plan = executions.plan(APP, RUN, NOW, 1)
    assert not plan.stop
    for shard in plan.shards:
        while not services.retention_sweep.sweep_page(APP, RUN, NOW, shard):
            pass
    assert executions.progress(APP, RUN, NOW, 1, machine)
    finished = services.retention_sweep.finalize(APP, RUN, None, 1).run
    assert (finished.status.value, finished.counts) == ("succeeded", {"open->archive": 3})
    assert runs.acquire_lock(APP, lost, clock.now, LOCK_TTL) is None  # released by the last generation
    for state in ("Finalize", "RecordFailure"):  # the definition says which generation finalizes
        assert ASL["States"][state]["Parameters"]["Payload"]["generation.$"] == "$.generation"


def test_each_generation_keeps_the_parts_of_a_long_run(services: Services, clock: Clock) -> None:
    idle_conversations(services, 2)
    runs = services.retention_run_repository
    executions = services.retention_executions
    executions.plan(APP, RUN, NOW, 0)
    for shard in range(services.shard_count):  # every shard done on the first day
        while not services.retention_sweep.sweep_page(APP, RUN, NOW, shard):
            pass
    assert runs.advance_generation(APP, RUN, 0, clock.now)
    clock.now = NOW + PART_TTL - timedelta(hours=1)  # a run that has gone on for almost a week
    executions.plan(APP, RUN, NOW, 1)

    clock.now = NOW + PART_TTL + timedelta(days=1)
    assert runs.done_shards(APP, RUN, clock.now) == set(range(services.shard_count))
    run = services.retention_sweep.finalize(APP, RUN, None, 1).run
    assert run.counts == {"open->archive": 2}
