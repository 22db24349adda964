"""Step Functions "Execution Status Change" events, which moto never emits, for the template's rules.

On AWS, Step Functions sends one to the default event bus whenever a
Standard execution starts or ends, and rules deliver it. moto's interpreter
sends none, and moto's EventBridge cannot deliver to a Lambda target at all.
The runner plays both parts: when an execution ends, it builds the event as
AWS does (events/eventbridge-retention-execution-timed-out.json) and invokes,
asynchronously, every Lambda function that a rule of the template whose
pattern matches targets. Nothing of this exists outside the local stack.
"""

import json
import logging
from datetime import datetime
from typing import Any

import boto3
from moto.events.models import EventPattern
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

from steward_local.intrinsics import Resolver

LOG = logging.getLogger(__name__)


def rules_with_lambda_targets(
    cloudformation: dict[str, Any], resolver: Resolver
) -> list[tuple[EventPattern, list[str]]]:
    """(pattern, function ARNs) of every rule on the default bus that targets a Lambda function."""
    found = []
    for resource in cloudformation["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] != "AWS::Events::Rule" or "EventPattern" not in properties or "EventBusName" in properties:
            continue
        targets = [str(resolver.resolve(target["Arn"])) for target in properties.get("Targets", [])]
        functions = [arn for arn in targets if ":lambda:" in arn]
        if functions:
            found.append((EventPattern.load(json.dumps(resolver.resolve(properties["EventPattern"]))), functions))
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
    rules = rules_with_lambda_targets(cloudformation, resolver)
    if not rules:
        return
    original = BaseExecutionWorkerCommunication.terminated

    def terminated(self: BaseExecutionWorkerCommunication) -> None:
        original(self)
        event = status_change_event(self.execution)
        functions = [arn for pattern, arns in rules if pattern.matches_event(event) for arn in arns]  # type: ignore[arg-type]
        if not functions:
            return
        client = boto3.client("lambda", endpoint_url=endpoint_url, region_name=region)
        for arn in functions:
            try:
                client.invoke(FunctionName=arn, InvocationType="Event", Payload=json.dumps(event).encode())
            except Exception:  # the execution has ended either way; EventBridge would retry, the runner reports
                LOG.exception("Could not deliver %s to %s", event["detail-type"], arn)

    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
