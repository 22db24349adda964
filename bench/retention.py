"""DynamoDB units, calls and Step Functions state transitions of a retention sweep over 100,000 conversations.

Seeds one app's conversations in moto (16 shards), then sweeps them the way
the state machine does (plan, pages of each shard, finalize), twice: once
with nothing due, once with everything due (each conversation moves one
step, open -> archive). Then a second app whose whatsapp channel has a much
shorter rule than the app's (5 days against 30, conversations idle 10 days):
one in five is due, and the others, in the due index's default group, are
not read. Every DynamoDB call pynamodb makes is priced with
the published rules: 1 write unit per started KB of the larger of the item
before and after, plus 1 per index entry written and 1 per index entry
removed (a moved index key is both); 1 read unit per started 4 KB of what a
query returns, per query, half when eventually consistent (index queries
always are). A query that returns nothing still costs 0.5 unit.

    .venv/bin/python -m bench.retention [conversations]

moto answers a Query by walking the whole table, so a sweep's many small
queries would take time that grows with the square of the conversations:
bench/emulator.py's ``speed_up()`` (as bench/jobs.py uses it) hands each query
just its partition, which changes the emulator's speed and no answer, so the
issue's 100,000 conversations are feasible.

The committed output (bench/results/retention.txt) is of 100,000 conversations.
"""

import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from moto import mock_aws

from bench import emulator
from bench.dynamodb import counting, create_tables, install_pricing, raw_item_size
from steward.composition import Services
from steward.conversations.models import Conversation, ConversationStatus, RetentionSettings
from steward.conversations.selection import SWEEP_ORDER
from steward.tables import ConversationRecord

APP = "bench-app"
SHORT_APP = "bench-app-short-channel"
SHARDS = 16
CONVERSATIONS = 100_000
BUCKET = "bench-reports"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
# The indexes of the ConversationsTable and what each projects besides its keys.
INDEXES = {("due_pk", "due_sk"): ("channel", "user_id", "version"), ("user_key", "sk"): ("status",)}
CHANNELS = ["email", "sms", "whatsapp", "chat", "push"]


@dataclass
class Charge:
    write_units: float = 0
    read_units: float = 0
    refused: int = 0


class Meter:
    """Prices every DynamoDB call pynamodb makes; reads items before and after through an uncounted client."""

    def __init__(self) -> None:
        self.client = boto3.client("dynamodb")
        self.charge = Charge()

    def install(self) -> None:
        install_pricing(self.call)

    def call(self, name: str, kwargs: dict[str, Any], send: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        key = kwargs.get("Key") or (
            {"pk": kwargs["Item"]["pk"], "sk": kwargs["Item"]["sk"]} if "Item" in kwargs else None
        )
        writes = name in ("PutItem", "UpdateItem", "DeleteItem")
        before = self._item(kwargs["TableName"], key) if writes and key else None
        try:
            response = send()
        except Exception:
            self.charge.refused += 1
            if writes:
                self.charge.write_units += _units(raw_item_size(before or {}), 1024)
            raise
        if writes and key:
            after = self._item(kwargs["TableName"], key)
            self.charge.write_units += _units(max(raw_item_size(before or {}), raw_item_size(after or {})), 1024)
            self.charge.write_units += _index_writes(before, after)
        factor = 1 if kwargs.get("ConsistentRead") else 0.5
        if name == "Query":
            self.charge.read_units += factor * _units(
                sum(raw_item_size(item) for item in response.get("Items", [])), 4096
            )
        elif name == "GetItem":
            item = response.get("Item")
            self.charge.read_units += factor * _units(raw_item_size(item or {}), 4096)
        return response

    def _item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return item


def _index_writes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
    """Index entries written and removed: 1 unit each (entries are far below 1 KB)."""
    units = 0
    for keys, projected in INDEXES.items():
        old = _entry(before, keys, projected)
        new = _entry(after, keys, projected)
        if old == new:
            continue
        old_key = None if old is None else {name: old[name] for name in keys}
        new_key = None if new is None else {name: new[name] for name in keys}
        if old is not None and new is not None and old_key == new_key:
            units += 1  # same entry, a projected attribute changed
        else:
            units += (old is not None) + (new is not None)
    return units


def _entry(item: dict[str, Any] | None, keys: tuple[str, str], projected: tuple[str, ...]) -> dict[str, Any] | None:
    if item is None or any(name not in item for name in keys):
        return None
    return {name: item[name] for name in (*keys, "pk", "sk", *projected) if name in item}


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


def seed(services: Services, idle_days: int, count: int, app_id: str = APP) -> None:
    """``count`` open conversations of five channels, last active ``idle_days`` ago, a user each."""
    repository = services.conversation_repository
    overridden = services.retention_settings_repository.overridden(app_id)
    at = NOW - timedelta(days=idle_days)
    with ConversationRecord.batch_write() as batch:
        for number in range(count):
            conversation = Conversation(
                conversation_id=f"cnv_{number:032x}",
                channel=CHANNELS[number % len(CHANNELS)],
                status=ConversationStatus.OPEN,
                user_id=f"user-{number:06d}",
                subject="Where is my order?",
                created_at=at,
                last_activity_at=at,
                status_changed_at=at,
            )
            batch.save(repository.record(app_id, conversation, at, overridden))


def sweep(
    services: Services, meter: Meter, run_id: str, app_id: str = APP, now: datetime = NOW
) -> tuple[Charge, Counter[str], int, int, dict[str, int]]:
    """One sweep of the app as the state machine runs it; returns its charge, calls, steps, transitions, counts."""
    meter.charge = Charge()
    sweeper, executions = services.retention_sweep, services.retention_executions
    with counting() as counted:
        shards = executions.plan(app_id, run_id, now, 0).shards
        pages = 0
        for shard in shards:
            done = False
            while not done:
                done = sweeper.sweep_page(app_id, run_id, now, shard)
                pages += 1
        # One execution: the sweep's pages stay within its budget of 800 (no state machine to go on in).
        assert executions.progress(app_id, run_id, now, 0, state_machine="")
        finalizes = 1
        while not (finalized := sweeper.finalize(app_id, run_id, None)).done:  # the Finalize loop
            finalizes += 1
    # Standard workflow transitions (every state entered, statemachines/retention.asl.json): Route, Plan,
    # Planned, Shards, Progress, AllDone, Finished; per finalize step Finalize and Finalized; per page Page and
    # ShardDone, and Count before every page but a shard's first; per shard Done.
    transitions = 7 + 2 * finalizes + 3 * pages
    invocations = 2 + finalizes + pages
    return meter.charge, Counter(counted), invocations, transitions, finalized.run.counts


def report(label: str, result: tuple[Charge, Counter[str], int, int, dict[str, int]], scale: float) -> None:
    charge, calls, invocations, transitions, counts = result
    listed = ", ".join(f"{number * scale:,.0f} {name}" for name, number in sorted(calls.items()))
    print(
        f"{label:44} {charge.read_units * scale:>8,.1f} {charge.write_units * scale:>9,.0f} "
        f"{invocations * scale:>7,.0f} {transitions * scale:>6,.0f}  {listed}"
    )
    print(f"{'':44} moved: {counts}  refused writes: {charge.refused}")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else CONVERSATIONS
    with mock_aws():
        create_tables(SHARDS)
        emulator.speed_up()  # after the tables' own patches of the same methods, so that it sees every write
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        services = Services(SHARDS, clock=lambda: NOW, reports_bucket=BUCKET)
        settings = {
            "archive_after_days": dict.fromkeys(("open", "pending", "automated", "sent"), 30),
            "delete_after_days": dict.fromkeys(("archive", "irrelevant", "resolved"), 30),
            "purge_after_days": 30,
        }
        services.retention_settings.put(APP, RetentionSettings.model_validate(settings))
        started = time.monotonic()
        seed(services, 10, count)
        print(f"seeded {count:,} conversations in {time.monotonic() - started:.0f} s")
        meter = Meter()
        meter.install()

        per = 100_000 / count  # 1 at the committed size; smaller runs scale to 100,000
        columns = f"{'RCU':>8} {'WCU':>9} {'Lambda':>7} {'SFN':>6}"
        print(f"{f'one sweep of {count:,} conversations, 16 shards':44} {columns}  DynamoDB calls")
        for label, idle_days in (("nothing due (idle 10 days, rules 30)", None), ("everything due (idle 40 days)", 40)):
            if idle_days is not None:
                seed(services, idle_days, count)
            result = sweep(services, meter, f"ret_{20260601000000 + (idle_days or 0)}_{0:012x}")
            # Nothing due costs the same whatever the count: only the due rows scale to 100,000.
            report(label, result, per if idle_days is not None else 1)
        # A channel whose cutoff is much shorter than the app's: its conversations are due, the others are
        # not, and sit in another group of the due index, so the sweep never reads them.
        short = {**settings, "channels": {"whatsapp": {"archive_after_days": {"open": 5}}}}
        services.retention_settings.put(SHORT_APP, RetentionSettings.model_validate(short))
        # Homes the (no) earlier entries: a run that starts once writes under the old settings have landed.
        sweep(services, meter, "ret_20260601000100_000000000000", SHORT_APP, NOW + timedelta(minutes=1))
        seed(services, 10, count, SHORT_APP)
        result = sweep(services, meter, "ret_20260601000002_000000000000", SHORT_APP)
        report("whatsapp rule 5 days, idle 10 (1 in 5 due)", result, per)
        partitions = len(SWEEP_ORDER) * SHARDS
        print(f"\nA sweep queries at most {partitions} due-index partitions per settings group", end=" ")
        print(f"({len(SWEEP_ORDER)} statuses x {SHARDS} shards), whatever the number of conversations.")


if __name__ == "__main__":
    main()
