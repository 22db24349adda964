"""The local runner's "Step Functions Execution Status Change" events (moto sends none): the real template's rules
pick the sweep's and the audience fan-out's endings for their targets, and the event has the shape AWS sends
(events/)."""

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from moto.stepfunctions.parser.api import ExecutionStatus

from steward_local.execution_events import rules_with_targets, status_change_event
from steward_local.intrinsics import Resolver, Resource
from steward_local.template import load_and_transform

ROOT = Path(__file__).resolve().parents[2]
SWEEP = "arn:aws:states:us-east-1:123456789012:stateMachine:RetentionStateMachine-X1"
OTHER = "arn:aws:states:us-east-1:123456789012:stateMachine:JobStateMachine-X2"
FUNCTION = "steward-local-RetentionFunction-X3"
FAN_OUT = "arn:aws:states:us-east-1:123456789012:stateMachine:AudienceImportStateMachine-X4"
STOPPED = "arn:aws:states:us-east-1:123456789012:stateMachine:AudienceStoppedImportStateMachine-X5"
STEPS = "steward-local-AudienceFanOutFunction-X6"


def transformed_rules() -> list[Any]:
    cloudformation = load_and_transform(ROOT / "template.yaml", {}).cloudformation
    resources = {
        logical_id: Resource(logical_id, resource["Type"], f"{logical_id}-physical")
        for logical_id, resource in cloudformation["Resources"].items()
    }
    resources["RetentionStateMachine"] = Resource("RetentionStateMachine", "AWS::StepFunctions::StateMachine", SWEEP)
    resources["RetentionFunction"] = Resource("RetentionFunction", "AWS::Lambda::Function", FUNCTION)
    resources["AudienceImportStateMachine"] = Resource(
        "AudienceImportStateMachine", "AWS::StepFunctions::StateMachine", FAN_OUT
    )
    resources["AudienceStoppedImportStateMachine"] = Resource(
        "AudienceStoppedImportStateMachine", "AWS::StepFunctions::StateMachine", STOPPED
    )
    resources["AudienceFanOutFunction"] = Resource("AudienceFanOutFunction", "AWS::Lambda::Function", STEPS)
    return rules_with_targets(cloudformation, Resolver(resources, {}, "us-east-1", "steward-local"))


def ended(machine: str, status: ExecutionStatus) -> Any:
    """What the runner reads of a moto execution when it ends."""
    return SimpleNamespace(
        name="ret_20260601100000_3f2a9c1b7d4e_g2",
        exec_arn=f"{machine.replace(':stateMachine:', ':execution:')}:ret_20260601100000_3f2a9c1b7d4e_g2",
        state_machine=SimpleNamespace(arn=machine),
        exec_status=status,
        account_id="123456789012",
        region_name="us-east-1",
        start_date=datetime(2026, 6, 1, 10, 0, 1, tzinfo=UTC),
        stop_date=datetime(2026, 6, 1, 22, 0, 1, tzinfo=UTC),
        input_data={"app_id": "app-a", "run_id": "ret_20260601100000_3f2a9c1b7d4e", "generation": 2},
        error=None,
        cause=None,
    )


def test_the_sweeps_rule_reaches_the_retention_function_for_its_abrupt_endings_only() -> None:
    retention = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"
    # Other rules (the audience fan-out's) target other functions.
    [(pattern, functions)] = [
        (pattern, functions) for pattern, functions in transformed_rules() if retention in functions
    ]
    assert functions == [retention]
    for status in (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED):
        assert pattern.matches_event(status_change_event(ended(SWEEP, status)))
    assert not pattern.matches_event(status_change_event(ended(SWEEP, ExecutionStatus.SUCCEEDED)))
    assert not pattern.matches_event(status_change_event(ended(OTHER, ExecutionStatus.FAILED)))


def test_a_fan_out_that_failed_reaches_its_function_at_once_and_every_bad_ending_its_delay_machine() -> None:
    steps = f"arn:aws:lambda:us-east-1:123456789012:function:{STEPS}"
    rules = transformed_rules()
    heard: dict[ExecutionStatus, list[str]] = {}
    for status in (
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.ABORTED,
        ExecutionStatus.SUCCEEDED,
    ):
        event = status_change_event(ended(FAN_OUT, status))
        heard[status] = sorted(arn for pattern, arns in rules if pattern.matches_event(event) for arn in arns)

    assert heard == {
        ExecutionStatus.FAILED: [steps, STOPPED],
        ExecutionStatus.TIMED_OUT: [STOPPED],
        ExecutionStatus.ABORTED: [STOPPED],
        ExecutionStatus.SUCCEEDED: [],
    }


def test_the_event_has_the_shape_step_functions_sends() -> None:
    sample = json.loads((ROOT / "events" / "eventbridge-retention-execution-timed-out.json").read_text())
    event = status_change_event(ended(SWEEP, ExecutionStatus.TIMED_OUT))
    assert event.keys() == sample.keys()
    assert event["detail"].keys() == sample["detail"].keys()
    assert (event["source"], event["detail-type"]) == (sample["source"], sample["detail-type"])
    assert event["detail"]["status"] == "TIMED_OUT"
    assert json.loads(event["detail"]["input"])["run_id"] == "ret_20260601100000_3f2a9c1b7d4e"
    assert event["detail"]["startDate"] == 1780308001000


def test_an_undeliverable_sweep_event_lands_in_a_watched_dead_letter_queue() -> None:
    resources = load_and_transform(ROOT / "template.yaml", {}).cloudformation["Resources"]
    [target] = [
        target
        for resource in resources.values()
        if resource["Type"] == "AWS::Events::Rule"
        for target in resource["Properties"]["Targets"]
        if target["Arn"] == {"Fn::GetAtt": ["RetentionFunction", "Arn"]}
    ]
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 86400
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["RetentionExecutionEventsDeadLetterQueue", "Arn"]}}
    [policy] = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::SQS::QueuePolicy"
        and resource["Properties"]["Queues"] == [{"Ref": "RetentionExecutionEventsDeadLetterQueue"}]
    ]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert (statement["Principal"], statement["Action"]) == ({"Service": "events.amazonaws.com"}, "sqs:SendMessage")
    # Only the rule that targets the function may send (its name is generated: its ARN is referenced).
    [rule] = [
        logical_id
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::Events::Rule" and target in resource["Properties"]["Targets"]
    ]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule, "Arn"]}}}
    # An event the function fails on (raises, times out) goes there too, after Lambda's asynchronous retries.
    [invoke_config] = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::EventInvokeConfig"
        and resource["Properties"]["FunctionName"] == {"Ref": "RetentionFunction"}
    ]
    queue_arn = {"Fn::GetAtt": ["RetentionExecutionEventsDeadLetterQueue", "Arn"]}
    assert invoke_config["MaximumRetryAttempts"] == 2
    assert invoke_config["DestinationConfig"] == {"OnFailure": {"Destination": queue_arn}}
    role_statements = [
        statement
        for policy in resources["RetentionFunctionRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    assert {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": queue_arn} in role_statements
    [alarm] = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"].get("Namespace") == "AWS/SQS"
        and resource["Properties"]["Dimensions"][0]["Value"]
        == {"Fn::GetAtt": ["RetentionExecutionEventsDeadLetterQueue", "QueueName"]}
    ]
    assert (alarm["MetricName"], alarm["Threshold"]) == ("ApproximateNumberOfMessagesVisible", 1)
