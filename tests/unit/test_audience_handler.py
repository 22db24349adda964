"""The importer's handler fed S3's real event shape (events/): a stray key and an unknown app are counted."""

import json
from typing import Any

import pytest

from steward.settings import StoreSettings
from tests.support.service import context, load_event, load_function


def emitted_metrics(output: str) -> dict[str, Any]:
    """The metrics of the EMF blobs Powertools printed."""
    found: dict[str, Any] = {}
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            for definition in blob["_aws"]["CloudWatchMetrics"]:
                for metric in definition["Metrics"]:
                    found[metric["Name"]] = blob[metric["Name"]]
    return found


@pytest.mark.parametrize(
    ("key", "outcome", "metric"),
    [
        ("demo-shop/audience.csv", "stray", "AudienceImportStrayKey"),
        ("imports/no-such-app/spring+sale.csv", "unknown_app", "AudienceImportUnknownApp"),
    ],
)
def test_files_outside_the_contract_are_counted_and_create_nothing(
    store: StoreSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key: str,
    outcome: str,
    metric: str,
) -> None:
    monkeypatch.setenv("STEWARD_AUDIENCE_DATA_BUCKET", "steward-test-audiences")
    monkeypatch.setenv("STEWARD_AUDIENCE_TOPIC", "arn:aws:sns:us-east-1:123456789012:failures")
    monkeypatch.setenv("STEWARD_AUDIENCE_EVENT_BUS", "steward-test-audiences")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Steward")
    handler = load_function("audience_import", store, monkeypatch)
    event = load_event("s3-audience-object-created.json")
    event["Records"][0]["s3"]["object"]["key"] = key

    result = handler.lambda_handler(event, context())

    assert [item["outcome"] for item in result["outcomes"]] == [outcome]
    assert emitted_metrics(capsys.readouterr().out) == {metric: [1.0]}


def test_an_event_without_a_sequencer_is_refused(store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_AUDIENCE_DATA_BUCKET", "steward-test-audiences")
    monkeypatch.setenv("STEWARD_AUDIENCE_TOPIC", "arn:aws:sns:us-east-1:123456789012:failures")
    monkeypatch.setenv("STEWARD_AUDIENCE_EVENT_BUS", "steward-test-audiences")
    handler = load_function("audience_import", store, monkeypatch)
    event = load_event("s3-audience-object-created.json")
    del event["Records"][0]["s3"]["object"]["sequencer"]

    with pytest.raises(ValueError, match="sequencer"):
        handler.lambda_handler(event, context())
