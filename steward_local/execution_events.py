"""Step Functions "Execution Status Change" events, which moto never emits, for the template's rules.

On AWS, Step Functions sends one to the default event bus whenever a
Standard execution starts or ends, and rules deliver it. moto's interpreter
sends none, and moto's EventBridge cannot deliver to a Lambda target at all.
The runner plays both parts: when an execution ends, it builds the event as
AWS does (events/eventbridge-retention-execution-timed-out.json) and hands it
to every target of a rule of the template whose pattern matches: a Lambda
function is invoked asynchronously, a state machine gets an execution with
the event as its input (under a random name, as EventBridge starts one).
Nothing of this exists outside the local stack.
"""

import json
import logging
import uuid
from datetime import datetime
from typing import Any

import boto3
from moto.events.models import EventPattern
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

from steward_local.intrinsics import Resolver

LOG = logging.getLogger(__name__)


def rules_with_targets(cloudformation: dict[str, Any], resolver: Resolver) -> list[tuple[EventPattern, list[str]]]:
    """(pattern, target ARNs) of every rule on the default bus that targets Lambda functions or state machines."""
    found = []
    for resource in cloudformation["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] != "AWS::Events::Rule" or "EventPattern" not in properties or "EventBusName" in properties:
            continue
        targets = [str(resolver.resolve(target["Arn"])) for target in properties.get("Targets", [])]
        supported = [arn for arn in targets if ":lambda:" in arn or ":stateMachine:" in arn]
        if supported:
            found.append((EventPattern.load(json.dumps(resolver.resolve(properties["EventPattern"]))), supported))
    return found


def status_change_event(execution: Execution) -> dict[str, Any]:
    """The event as Step Functions sends it (dates in epoch milliseconds, the input as a JSON string)."""
    stop = execution.stop_date
    return {
        "version": "0",
        "id": f"{execution.name}-{execution.exec_status.value if execution.exec_status else 'UNKNOWN'}",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": execution.account_id,
        "time": (stop or execution.start_date).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": execution.region_name,
        "resources": [execution.exec_arn],
        "detail": {
            "executionArn": execution.exec_arn,
            "stateMachineArn": execution.state_machine.arn,
            "name": execution.name,
            "status": execution.exec_status.value if execution.exec_status else None,
            "startDate": _millis(execution.start_date),
            "stopDate": None if stop is None else _millis(stop),
            "input": json.dumps(execution.input_data, separators=(",", ":")),
            "output": None,
            "inputDetails": {"included": True},
            "outputDetails": None,
            "error": execution.error,
            "cause": execution.cause,
        },
    }


def install(cloudformation: dict[str, Any], resolver: Resolver, endpoint_url: str, region: str) -> None:
    rules = rules_with_targets(cloudformation, resolver)
    if not rules:
        return
    original = BaseExecutionWorkerCommunication.terminated

    def terminated(self: BaseExecutionWorkerCommunication) -> None:
        original(self)
        event = status_change_event(self.execution)
        targets = [arn for pattern, arns in rules if pattern.matches_event(event) for arn in arns]  # type: ignore[arg-type]
        for arn in targets:
            try:
                deliver(arn, event, endpoint_url, region)
            except Exception:  # the execution has ended either way; EventBridge would retry, the runner reports
                LOG.exception("Could not deliver %s to %s", event["detail-type"], arn)

    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]


def deliver(arn: str, event: dict[str, Any], endpoint_url: str, region: str) -> None:
    """Hand the event to a rule's target as EventBridge does."""
    payload = json.dumps(event)
    if ":stateMachine:" in arn:
        stepfunctions = boto3.client("stepfunctions", endpoint_url=endpoint_url, region_name=region)
        stepfunctions.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex, input=payload)
        return
    client = boto3.client("lambda", endpoint_url=endpoint_url, region_name=region)
    client.invoke(FunctionName=arn, InvocationType="Event", Payload=payload.encode())


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
