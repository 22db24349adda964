"""A sweep that spans several executions, through a local stack of its own whose sweep executions work through one
few pages of two due entries each: the real definitions hand the run on, execution after execution, and its counts, its
lock and every execution's history come out right. Its finalize steps do one unit of work each (their margin is
past the function's timeout), so the Finalize loop goes round."""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.client import RunningStack, ok, start_local_stack, user_path
from tests.support.retention import conversation, new_app, status_of, sweep

SHARDS = 2
PAGES_PER_EXECUTION = 4  # two pages per shard and execution
PAGE_ENTRIES = 2
FINALIZE_MARGIN_SECONDS = 900  # past the function's 120 s: a finalize step does one unit (a page of users, a part)
IDLE = 13


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    parameters = [
        "--parameter",
        f"ShardCount={SHARDS}",
        "--parameter",
        f"RetentionPagesPerExecution={PAGES_PER_EXECUTION}",
        "--parameter",
        f"RetentionPageEntries={PAGE_ENTRIES}",
        "--parameter",
        f"RetentionFinalizeMarginSeconds={FINALIZE_MARGIN_SECONDS}",
        "--no-demo",
    ]
    yield from start_local_stack(tmp_path_factory.mktemp("retention-generations"), *parameters)


def executions_of(stack: RunningStack, run_id: str) -> list[dict[str, Any]]:
    stepfunctions = stack.client("stepfunctions")
    machine = stack.state["state_machines"]["RetentionStateMachine"]
    listed = stepfunctions.list_executions(stateMachineArn=machine, maxResults=1000)["executions"]
    return sorted(
        (execution for execution in listed if execution["name"].startswith(run_id)), key=lambda e: e["startDate"]
    )


def pages_swept(stack: RunningStack, execution_arn: str) -> tuple[int, int, int]:
    """The execution's Page steps, the pages it counted towards its budget, and its history's length."""
    events = stack.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    pages = [
        event
        for event in events
        if event["type"] == "TaskStateEntered" and event["stateEnteredEventDetails"]["name"] == "Page"
    ]
    counted = [
        event
        for event in events
        if event["type"] == "PassStateEntered" and event["stateEnteredEventDetails"]["name"] == "Count"
    ]
    return len(pages), len(counted), len(events)


def test_a_run_spans_executions_of_bounded_history_and_counts_once(small_stack: RunningStack) -> None:
    key = new_app(small_stack, {"archive_after_days": {"open": 1}})
    idle = [conversation(small_stack, key, "email", "open", 3) for _ in range(IDLE)]
    fresh = conversation(small_stack, key, "email", "open", 0)
    preview = ok(small_stack.api("POST", "/v1/retention/preview", key))

    run = sweep(small_stack, key)

    assert (run["status"], run["counts"]) == ("succeeded", {"open->archive": IDLE})
    assert run["counts"] == preview["counts"]
    assert {status_of(small_stack, key, conversation_id) for conversation_id in idle} == {"archive"}
    assert status_of(small_stack, key, fresh) == "open"

    executions = executions_of(small_stack, run["run_id"])
    names = [execution["name"] for execution in executions]
    # 13 due entries in pages of 2 over 2 shards: at least 7 pages, at most two per shard and execution.
    assert len(names) >= 2
    assert names == [run["run_id"], *(f"{run['run_id']}_g{n}" for n in range(1, len(names)))]
    assert {execution["status"] for execution in executions} == {"SUCCEEDED"}
    counted_any = 0
    for execution in executions:
        pages, counted, events = pages_swept(small_stack, execution["executionArn"])
        # Each shard not done yet gets max(1, budget // shards) pages: here two each, four in all.
        assert 1 <= pages <= max(PAGES_PER_EXECUTION, SHARDS)
        assert events <= 9 * pages + 2 * SHARDS + 40
        counted_any += counted
    assert counted_any > 0  # a shard went on to its second page within one execution

    # The last execution finalized the run and released the app's lock: the next schedule sweeps it again.
    again = sweep(small_stack, key)
    assert (again["status"], again["counts"]) == ("succeeded", {})
    assert again["run_id"] != run["run_id"]


def test_a_finalize_of_many_steps_counts_each_user_once(small_stack: RunningStack) -> None:
    key = new_app(small_stack, {"purge_after_days": 0, "delete_user_data": True})
    leavers, stayer = ["leaver-a", "leaver-b", "leaver-c"], "stayer"
    for user_id in [*leavers, stayer]:
        ok(small_stack.api("PUT", user_path(user_id), key, json={"fields": {}}))
        conversation(small_stack, key, "chat", "delete", 1, user_id=user_id)
    kept_by = conversation(small_stack, key, "chat", "open", 1, user_id=stayer)

    run = sweep(small_stack, key)

    assert (run["status"], run["counts"]) == ("succeeded", {"delete->purged": 4})
    assert (run["users_deleted"], run["users_deleted_sample"]) == (3, leavers)
    assert (run["users_kept"], run["users_kept_sample"]) == (1, [stayer])
    assert status_of(small_stack, key, kept_by) == "open"
    # One unit a finalize step (RetentionFinalizeMarginSeconds): the users' page, then the report's one part.
    last = executions_of(small_stack, run["run_id"])[-1]
    events = small_stack.client("stepfunctions").get_execution_history(
        executionArn=last["executionArn"], maxResults=1000
    )["events"]
    steps = [
        event
        for event in events
        if event["type"] == "TaskStateEntered" and event["stateEnteredEventDetails"]["name"] == "Finalize"
    ]
    assert len(steps) == 2
    described = small_stack.client("stepfunctions").describe_execution(executionArn=last["executionArn"])
    assert json.loads(described["output"]) == {"run_id": run["run_id"], "status": "succeeded", "done": True}
