"""DynamoDB calls and capacity units of device tags, for 1,000 devices tagged through TagService.

Runs the real service against moto, counts every call pynamodb makes, and
prices each one from the sizes of the items it touches, with DynamoDB's
published rules: 1 write unit per started KB (2 inside a transaction, which
prices an update on the larger of the item before and after), 1 read unit
per started 4 KB when strongly consistent and half of that otherwise.

    .venv/bin/python -m bench.tags
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from moto import mock_aws
from pynamodb.models import Model

from bench.dynamodb import counting, create_tables, install_pricing, item_size
from steward.composition import Services
from steward.devices.models import IdentifyDevice, Transport
from steward.settings import StoreSettings
from steward.tables import DeviceRecord, TagMemberRecord, TagRecord

APP = "bench-app"
SHARDS = 16
DEVICES = 1000


@dataclass
class Charge:
    write_units: float = 0
    read_units: float = 0
    refused: int = 0  # calls refused by a condition (a failed conditional write is billed all the same)


class Meter:
    """Prices every DynamoDB call pynamodb makes; reads item sizes through its own, uncounted client."""

    def __init__(self, settings: StoreSettings) -> None:
        self.devices_table = settings.devices_table
        self.client = boto3.client("dynamodb")
        self.charge = Charge()

    def install(self) -> None:
        install_pricing(self.call)

    def call(self, name: str, kwargs: dict[str, Any], send: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        writes = self._writes(name, kwargs)
        before = [self._size(table, key) for table, key in writes]
        try:
            response = send()
        except Exception:
            self.charge.refused += 1
            self._price_writes(name, writes, before)
            raise
        self._price_writes(name, writes, before)
        self.charge.read_units += self._reads(name, kwargs, response)
        return response

    def _price_writes(self, name: str, writes: list[tuple[str, dict[str, Any]]], before: list[int]) -> None:
        after = [self._size(table, key) for table, key in writes]
        factor = 2 if name == "TransactWriteItems" else 1
        self.charge.write_units += factor * sum(
            _units(max(size_before, size_after), 1024) for size_before, size_after in zip(before, after, strict=True)
        )

    def _writes(self, name: str, kwargs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if name in ("PutItem", "UpdateItem", "DeleteItem"):
            return [(kwargs["TableName"], kwargs.get("Key") or _key(kwargs["Item"]))]
        if name == "TransactWriteItems":
            return [
                (operation["TableName"], operation.get("Key") or _key(operation["Item"]))
                for item in kwargs["TransactItems"]
                for operation in item.values()
            ]
        return []

    def _reads(self, name: str, kwargs: dict[str, Any], response: dict[str, Any]) -> float:
        factor = 1 if kwargs.get("ConsistentRead") else 0.5
        if name == "GetItem":
            item = response.get("Item")
            return factor * _units(0 if item is None else self._raw_size(kwargs["TableName"], item), 4096)
        if name == "Query":
            total = sum(self._raw_size(kwargs["TableName"], item) for item in response.get("Items", []))
            return factor * _units(total, 4096)
        if name == "BatchGetItem":
            units = 0.0
            for table, request in kwargs["RequestItems"].items():
                request_factor = 1 if request.get("ConsistentRead") else 0.5
                units += sum(request_factor * _units(self._size(table, key), 4096) for key in request["Keys"])
            return units
        return 0

    def _size(self, table: str, key: dict[str, Any]) -> int:
        item = self.client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return 0 if item is None else self._raw_size(table, item)

    def _raw_size(self, table: str, item: dict[str, Any]) -> int:
        model: type[Model]
        if table == self.devices_table:
            model = DeviceRecord
        else:
            model = TagRecord if item["pk"]["S"].endswith("#tags") else TagMemberRecord
        return item_size(model.from_raw_data(item))


def _key(item: dict[str, Any]) -> dict[str, Any]:
    return {"pk": item["pk"], "sk": item["sk"]}


def _units(size: int, unit: int) -> int:
    """Units of one item (or one query's items): a started ``unit`` of bytes each, at least one."""
    return max(1, math.ceil(size / unit))


def main() -> None:
    with mock_aws():
        settings = create_tables(SHARDS)
        meter = Meter(settings)
        meter.install()
        devices = Services(SHARDS).devices
        tags = Services(SHARDS).tags
        # A real FCM token is about 150 characters.
        ids = [f"fcm:bench-{index:04d}-" + "x" * 140 for index in range(DEVICES)]
        identify = IdentifyDevice(user_id="user-123", transport=Transport.FCM, attributes={"app_version": "5.2.0"})
        for device_id in [*ids, "fcm:leaver-0", "fcm:leaver-3"]:
            devices.identify(APP, device_id, identify)
        tags.change_devices(APP, "mixed", ids[:500], [])
        for tag in ("a", "b", "c"):
            tags.tag(APP, "fcm:leaver-3", tag)

        def bulk(add: list[str], remove: list[str], tag: str = "vip") -> str:
            outcome = tags.change_devices(APP, tag, add, remove)
            if outcome.failed:
                raise RuntimeError(f"{len(outcome.failed)} devices failed")
            return f"+{outcome.added} -{outcome.removed} ={outcome.unchanged}"

        scenarios: list[tuple[str, Callable[[], object]]] = [
            ("PUT tag, 1 device", lambda: tags.tag(APP, ids[0], "solo")),
            ("PUT tag again (unchanged)", lambda: tags.tag(APP, ids[0], "solo")),
            ("DELETE tag, 1 device", lambda: tags.untag(APP, ids[0], "solo")),
            ("bulk add 1,000 new", lambda: bulk(ids, [])),
            ("bulk add 1,000 again (unchanged)", lambda: bulk(ids, [])),
            ("bulk add 500 + remove 500", lambda: bulk(ids[500:], ids[:500], "mixed")),
            ("bulk remove 1,000", lambda: bulk([], ids)),
            ("GET tag devices, page of 200", lambda: tags.list_devices(APP, "mixed", None, 200)),
            ("GET tags, page of 50", lambda: tags.list_tags(APP, None, 50)),
            ("logout, device without tags", lambda: devices.logout(APP, "fcm:leaver-0", None)),
            ("logout, device with 3 tags", lambda: devices.logout(APP, "fcm:leaver-3", None)),
        ]
        print(f"{'1,000 devices, 16 shards':34} {'DynamoDB calls':50} {'refused':>7} {'WCU':>6} {'RCU':>6}  outcome")
        for label, operation in scenarios:
            meter.charge = Charge()
            with counting() as counted:
                result = operation()
            calls = ", ".join(f"{count} {name}" for name, count in sorted(counted.items()))
            charge, shown = meter.charge, result if isinstance(result, str) else ""
            units = f"{charge.write_units:>6.0f} {charge.read_units:>6.1f}"
            print(f"{label:34} {calls:50} {charge.refused:>7} {units}  {shown}")
        print("\nrefused: calls refused by a condition; their writes are priced as if billed.")


if __name__ == "__main__":
    main()
