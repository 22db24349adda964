"""What each device operation costs in DynamoDB: calls and capacity units.

Runs the real service and repository (pynamodb) against moto's in-process
DynamoDB, counts every API call pynamodb makes, and derives capacity units
from the stored item's size with DynamoDB's published rules (1 KB per write
unit, 4 KB per read unit, strongly consistent reads are full units).

    .venv/bin/python -m bench.push_results
"""

import math
from collections.abc import Callable
from typing import Any

from moto import mock_aws

from bench.dynamodb import counting, create_tables, item_size
from steward.composition import Services
from steward.devices.models import DevicePushResult, IdentifyDevice, PushResult, Transport
from steward.sharding import partition_for
from steward.tables import DeviceRecord

APP = "bench-app"
SHARDS = 16


def item_bytes(device_id: str) -> int:
    return item_size(DeviceRecord.get(partition_for(APP, device_id, SHARDS), device_id))


def measure(label: str, operation: Callable[[], Any], device_id: str) -> tuple[str, dict[str, int], int]:
    with counting() as counted:
        operation()
    return label, dict(counted), item_bytes(device_id)


def main() -> None:
    with mock_aws():
        create_tables(SHARDS)
        service = Services(SHARDS).devices
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
