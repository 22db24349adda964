"""Create the template's stack in an embedded moto server and wire what moto skips."""

import io
import json
import logging
import os
import sys
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from steward_local import execution_events, moto_speedups, s3_events, sfn_timing
from steward_local.intrinsics import Resolver, Resource
from steward_local.lambdas import InProcessLambdas
from steward_local.template import ARTIFACTS_BUCKET, Transformed, load_and_transform

MOTO_CONFIG = {
    "lambda": {"use_docker": False},
    "stepfunctions": {"execute_state_machine": True},
}
# moto never talks to AWS, but boto3 still wants credentials to sign requests.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}


@dataclass
class StackConfig:
    template: Path
    stack_name: str = "steward-local"
    region: str = "us-east-1"
    host: str = "127.0.0.1"
    aws_port: int = 4566
    parameters: dict[str, str] = field(default_factory=dict)
    # Retry intervals and Wait states last this fraction of their time (the test stacks shorten them).
    sfn_time_scale: float = 1.0


@dataclass
class Stack:
    config: StackConfig
    transformed: Transformed
    resources: dict[str, Resource]
    resolver: Resolver
    lambdas: InProcessLambdas
    server: ThreadedMotoServer

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.config.host}:{self.config.aws_port}"

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.config.region)  # type: ignore[call-overload]

    def physical_ids(self, resource_type: str) -> dict[str, str]:
        return {r.logical_id: r.physical_id for r in self.resources.values() if r.type == resource_type}

    def schedule_names(self) -> dict[str, str]:
        return {
            logical_id: _schedule_name(logical_id, resource)
            for logical_id, resource in self.transformed.cloudformation["Resources"].items()
            if resource["Type"] == "AWS::Scheduler::Schedule"
        }

    def event_buses(self) -> dict[str, str]:
        """Bus names by logical id (moto's stack lists no physical id for a bus, so the template's name is used)."""
        return {
            logical_id: str(self.resolver.resolve(resource["Properties"]["Name"]))
            for logical_id, resource in self.transformed.cloudformation["Resources"].items()
            if resource["Type"] == "AWS::Events::EventBus"
        }

    def stop(self) -> None:
        self.server.stop()


def _quiet_emulator() -> None:
    """moto logs every request and warns about types it skips; the runner reports what matters itself."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)


def start_stack(config: StackConfig) -> Stack:
    _quiet_emulator()
    endpoint = f"http://{config.host}:{config.aws_port}"
    # Everything in this process (runner, handlers, boto3, pynamodb) talks to the emulator only.
    os.environ.update(
        {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": config.region,
            "AWS_REGION": config.region,
            # moto's Step Functions interpreter calls back into the server on this port.
            "MOTO_PORT": str(config.aws_port),
        }
    )
    moto_speedups.install()
    s3_events.install()
    sfn_timing.install(config.sfn_time_scale)
    server = ThreadedMotoServer(ip_address=config.host, port=config.aws_port, verbose=False)
    server.start()
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config", data=json.dumps(MOTO_CONFIG).encode(), method="POST"
    )
    urllib.request.urlopen(request).close()

    lambdas = InProcessLambdas()
    lambdas.install()
    transformed = load_and_transform(config.template, config.parameters)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=config.region)
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    for logical_id, folder in transformed.code_dirs.items():
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=f"{logical_id}.zip", Body=_zip_folder(folder))

    resources = _create_stack(config, endpoint, transformed)
    parameters = _parameter_values(transformed.sam, config.parameters)
    resolver = Resolver(resources, parameters, config.region, config.stack_name)
    stack = Stack(config, transformed, resources, resolver, lambdas, server)
    _register_code(stack)
    _wire_bucket_notifications(stack)
    _create_state_machines(stack)
    _create_schedules(stack)
    execution_events.install(transformed.cloudformation, resolver, endpoint, config.region)
    return stack


def _create_stack(config: StackConfig, endpoint: str, transformed: Transformed) -> dict[str, Resource]:
    cloudformation = boto3.client("cloudformation", endpoint_url=endpoint, region_name=config.region)
    cloudformation.create_stack(
        StackName=config.stack_name,
        TemplateBody=json.dumps(transformed.cloudformation),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in config.parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    status = cloudformation.describe_stacks(StackName=config.stack_name)["Stacks"][0]
    if status["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"Stack creation failed: {status['StackStatus']} {status.get('StackStatusReason')}")
    listed = cloudformation.describe_stack_resources(StackName=config.stack_name)["StackResources"]
    # Types moto cannot create (the HTTP API, alarms) have no physical id; the runner emulates or skips them.
    return {
        item["LogicalResourceId"]: Resource(item["LogicalResourceId"], item["ResourceType"], item["PhysicalResourceId"])
        for item in listed
        if item.get("PhysicalResourceId")
    }


def _parameter_values(sam: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    defaults = {name: str(spec.get("Default", "")) for name, spec in sam.get("Parameters", {}).items()}
    return {**defaults, **overrides}


def _register_code(stack: Stack) -> None:
    sam_resources = stack.transformed.sam["Resources"]
    for logical_id, folder in stack.transformed.code_dirs.items():
        if sam_resources[logical_id]["Type"] == "AWS::Serverless::LayerVersion":
            # A python layer's folder becomes python/ on the Lambda path.
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
        elif logical_id in stack.resources:
            stack.lambdas.register(stack.resources[logical_id].physical_id, folder)


def _wire_bucket_notifications(stack: Stack) -> None:
    s3 = stack.client("s3")
    for logical_id, resource in stack.transformed.cloudformation["Resources"].items():
        notification = resource.get("Properties", {}).get("NotificationConfiguration")
        if resource["Type"] != "AWS::S3::Bucket" or not notification:
            continue
        lambda_configurations = []
        for item in notification.get("LambdaConfigurations", []):
            entry: dict[str, Any] = {
                "LambdaFunctionArn": stack.resolver.resolve(item["Function"]),
                "Events": [item["Event"]],
            }
            rules = item.get("Filter", {}).get("S3Key", {}).get("Rules")
            if rules:
                entry["Filter"] = {"Key": {"FilterRules": rules}}
            lambda_configurations.append(entry)
        s3.put_bucket_notification_configuration(
            Bucket=stack.resources[logical_id].physical_id,
            NotificationConfiguration={"LambdaFunctionConfigurations": lambda_configurations},
        )


def _create_state_machines(stack: Stack) -> None:
    """Create each state machine again, with its substitutions applied, where executions run.

    moto's CloudFormation puts state machines in its plain backend, while
    executions (execute_state_machine) use the ASL interpreter's backend; the
    same name gives the same ARN, so the stack's physical ids stay right.
    """
    stepfunctions = stack.client("stepfunctions")
    for logical_id, resource in stack.transformed.cloudformation["Resources"].items():
        if resource["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        properties = resource["Properties"]
        definition = stack.resolver.resolve(properties["DefinitionString"])
        for name, value in properties.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + name + "}", str(stack.resolver.resolve(value)))
        arn = stack.resources[logical_id].physical_id
        stepfunctions.create_state_machine(
            name=arn.rsplit(":", 1)[-1],
            definition=definition,
            roleArn=stack.resolver.resolve(properties["RoleArn"]),
            type=properties.get("StateMachineType", "STANDARD"),
        )


def _create_schedules(stack: Stack) -> None:
    scheduler = stack.client("scheduler")
    for logical_id, resource in stack.transformed.cloudformation["Resources"].items():
        if resource["Type"] != "AWS::Scheduler::Schedule":
            continue
        properties = stack.resolver.resolve(resource["Properties"])
        target = {key: value for key, value in properties["Target"].items() if key in ("Arn", "RoleArn", "Input")}
        scheduler.create_schedule(
            Name=_schedule_name(logical_id, resource),
            ScheduleExpression=properties["ScheduleExpression"],
            FlexibleTimeWindow=properties.get("FlexibleTimeWindow", {"Mode": "OFF"}),
            State=properties.get("State", "ENABLED"),
            Target=target,
        )


def _schedule_name(logical_id: str, resource: dict[str, Any]) -> str:
    name = resource.get("Properties", {}).get("Name")
    return name if isinstance(name, str) else logical_id


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(folder))
    return buffer.getvalue()
