"""How the integration tests call Steward: the local stack, its paths, its error shape, and the calls many tests make.

Everything goes over real HTTP: requests to the local API gateway, boto3 to
the emulator. ``A`` and ``B`` are the two demo apps (``stack.key(A)`` and
``stack.key(B)``); every helper acts as app A unless told otherwise.
"""

import base64
import csv
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit
from uuid import uuid4

import boto3
import requests

from steward.audit.chain import entry_hash, entry_id_of
from steward.audit.models import AT_FORMAT, AuditEntry
from steward.audit.repository import entry_record
from steward.sharding import partition_for
from steward.tables import AUDIT_HEAD_SK, AuditHeadRecord, ProfileRecord, audit_head_pk

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 90
A, B = 0, 1  # indexes of the demo apps in the stack's state file
MAX_PAGES = 1000
PREVIEW = "/v1/criteria/preview"
TEMPLATE_SHARD_COUNT = 16  # the template's default ShardCount, which the local stack uses
BATCH_WRITE = 25
NOW = datetime.now(UTC)
SFN_TIME_SCALE = 0.01


# --- The running stack --------------------------------------------------------


@dataclass
class RunningStack:
    state: dict[str, Any]
    state_file: Path

    @property
    def api_url(self) -> str:
        return str(self.state["api_url"])

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.state["aws_endpoint_url"],
            region_name=self.state["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def key(self, app_index: int) -> str:
        return str(self.state["apps"][app_index]["api_key"])

    def api(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return requests.request(method, self.api_url + path, headers=headers, timeout=30, **kwargs)


def fire(stack: RunningStack, schedule: str) -> dict[str, Any]:
    """`make fire SCHEDULE=<schedule>` against this stack: what EventBridge Scheduler would do now."""
    completed = subprocess.run(
        [sys.executable, "-m", "steward_local", "fire", schedule, "--state-file", str(stack.state_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_local_stack(tmp: Path, *arguments: str) -> Iterator[RunningStack]:
    """Run `python -m steward_local run` (what `make run` runs) in a child process, on free ports."""
    state_file = tmp / "stack.json"
    log = (tmp / "runner.log").open("w")
    # Free ports, so tests never collide with a developer's running `make run`.
    environment = {
        **os.environ,
        "STEWARD_API_PORT": str(_free_port()),
        "STEWARD_AWS_PORT": str(_free_port()),
        # Step Functions' retry intervals and Wait states at a hundredth of their time: no test waits on real backoff.
        "STEWARD_LOCAL_SFN_TIME_SCALE": str(SFN_TIME_SCALE),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "steward_local", "run", "--state-file", str(state_file), *arguments],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not state_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"The local stack did not start:\n{(tmp / 'runner.log').read_text()}")
            time.sleep(0.2)
        yield RunningStack(json.loads(state_file.read_text()), state_file)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


# --- Ids and paths ------------------------------------------------------------


def fresh_id(prefix: str) -> str:
    """A fresh id: the stack is shared by the whole session, so no test meets another's data."""
    return f"{prefix}{uuid4().hex}"


def fresh_tag() -> str:
    return fresh_id("t-")


def fresh_code() -> str:
    return fresh_id("C-")


def tilde_encoded(device_id: str) -> str:
    """The '~' + base64url form, for ids that a URL-encoded path cannot carry."""
    return "~" + base64.urlsafe_b64encode(device_id.encode()).decode().rstrip("=")


def device_path(device_id: str, suffix: str = "") -> str:
    """Clients URL-encode device ids: FCM tokens hold ':' and WebPush ids are URLs."""
    return f"/v1/devices/{quote(device_id, safe='')}{suffix}"


def user_path(user_id: str, suffix: str = "") -> str:
    return f"/v1/users/{quote(user_id, safe='')}{suffix}"


def tag_path(device_id: str, tag: str) -> str:
    return device_path(device_id, f"/tags/{quote(tag, safe='')}")


def tag_devices_path(tag: str) -> str:
    return f"/v1/tags/{quote(tag, safe='')}/devices"


def code_path(user_id: str, code: str) -> str:
    return user_path(user_id, f"/promo-codes/{code}")


# --- Responses ----------------------------------------------------------------

_UNCHECKED = object()


def assert_error(response: requests.Response, status: int, code: str, field: object = _UNCHECKED) -> dict[str, Any]:
    """The response is Steward's error shape with this status and code (and field, when given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "field"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str), error
    assert error["message"].strip(), error
    if field is not _UNCHECKED:
        assert error["field"] == field, error
    return error


def ok(response: requests.Response, status: int = 200) -> dict[str, Any]:
    """The JSON body of a response that must have this status."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


# --- Lists --------------------------------------------------------------------


def pages(
    stack: RunningStack,
    path: str,
    *,
    app: int = A,
    limit: int = 200,
    cursor: str | None = None,
    key: str | None = None,
    **query: str,
) -> Iterator[list[dict[str, Any]]]:
    """The items of each page of a list route, following next_cursor from ``cursor``; every page respects the limit.

    As app ``app``'s demo key, or as ``key``.
    """
    params: dict[str, Any] = {**query, "limit": limit}
    for _ in range(MAX_PAGES):
        if cursor is not None:
            params["cursor"] = cursor
        page = ok(stack.api("GET", path, key=stack.key(app) if key is None else key, params=params))
        assert len(page["items"]) <= limit
        yield page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return
    raise AssertionError(f"{path} never reached its last page")


def all_items(stack: RunningStack, path: str, **options: Any) -> list[dict[str, Any]]:
    """Every item of a list route; ``options`` as for pages()."""
    return [item for items in pages(stack, path, **options) for item in items]


def every_cursor(stack: RunningStack, path: str, *, app: int = A, **query: str) -> list[str]:
    """The cursors the route hands out one item at a time (the first MAX_PAGES): one per position of the listing."""
    cursors: list[str] = []
    params: dict[str, Any] = {**query, "limit": 1}
    for _ in range(MAX_PAGES):
        cursor = ok(stack.api("GET", path, key=stack.key(app), params=params))["next_cursor"]
        if cursor is None:
            break
        cursors.append(cursor)
        params["cursor"] = cursor
    return cursors


def first_cursor(stack: RunningStack, path: str, *, app: int = A) -> str:
    """The cursor after the first item, for a listing that holds at least two."""
    cursor = ok(stack.api("GET", path, key=stack.key(app), params={"limit": 1}))["next_cursor"]
    assert cursor is not None
    return str(cursor)


# --- Devices, keys ------------------------------------------------------------


def identify(
    stack: RunningStack, device_id: str, user_id: str = "alice", *, transport: str = "FCM", app: int = A
) -> dict[str, Any]:
    body = {"user_id": user_id, "transport": transport}
    return ok(stack.api("PUT", device_path(device_id), key=stack.key(app), json=body))


def read_device(stack: RunningStack, device_id: str, *, app: int = A, key: str | None = None) -> dict[str, Any]:
    return ok(stack.api("GET", device_path(device_id), key=stack.key(app) if key is None else key))


def create_key(stack: RunningStack, scopes: list[str], *, name: str = "test", app: int = A) -> dict[str, Any]:
    """A new API key of the app: its key_id and, this once, its secret api_key."""
    body = {"name": name, "scopes": scopes}
    return ok(stack.api("POST", "/v1/api-keys", key=stack.key(app), json=body), 201)


# --- Users, loyalty, segments, tags, regions ------------------------------------


def new_user(stack: RunningStack, fields: dict[str, Any] | None = None) -> str:
    user_id = fresh_id("user-")
    ok(stack.api("PUT", user_path(user_id), stack.key(A), json={"fields": fields or {}}))
    return user_id


def new_resource(stack: RunningStack, channels: list[str]) -> str:
    body = {"name": "News", "channels": channels}
    return str(ok(stack.api("POST", "/v1/resources", stack.key(A), json=body), 201)["resource_id"])


def subscription_job(resource_id: str, channel: str, status: str = "Subscribed") -> dict[str, Any]:
    """bulk_update params: set the status of every user's subscription to ``resource_id`` on ``channel``."""
    return {
        "action": "update_subscription",
        "selection": {"source": "all"},
        "resource_id": resource_id,
        "channel": channel,
        "status": status,
    }


def new_program(stack: RunningStack, *, app: int = A) -> str:
    created = ok(stack.api("POST", "/v1/loyalty-programs", stack.key(app), json={"name": "Gold"}), 201)
    return str(created["program_id"])


def add_codes(stack: RunningStack, program_id: str, codes: list[Any], *, app: int = A) -> dict[str, Any]:
    path = f"/v1/loyalty-programs/{program_id}/codes"
    return ok(stack.api("POST", path, stack.key(app), json={"codes": codes}))


def new_segment(stack: RunningStack, kind: str = "static", criteria: Any = None, *, app: int = A) -> dict[str, Any]:
    body: dict[str, Any] = {"name": fresh_id("segment-"), "kind": kind}
    if criteria is not None:
        body["criteria"] = criteria
    return ok(stack.api("POST", "/v1/segments", stack.key(app), json=body), 201)


def change_members(stack: RunningStack, segment_id: str, *, app: int = A, **body: list[Any]) -> dict[str, Any]:
    return ok(stack.api("POST", f"/v1/segments/{segment_id}/members", stack.key(app), json=body))


def bulk_tag(stack: RunningStack, tag: str, add: list[Any], remove: list[Any], *, app: int = A) -> dict[str, Any]:
    """POST /v1/tags/{tag}/devices: the outcome of tagging ``add`` and untagging ``remove``."""
    return ok(stack.api("POST", tag_devices_path(tag), stack.key(app), json={"add": add, "remove": remove}))


def listed_count(stack: RunningStack, tag: str, *, app: int = A) -> int | None:
    """The tag's device_count as GET /v1/tags lists it; None when it is not listed."""
    counts = {item["tag"]: item["device_count"] for item in all_items(stack, "/v1/tags", app=app)}
    return counts.get(tag)


def tagged_ids(stack: RunningStack, tag: str, *, app: int = A) -> list[str]:
    return sorted(device["device_id"] for device in all_items(stack, tag_devices_path(tag), app=app))


def create_region(stack: RunningStack, body: dict[str, Any], *, app: int = A) -> dict[str, Any]:
    return ok(stack.api("POST", "/v1/regions", key=stack.key(app), json=body), 201)


def read_region(stack: RunningStack, region_id: str, *, app: int = A) -> dict[str, Any]:
    return ok(stack.api("GET", f"/v1/regions/{region_id}", key=stack.key(app)))


# --- Criteria previews ----------------------------------------------------------


def profile_item(app_id: str, user_id: str, **attributes: Any) -> dict[str, Any]:
    """One user as ProfilesTable stores it (pynamodb's own serialization of ProfileRecord)."""
    record = ProfileRecord(
        pk=partition_for(app_id, user_id, TEMPLATE_SHARD_COUNT),
        sk=user_id,
        created_at=attributes.pop("created_at", NOW - timedelta(days=100)),
        updated_at=NOW,
        **attributes,
    )
    item: dict[str, Any] = record.serialize()
    return item


def contacts(*entries: tuple[str, bool]) -> dict[str, Any]:
    return {address: {"active": active, "added_at": NOW.isoformat()} for address, active in entries}


def seed_users(stack: RunningStack, users: dict[str, dict[str, Any]], *, app: int = A) -> None:
    """Write users straight into ProfilesTable, 25 a BatchWriteItem, retrying what the emulator leaves unprocessed."""
    client = stack.client("dynamodb")
    table = stack.state["tables"]["ProfilesTable"]
    app_id = str(stack.state["apps"][app]["id"])
    requests_left = [{"PutRequest": {"Item": profile_item(app_id, uid, **a)}} for uid, a in users.items()]
    while requests_left:
        chunk, requests_left = requests_left[:BATCH_WRITE], requests_left[BATCH_WRITE:]
        for _ in range(10):
            unprocessed = client.batch_write_item(RequestItems={table: chunk}).get("UnprocessedItems", {})
            chunk = unprocessed.get(table, [])
            if not chunk:
                break
            time.sleep(0.05)
        assert not chunk, "the emulator kept items unprocessed"


def batch_rule(tag: str) -> dict[str, Any]:
    """Criteria that select the users a test marked with this ``batch`` field."""
    return {"field": "fields.batch", "op": "eq", "value": tag}


def preview(stack: RunningStack, body: dict[str, Any], key: str | None = None) -> requests.Response:
    return stack.api("POST", PREVIEW, key=key if key is not None else stack.key(A), json=body)


def preview_ok(stack: RunningStack, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    page = ok(preview(stack, body, key))
    assert set(page) == {"matched", "deliverable", "scanned", "complete", "next_cursor", "sample"}
    return page


def preview_pages(stack: RunningStack, body: dict[str, Any], key: str | None = None) -> list[dict[str, Any]]:
    """Every page of a preview, following its cursor until it is complete."""
    found = [preview_ok(stack, body, key)]
    while found[-1]["next_cursor"] is not None:
        assert len(found) < 50, "the preview never completed"
        found.append(preview_ok(stack, {**body, "cursor": found[-1]["next_cursor"]}, key))
    assert found[-1]["complete"] is True
    return found


# --- Audit log ------------------------------------------------------------------


def seed_audit_log(stack: RunningStack, app_id: str, count: int) -> list[dict[str, Any]]:
    """Append ``count`` chained entries to an app's log straight in CatalogTable, as the jobs engine's appends would.

    No route writes the log, so the tests write the items themselves, with the
    layer's own hashing and layout, continuing from the log's head.
    """
    client = stack.client("dynamodb")
    table = stack.state["tables"]["CatalogTable"]
    head_key = {"pk": {"S": audit_head_pk(app_id)}, "sk": {"S": AUDIT_HEAD_SK}}
    head = client.get_item(TableName=table, Key=head_key, ConsistentRead=True).get("Item")
    sequence = int(head["sequence"]["N"]) if head else 0
    previous = head["hash"]["S"] if head else None
    created_at = head["created_at"]["S"] if head else None
    entries: list[dict[str, Any]] = []
    for _ in range(count):
        sequence += 1
        fields: dict[str, Any] = {
            "entry_id": entry_id_of(sequence),
            "at": datetime.now(UTC).strftime(AT_FORMAT),
            "key_id": "0123456789abcdef",
            "job_id": fresh_id("job_"),
            "type": "delete_inactive_devices",
            "params": {"dry_run": sequence % 2 == 0, "inactive_days": 90},
            "reauth": "none" if sequence % 2 == 0 else "password",
            "status": "succeeded",
            "counts": {"selected": sequence, "deleted": 0 if sequence % 2 == 0 else sequence},
            "report_sha256": "0" * 64,
            "prev_hash": previous,
        }
        fields["hash"] = previous = entry_hash(fields)
        record = entry_record(app_id, AuditEntry.model_validate(fields))
        client.put_item(TableName=table, Item=record.serialize())
        entries.append(fields)
    now = datetime.now(UTC)
    head_record = AuditHeadRecord(
        pk=audit_head_pk(app_id),
        sk=AUDIT_HEAD_SK,
        sequence=sequence,
        entry_hash=previous,
        created_at=now,
        updated_at=now,
    )
    item = head_record.serialize()
    if created_at is not None:
        item["created_at"] = {"S": created_at}
    client.put_item(TableName=table, Item=item)
    return entries


# --- The operator CLI -----------------------------------------------------------


def operator(stack: RunningStack, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m steward_admin`` against the stack's emulator, as an operator runs it."""
    environment = {
        **os.environ,
        "AWS_ENDPOINT_URL": stack.state["aws_endpoint_url"],
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    return subprocess.run(
        [sys.executable, "-m", "steward_admin", "--stack-name", stack.state["stack_name"],
         "--region", stack.state["region"], *arguments],
        cwd=ROOT, env=environment, capture_output=True, text=True, check=check,
    )  # fmt: skip


def bootstrap_app(stack: RunningStack, prefix: str, name: str) -> dict[str, Any]:
    """A fresh app of its own (``<prefix>-<hex>``) and its first key with every scope, made by the operator CLI."""
    completed = operator(stack, "create-app", "--app-id", f"{prefix}-{uuid4().hex[:8]}", "--name", name)
    created: dict[str, Any] = json.loads(completed.stdout)
    return created


# --- Maintenance jobs ---------------------------------------------------------

JOBS = "/v1/jobs"
JOB_SECONDS = 120  # a job of the tests' size finishes in a few seconds; this is the give-up point


@dataclass(frozen=True)
class JobApp:
    """An app of its own for a job test (jobs change app-wide data), with its admin credentials."""

    app_id: str
    key: str
    key_id: str
    password: str
    totp_secret: str | None


def job_app(stack: RunningStack, prefix: str, *, totp: bool = False) -> JobApp:
    arguments = ["create-app", "--app-id", f"{prefix}-{uuid4().hex[:8]}", "--name", prefix]
    created: dict[str, Any] = json.loads(operator(stack, *arguments, *(["--totp"] if totp else [])).stdout)
    return JobApp(
        app_id=created["app"]["app_id"],
        key=created["api_key"]["api_key"],
        key_id=created["api_key"]["key_id"],
        password=created["admin_password"],
        totp_secret=created.get("totp_secret"),
    )


def submit_job(stack: RunningStack, key: str, job_type: str, params: dict[str, Any], **body: Any) -> requests.Response:
    """POST /v1/jobs; ``body`` adds dry_run, admin_password, totp_code."""
    return stack.api("POST", JOBS, key, json={"type": job_type, "params": params, **body})


def wait_for_job(stack: RunningStack, key: str, job_id: str) -> dict[str, Any]:
    """The job once it has finished (succeeded, failed or cancelled)."""
    deadline = time.monotonic() + JOB_SECONDS
    while True:
        job = ok(stack.api("GET", f"{JOBS}/{job_id}", key))
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {JOB_SECONDS} s"
        time.sleep(0.2)


def run_job(
    stack: RunningStack, app: JobApp, job_type: str, params: dict[str, Any], *, dry_run: bool
) -> dict[str, Any]:
    """Submit a job (a real one with the app's password) and wait for its end."""
    extra: dict[str, Any] = {"dry_run": dry_run}
    if not dry_run:
        extra["admin_password"] = app.password
    job = ok(submit_job(stack, app.key, job_type, params, **extra), 201)
    return wait_for_job(stack, app.key, job["job_id"])


def confirm_job(stack: RunningStack, app: JobApp, dry_job_id: str) -> dict[str, Any]:
    job = ok(stack.api("POST", f"{JOBS}/{dry_job_id}/confirm", app.key, json={"admin_password": app.password}), 201)
    assert job["confirms"] == dry_job_id
    return wait_for_job(stack, app.key, job["job_id"])


def report_rows(stack: RunningStack, key: str, job_id: str) -> list[dict[str, str]]:
    """The job's report, downloaded through its presigned link."""
    link = ok(stack.api("GET", f"{JOBS}/{job_id}/report", key))
    # Signature Version 4, valid 15 minutes: S3 refuses Version 2 links on buckets created since June 2020.
    assert parse_qs(urlsplit(link["url"]).query)["X-Amz-Expires"] == ["900"], link["url"]
    response = requests.get(link["url"], timeout=30)
    assert response.status_code == 200, response.text
    lines = response.content.decode("utf-8").splitlines()
    assert lines[0] == "entity,id,user_id,action,detail"
    return list(csv.DictReader(lines))


def listed_entities(rows: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    """What a report lists, in a comparable form: (entity, id, detail)."""
    return sorted((row["entity"], row["id"], row["detail"]) for row in rows)


def listen_to_job_events(stack: RunningStack) -> str:
    """An SQS queue that a rule on the jobs bus feeds with every event (source steward) it hears."""
    sqs, events = stack.client("sqs"), stack.client("events")
    queue_url = sqs.create_queue(QueueName=f"job-events-{time.monotonic_ns()}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = stack.state["event_buses"]["JobEventBus"]
    rule = f"job-events-{time.monotonic_ns()}"
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["steward"]}))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return str(queue_url)


def events_of_job(stack: RunningStack, queue_url: str, job_id: str) -> list[dict[str, Any]]:
    """The events of one job off ``listen_to_job_events``' queue, up to its `Job Finished` (published last)."""
    sqs = stack.client("sqs")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            event: dict[str, Any] = json.loads(message["Body"])
            if event["detail"]["job_id"] == job_id:
                found.append(event)
                if event["detail-type"] == "Job Finished":
                    return found
    raise AssertionError(f"no Job Finished event for {job_id}")


@contextmanager
def throttled(
    stack: RunningStack,
    operation: str,
    table: str,
    *,
    skip: int = 0,
    times: int = 1,
    function: str = "JobsFunction",
    contains: str | None = None,
) -> Iterator[list[int]]:
    """The ``function``'s next ``operation`` calls on ``table`` (holding the text ``contains``, if given) after
    ``skip`` are refused as throttled.

    See steward_local.faults.

    Yields a list that holds, after the block, how many calls were refused.
    """
    fired: list[int] = []
    fault: dict[str, Any] = {"function": function, "operation": operation, "table": table, "skip": skip, "times": times}
    if contains is not None:
        fault["contains"] = contains
    with _fault(stack, fault) as count:
        try:
            yield fired
        finally:
            fired.append(count())


@contextmanager
def held(
    stack: RunningStack, operation: str, table: str, seconds: float, *, function: str
) -> Iterator[Callable[[], int]]:
    """The ``function``'s next ``operation`` call on ``table`` is held ``seconds``, then made: a step still running
    when the test acts. See steward_local.faults. Yields how many calls were held so far."""
    fault = {"function": function, "operation": operation, "table": table, "times": 1, "delay_seconds": seconds}
    with _fault(stack, fault) as count:
        yield count


@contextmanager
def _fault(stack: RunningStack, fault: dict[str, Any]) -> Iterator[Callable[[], int]]:
    directory = stack.state_file.parent
    fired_file = directory / "faults.fired.json"
    fired_file.unlink(missing_ok=True)
    (directory / "faults.json").write_text(json.dumps(fault))

    def fired() -> int:
        return int(json.loads(fired_file.read_text())["fired"]) if fired_file.exists() else 0

    try:
        yield fired
    finally:
        (directory / "faults.json").unlink(missing_ok=True)
