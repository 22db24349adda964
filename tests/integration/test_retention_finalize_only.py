"""A sweep execution stopped before it finalized its run, through the local stack: its status change event hands the
run to a finalize-only execution (`<run id>_f1`) of the real definition, which waits out the last pages' grace and
finalizes the run failed; the scheduler's pass meanwhile leaves it alone, and the app's next run starts after."""

import time
from typing import Any

from steward.tables import RETENTION_LOCK_SK, retention_lock_pk
from tests.support.client import RunningStack, ok, throttled
from tests.support.retention import APP_OF_KEY, conversation, fire_schedule, new_app, run_ids, status_of, sweep

WAIT_SECONDS = 60
IDLE = 3


def execution_arn(stack: RunningStack, name: str) -> str:
    machine = stack.state["state_machines"]["RetentionStateMachine"]
    return f"{machine.replace(':stateMachine:', ':execution:')}:{name}"


def until(what: str, found: Any) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if result := found():
            return result
        time.sleep(0.1)
    raise AssertionError(what)


def entered(stack: RunningStack, name: str, state: str) -> bool:
    events = stack.client("stepfunctions").get_execution_history(executionArn=execution_arn(stack, name))["events"]
    return any(event.get("stateEnteredEventDetails", {}).get("name") == state for event in events)


def ended(stack: RunningStack, name: str) -> dict[str, Any] | None:
    execution: dict[str, Any] = stack.client("stepfunctions").describe_execution(
        executionArn=execution_arn(stack, name)
    )
    return None if execution["status"] == "RUNNING" else execution


def names_of(stack: RunningStack, run_id: str) -> list[str]:
    machine = stack.state["state_machines"]["RetentionStateMachine"]
    listed = stack.client("stepfunctions").list_executions(stateMachineArn=machine, maxResults=1000)["executions"]
    return sorted(execution["name"] for execution in listed if execution["name"].startswith(run_id))


def test_a_stopped_execution_is_finalized_by_a_finalize_only_execution(stack: RunningStack) -> None:
    key = new_app(stack, {"archive_after_days": {"open": 1}})
    app_id = APP_OF_KEY[key]
    idle = [conversation(stack, key, "email", "open", 3) for _ in range(IDLE)]

    # Every page of the app is refused past its retries, so the execution waits out the last pages' grace
    # (LastPagesOfFailed) before recording the failure itself: it is stopped there, with its run unfinalized. The
    # refusals last until the run is finalized: the Map's abandoned iterations may still be retrying their pages.
    with throttled(
        stack,
        "Query",
        "ConversationsTable",
        times=10_000,
        function="RetentionFunction",
        contains=f"{app_id}#conversation-due#",
    ) as refused:
        fire_schedule(stack)
        [run_id] = run_ids(stack, key)
        until("the sweep did not reach its grace", lambda: entered(stack, run_id, "LastPagesOfFailed"))
        stack.client("stepfunctions").stop_execution(executionArn=execution_arn(stack, run_id))
        assert until("the stop did not end the execution", lambda: ended(stack, run_id))["status"] == "ABORTED"

        # The execution's status change event hands the run to a finalize-only execution, which waits for the grace.
        finalize = f"{run_id}_f1"
        until("the stop's event started no finalize", lambda: finalize in names_of(stack, run_id))
        fire_schedule(stack)  # finds the run ending and its finalize running: starts nothing more
        assert run_ids(stack, key) == [run_id]
        assert names_of(stack, run_id) == [run_id, finalize]

        finalized = until("the finalize did not end", lambda: ended(stack, finalize))
    assert refused[0] > 0
    assert finalized["status"] == "SUCCEEDED", finalized
    assert entered(stack, finalize, "FailureFinalized")
    assert not entered(stack, finalize, "Plan")
    run = ok(stack.api("GET", f"/v1/retention/runs/{run_id}", key))
    assert (run["status"], run["error"], run["counts"]) == ("failed", "States.ABORTED", {})
    assert run["finished_at"] is not None
    assert {status_of(stack, key, conversation_id) for conversation_id in idle} == {"open"}
    lock = stack.client("dynamodb").get_item(
        TableName=stack.state["tables"]["ConversationsTable"],
        Key={"pk": {"S": retention_lock_pk(app_id)}, "sk": {"S": RETENTION_LOCK_SK}},
    )
    assert "Item" not in lock

    # The app's next run starts at the next pass and sweeps what the stopped one left.
    again = sweep(stack, key)
    assert (again["status"], again["counts"]) == ("succeeded", {"open->archive": IDLE})
    assert again["run_id"] != run_id
    assert {status_of(stack, key, conversation_id) for conversation_id in idle} == {"archive"}
