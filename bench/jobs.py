"""Maintenance jobs at scale: split_audience, deactivate_users and bulk updates over 100,000 users, dry and real.

Starts the local stack in this process (the real template created in moto,
the real ASL run by moto's Step Functions, the real handlers invoked
in-process), seeds one app's users with BatchWriteItem, then submits each
job through POST /v1/jobs and waits for its execution. For each run it
prints:

- DynamoDB read and write units per 1,000 users, priced from every call the
  jobs worker made (``bench.dynamodb.metering``: DynamoDB's billing rules on
  the sizes of the items each call touched), and the calls by operation;
- the execution's state transitions, counted in its history (each state
  entered, as Step Functions bills them);
- the worker's peak memory: tracemalloc's peak of what a worker invocation
  allocated (the emulator runs in the same process, so this includes the
  items moto stored meanwhile: an upper bound);
- next to a real run, the dry run's estimate.

The API function's own calls (submitting the job, answering GET) are not
metered: the units are the job's. moto's queries read and sort the whole
table; ``bench.emulator`` makes them read only the queried partition, as
DynamoDB does, so that 100,000 users take under two hours, not days.

    .venv/bin/python -m bench.jobs [--users 100000] [--jobs update_fields,add_subscription]

``--jobs`` picks the runs (default: split_audience and deactivate_users). The
bulk updates (bulk_update's update_fields and add_subscription) publish
their trigger events on the jobs bus as in production; EventBridge calls
are not DynamoDB's and are not counted in the units.
"""

import argparse
import json
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests
from pynamodb.models import Model

from bench.dynamodb import Usage, metering
from bench.local_stack import local_stack
from steward.composition import Services
from steward.devices import lifecycle as device_lifecycle
from steward.devices.models import Device, IdentifyDevice, Transport
from steward.devices.repository import DeviceRepository
from steward.tables import DeviceRecord, ProfileRecord, bind_tables
from steward.types import Channel
from steward.users.models import Contact, User
from steward.users.repository import UserRepository
from steward_local.stack import Stack
from steward_local.template import store_settings

APP_ID = "bench-jobs"
SEED_CHUNK = 1000
POLL_SECONDS = 0.5
# The users the jobs select: every user with an active email (split), the free plan's emails (deactivate).
SPLIT_PARAMS: dict[str, Any] = {"prefix": "wave", "num_segments": 10, "medium": "email"}
DEACTIVATE_PARAMS: dict[str, Any] = {
    "medium": "email",
    "criteria": {"field": "fields.plan", "op": "eq", "value": "free"},
}
# update_fields: the pro plan's users (two in five) get a field none holds yet.
UPDATE_FIELDS_PARAMS: dict[str, Any] = {
    "action": "update_fields",
    "selection": {"source": "all", "criteria": {"field": "fields.plan", "op": "eq", "value": "pro"}},
    "set": {"tier": "gold"},
}
# add_subscription: every user with an active email (nine in ten) subscribes to a resource; the rest are skipped.
ADD_SUBSCRIPTION_PARAMS: dict[str, Any] = {
    "action": "add_subscription",
    "selection": {"source": "all"},
    "channel": "email",
    "status": "Subscribed",
    "contact_source": "profile_fields",
}
DEFAULT_JOBS = ("split_audience", "deactivate_users")
PLANS = ("free", "pro", "pro", "basic", "basic")  # a fifth of the users are on the free plan
COUNTRIES = ("DE", "FR", "US", "BR", "JP", "IN", "GB")
NOW = datetime.now(UTC).replace(microsecond=0)
MB = 1024 * 1024
TRACED_WORK_INVOCATIONS = 3  # per run


# The population.


@dataclass(frozen=True)
class Population:
    users: int
    emails: int
    devices: int
    free_emails: int  # deactivate_users selects these
    free_email_only: int  # ...and deactivates these users: no device, no other contact

    @classmethod
    def of(cls, users: int) -> "Population":
        indexes = range(users)
        return cls(
            users=users,
            emails=sum(1 for i in indexes if _has_email(i)),
            devices=sum(1 for i in indexes if _has_device(i)),
            free_emails=sum(1 for i in indexes if _plan(i) == "free" and _has_email(i)),
            free_email_only=sum(1 for i in indexes if _plan(i) == "free" and _has_email(i) and not _has_device(i)),
        )


def _plan(index: int) -> str:
    return PLANS[index % len(PLANS)]


def _has_email(index: int) -> bool:
    return index % 10 != 9  # nine in ten


def _has_device(index: int) -> bool:
    return index % 2 == 0  # one in two


def _user(index: int) -> User:
    created = NOW - timedelta(days=30 + index % 700)
    return User(
        user_id=f"user-{index:07d}",
        fields={
            "plan": _plan(index),
            "age": 18 + index % 60,
            "country": COUNTRIES[index % len(COUNTRIES)],
            "signup": created.date().isoformat(),
            "orders": index % 23,
        },
        created_at=created,
        updated_at=created,
        last_activity_at=NOW - timedelta(days=index % 90),
        active=True,
        deactivated_at=None,
        deactivation_reason=None,
        global_unsubscribed=False,
        emails=[Contact(address=f"user{index}@example.com", active=True, added_at=created)]
        if _has_email(index)
        else [],
        phones=[],
        subscriptions=[],
        promo_codes=[],
    )


def _device(user: User) -> Device:
    # A real FCM token is about 150 characters.
    device_id = f"fcm:{user.user_id}-" + "x" * 140
    request = IdentifyDevice(
        user_id=user.user_id, transport=Transport.FCM, attributes={"app_version": "5.2.0", "os": "android"}
    )
    return device_lifecycle.identify(None, device_id, request, user.created_at)


def seed(services: Services, users: int) -> None:
    """The app's users and their devices, 25 items a BatchWriteItem, as the repositories store them."""
    user_repository: UserRepository = services.user_repository
    device_repository: DeviceRepository = services.device_repository
    for start in range(0, users, SEED_CHUNK):
        chunk = [_user(index) for index in range(start, min(users, start + SEED_CHUNK))]
        devices = [_device(user) for index, user in enumerate(chunk, start) if _has_device(index)]
        _batch_write(ProfileRecord, [user_repository.stored_item(APP_ID, user) for user in chunk])
        _batch_write(DeviceRecord, [device_repository.stored_item(APP_ID, device) for device in devices])


def _batch_write(model: type[Model], items: list[dict[str, Any]]) -> None:
    with model.batch_write() as batch:
        for item in items:
            batch.save(model.from_raw_data(item))


# Watching the jobs worker.


@dataclass
class WorkerWatch:
    """The jobs worker's invocations: how many, how long, and their peak memory, per step."""

    function_name: str
    invocations: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    peak_bytes: dict[str, int] = field(default_factory=dict)
    local: threading.local = field(default_factory=threading.local)
    # The runner runs one invocation of a function at a time; holding this too times each one alone.
    one_at_a_time: threading.Lock = field(default_factory=threading.Lock)

    def install(self, stack: Stack) -> None:
        """Wrap the in-process Lambda runtime; the API function's threads are marked, so its calls are not metered."""
        original = stack.lambdas.invoke
        watch = self

        def invoke(function: Any, body: Any, request_headers: Any, response_headers: Any) -> bytes:
            if function.function_name != watch.function_name:
                with watch.unmetered():
                    return original(function, body, request_headers, response_headers)
            step = str(json.loads(body).get("step", "?"))
            with watch.one_at_a_time:
                # tracemalloc slows moto down several times over: work invocations (one shard each, alike) are sampled.
                traced = step != "work" or watch.invocations[step] < TRACED_WORK_INVOCATIONS
                if traced:
                    tracemalloc.start()
                started = time.monotonic()
                try:
                    return original(function, body, request_headers, response_headers)
                finally:
                    watch.seconds += time.monotonic() - started
                    watch.invocations[step] += 1
                    if traced:
                        peak = tracemalloc.get_traced_memory()[1]
                        tracemalloc.stop()
                        watch.peak_bytes[step] = max(watch.peak_bytes.get(step, 0), peak)

        stack.lambdas.invoke = invoke  # type: ignore[method-assign]

    @contextmanager
    def unmetered(self) -> Iterator[None]:
        self.local.unmetered = True
        try:
            yield
        finally:
            self.local.unmetered = False

    def admits(self) -> bool:
        return not getattr(self.local, "unmetered", False)

    def reset(self) -> None:
        self.invocations.clear()
        self.seconds = 0.0
        self.peak_bytes.clear()


# Running a job.


@dataclass
class Run:
    job: dict[str, Any]
    usage: Usage
    transitions: int
    history: Counter[str]
    invocations: Counter[str]
    worker_seconds: float
    peak_bytes: dict[str, int]
    seconds: float


@dataclass
class Bench:
    stack: Stack
    api_url: str
    api_key: str
    admin_password: str
    watch: WorkerWatch
    state_machine: str

    def run(self, job_type: str, params: dict[str, Any], *, dry_run: bool) -> Run:
        body: dict[str, Any] = {"type": job_type, "params": params, "dry_run": dry_run}
        if not dry_run:
            body["admin_password"] = self.admin_password
        self.watch.reset()
        started = time.monotonic()
        with metering(self.watch.admits) as meter, self.watch.unmetered():
            job = self._api("POST", "/v1/jobs", json=body, expected=201)
            execution = self._execution_of(job["job_id"])
            self._wait(execution)
        seconds = time.monotonic() - started
        finished = self._api("GET", f"/v1/jobs/{job['job_id']}")
        if finished["status"] != "succeeded":
            raise RuntimeError(f"{job_type} ended {finished['status']}: {finished.get('error')}")
        history = self._history(execution)
        transitions = sum(count for kind, count in history.items() if kind.endswith("StateEntered"))
        watch = self.watch
        return Run(
            finished, meter.usage, transitions, history, Counter(watch.invocations), watch.seconds,
            dict(watch.peak_bytes), seconds,
        )  # fmt: skip

    def _api(self, method: str, path: str, *, expected: int = 200, **kwargs: Any) -> dict[str, Any]:
        response = requests.request(
            method, self.api_url + path, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=120, **kwargs
        )
        if response.status_code != expected:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        answer: dict[str, Any] = response.json()
        return answer

    def _execution_of(self, job_id: str) -> str:
        client = self.stack.client("stepfunctions")
        for _ in range(100):
            for execution in client.list_executions(stateMachineArn=self.state_machine)["executions"]:
                arn = str(execution["executionArn"])
                if json.loads(client.describe_execution(executionArn=arn)["input"]).get("job_id") == job_id:
                    return arn
            time.sleep(0.1)
        raise RuntimeError(f"no execution of job {job_id}")

    def _wait(self, execution: str) -> None:
        client = self.stack.client("stepfunctions")
        while client.describe_execution(executionArn=execution)["status"] == "RUNNING":
            time.sleep(POLL_SECONDS)

    def _history(self, execution: str) -> Counter[str]:
        client = self.stack.client("stepfunctions")
        kinds: Counter[str] = Counter()
        token: str | None = None
        while True:
            page = client.get_execution_history(
                executionArn=execution, maxResults=1000, **({"nextToken": token} if token else {})
            )
            kinds.update(str(event["type"]) for event in page["events"])
            token = page.get("nextToken")
            if not token:
                return kinds


# The report.


def per_thousand(value: Decimal | int | float, users: int) -> str:
    return f"{Decimal(value) * 1000 / users:,.1f}"


def report(job_type: str, params: dict[str, Any], dry: Run, real: Run, users: int, memory_mb: int) -> list[str]:
    estimate = dry.job.get("estimate") or {}
    counts_dry, counts_real = dry.job["counts"], real.job["counts"]
    lines = [
        f"{job_type} {json.dumps(params)}",
        f"  {'':44} {'dry run':>14} {'real run':>14} {'dry estimate':>14}",
    ]

    def row(label: str, dry_value: str, real_value: str, estimated: str = "") -> None:
        lines.append(f"  {label:44} {dry_value:>14} {real_value:>14} {estimated:>14}")

    for name in ("scanned", "matched", "changed", "skipped", "failed"):
        row(f"counts.{name}", f"{counts_dry[name]:,}", f"{counts_real[name]:,}")
    row(
        "write units",
        f"{dry.usage.write_units:,}",
        f"{real.usage.write_units:,}",
        f"{estimate.get('write_units', 0):,.0f}",
    )
    row(
        "read units",
        f"{dry.usage.read_units:,.1f}",
        f"{real.usage.read_units:,.1f}",
        f"{estimate.get('read_units', 0):,.1f}",
    )
    row(
        "write units per 1,000 users",
        per_thousand(dry.usage.write_units, users),
        per_thousand(real.usage.write_units, users),
        per_thousand(estimate.get("write_units", 0), users),
    )
    row(
        "read units per 1,000 users",
        per_thousand(dry.usage.read_units, users),
        per_thousand(real.usage.read_units, users),
        per_thousand(estimate.get("read_units", 0), users),
    )
    selected = counts_real["matched"]
    if selected:
        row(
            "write / read units per selected user (real)",
            "",
            f"{real.usage.write_units / selected:.2f} / {float(real.usage.read_units) / selected:.2f}",
        )
    row(
        "state transitions",
        f"{dry.transitions:,}",
        f"{real.transitions:,}",
        f"{estimate.get('state_transitions', 0):,}",
    )
    gb_seconds = real.worker_seconds * memory_mb / 1024
    row(
        "Lambda GB-seconds (local wall time x memory)",
        f"{dry.worker_seconds * memory_mb / 1024:,.1f}",
        f"{gb_seconds:,.1f}",
        f"{estimate.get('lambda_gb_seconds', 0):,.1f}",
    )
    row("USD (the dry run's estimate)", "", "", f"{estimate.get('usd', '')}")
    row("worker invocations", _steps(dry.invocations), _steps(real.invocations))
    row("worker peak memory, MB (tracemalloc)", _peak(dry.peak_bytes), _peak(real.peak_bytes))
    row("wall time, s (local)", f"{dry.seconds:,.0f}", f"{real.seconds:,.0f}")
    for label, run in (("dry run", dry), ("real run", real)):
        calls = ", ".join(f"{name} {per_thousand(count, users)}" for name, count in sorted(run.usage.calls.items()))
        lines.append(f"  DynamoDB calls per 1,000 users, {label}: {calls}")
        units = ", ".join(
            f"{name} {per_thousand(run.usage.write_units_by_operation[name], users)}W"
            f"/{per_thousand(run.usage.read_units_by_operation[name], users)}R"
            for name in sorted(run.usage.calls)
        )
        lines.append(f"  units per 1,000 users by operation, {label}: {units}")
        if run.usage.refused:
            lines.append(f"  calls refused by a condition, {label}: {run.usage.refused:,} (their writes are billed)")
    return lines


def _steps(invocations: Counter[str]) -> str:
    return " ".join(f"{step[0]}{count}" for step, count in sorted(invocations.items()))


def _peak(peaks: dict[str, int]) -> str:
    return f"{max(peaks.values(), default=0) / MB:,.1f}"


# Main.


def job_runs(services: Services, names: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, job type, params) of each run asked for; add_subscription's resource is created here."""
    runs = []
    for name in names:
        if name == "split_audience":
            runs.append((name, "split_audience", SPLIT_PARAMS))
        elif name == "deactivate_users":
            runs.append((name, "deactivate_users", DEACTIVATE_PARAMS))
        elif name == "update_fields":
            runs.append((name, "bulk_update", UPDATE_FIELDS_PARAMS))
        elif name == "add_subscription":
            resource = services.resources.create(APP_ID, "Newsletter", [Channel.EMAIL])
            runs.append((name, "bulk_update", {**ADD_SUBSCRIPTION_PARAMS, "resource_id": resource.resource_id}))
        else:
            raise SystemExit(f"unknown job {name!r}: pick from {', '.join(JOB_NAMES)}")
    return runs


JOB_NAMES = ("split_audience", "deactivate_users", "update_fields", "add_subscription")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.jobs", description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--jobs", default=",".join(DEFAULT_JOBS), help=f"comma-separated, from: {', '.join(JOB_NAMES)}")
    arguments = parser.parse_args()
    users = arguments.users
    names = [name.strip() for name in arguments.jobs.split(",") if name.strip()]
    started = time.monotonic()
    with local_stack() as local:
        stack, api_url = local.stack, local.api_url
        settings = store_settings(
            stack.physical_ids("AWS::DynamoDB::Table"), int(stack.resolver.parameters["ShardCount"])
        )
        bind_tables(settings)
        services = Services(settings.shard_count)
        app = services.apps.bootstrap(APP_ID, "Jobs benchmark", key_name="bench")
        population = Population.of(users)
        seed(services, users)
        runs = job_runs(services, names)
        seeded = time.monotonic() - started
        functions = stack.physical_ids("AWS::Lambda::Function")
        memory_mb = int(stack.transformed.sam["Resources"]["JobsFunction"]["Properties"]["MemorySize"])
        watch = WorkerWatch(functions["JobsFunction"])
        watch.install(stack)
        bench = Bench(
            stack,
            api_url,
            app.api_key.api_key,
            app.admin_password,
            watch,
            stack.physical_ids("AWS::StepFunctions::StateMachine")["JobStateMachine"],
        )
        lines = [
            f"Maintenance jobs over {users:,} users of one app ({settings.shard_count} shards); local stack:",
            "the template in moto, the ASL run by moto's Step Functions, the handlers in-process.",
            f"Users: {population.emails:,} with an email, {population.devices:,} with an FCM device; "
            f"{population.free_emails:,} on the free plan with an email, {population.free_email_only:,} of them "
            "without a device.",
            f"Units: DynamoDB's billing rules on the sizes of the items each call of the jobs worker touched; "
            f"worker memory {memory_mb} MB; seeding took {seeded:,.0f} s.",
            "",
        ]
        for name, job_type, params in runs:
            dry = bench.run(job_type, params, dry_run=True)
            real = bench.run(job_type, params, dry_run=False)
            lines += report(name if name == job_type else f"{job_type} {name}", params, dry, real, users, memory_mb)
            lines.append("")
        lines += _notes(time.monotonic() - started)
        print("\n".join(lines))


def _notes(seconds: float) -> list[str]:
    return [
        "Invocations: p plan, w work, a advance, f finalize. Peak memory: tracemalloc's peak of what was",
        "allocated during a worker invocation (every plan, advance and finalize, the first "
        f"{TRACED_WORK_INVOCATIONS} work invocations of each run), the largest; moto runs in the same process,",
        "so the items it stored and the requests it served meanwhile are included (an upper bound).",
        "GB-seconds measured here are the emulator's wall time, not Lambda's.",
        f"Total run time {seconds:,.0f} s.",
    ]


if __name__ == "__main__":
    main()
