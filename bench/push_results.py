"""What each device operation costs in DynamoDB: calls and capacity units.

Runs the real service and repository (pynamodb) against moto's in-process
DynamoDB, counts every API call pynamodb makes, and derives capacity units
from the stored item's size with DynamoDB's published rules (1 KB per write
unit, 4 KB per read unit, strongly consistent reads are full units).

    .venv/bin/python -m bench.push_results
"""

import math
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws
from pynamodb.connection.base import Connection

from steward.devices.models import DevicePushResult, IdentifyDevice, PushResult, Transport
from steward.devices.repository import DeviceRepository
from steward.devices.service import DeviceService
from steward.sharding import partition_for
from steward.tables import DeviceRecord, bind_tables
from steward_local.template import dynamodb_tables, store_settings

ROOT = Path(__file__).resolve().parent.parent
APP = "bench-app"
SHARDS = 16
calls: Counter[str] = Counter()


@contextmanager
def counting() -> Iterator[Counter[str]]:
    calls.clear()
    yield calls


def _install_counter() -> None:
    original = Connection._make_api_call

    def counted(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> dict[str, Any]:
        calls[operation_name] += 1
        return original(self, operation_name, operation_kwargs)

    Connection._make_api_call = counted  # type: ignore[method-assign]


def item_size(device_id: str) -> int:
    """DynamoDB's item size: attribute names plus values (numbers approximated by their digits)."""
    raw = DeviceRecord.get(partition_for(APP, device_id, SHARDS), device_id).serialize()
    return sum(len(name.encode()) + _value_size(value) for name, value in raw.items())


def _value_size(value: dict[str, Any]) -> int:
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return math.ceil(len(content.strip("-").replace(".", "")) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in content.items())
    if kind == "SS":
        return sum(len(item.encode()) for item in content)
    raise ValueError(kind)


def measure(label: str, operation: Callable[[], Any], device_id: str) -> tuple[str, dict[str, int], int]:
    with counting() as counted:
        operation()
    return label, dict(counted), item_size(device_id)


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb")
        names = {}
        for logical_id, definition in dynamodb_tables(ROOT / "template.yaml").items():
            names[logical_id] = f"bench-{logical_id}"
            client.create_table(TableName=names[logical_id], **definition)
        settings = store_settings(names, SHARDS)
        bind_tables(settings)
        _install_counter()
        service = DeviceService(DeviceRepository(SHARDS))
        token = "fcm:" + "x" * 152  # a real FCM token is about 150 characters
        identify = IdentifyDevice(user_id="user-123", transport=Transport.FCM, attributes={"app_version": "5.2.0"})
        failure = PushResult(accepted=False, error_code="UNREGISTERED", error_message="Requested entity was not found.")

        rows = [
            measure("identify, new device", lambda: service.identify(APP, token, identify), token),
            measure("identify, nothing changed", lambda: service.identify(APP, token, identify), token),
            measure(
                "push result, accepted",
                lambda: service.record_push_result(APP, token, PushResult(accepted=True)),
                token,
            ),
            measure("push result, first failure", lambda: service.record_push_result(APP, token, failure), token),
            measure("push result, second failure", lambda: service.record_push_result(APP, token, failure), token),
            measure("identify, suppressed -> unused", lambda: service.identify(APP, token, identify), token),
        ]
        print(f"{'operation':34} {'DynamoDB calls':28} {'item bytes':>10} {'WCU':>4} {'RCU':>4}")
        for label, counted, size in rows:
            writes = counted.get("UpdateItem", 0) + counted.get("PutItem", 0)
            reads = counted.get("GetItem", 0)
            described = ", ".join(f"{count} {name}" for name, count in sorted(counted.items())) or "none"
            wcu = writes * math.ceil(size / 1024)
            rcu = reads * math.ceil(size / 4096)  # strongly consistent
            print(f"{label:34} {described:28} {size:>10} {wcu:>4} {rcu:>4}")

        batch_ids = [f"fcm:batch-{index:03d}-" + "y" * 140 for index in range(100)]
        for device_id in batch_ids:
            service.identify(APP, device_id, identify)
        batch = [DevicePushResult(device_id=device_id, accepted=True).model_dump() for device_id in batch_ids]
        with counting() as counted:
            outcome = service.record_push_results(APP, batch)
        print(
            f"\nbatch of 100 accepted results: {dict(counted)} -> {outcome.succeeded} applied, "
            f"{counted['UpdateItem']} write units (items under 1 KB)"
        )
        per_million = counted["UpdateItem"] / 100 * 1_000_000
        print(f"per million push results: {per_million:,.0f} UpdateItem calls = {per_million:,.0f} write units")


if __name__ == "__main__":
    main()
