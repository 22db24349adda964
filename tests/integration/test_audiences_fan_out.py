"""The fan-out import through a local stack of its own, whose importer fans out files over 100 bytes into
64-byte ranges: its counts, invalid samples and members equal the inline import of the same file. An execution
stopped there has its failure recorded after a few seconds rather than the deployed stack's 16 minutes (why the
delay is needed: tests/unit/test_audience_fan_out.py)."""

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.audiences import (
    WAIT_SECONDS,
    AudienceApp,
    audience_app,
    invoke_importer,
    members,
    put_file,
    register_users,
    s3_event,
)
from tests.support.client import SFN_TIME_SCALE, RunningStack, held, start_local_stack, throttled

USERS = [f"fan-user-{n:02d}" for n in range(40)]
# Lines of every kind, some longer than a range, so lines cross range ends in every way.
LINES = [
    b"\xef\xbb\xbfuser_id",
    *[user_id.encode() for user_id in USERS[:25]],
    b"",
    b"  fan-user-03 \r",
    b"a,b",
    b"x" * 300,
    b"stranger-1",
    b'"quoted"',
    b"\xff\xfe",
    *[user_id.encode() for user_id in USERS[10:35]],
    b"\t",
    b"stranger-2",
    b"user_id",
    b"stranger-1",
]
BODY = b"\n".join(LINES)
# How long the stack waits before it records a stopped execution (test stacks run Step Functions' waits at
# SFN_TIME_SCALE: 5 s here), and how long a test holds a step's call.
STOPPED_DELAY_SECONDS = 500
HOLD_SECONDS = 3


@pytest.fixture(scope="module")
def fan_out_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    parameters = [
        *("--parameter", "AudienceFanOutBytes=100", "--parameter", "AudienceRangeBytes=64"),
        *("--parameter", f"AudienceStoppedImportDelaySeconds={STOPPED_DELAY_SECONDS}", "--no-demo"),
    ]
    yield from start_local_stack(tmp_path_factory.mktemp("fan-out"), *parameters)


def ready(stack: RunningStack, app: AudienceApp, name: str) -> dict[str, Any]:
    """The audience once the execution flipped it (the state machine runs after the put returns)."""
    deadline = time.monotonic() + WAIT_SECONDS * 4
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = stack.api("GET", f"/v1/audiences/{name}", app.key)
        body = response.json()
        if response.status_code == 200 and body["status"] in {"ready", "failed"}:
            return body
        time.sleep(0.5)
    raise AssertionError(f"the audience never became ready: {body}")


def executions(stack: RunningStack) -> list[dict[str, Any]]:
    machine = stack.state["state_machines"]["AudienceImportStateMachine"]
    found: list[dict[str, Any]] = stack.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    return found


def scheduled_payloads(stack: RunningStack, execution_arn: str) -> list[dict[str, Any]]:
    """The payloads the execution sent the fan-out function, in the order its tasks were scheduled."""
    history = stack.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)
    return [
        json.loads(event["taskScheduledEventDetails"]["parameters"])["Payload"]
        for event in history["events"]
        if event["type"] == "TaskScheduled"
    ]


def test_a_file_over_the_threshold_fans_out_and_matches_the_inline_import(
    fan_out_stack: RunningStack, stack: RunningStack
) -> None:
    fanned = audience_app(fan_out_stack, "fan")
    inline = audience_app(stack, "inline")
    for each_stack, app in ((fan_out_stack, fanned), (stack, inline)):
        register_users(each_stack, app.app_id, USERS)
        put_file(each_stack, f"imports/{app.app_id}/big.csv", BODY)

    by_fan_out = ready(fan_out_stack, fanned, "big")
    by_inline = ready(stack, inline, "big")

    assert by_fan_out["status"] == "ready", by_fan_out
    assert by_fan_out["counts"] == by_inline["counts"]
    assert by_fan_out["counts"] == {
        "rows": 59, "invalid": 4, "valid": 55, "duplicates": 17, "unknown": 3, "members": 35,
    }  # fmt: skip
    assert by_fan_out["invalid_samples"] == by_inline["invalid_samples"]
    assert sorted(members(fan_out_stack, fanned, "big", limit=7)) == sorted(members(stack, inline, "big"))
    [execution] = executions(fan_out_stack)
    assert execution["status"] == "SUCCEEDED"
    assert len(BODY) // 64 > 10  # many ranges: the fan-out really cut the file
    # Each partition deduplicated before Prepare decides, and Check reads what it staged.
    payloads = scheduled_payloads(fan_out_stack, execution["executionArn"])
    assert list(dict.fromkeys(payload["step"] for payload in payloads)) == [
        "range", "distinct", "prepare", "check", "pack", "flip",
    ]  # fmt: skip
    assert all(payload["distinct_staged"] for payload in payloads if payload["step"] == "check")
    # The steps' work is removed once the audience is flipped.
    listed = fan_out_stack.client("s3").list_objects_v2(
        Bucket=fan_out_stack.state["buckets"]["AudienceDataBucket"], Prefix=f"staging/{fanned.app_id}/"
    )
    assert listed.get("KeyCount", 0) == 0


def test_a_duplicate_event_starts_no_second_execution(fan_out_stack: RunningStack) -> None:
    app = audience_app(fan_out_stack, "fandup")
    register_users(fan_out_stack, app.app_id, USERS)
    key = f"imports/{app.app_id}/again.csv"
    put_file(fan_out_stack, key, BODY)
    first = ready(fan_out_stack, app, "again")
    before = len(executions(fan_out_stack))

    again = invoke_importer(fan_out_stack, s3_event(fan_out_stack, key, len(BODY), first["sequencer"].rstrip("0")))

    assert [outcome["outcome"] for outcome in again["outcomes"]] == ["skipped"]
    assert len(executions(fan_out_stack)) == before
    assert ready(fan_out_stack, app, "again")["version"] == first["version"]


def import_with_fault(
    stack: RunningStack, app: AudienceApp, name: str, operation: str, times: int, contains: str | None = None
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Put the file while the fan-out function's next ``times`` ``operation`` calls on the catalog (holding
    ``contains``, if given) are refused: (the execution once it ended, the audience then, how many calls were
    refused)."""
    register_users(stack, app.app_id, USERS)
    key = f"imports/{app.app_id}/{name}.csv"
    function = "AudienceFanOutFunction"
    with throttled(stack, operation, "CatalogTable", times=times, function=function, contains=contains) as fired:
        put_file(stack, key, BODY)
        execution = _ended(stack, key)
    return execution, ready(stack, app, name), fired[0]


def _ended(stack: RunningStack, key: str) -> dict[str, Any]:
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + WAIT_SECONDS * 4
    while time.monotonic() < deadline:
        for execution in executions(stack):
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if key in described["input"] and described["status"] != "RUNNING":
                return described
        time.sleep(0.5)
    raise AssertionError(f"no execution for {key} ended")


def test_a_failed_step_is_recorded_and_ends_the_execution_failed(fan_out_stack: RunningStack) -> None:
    app = audience_app(fan_out_stack, "fanfail")
    # Every bucket write of the pack step is refused (past the writes' own retries), so the step fails; the fail
    # step's deletes of what it wrote go through (one that failed would fail the step after it recorded this).
    execution, audience, refused = import_with_fault(
        fan_out_stack, app, "broken", "BatchWriteItem", times=1000, contains="PutRequest"
    )

    assert refused > 0
    assert execution["status"] == "FAILED"
    assert execution["error"] == "AudienceImportFailed"
    assert audience["status"] == "failed", audience
    assert audience["last_failure"]["code"] == "import_error"
    assert audience["last_failure"]["key"] == f"imports/{app.app_id}/broken.csv"
    # Its status change also reaches the delay state machine, which removes what steps wrote late.
    assert answered_after_the_delay(fan_out_stack, execution)["outcome"] == "cleaned"


def test_a_flip_whose_step_failed_after_its_write_is_finished_and_ends_the_execution_succeeded(
    fan_out_stack: RunningStack,
) -> None:
    app = audience_app(fan_out_stack, "fanflip")
    # The flip's write goes through, then moving the lookup pointer fails in the step and its 3 retries:
    # the fail step finishes the flip.
    execution, audience, refused = import_with_fault(fan_out_stack, app, "flipped", "TransactWriteItems", times=4)

    assert refused == 4
    assert execution["status"] == "SUCCEEDED", execution
    assert audience["status"] == "ready"
    assert audience["counts"]["members"] == 35
    assert len(members(fan_out_stack, app, "flipped")) == 35


def stopped_while_held(
    stack: RunningStack, prefix: str, name: str, operation: str, table: str
) -> tuple[AudienceApp, dict[str, Any]]:
    """Put the file of a new app, stop its execution while the fan-out function's next ``operation`` call on
    ``table`` is held (so that the execution is still running when it is stopped), and answer the app and the
    answer of the fail step that the stop's status change started through the delay state machine."""
    app = audience_app(stack, prefix)
    register_users(stack, app.app_id, USERS)
    key = f"imports/{app.app_id}/{name}.csv"
    sfn = stack.client("stepfunctions")
    with held(stack, operation, table, HOLD_SECONDS, function="AudienceFanOutFunction") as fired:
        put_file(stack, key, BODY)
        deadline = time.monotonic() + WAIT_SECONDS * 2
        while not fired() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fired() == 1, "the step never made the held call"
        [running] = [item for item in executions(stack) if key in _input(stack, item)]
        sfn.stop_execution(executionArn=running["executionArn"], cause="Stopped by the test")
    stopped = _ended(stack, key)
    assert stopped["status"] == "ABORTED"
    return app, answered_after_the_delay(stack, stopped)


def _input(stack: RunningStack, execution: dict[str, Any]) -> str:
    described: dict[str, Any] = stack.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    return str(described["input"])


def answered_after_the_delay(stack: RunningStack, ended: dict[str, Any]) -> dict[str, Any]:
    """The function's answer, from the delay state machine's execution that the ended one's status change
    started; it entered the task at least the stack's delay after the end (the Wait ran with the parameter)."""
    machine = stack.state["state_machines"]["AudienceStoppedImportStateMachine"]
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + WAIT_SECONDS * 4
    while time.monotonic() < deadline:
        for execution in sfn.list_executions(stateMachineArn=machine)["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if json.loads(described["input"])["detail"]["executionArn"] != ended["executionArn"]:
                continue
            if described["status"] == "RUNNING":
                break
            assert described["status"] == "SUCCEEDED", described
            history = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
            [entered] = [event["timestamp"] for event in history if event["type"] == "TaskStateEntered"]
            assert (entered - ended["stopDate"]).total_seconds() >= STOPPED_DELAY_SECONDS * SFN_TIME_SCALE
            answer: dict[str, Any] = json.loads(described["output"])
            return answer
        time.sleep(0.5)
    raise AssertionError(f"the delay state machine never answered for {ended['executionArn']}")


def test_a_stopped_execution_is_recorded_as_failed_by_the_fail_step_its_status_change_starts_after_the_delay(
    fan_out_stack: RunningStack,
) -> None:
    # The wiring, end to end: the status rule starts the delay state machine, whose Wait takes the template's
    # delay and whose task hands the event to the fan-out function. That the delay outlasts any running step
    # is the template's (unit) test: the local runner runs one invocation of a function at a time, so a step
    # still running here would hold the fail step back even without the delay.
    app, answer = stopped_while_held(fan_out_stack, "fanstop", "stopped", "Query", "ProfilesTable")

    assert (answer["outcome"], answer["reason"]) == ("failed", "import_error")
    audience = ready(fan_out_stack, app, "stopped")
    assert (audience["status"], audience["last_failure"]["code"]) == ("failed", "import_error")
    assert audience["last_failure"]["reason"] == "The import failed: ExecutionAborted."
    listed = fan_out_stack.client("s3").list_objects_v2(
        Bucket=fan_out_stack.state["buckets"]["AudienceDataBucket"], Prefix=f"staging/{app.app_id}/"
    )
    assert listed.get("KeyCount", 0) == 0
