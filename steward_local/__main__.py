"""`python -m steward_local run` starts the stack; `fire SCHEDULE` runs a schedule's target now."""

import argparse
import contextlib
import json
import os
import signal
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from steward_local.demo import seed
from steward_local.faults import FaultInjector
from steward_local.gateway import HttpApiGateway
from steward_local.sfn_timing import time_scale
from steward_local.stack import StackConfig, start_stack

ROOT = Path(__file__).resolve().parent.parent
STATE_FILE = ROOT / ".local" / "stack.json"


def main() -> None:
    parser = argparse.ArgumentParser(prog="steward_local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="start the whole stack on 127.0.0.1 and seed the demo apps")
    run_parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    run_parser.add_argument("--state-file", type=Path, default=STATE_FILE)
    run_parser.add_argument("--no-demo", action="store_true", help="skip seeding the demo apps")
    run_parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a template parameter (repeatable), e.g. AudienceRangeBytes=64",
    )
    fire = commands.add_parser("fire", help="run a schedule's target now, as EventBridge Scheduler would")
    fire.add_argument("schedule", help="schedule name (see `schedules` in .local/stack.json)")
    fire.add_argument("--state-file", type=Path, default=STATE_FILE)
    arguments = parser.parse_args()
    if arguments.command == "run":
        parameters = dict(_parameter(text) for text in arguments.parameter)
        run(arguments.template, arguments.state_file, seed_demo=not arguments.no_demo, parameters=parameters)
    else:
        print(json.dumps(fire_schedule(arguments.schedule, arguments.state_file), indent=2))


def _parameter(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise SystemExit(f"--parameter takes NAME=VALUE, not {text!r}")
    return name, value


def run(template: Path, state_file: Path, seed_demo: bool, parameters: dict[str, str]) -> None:
    host = "127.0.0.1"
    state_file.unlink(missing_ok=True)
    api_port = int(os.environ.get("STEWARD_API_PORT", "3000"))
    aws_port = int(os.environ.get("STEWARD_AWS_PORT", "4566"))
    config = StackConfig(
        template=template.resolve(),
        host=host,
        aws_port=aws_port,
        parameters=parameters,
        sfn_time_scale=time_scale(),
    )
    stack = start_stack(config)
    FaultInjector(state_file.parent).install()
    gateway = HttpApiGateway(stack, host, api_port)
    if gateway.routes:
        gateway.start()
    apps = seed(stack) if seed_demo else []
    api_url = f"http://{host}:{api_port}" if gateway.routes else None
    state = {
        "api_url": api_url,
        "aws_endpoint_url": stack.endpoint_url,
        "region": stack.config.region,
        "stack_name": stack.config.stack_name,
        "buckets": stack.physical_ids("AWS::S3::Bucket"),
        "tables": stack.physical_ids("AWS::DynamoDB::Table"),
        "state_machines": stack.physical_ids("AWS::StepFunctions::StateMachine"),
        "event_buses": stack.event_buses(),
        "topics": stack.physical_ids("AWS::SNS::Topic"),
        "schedules": stack.schedule_names(),
        "functions": stack.physical_ids("AWS::Lambda::Function"),
        "apps": [
            {"id": app.id, "name": app.name, "api_key": app.api_key, "admin_password": app.admin_password}
            for app in apps
        ],
    }
    state_file.parent.mkdir(parents=True, exist_ok=True)
    # Written last, and atomically: its presence tells scripts the stack is ready.
    partial = state_file.with_suffix(".tmp")
    partial.write_text(json.dumps(state, indent=2) + "\n")
    partial.replace(state_file)
    print(_banner(state, state_file), flush=True)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    gateway.stop()
    stack.stop()


def fire_schedule(name: str, state_file: Path) -> dict[str, Any]:
    """Fire one schedule of the running stack: invoke its Lambda or start its state machine."""
    state = json.loads(state_file.read_text())
    session = boto3.Session(
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 (the emulator accepts any credentials)
        region_name=state["region"],
    )
    endpoint = state["aws_endpoint_url"]
    target = session.client("scheduler", endpoint_url=endpoint).get_schedule(Name=name)["Target"]
    payload = scheduler_input(target.get("Input") or "{}", datetime.now(UTC))
    if ":states:" in target["Arn"]:
        execution = session.client("stepfunctions", endpoint_url=endpoint).start_execution(
            stateMachineArn=target["Arn"], name=f"{name}-{uuid.uuid4().hex[:12]}", input=payload
        )
        return {"schedule": name, "execution_arn": execution["executionArn"]}
    response = session.client("lambda", endpoint_url=endpoint).invoke(
        FunctionName=target["Arn"], Payload=payload.encode()
    )
    return {
        "schedule": name,
        "function_error": response.get("FunctionError"),
        "result": json.loads(response["Payload"].read() or b"null"),
    }


def scheduler_input(template: str, scheduled_at: datetime) -> str:
    """The target's input with the context attributes EventBridge Scheduler fills in, as of ``scheduled_at``.

    Milliseconds are kept (the Scheduler's own times are whole seconds), so two fires in one second
    are two schedule events, not a retry of one.
    """
    attributes = {
        "<aws.scheduler.scheduled-time>": scheduled_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "<aws.scheduler.execution-id>": uuid.uuid4().hex,
        "<aws.scheduler.attempt-number>": "1",
    }
    for attribute, value in attributes.items():
        template = template.replace(attribute, value)
    return template


def _banner(state: dict[str, Any], state_file: Path) -> str:
    lines = [
        "",
        "Steward is running locally (Ctrl-C stops it; state is in memory only).",
        f"  API:           {state['api_url']}   (docs: {state['api_url']}/docs)",
        f"  AWS emulator:  {state['aws_endpoint_url']}   region {state['region']}",
        f"  Stack facts:   {state_file}",
        "",
    ]
    if not state["apps"]:
        return "\n".join(lines)
    for app in state["apps"]:
        lines += [
            f"  App {app['id']} ({app['name']})",
            f"    API key:        {app['api_key']}",
            f"    admin password: {app['admin_password']}",
        ]
    key = state["apps"][0]["api_key"]
    api = state["api_url"]
    lines += [
        "",
        "Try:",
        f"  curl -s {api}/health",
        f"  curl -s -H 'Authorization: Bearer {key}' {api}/v1/devices",
        f"  curl -s -X PUT -H 'Authorization: Bearer {key}' -H 'content-type: application/json' \\",
        f'       -d \'{{"user_id": "carol", "transport": "FCM"}}\' {api}/v1/devices/fcm%3Acarol-token',
        f"  curl -s -X POST -H 'Authorization: Bearer {key}' -H 'content-type: application/json' \\",
        '       -d \'{"accepted": false, "error_code": "UNREGISTERED"}\' \\',
        f"       {api}/v1/devices/fcm%3Acarol-token/push-results",
    ]
    bucket = state["buckets"].get("ImportsBucket")
    if bucket:
        endpoint, region, app_id = state["aws_endpoint_url"], state["region"], state["apps"][0]["id"]
        lines += [
            "  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \\",
            f"       .venv/bin/aws --endpoint-url {endpoint} --region {region} \\",
            f"       s3 cp audience.csv s3://{bucket}/imports/{app_id}/audience.csv",
            f"  curl -s -H 'Authorization: Bearer {key}' {api}/v1/audiences/audience",
        ]
    for schedule in state["schedules"].values():
        lines.append(f"  make fire SCHEDULE={schedule}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
