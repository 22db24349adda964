"""How the audience tests drop files, read the audience, and hear the notifications, through the local stack."""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from uuid import uuid4

from tests.support.client import BATCH_WRITE, ROOT, RunningStack, bootstrap_app, profile_item

WAIT_SECONDS = 30


@dataclass(frozen=True)
class AudienceApp:
    app_id: str
    key: str


def audience_app(stack: RunningStack, prefix: str = "aud") -> AudienceApp:
    """An app of its own: audiences count per app, so no test meets another's."""
    created = bootstrap_app(stack, prefix, prefix)
    return AudienceApp(created["app"]["app_id"], created["api_key"]["api_key"])


def register_users(stack: RunningStack, app_id: str, user_ids: list[str]) -> None:
    client = stack.client("dynamodb")
    table = stack.state["tables"]["ProfilesTable"]
    requests_left = [{"PutRequest": {"Item": profile_item(app_id, user_id)}} for user_id in user_ids]
    while requests_left:
        chunk, requests_left = requests_left[:BATCH_WRITE], requests_left[BATCH_WRITE:]
        for _ in range(10):
            chunk = client.batch_write_item(RequestItems={table: chunk}).get("UnprocessedItems", {}).get(table, [])
            if not chunk:
                break
            time.sleep(0.05)
        assert not chunk


def imports_bucket(stack: RunningStack) -> str:
    return str(stack.state["buckets"]["ImportsBucket"])


def put_file(stack: RunningStack, key: str, body: bytes) -> None:
    """A real PutObject: the emulator's S3 notification runs the importer before this returns."""
    stack.client("s3").put_object(Bucket=imports_bucket(stack), Key=key, Body=body)


def audience_path(name: str, suffix: str = "") -> str:
    return f"/v1/audiences/{quote(name, safe='')}{suffix}"


def get_audience(stack: RunningStack, app: AudienceApp, name: str) -> dict[str, Any]:
    response = stack.api("GET", audience_path(name), app.key)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def members(stack: RunningStack, app: AudienceApp, name: str, limit: int = 1000) -> list[str]:
    found: list[str] = []
    cursor: str | None = None
    for _ in range(1000):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = stack.api("GET", audience_path(name, "/members"), app.key, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("the member pages never ended")


def invoke_importer(stack: RunningStack, event: dict[str, Any]) -> dict[str, Any]:
    """Invoke the importer directly (an event S3 delivers twice, or late)."""
    answer = stack.client("lambda").invoke(
        FunctionName=stack.state["functions"]["AudienceImportFunction"], Payload=json.dumps(event).encode()
    )
    assert "FunctionError" not in answer, answer["Payload"].read()
    result: dict[str, Any] = json.loads(answer["Payload"].read())
    return result


def s3_event(stack: RunningStack, key: str, size: int, sequencer: str) -> dict[str, Any]:
    """The sample event of events/, pointed at this stack's bucket and a key (URL-encoded as S3 sends it).

    It names the object now at the key by its ETag, as S3 would (the sample's when there is none).
    """
    event: dict[str, Any] = json.loads((ROOT / "events" / "s3-audience-object-created.json").read_text())
    record = event["Records"][0]
    bucket = imports_bucket(stack)
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"].update(
        {"key": quote(key, safe="/").replace("%20", "+"), "size": size, "sequencer": sequencer}
    )
    try:
        record["s3"]["object"]["eTag"] = stack.client("s3").head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    except stack.client("s3").exceptions.ClientError:
        pass
    return event


@dataclass
class Listener:
    """A queue subscribed to the failure topic and a rule of the audience bus: what the emulator delivered."""

    stack: RunningStack
    queue_url: str

    def messages(self, expected: int = 1) -> Iterator[dict[str, Any]]:
        sqs = self.stack.client("sqs")
        seen = 0
        deadline = time.monotonic() + WAIT_SECONDS
        while seen < expected and time.monotonic() < deadline:
            answer = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in answer.get("Messages", []):
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                seen += 1
                body: dict[str, Any] = json.loads(message["Body"])
                yield body


def listen_to_bus(stack: RunningStack) -> Listener:
    sqs = stack.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"audience-events-{uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = stack.client("events")
    bus = stack.state["event_buses"]["AudienceEventBus"]
    rule = f"all-{uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["steward"]}))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    return Listener(stack, queue_url)


def listen_to_topic(stack: RunningStack) -> Listener:
    sqs = stack.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"audience-failures-{uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = stack.state["topics"]["AudienceImportFailuresTopic"]
    stack.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return Listener(stack, queue_url)
