"""The importer's handlers fed real event shapes (events/): S3's notification, and Lambda's OnFailure record."""

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3
import pytest
from pydantic import ValidationError

from steward.apps.repository import AppRepository
from steward.audiences.events import Cleanup, FailedInvocation
from steward.audiences.importer import AudienceImporter, Invocation, ObjectCreated, VersionNotRemoved
from steward.audiences.keys import event_key, padded_sequencer
from steward.audiences.models import Audience, AudienceStatus, Layout
from steward.audiences.repository import Attempt, AudienceRepository
from steward.audiences.storage import S3Objects
from steward.batch_writes import BATCH_WRITE_SIZE
from steward.settings import StoreSettings
from steward.tables import (
    AUDIENCE_COUNT_SK,
    AudienceBucketRecord,
    AudienceCountRecord,
    audience_bucket_pk,
    audience_count_pk,
)
from tests.support.service import ROOT, context, load_event, load_function
from tests.unit.test_audience_importer import (
    DeletesLeftUnprocessed,
    Heard,
    Killed,
    Users,
    failed_uncounted,
    killed_once_removing,
)

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
    # The same destination record delivered again records nothing more, and tells nothing more.
    again = handler.lambda_handler(load_event("lambda-destination-audience-import-failed.json"), context())
    assert [(item["outcome"], item["reason"]) for item in again["outcomes"]] == [("failed", "import_failed")]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)


def after_the_delay(event: dict[str, Any]) -> dict[str, Any]:
    """What the delay state machine's task hands the fan-out function: its Payload, with the status change."""
    machine = json.loads((ROOT / "statemachines" / "audience_import_stopped.asl.json").read_text())
    payload: dict[str, Any] = machine["States"]["RecordFailure"]["Parameters"]["Payload"]
    assert payload["event.$"] == "$.event"
    return {name.removesuffix(".$"): event if name.endswith(".$") else value for name, value in payload.items()}


def test_a_fan_out_execution_that_timed_out_is_recorded_after_the_delay_its_status_rule_starts(
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

    result = handler.lambda_handler(after_the_delay(event), context())

    assert (result["outcome"], result["reason"]) == ("failed", "import_error")
    audience = repository.get("demo-shop", job["name"], consistent=True)
    assert audience is not None
    assert audience.last_failure is not None
    assert (audience.status, audience.counted) == (AudienceStatus.FAILED, False)
    assert audience.last_failure.reason == "The import failed: States.Timeout."
    assert audience.failure_notified_sequencer == job["sequencer"]
    assert AudienceCountRecord.get(audience_count_pk("demo-shop"), AUDIENCE_COUNT_SK).audiences == 0
    # An execution that failed through its own fail step (the Fail state's error) is recorded already; after the
    # delay, what its steps wrote since is removed.
    event["detail"].update(status="FAILED", error="AudienceImportFailed", cause="A step failed")
    assert handler.lambda_handler(event, context())["outcome"] == "recorded"
    assert handler.lambda_handler(after_the_delay(event), context())["outcome"] == "cleaned"


DATA_BUCKET = "steward-test-audiences"
IMPORTS_BUCKET = "steward-imports"  # the bucket of the sample event


@dataclass
class Destination:
    """The real OnFailure destination on moto, with what it told the app: the topic's and the bus's messages.
    ``event`` is the sample OnFailure record, and ``created`` the S3 record it carries, as the importer read it."""

    handler: ModuleType
    topic_queue: str
    bus_queue: str
    event: dict[str, Any]
    created: ObjectCreated

    def delivered_twice(self) -> list[tuple[str, str | None]]:
        """(outcome, reason) of each of the event's records, delivered twice (as Lambda may)."""
        answers = [self.handler.lambda_handler(self.event, context()) for _ in range(2)]
        return [(item["outcome"], item["reason"]) for answer in answers for item in answer["outcomes"]]

    def heard(self) -> list[tuple[str, str | None]]:
        sqs = boto3.client("sqs")
        found: list[tuple[str, str | None]] = []
        for queue in (self.topic_queue, self.bus_queue):
            for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                body = json.loads(message["Body"])
                if "TopicArn" in body:
                    found.append(("topic", json.loads(body["Message"])["code"]))
                else:
                    found.append((body["detail-type"], body["detail"].get("code")))
        return sorted(found, key=str)


def destination(store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> Destination:
    sqs, sns, events = boto3.client("sqs"), boto3.client("sns"), boto3.client("events")
    queues = {}
    for name in ("topic", "bus"):
        url = sqs.create_queue(QueueName=f"heard-{name}")["QueueUrl"]
        queues[name] = (
            url,
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"],
        )
    topic = sns.create_topic(Name="failures")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queues["topic"][1])
    events.create_event_bus(Name=DATA_BUCKET)
    events.put_rule(Name="all", EventBusName=DATA_BUCKET, EventPattern=json.dumps({"source": ["steward"]}))
    events.put_targets(Rule="all", EventBusName=DATA_BUCKET, Targets=[{"Id": "queue", "Arn": queues["bus"][1]}])
    for bucket in (DATA_BUCKET, IMPORTS_BUCKET):
        boto3.client("s3").create_bucket(Bucket=bucket)
    monkeypatch.setenv("STEWARD_AUDIENCE_TOPIC", topic)
    monkeypatch.setenv("STEWARD_AUDIENCE_EVENT_BUS", DATA_BUCKET)
    AppRepository().create("demo-shop", "Demo", "hash", None, NOW)
    handler = load_function("audience_import_failed", store, monkeypatch)
    event = load_event("lambda-destination-audience-import-failed.json")
    [created] = FailedInvocation.model_validate(event).requestPayload.created()
    return Destination(handler, queues["topic"][0], queues["bus"][0], event, created)


def the_importer(heard: Heard) -> AudienceImporter:
    """The importer as the function builds it, telling ``heard`` (which a test breaks)."""
    objects = S3Objects(boto3.client("s3"), DATA_BUCKET)
    users = Users(["u1", "u2"])
    return AudienceImporter(
        AudienceRepository(), objects, objects, users.registered, users.read_ids, lambda app_id: True, heard,
        lambda name: None, lambda: NOW, None, None,
    )  # fmt: skip


def imported_before(importer: AudienceImporter, created: ObjectCreated) -> Audience:
    """An older file of the same audience, imported: the version the lost file's flip replaces."""
    s3 = boto3.client("s3")
    put = s3.put_object(Bucket=IMPORTS_BUCKET, Key=event_key(created.raw_key), Body=b"u1\nu2\n")
    older = replace(created, size=6, sequencer="0055AED6DCD90281E4", etag=put["ETag"].strip('"'))
    assert importer.handle(older, Invocation("request-0", lambda: 900.0)).outcome == "imported"
    audience = importer.repository.get("demo-shop", "spring sale été", consistent=True)
    assert audience is not None
    return audience


def lost_after_an_older_import(told: Destination) -> tuple[AudienceImporter, Layout]:
    """An older file imported (its version answered, with the importer), and the lost file, the sample's object
    (empty), put at the key since."""
    importer = the_importer(Heard())
    older = imported_before(importer, told.created).layout
    assert older is not None
    boto3.client("s3").put_object(Bucket=IMPORTS_BUCKET, Key=event_key(told.created.raw_key), Body=b"")
    return importer, older


def flipped_unannounced(told: Destination) -> Layout:
    """The lost file flipped the audience, then moving the pointer failed on every attempt: nothing was announced,
    and the version the flip replaced (answered) is still there."""
    created = told.created
    importer = the_importer(Heard())
    older = imported_before(importer, created)
    assert older.layout is not None
    told.heard()  # (the setup's own notifier told nothing there)
    # The lost file is the sample's object (empty).
    boto3.client("s3").put_object(Bucket=IMPORTS_BUCKET, Key=event_key(created.raw_key), Body=b"")

    def broken_pointer(app_id: str, name: str, layout: Layout) -> bool:
        raise RuntimeError("DynamoDB throttled the pointer's write")

    importer.repository.point_to = broken_pointer  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="throttled"):
        importer.handle(created, Invocation("request-1", lambda: 900.0))
    return older.layout


def replaced_buckets(layout: Layout) -> int:
    return len(list(AudienceBucketRecord.query(audience_bucket_pk("demo-shop", layout.version, 0))))


def test_the_on_failure_destination_finishes_a_flip_that_was_never_announced_once(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    told = destination(store, monkeypatch)
    created = told.created
    replaced = flipped_unannounced(told)

    outcomes = told.delivered_twice()

    assert outcomes == [("imported", None)] * 2
    repository = AudienceRepository()
    audience = repository.get("demo-shop", "spring sale été", consistent=True)
    assert audience is not None
    assert audience.layout is not None
    assert audience.sequencer == padded_sequencer(created.sequencer)
    pointer = repository.pointer("demo-shop", "spring sale été", consistent=True)
    assert pointer is not None
    assert pointer.version == audience.layout.version
    # The version the flip replaced is removed: its buckets and its member list.
    assert replaced_buckets(replaced) == 0
    assert S3Objects(boto3.client("s3"), DATA_BUCKET).get(replaced.members_key) == b""
    assert told.heard() == [("Audience Imported", None)]  # once, and no failure


def test_the_on_failure_destination_announces_a_flip_before_removing_the_version_it_replaced(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    told = destination(store, monkeypatch)
    replaced = flipped_unannounced(told)
    repository = told.handler.services.audience_importer_service.repository
    removals = repository.delete_buckets

    def killed_removing(app_id: str, layout: Layout) -> None:
        # The replaced version of a large audience is tens of thousands of buckets: the time can run out there.
        monkeypatch.setattr(repository, "delete_buckets", removals)
        raise Killed()

    monkeypatch.setattr(repository, "delete_buckets", killed_removing)
    with pytest.raises(Killed):
        told.handler.lambda_handler(told.event, context())
    assert told.heard() == [("Audience Imported", None)]  # announced before the removal began
    assert replaced_buckets(replaced) == 1

    # Lambda retries the destination's invocation: it removes the version again, and announces nothing more.
    outcomes = told.delivered_twice()

    assert outcomes == [("imported", None)] * 2
    assert replaced_buckets(replaced) == 0
    assert S3Objects(boto3.client("s3"), DATA_BUCKET).get(replaced.members_key) == b""
    assert told.heard() == []


def test_the_on_failure_destination_tells_a_failure_that_was_never_told_once_and_records_no_other(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    told = destination(store, monkeypatch)
    heard = Heard()
    heard.failures_broken = True
    # The object was gone when the import read it: recorded as unreadable, but SNS refused it every attempt.
    with pytest.raises(RuntimeError, match="SNS"):
        the_importer(heard).handle(told.created, Invocation("request-1", lambda: 900.0))

    outcomes = told.delivered_twice()

    assert outcomes == [("failed", "unreadable")] * 2
    audience, code = failed_uncounted(AudienceRepository(), "demo-shop", "spring sale été")
    assert code == "unreadable"
    assert audience.failure_notified_sequencer == padded_sequencer(told.created.sequencer)
    assert told.heard() == [("Audience Import Failed", "unreadable"), ("topic", "unreadable")]


def test_the_on_failure_destination_tells_a_tombstones_refusal_that_was_never_told_once(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    told = destination(store, monkeypatch)
    heard = Heard()
    importer = the_importer(heard)
    repository = importer.repository
    assert repository.tombstone("demo-shop", imported_before(importer, told.created), NOW)
    heard.failures_broken = True
    # The lost file was refused for the tombstone, and telling it failed every attempt.
    with pytest.raises(RuntimeError, match="SNS"):
        importer.handle(told.created, Invocation("request-1", lambda: 900.0))

    outcomes = told.delivered_twice()

    assert outcomes == [("refused", "audience_deleted")] * 2
    tombstone = repository.get("demo-shop", "spring sale été", consistent=True)
    assert tombstone is not None
    assert (tombstone.status, tombstone.refused_key) == (AudienceStatus.DELETED, event_key(told.created.raw_key))
    assert told.heard() == [("Audience Import Failed", "audience_deleted"), ("topic", "audience_deleted")]


def test_the_on_failure_destination_refuses_no_file_that_was_imported_before_the_audience_was_deleted(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    told = destination(store, monkeypatch)
    replaced = flipped_unannounced(told)
    repository = AudienceRepository()
    flipped = repository.get("demo-shop", "spring sale été", consistent=True)
    assert flipped is not None
    # The app deleted the audience while Lambda retried the import that had flipped it.
    assert repository.tombstone("demo-shop", flipped, NOW)

    outcomes = told.delivered_twice()

    assert outcomes == [("skipped", "superseded")] * 2
    assert told.heard() == []  # neither a refusal of a file that was imported, nor an import of a deleted audience
    tombstone = repository.get("demo-shop", "spring sale été", consistent=True)
    assert tombstone is not None
    assert (tombstone.status, tombstone.refused_sequencer) == (AudienceStatus.DELETED, None)
    # The version the flip replaced, which its run never removed, is removed.
    assert replaced_buckets(replaced) == 0
    assert S3Objects(boto3.client("s3"), DATA_BUCKET).get(replaced.members_key) == b""


@pytest.mark.parametrize("then", ["newer file", "newer file, then deleted"])
def test_the_on_failure_destination_removes_the_version_a_lost_flip_replaced_after_a_newer_file_flipped(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    """The lost file flipped the audience, and its runs died removing the version it replaced; a newer file's
    import flipped the audience since, and died too before it removed anything (else it would have removed every
    version the record notes), and the app may have deleted the audience. The overlap needs killed runs, which the
    local stack cannot stage."""
    told = destination(store, monkeypatch)
    importer, replaced = lost_after_an_older_import(told)
    s3, key = boto3.client("s3"), event_key(told.created.raw_key)
    killed_once_removing(importer.repository)
    with pytest.raises(Killed):
        importer.handle(told.created, Invocation("request-1", lambda: 900.0))
    put = s3.put_object(Bucket=IMPORTS_BUCKET, Key=key, Body=b"u2\n")
    newer = replace(told.created, size=3, sequencer="0055AED6DCD90281E6", etag=put["ETag"].strip('"'))
    killed_once_removing(importer.repository)
    with pytest.raises(Killed):
        importer.handle(newer, Invocation("request-2", lambda: 900.0))
    repository = AudienceRepository()
    current = repository.get("demo-shop", "spring sale été", consistent=True)
    assert current is not None
    assert current.layout is not None
    if then.endswith("deleted"):
        assert repository.tombstone("demo-shop", current, NOW)
    assert replaced_buckets(replaced) == 1
    told.heard()

    outcomes = told.delivered_twice()

    assert outcomes == [("skipped", "superseded")] * 2
    assert replaced_buckets(replaced) == 0
    assert S3Objects(boto3.client("s3"), DATA_BUCKET).get(replaced.members_key) == b""
    # The newer file's version stays, and nothing is told: neither an import nor a failure.
    assert replaced_buckets(current.layout) == 1
    assert S3Objects(boto3.client("s3"), DATA_BUCKET).get(current.layout.members_key) == b"u2\n"
    after = repository.get("demo-shop", "spring sale été", consistent=True)
    assert after is not None
    # The newer file's own note stays, for its own retry.
    assert (list(after.unremoved), after.refused_key, after.failed_sequencer) == (
        [padded_sequencer(newer.sequencer)],
        None,
        None,
    )
    assert told.heard() == []


def test_the_on_failure_destination_removes_again_a_version_whose_removal_the_importer_failed_to_finish(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    told = destination(store, monkeypatch)
    repository = AudienceRepository()
    audience = imported_before(the_importer(Heard()), told.created)
    version = audience.layout
    assert version is not None
    assert repository.tombstone("demo-shop", audience, NOW)  # the API's DELETE: the tombstone names the version
    assert replaced_buckets(version) == 1
    told.heard()
    # The API hands the removal of a deleted audience's version to the importer (asynchronously, as composition.py
    # builds it); the importer failed at it three times, and Lambda sends that invocation to the same destination.
    cleanup = {"app_id": "demo-shop", "name": audience.name, **version.model_dump()}
    event = {**told.event, "requestPayload": {"cleanup": cleanup}}

    answer = told.handler.lambda_handler(event, context())

    assert answer == {"removed": version.version}
    assert replaced_buckets(version) == 0
    assert S3Objects(boto3.client("s3"), DATA_BUCKET).get(version.members_key) == b""
    assert told.heard() == []
    tombstone = repository.get("demo-shop", audience.name, consistent=True)
    assert tombstone is not None
    assert (tombstone.status, tombstone.removing) == (AudienceStatus.DELETED, None)  # a DELETE asks no more


def test_a_removal_the_api_asked_for_fails_after_trying_every_part_and_the_destination_fails_until_it_is_done(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API hands a deleted audience's version to the importer (asynchronously, as composition.py builds it),
    and BatchWriteItem leaves every delete unprocessed: the importer tries every chunk and the member list, then
    fails, for Lambda's retries; the OnFailure destination (then its own retries) does the same, until it is done."""
    told = destination(store, monkeypatch)
    monkeypatch.setenv("STEWARD_AUDIENCE_DATA_BUCKET", DATA_BUCKET)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Steward")
    importer = load_function("audience_import", store, monkeypatch)
    event = load_event("lambda-async-audience-cleanup.json")
    version = Cleanup.model_validate(event["cleanup"])
    numbers = range(version.bucket_total)
    AudienceRepository().write_buckets("demo-shop", version.version, ((number, b"") for number in numbers))
    boto3.client("s3").put_object(Bucket=DATA_BUCKET, Key=version.members_key, Body=b"u1\n")
    keys = {audience_bucket_pk("demo-shop", version.version, number) for number in numbers}
    assert version.bucket_total > 2 * BATCH_WRITE_SIZE
    left = DeletesLeftUnprocessed(monkeypatch)
    capsys.readouterr()

    with pytest.raises(VersionNotRemoved):
        importer.lambda_handler(event, context())

    assert left.asked == keys  # every chunk was tried, past the first that failed
    assert sum(1 for key in keys for _ in AudienceBucketRecord.query(key)) == len(keys)
    assert S3Objects(boto3.client("s3"), DATA_BUCKET).get(version.members_key) == b""  # removed all the same
    assert emitted_metrics(capsys.readouterr().out) == {"AudienceVersionRemovalFailed": [1.0]}
    # Lambda's retries failed too, and the destination gets the invocation: it fails as well, for its retries.
    failed = {**told.event, "requestPayload": event}
    with pytest.raises(VersionNotRemoved):
        told.handler.lambda_handler(failed, context())
    assert emitted_metrics(capsys.readouterr().out) == {"AudienceVersionRemovalFailed": [1.0]}

    left.broken = False
    assert told.handler.lambda_handler(failed, context()) == {"removed": version.version}
    assert sum(1 for key in keys for _ in AudienceBucketRecord.query(key)) == 0
    assert told.heard() == []


def test_a_removal_naming_another_apps_member_list_is_refused_and_removes_nothing(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version's member list is at its own key under its app: a payload naming another one is not trusted."""
    destination(store, monkeypatch)
    monkeypatch.setenv("STEWARD_AUDIENCE_DATA_BUCKET", DATA_BUCKET)
    importer = load_function("audience_import", store, monkeypatch)
    others = "members/other-shop/5d1f0c3a9b7e2a44.txt"
    boto3.client("s3").put_object(Bucket=DATA_BUCKET, Key=others, Body=b"u1\n")
    event = load_event("lambda-async-audience-cleanup.json")
    event["cleanup"]["members_key"] = others

    with pytest.raises(ValidationError, match="members_key"):
        importer.lambda_handler(event, context())

    assert S3Objects(boto3.client("s3"), DATA_BUCKET).get(others) == b"u1\n"


def test_a_version_whose_removal_failed_in_every_run_and_in_the_recorder_is_removed_by_a_later_import(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lost file flipped the audience; removing the version it replaced failed in its run, Lambda's two retries,
    the OnFailure destination and that one's two retries: nothing of the file runs again. A later import removes
    that version (its note is on the record), after it has moved the pointer."""
    told = destination(store, monkeypatch)
    importer, first = lost_after_an_older_import(told)
    s3, key = boto3.client("s3"), event_key(told.created.raw_key)
    left = DeletesLeftUnprocessed(monkeypatch)
    for _ in range(3):  # the run, then Lambda's retries under the same request id
        with pytest.raises(VersionNotRemoved):
            importer.handle(told.created, Invocation("request-1", lambda: 900.0))
    for _ in range(3):  # the destination, then its own retries
        with pytest.raises(VersionNotRemoved):
            told.handler.lambda_handler(told.event, context())
    left.broken = False
    repository = AudienceRepository()
    lost = repository.get("demo-shop", "spring sale été", consistent=True)
    assert lost is not None
    assert lost.unremoved == {padded_sequencer(told.created.sequencer): first}
    assert replaced_buckets(first) == 1

    for number, sequencer in enumerate(("0055AED6DCD90281E6", "0055AED6DCD90281E7"), start=1):
        put = s3.put_object(Bucket=IMPORTS_BUCKET, Key=key, Body=f"u{number}\n".encode())
        later = replace(told.created, size=3, sequencer=sequencer, etag=put["ETag"].strip('"'))
        assert importer.handle(later, Invocation(f"request-{number + 1}", lambda: 900.0)).outcome == "imported"
        assert replaced_buckets(first) == 0
        assert S3Objects(s3, DATA_BUCKET).get(first.members_key) == b""
        current = repository.get("demo-shop", "spring sale été", consistent=True)
        assert current is not None
        assert current.layout is not None
        assert current.unremoved == {}
        assert repository.pointer("demo-shop", "spring sale été", consistent=True) == current.layout
        assert S3Objects(s3, DATA_BUCKET).get(current.layout.members_key) == f"u{number}\n".encode()
    # Only the last file's member list is left.
    listed = s3.list_objects_v2(Bucket=DATA_BUCKET, Prefix="members/").get("Contents", [])
    assert [item["Key"] for item in listed] == [current.layout.members_key]
