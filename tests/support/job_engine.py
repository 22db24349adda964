"""The jobs engine in-process for its own tests: a fake job type, moto's S3 and EventBridge, steps driven by hand.

The fake type deletes named "tags" from an in-memory world: ``select``
reports a page of names (a tag that carries a device brings a consequence
row), ``apply`` removes them (idempotent: a tag already gone is reported
deleted again, and never removed twice), ``recheck`` marks a tag that
disappeared since the dry run as drifted. It counts every call, so a test
sees what the engine asked of it. ``Engine.run`` calls the worker's steps
in the state machine's order (plan, work per item until done, advance,
finalize).
"""

import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import boto3
import pytest

from steward.apps.models import BootstrappedApp, Principal, Scope
from steward.audit.models import AuditEntry
from steward.composition import Services
from steward.jobs.engine import (
    Entity,
    JobContext,
    JobRefused,
    JsonObject,
    Outcome,
    Page,
    PageCost,
    Plan,
    ReportRow,
    SinglePhase,
    WorkItem,
    name_items,
)
from steward.jobs.models import ConfirmJob, Job, JobCounts, JobType, SubmitJob
from steward.jobs.params import DeleteTagsParams
from steward.jobs.reports import job_prefix
from steward.jobs.runner import JobRunner, WorkerLimits, error_from_state_machine
from steward.jobs.service import JobService
from steward.settings import StoreSettings
from tests.support.service import JOBS_BUS, SHARD_COUNT

APP = "acme"
OTHER_APP = "globex"
PASSWORD = "correct horse battery staple"
BUCKET = "steward-test-reports"
BUS = JOBS_BUS
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:steward-test-jobs"
MEMORY_MB = 512
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ITEM_NAMES = 4  # names per work item
PAGE_NAMES = 2  # names per page
REPORT_HEADER = "entity,id,user_id,action,detail"

TAGS = [f"tag-{n:02d}" for n in range(10)]  # items: 00-03, 04-07, 08-09; two pages, two, one
MISSING = "tag-07"  # listed, but does not exist: not_found
DEVICES = {"tag-01": "dev-1", "tag-05": "dev-5"}  # deleting these untags a device (a consequence row)
EXISTING_TAGS = sorted(set(TAGS) - {MISSING})
PLENTY_MS = 900_000
# The report of TAGS, in job order (item, page, row); a consequence row keeps no mark in it.
REPORT_ROWS = [
    ["tag", "tag-00", "", "deleted", "item 0"],
    ["tag", "tag-01", "", "deleted", "item 0"],
    ["device", "dev-1", "user-dev-1", "untagged", "tag-01"],
    ["tag", "tag-02", "", "deleted", "item 0"],
    ["tag", "tag-03", "", "deleted", "item 0"],
    ["tag", "tag-04", "", "deleted", "item 1"],
    ["tag", "tag-05", "", "deleted", "item 1"],
    ["device", "dev-5", "user-dev-5", "untagged", "tag-05"],
    ["tag", "tag-06", "", "deleted", "item 1"],
    ["tag", "tag-07", "", "not_found", ""],
    ["tag", "tag-08", "", "deleted", "item 2"],
    ["tag", "tag-09", "", "deleted", "item 2"],
]
# 10 names read; 9 exist; 9 deletions and 2 untagged devices; the missing one skipped.
COUNTS = JobCounts(scanned=10, matched=9, changed=11, skipped=1, failed=0)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class WorkerDied(Exception):
    """A worker killed mid-step (a Lambda timeout or crash): the state machine retries the step."""


@dataclass
class World:
    """What the fake type reads and changes."""

    tags: set[str] = field(default_factory=lambda: set(TAGS) - {MISSING})
    devices: dict[str, str] = field(default_factory=lambda: dict(DEVICES))
    refused: set[str] = field(default_factory=set)  # deleting these fails
    deleted: list[str] = field(default_factory=list)  # every removal, in order: a repeat would show twice
    untagged: list[str] = field(default_factory=list)


@dataclass
class FakeKind(SinglePhase):
    world: World = field(default_factory=World)
    refusal: str | None = None  # plan raises JobRefused with this code
    finish_refusal: str | None = None  # finish raises JobRefused with this code
    crash_on_apply: int | None = None  # the apply call (1-based) that dies halfway through its rows
    plans: int = 0
    selects: int = 0
    rechecks: int = 0
    apply_calls: int = 0
    applied: Counter[str] = field(default_factory=Counter)  # rows handed to apply, per entity id
    applied_in: set[int] = field(default_factory=set)  # the phases apply was called in
    finished: list[dict[str, int]] = field(default_factory=list)

    def plan(self, ctx: JobContext) -> Plan:
        self.plans += 1
        if self.refusal is not None:
            raise JobRefused("The fake type refuses this job.", code=self.refusal)
        names = sorted(ctx.params.tags) if isinstance(ctx.params, DeleteTagsParams) else []
        return Plan(items=name_items(names, ITEM_NAMES), state={"names": len(names)})

    def select(self, ctx: JobContext, item: WorkItem, position: JsonObject | None) -> Page:
        self.selects += 1
        start = 0 if position is None else int(position["offset"])
        names = item.names[start : start + PAGE_NAMES]
        end = start + len(names)
        following = None if end >= len(item.names) else {"offset": end}
        if ctx.phase + 1 < self.phases:  # an earlier phase only counts (as a split counts its users)
            return Page(rows=[], scanned=len(names), next=following, tally={"counted": len(names)})
        rows: list[ReportRow] = []
        for name in names:
            if name not in self.world.tags:
                rows.append(ReportRow(Entity.TAG, name, Outcome.NOT_FOUND))
                continue
            rows.append(ReportRow(Entity.TAG, name, "deleted", detail=f"item {item.index}"))
            device = self.world.devices.get(name)
            if device is not None:
                rows.append(ReportRow(Entity.DEVICE, device, "untagged", f"user-{device}", name, consequence=True))
        changes = sum(1 for row in rows if row.is_change)
        return Page(
            rows=rows,
            scanned=len(names),
            next=following,
            tally={"deleted": sum(1 for row in rows if row.entity is Entity.TAG and row.is_change)},
            cost=PageCost(read_units=Decimal("0.5") * len(names), write_units=changes),
        )

    def recheck(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        self.rechecks += 1
        return [
            row.with_outcome(Outcome.DRIFTED, "gone since the dry run")
            if row.entity is Entity.TAG and row.id not in self.world.tags
            else row
            for row in rows
        ]

    def apply(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        self.apply_calls += 1
        self.applied_in.add(ctx.phase)
        outcomes: list[ReportRow] = []
        for number, row in enumerate(rows):
            if self.apply_calls == self.crash_on_apply and number == len(rows) // 2:
                raise WorkerDied(f"apply call {self.apply_calls} died after {number} rows")
            self.applied[row.id] += 1
            outcomes.append(self._apply_row(row))
        return outcomes

    def finish(self, ctx: JobContext, tally: Mapping[str, int]) -> None:
        self.finished.append(dict(tally))
        if self.finish_refusal is not None:
            raise JobRefused("The fake type cannot finish.", code=self.finish_refusal)

    def _apply_row(self, row: ReportRow) -> ReportRow:
        if row.id in self.world.refused:
            return row.with_outcome(Outcome.FAILED, "refused by the store")
        if row.entity is Entity.TAG and row.id in self.world.tags:
            self.world.tags.remove(row.id)
            self.world.deleted.append(row.id)
        elif row.entity is Entity.DEVICE and row.id not in self.world.untagged:
            self.world.untagged.append(row.id)
        return row  # applied, or applied already by an earlier attempt: the same outcome


@dataclass
class TwoPhaseKind(FakeKind):
    """Counts the names in a first phase, then deletes them in a second, planned from the first's tallies."""

    phases: ClassVar[int] = 2
    advanced: list[dict[int, dict[str, int]]] = field(default_factory=list)

    def advance(self, ctx: JobContext, tallies: Mapping[int, Mapping[str, int]]) -> Plan:
        self.advanced.append({index: dict(tally) for index, tally in tallies.items()})
        plan = self.plan(ctx)
        counted = sum(tally.get("counted", 0) for tally in tallies.values())
        return Plan(items=plan.items, state={**ctx.state, "counted": counted})


@dataclass
class Engine:
    """The jobs API service and worker of one app, on moto, with the fake type behind every job type."""

    services: Services
    runner: JobRunner
    service: JobService
    kind: FakeKind
    clock: Clock
    app: BootstrappedApp
    queue_url: str
    started: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    executions: dict[str, str] = field(default_factory=dict)

    @property
    def admin(self) -> Principal:
        return principal(self.app)

    def submit(
        self,
        tags: Sequence[str] = TAGS,
        *,
        dry_run: bool = True,
        password: str | None = PASSWORD,
        job_type: JobType = JobType.DELETE_TAGS,
        as_principal: Principal | None = None,
    ) -> Job:
        return self.service.submit(as_principal or self.admin, submission(tags, dry_run, password, job_type))

    def confirm(self, dry_job_id: str, password: str | None = PASSWORD, as_principal: Principal | None = None) -> Job:
        return self.service.confirm(as_principal or self.admin, dry_job_id, ConfirmJob(admin_password=password))

    def work(self, job_id: str, index: int, time_left_ms: int = PLENTY_MS) -> bool:
        """One invocation of the work step; whether the item is done."""
        done = self.runner.work(APP, job_id, index, WorkerLimits(MEMORY_MB, lambda: time_left_ms))["done"]
        assert isinstance(done, bool)
        return done

    def work_all(self, job_id: str, items: Sequence[int]) -> None:
        """The Map state: each item's work step until it is done."""
        for index in items:
            while not self.work(job_id, index):
                pass

    def finish(self, job_id: str, step: JsonObject) -> JsonObject:
        """From a plan or advance step's answer: the remaining phases, then finalize."""
        while not step["stop"]:
            self.work_all(job_id, step["items"])
            step = self.runner.advance(APP, job_id)
        return self.runner.finalize(APP, job_id, error_from_state_machine(step["error"]), MEMORY_MB)

    def run(self, job_id: str) -> Job:
        """The whole state machine, every step succeeding; the job as the API then shows it."""
        self.finish(job_id, self.runner.plan(APP, job_id))
        return self.service.get(APP, job_id)

    def report(self, job: Job) -> bytes:
        stored = self.services.job_repository.get(APP, job.job_id)
        assert stored is not None
        assert stored.report_key is not None
        body: bytes = boto3.client("s3").get_object(Bucket=BUCKET, Key=stored.report_key)["Body"].read()
        return body

    def audit_entry(self, job_id: str) -> AuditEntry | None:
        return self.services.audit_repository.entry_of_job(APP, job_id)

    def audit_entries(self) -> list[AuditEntry]:
        return self.services.audit_log.list_page(APP, None, 100).items

    def events(self) -> list[dict[str, Any]]:
        """The `detail` of every event the bus delivered since the last call."""
        sqs = boto3.client("sqs")
        details: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return details
            for message in messages:
                event = json.loads(message["Body"])
                assert event["source"] == "steward"
                assert event["detail-type"] == "Job Finished"
                details.append(event["detail"])
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def stored_keys(self, job_id: str) -> list[str]:
        listing = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=job_prefix(APP, job_id))
        return [str(item["Key"]) for item in listing.get("Contents", [])]

    def lock_holder(self) -> str | None:
        return self.services.job_repository.lock_holder(APP)


def submission(
    tags: Sequence[str] = TAGS,
    dry_run: bool = True,
    password: str | None = PASSWORD,
    job_type: JobType = JobType.DELETE_TAGS,
) -> SubmitJob:
    """A POST /v1/jobs body for the fake type (DELETE_TAGS lists names; other types take no params here)."""
    params: dict[str, Any] = {"tags": list(tags)} if job_type is JobType.DELETE_TAGS else {}
    return SubmitJob(type=job_type, params=params, dry_run=dry_run, admin_password=None if dry_run else password)


def principal(app: BootstrappedApp, scopes: frozenset[Scope] = frozenset(Scope)) -> Principal:
    return Principal(app_id=app.app.app_id, key_id=app.api_key.key_id, scopes=scopes)


def start_engine(store: StoreSettings, monkeypatch: pytest.MonkeyPatch, kind: FakeKind | None = None) -> Engine:
    """The reports bucket, the jobs bus (read through a queue), the fake type, and an app with an admin password."""
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    queue_url = listen_to_jobs_bus()
    kind = kind or FakeKind()
    monkeypatch.setattr("steward.jobs.runner.kind_for", lambda job_type: kind)
    clock = Clock()
    services = Services(SHARD_COUNT, clock=clock, reports_bucket=BUCKET, job_state_machine=MACHINE, job_event_bus=BUS)
    started: list[tuple[str, dict[str, Any]]] = []
    executions: dict[str, str] = {}  # by job id: an execution's status when a test ends it; RUNNING otherwise

    def start_execution(name: str, payload: dict[str, Any]) -> str:
        started.append((name, payload))
        return f"{MACHINE.replace(':stateMachine:', ':execution:')}:{name}"

    service = JobService(
        services.job_repository,
        services.report_store,
        services.reauthentication,
        services.job_references,
        start_execution,
        clock,
        lambda job_id: executions.get(job_id, "RUNNING"),
    )
    app = services.apps.bootstrap(APP, "Acme", admin_password=PASSWORD)
    return Engine(services, services.job_runner, service, kind, clock, app, queue_url, started, executions)


def listen_to_jobs_bus() -> str:
    """A rule that copies the jobs bus's events (the store fixture creates the bus) to a queue the tests read."""
    events, sqs = boto3.client("events"), boto3.client("sqs")
    queue_url = str(sqs.create_queue(QueueName="job-events")["QueueUrl"])
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all-jobs", EventBusName=BUS, EventPattern=json.dumps({"source": ["steward"]}))
    events.put_targets(Rule="all-jobs", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return queue_url


def csv_rows(report: bytes) -> list[list[str]]:
    """A report's data rows (its header checked)."""
    lines = list(csv.reader(io.StringIO(report.decode("utf-8"))))
    assert ",".join(lines[0]) == REPORT_HEADER
    return lines[1:]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
