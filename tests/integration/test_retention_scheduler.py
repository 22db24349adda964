"""The retention scheduler's real definition in the local stack: a shard of the index of apps that fails after its
retries stops no other shard, and fails the execution once every shard has had its pass."""

import time
from collections import Counter
from typing import Any

from steward.sharding import shard_of
from steward.tables import RETENTION_APPS_COLLECTION
from tests.support.client import TEMPLATE_SHARD_COUNT, RunningStack, fire, throttled
from tests.support.retention import APP_OF_KEY, new_app, run_ids, sweep

SETTINGS = {"archive_after_days": {"open": 30}}
# The Start step's first attempt and its six retries (their backoff, up to 2 + 4 + ... + 64 s, is scaled down locally).
ATTEMPTS = 7
WAIT_SECONDS = 120


def ended(stack: RunningStack, execution_arn: str) -> dict[str, Any]:
    stepfunctions = stack.client("stepfunctions")
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        execution: dict[str, Any] = stepfunctions.describe_execution(executionArn=execution_arn)
        if execution["status"] != "RUNNING":
            return execution
        time.sleep(0.2)
    raise AssertionError("the retention scheduler did not finish")


def settled(stack: RunningStack) -> None:
    """Every sweep execution the pass started (one per app of the session with settings) is over, so that none
    still runs when the session's stack stops."""
    stepfunctions = stack.client("stepfunctions")
    machine = stack.state["state_machines"]["RetentionStateMachine"]
    deadline = time.monotonic() + WAIT_SECONDS
    while stepfunctions.list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"]:
        if time.monotonic() > deadline:
            raise AssertionError("the sweeps the pass started did not finish")
        time.sleep(0.2)


def test_a_failing_shard_stops_no_other_and_fails_the_pass(stack: RunningStack) -> None:
    broken = new_app(stack, SETTINGS)
    shard = shard_of(APP_OF_KEY[broken], TEMPLATE_SHARD_COUNT)
    healthy = new_app(stack, SETTINGS)
    while shard_of(APP_OF_KEY[healthy], TEMPLATE_SHARD_COUNT) == shard:
        healthy = new_app(stack, SETTINGS)

    # Every read of the broken shard's page of apps is refused, past the Start step's retries.
    index_page = f'"{RETENTION_APPS_COLLECTION}#{shard:02d}"'
    with throttled(
        stack, "Query", "ConversationsTable", times=100, function="RetentionSchedulerFunction", contains=index_page
    ) as refused:
        fired = fire(stack, stack.state["schedules"]["RetentionSchedule"])
        execution = ended(stack, fired["execution_arn"])

    assert refused == [ATTEMPTS]
    assert (execution["status"], execution["error"]) == ("FAILED", "RetentionSchedulerShardFailed")
    history = stack.client("stepfunctions").get_execution_history(executionArn=fired["execution_arn"], maxResults=1000)[
        "events"
    ]
    iterations = Counter(event["type"] for event in history if event["type"].startswith("MapIteration"))
    # Every shard's iteration ran to its end: the broken one's error was caught in it.
    assert iterations["MapIterationSucceeded"] == TEMPLATE_SHARD_COUNT, iterations
    assert run_ids(stack, broken) == []
    assert len(run_ids(stack, healthy)) == 1  # the other shards had their pass
    # The next pass starts the broken shard's app.
    assert sweep(stack, broken)["status"] == "succeeded"
    settled(stack)
