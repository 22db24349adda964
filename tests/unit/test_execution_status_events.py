"""Both functions that hear how an execution ended read the same EventBridge event, through one model."""

import json
from typing import Any

import pytest

from steward.settings import StoreSettings
from steward.step_functions import ExecutionEnded
from tests.support.service import context, load_event, load_function

SAMPLES = ("eventbridge-audience-fan-out-timed-out.json", "eventbridge-retention-execution-timed-out.json")


def without_input(name: str) -> dict[str, Any]:
    """The event as AWS sends it when the execution's input would pass the event's size limit."""
    event = load_event(name)
    event["detail"].update(input=None, inputDetails={"included": False})
    return event


@pytest.mark.parametrize("name", SAMPLES)
def test_the_samples_read_as_an_execution_that_ended(name: str) -> None:
    event = load_event(name)

    ended = ExecutionEnded.model_validate(event)

    assert (ended.detail.status, ended.detail.executionArn) == ("TIMED_OUT", event["detail"]["executionArn"])
    assert ended.detail.input is not None
    assert json.loads(ended.detail.input)
    assert ExecutionEnded.model_validate(without_input(name)).detail.input is None


def test_the_fan_out_hears_an_execution_without_its_input_and_records_nothing(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("TOPIC", "arn:aws:sns:us-east-1:123456789012:failures"), ("EVENT_BUS", "steward-test")):
        monkeypatch.setenv(f"STEWARD_AUDIENCE_{name}", value)
    handler = load_function("audience_fan_out", store, monkeypatch)
    event = without_input(SAMPLES[0])

    assert handler.lambda_handler(event, context()) == {
        "outcome": "unknown",
        "execution": event["detail"]["executionArn"],
    }


def test_the_sweep_hears_an_execution_without_its_input_and_leaves_the_run_to_the_scheduler(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = load_function("retention", store, monkeypatch)

    assert handler.lambda_handler(without_input(SAMPLES[1]), context()) == {"run_id": None, "status": None}
