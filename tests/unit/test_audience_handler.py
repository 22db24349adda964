"""The importer's handlers fed real event shapes (events/): S3's notification, and Lambda's OnFailure record."""

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from steward.apps.repository import AppRepository
from steward.audiences.keys import padded_sequencer
from steward.audiences.models import AudienceStatus
from steward.audiences.repository import Attempt, AudienceRepository
from steward.settings import StoreSettings
from steward.tables import AUDIENCE_COUNT_SK, AudienceCountRecord, audience_count_pk
from tests.support.service import context, load_event, load_function

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


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


def test_the_on_failure_destination_records_the_lost_import_and_gives_the_slot_back(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = boto3.client("sns").create_topic(Name="failures")["TopicArn"]
    boto3.client("events").create_event_bus(Name="steward-test-audiences")
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="heard")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("STEWARD_AUDIENCE_TOPIC", topic)
    monkeypatch.setenv("STEWARD_AUDIENCE_EVENT_BUS", "steward-test-audiences")
    AppRepository().create("demo-shop", "Demo", "hash", None, NOW)
    repository = AudienceRepository()
    # The importer claimed the new name, then died three times (out of memory): the record says importing.
    sequencer = padded_sequencer("0055AED6DCD90281E5")
    name = "spring sale été"
    attempt = Attempt("demo-shop", name, "k", sequencer, "request-1", NOW)
    assert repository.claim_new(attempt, 100, recount=False) == "claimed"
    handler = load_function("audience_import_failed", store, monkeypatch)

    result = handler.lambda_handler(load_event("lambda-destination-audience-import-failed.json"), context())

    assert [item["outcome"] for item in result["outcomes"]] == ["failed"]
    audience = repository.get("demo-shop", name, consistent=True)
    assert audience is not None
    assert audience.last_failure is not None
    assert (audience.status, audience.counted) == (AudienceStatus.FAILED, False)
    assert audience.last_failure.code == "import_failed"
    assert "RetriesExhausted after 3 attempts (Runtime.ExitError" in audience.last_failure.reason
    assert AudienceCountRecord.get(audience_count_pk("demo-shop"), AUDIENCE_COUNT_SK).audiences == 0
    message = json.loads(sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"])
    assert json.loads(message["Message"])["code"] == "import_failed"
    # The same destination record delivered again records nothing more.
    again = handler.lambda_handler(load_event("lambda-destination-audience-import-failed.json"), context())
    assert [item["outcome"] for item in again["outcomes"]] == ["skipped"]


def test_a_fan_out_execution_that_timed_out_is_recorded_by_its_status_rule(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = boto3.client("sns").create_topic(Name="failures")["TopicArn"]
    boto3.client("events").create_event_bus(Name="steward-test-audiences")
    boto3.client("s3").create_bucket(Bucket="steward-test-audiences")
    monkeypatch.setenv("STEWARD_AUDIENCE_DATA_BUCKET", "steward-test-audiences")
    monkeypatch.setenv("STEWARD_AUDIENCE_TOPIC", topic)
    monkeypatch.setenv("STEWARD_AUDIENCE_EVENT_BUS", "steward-test-audiences")
    AppRepository().create("demo-shop", "Demo", "hash", None, NOW)
    repository = AudienceRepository()
    event = load_event("eventbridge-audience-fan-out-timed-out.json")
    job = json.loads(event["detail"]["input"])["job"]
    # The importer claimed the new name and started the execution, which then ran out of its time.
    attempt = Attempt("demo-shop", job["name"], job["key"], job["sequencer"], "request-1", NOW)
    assert repository.claim_new(attempt, 100, recount=False) == "claimed"
    handler = load_function("audience_fan_out", store, monkeypatch)

    result = handler.lambda_handler(event, context())

    assert (result["outcome"], result["reason"]) == ("failed", "import_error")
    audience = repository.get("demo-shop", job["name"], consistent=True)
    assert audience is not None
    assert audience.last_failure is not None
    assert (audience.status, audience.counted) == (AudienceStatus.FAILED, False)
    assert audience.last_failure.reason == "The import failed: States.Timeout."
    assert audience.failure_notified_sequencer == job["sequencer"]
    assert AudienceCountRecord.get(audience_count_pk("demo-shop"), AUDIENCE_COUNT_SK).audiences == 0
    # An execution that failed through its own fail step (the Fail state's error) is recorded already.
    event["detail"].update(status="FAILED", error="AudienceImportFailed", cause="A step failed")
    assert handler.lambda_handler(event, context())["outcome"] == "recorded"
