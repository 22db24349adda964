"""The local runner's wiring, on a fixture template: S3 notifications, state machines, schedules."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import ROOT, RunningStack, fire, start_local_stack

FIXTURE = ROOT / "tests" / "fixtures" / "wiring" / "template.yaml"


@pytest.fixture(scope="module")
def wiring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    yield from start_local_stack(tmp_path_factory.mktemp("wiring"), "--template", str(FIXTURE), "--no-demo")


def recorded_sources(stack: RunningStack) -> list[str]:
    table = stack.state["tables"]["RecordsTable"]
    items = stack.client("dynamodb").scan(TableName=table)["Items"]
    return sorted(item["source"]["S"] for item in items)


def test_state_file_names_every_resource(wiring: RunningStack) -> None:
    assert set(wiring.state["buckets"]) == {"DropBucket"}
    assert set(wiring.state["tables"]) == {"RecordsTable"}
    assert set(wiring.state["state_machines"]) == {"FanOutMachine"}
    assert set(wiring.state["schedules"].values()) == {"recorder-hourly", "fan-out-nightly"}
    assert wiring.state["apps"] == []


def test_object_created_invokes_the_function_with_a_filter(wiring: RunningStack) -> None:
    s3 = wiring.client("s3")
    bucket = wiring.state["buckets"]["DropBucket"]
    before = recorded_sources(wiring).count("s3")

    s3.put_object(Bucket=bucket, Key="demo/audience.csv", Body=b"user_id\nu1\n")
    s3.put_object(Bucket=bucket, Key="demo/ignored.txt", Body=b"not a csv")

    assert recorded_sources(wiring).count("s3") == before + 1


def test_firing_a_lambda_schedule_invokes_it_with_its_input(wiring: RunningStack) -> None:
    result = fire(wiring, "recorder-hourly")

    assert result["function_error"] is None
    assert "lambda-schedule" in recorded_sources(wiring)


def test_firing_a_state_machine_schedule_runs_the_real_definition(wiring: RunningStack) -> None:
    execution_arn = fire(wiring, "fan-out-nightly")["execution_arn"]

    stepfunctions = wiring.client("stepfunctions")
    deadline = time.monotonic() + 30
    status = "RUNNING"
    while status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = stepfunctions.describe_execution(executionArn=execution_arn)["status"]

    assert status == "SUCCEEDED"
    assert recorded_sources(wiring).count("machine-schedule") == 3


def test_the_state_file_is_where_the_runner_said(wiring: RunningStack) -> None:
    assert Path(wiring.state_file).exists()
