"""Shared by the benchmarks: moto tables from the template, a DynamoDB call counter and meter, item sizes.

Every pynamodb call in this process goes through one patched
``Connection._make_api_call``: it counts the call by operation, and, inside
``metering()``, prices it in DynamoDB request units by the published billing
rules (``steward.jobs.pricing``): a write is billed per started KB of the
larger of the item before and after, twice in a transaction; a read per
started 4 KB, half when eventually consistent, twice in a transaction; a
GetItem and each key of a BatchGetItem on its own item, a Query (or Scan) on
the sum of all the items it evaluated. The sizes come from the items as moto
stores them, read from its backend in this process, so the meter itself
makes no request. The local stack's Lambda handlers run in this process too,
so the meter sees their calls.
"""

import math
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from pynamodb.connection.base import Connection
from pynamodb.models import Model

from steward.jobs import pricing
from steward.settings import StoreSettings
from steward_local.moto_tables import create_template_tables

_calls: Counter[str] = Counter()
_meters: list["Meter"] = []

Key = dict[str, Any]
_READS = ("GetItem", "BatchGetItem", "TransactGetItems", "Query", "Scan")
# What a Query or Scan evaluates does not depend on these, but what it returns does.
_RETURN_SHAPERS = ("FilterExpression", "ProjectionExpression", "Select", "AttributesToGet", "ReturnConsumedCapacity")
_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")


def create_tables(shard_count: int) -> StoreSettings:
    """Inside mock_aws: the template's tables, bound to the models, and every pynamodb call counted."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    settings = create_template_tables(shard_count, "bench")
    install_counter()
    return settings


@contextmanager
def counting() -> Iterator[Counter[str]]:
    """The DynamoDB calls made inside the block, by operation."""
    _calls.clear()
    yield _calls


@dataclass
class Usage:
    """What the metered calls consumed. Reads are Decimal: an eventually consistent read costs half a unit."""

    calls: Counter[str] = field(default_factory=Counter)
    read_units: Decimal = Decimal(0)
    write_units: int = 0
    read_units_by_operation: Counter[str] = field(default_factory=Counter)
    write_units_by_operation: Counter[str] = field(default_factory=Counter)
    refused: int = 0  # calls refused (a condition, a cancelled transaction): their writes are billed all the same


class Meter:
    """Prices the DynamoDB calls pynamodb makes, in the threads ``admit`` lets in (all by default)."""

    def __init__(self, admit: Callable[[], bool] = lambda: True) -> None:
        self.admit = admit
        self.usage = Usage()
        self._lock = threading.Lock()
        self._backend: DynamoDBBackend = dynamodb_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]]
        self._client: Any = None

    def call(self, name: str, kwargs: dict[str, Any], send: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if not self.admit():
            return send()
        writes = self._writes(name, kwargs)
        before = [self._size(table, key) for table, key, _ in writes]
        try:
            response = send()
        except Exception:
            self._record(name, Decimal(0), self._write_units(writes, before), refused=True)
            raise
        reads = self._reads(name, kwargs, response) if name in _READS else Decimal(0)
        self._record(name, reads, self._write_units(writes, before), refused=False)
        return response

    def _record(self, name: str, reads: Decimal, writes: int, *, refused: bool) -> None:
        with self._lock:
            usage = self.usage
            usage.calls[name] += 1
            usage.read_units += reads
            usage.write_units += writes
            usage.read_units_by_operation[name] += reads  # type: ignore[assignment]
            usage.write_units_by_operation[name] += writes
            usage.refused += int(refused)

    # Writes: (table, key, transactional) of every item a call writes, deletes or checks.

    def _writes(self, name: str, kwargs: dict[str, Any]) -> list[tuple[str, Key, bool]]:
        if name in ("PutItem", "UpdateItem", "DeleteItem"):
            table = kwargs["TableName"]
            return [(table, kwargs.get("Key") or self._key(table, kwargs["Item"]), False)]
        if name == "BatchWriteItem":
            return [
                (table, request["DeleteRequest"]["Key"], False)
                if "DeleteRequest" in request
                else (table, self._key(table, request["PutRequest"]["Item"]), False)
                for table, requests in kwargs["RequestItems"].items()
                for request in requests
            ]
        if name == "TransactWriteItems":
            # A ConditionCheck is billed like the transaction's writes, on the item it checks.
            return [
                (
                    operation["TableName"],
                    operation.get("Key") or self._key(operation["TableName"], operation["Item"]),
                    True,
                )
                for item in kwargs["TransactItems"]
                for operation in item.values()
            ]
        return []

    def _write_units(self, writes: list[tuple[str, Key, bool]], before: list[int]) -> int:
        return sum(
            pricing.write_units(max(size, self._size(table, key)), transactional=transactional)
            for (table, key, transactional), size in zip(writes, before, strict=True)
        )

    # Reads.

    def _reads(self, name: str, kwargs: dict[str, Any], response: dict[str, Any]) -> Decimal:
        if name == "GetItem":
            size = self._size(kwargs["TableName"], kwargs["Key"])
            return pricing.read_units(size, consistent=bool(kwargs.get("ConsistentRead")))
        if name == "BatchGetItem":
            unprocessed = response.get("UnprocessedKeys") or {}
            units = Decimal(0)
            for table, request in kwargs["RequestItems"].items():
                skipped = unprocessed.get(table, {}).get("Keys", [])
                sizes = [self._size(table, key) for key in request["Keys"] if key not in skipped]
                units += pricing.batch_get_units(sizes, consistent=bool(request.get("ConsistentRead")))
            return units
        if name == "TransactGetItems":
            return sum(
                (
                    pricing.read_units(self._size(get["TableName"], get["Key"]), consistent=True, transactional=True)
                    for item in kwargs["TransactItems"]
                    for get in item.values()
                ),
                Decimal(0),
            )
        evaluated = self._evaluated(name, kwargs, response)
        total = sum(pricing.item_size(item) for item in evaluated)
        return pricing.query_read_units(total, consistent=bool(kwargs.get("ConsistentRead")))

    def _evaluated(self, name: str, kwargs: dict[str, Any], response: dict[str, Any]) -> list[Key]:
        """The items a Query or Scan read, as billed: a filter or projection hides some, so it is sent again without."""
        if not any(shaper in kwargs for shaper in _RETURN_SHAPERS):
            items: list[Key] = response.get("Items", [])
            return items
        plain = {key: value for key, value in kwargs.items() if key not in _RETURN_SHAPERS}
        used = set(_PLACEHOLDER.findall(plain.get("KeyConditionExpression", "")))
        for placeholders in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
            if placeholders in plain:
                kept = {key: value for key, value in plain[placeholders].items() if key in used}
                if kept:
                    plain[placeholders] = kept
                else:
                    del plain[placeholders]
        if self._client is None:
            self._client = boto3.client("dynamodb")  # boto3, not pynamodb: never metered itself
        method = self._client.query if name == "Query" else self._client.scan
        again: list[Key] = method(**plain).get("Items", [])
        return again

    # Items as moto stores them.

    def _key(self, table: str, item: Key) -> Key:
        stored = self._backend.get_table(table)
        names = [stored.hash_key_attr, *([stored.range_key_attr] if stored.range_key_attr else [])]
        return {name: item[name] for name in names}

    def _size(self, table: str, key: Key) -> int:
        """The stored item's billed size (0 when it is not there)."""
        try:
            item = self._backend.get_item(table, key)
        except Exception:  # a key the call itself rejects: nothing stored under it
            return 0
        return 0 if item is None else pricing.item_size(item.to_json()["Attributes"])


PricedCall = Callable[[str, dict[str, Any], Callable[[], dict[str, Any]]], dict[str, Any]]


def install_pricing(price: PricedCall, install: Callable[[Any, str, Any], None] = setattr) -> None:
    """Route every DynamoDB call pynamodb makes through ``price(name, kwargs, send)`` (a benchmark's own meter).

    ``install`` sets the patch: a test passes ``monkeypatch.setattr``, which undoes it afterwards.
    """
    original = Connection._make_api_call

    def priced(connection: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> dict[str, Any]:
        return price(operation_name, operation_kwargs, lambda: original(connection, operation_name, operation_kwargs))

    install(Connection, "_make_api_call", priced)


def raw_item_size(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item as the low-level API returns it (attribute names plus values)."""
    return pricing.item_size(item)


@contextmanager
def metering(admit: Callable[[], bool] = lambda: True) -> Iterator[Meter]:
    """Every pynamodb call made inside the block (in the threads ``admit`` lets in), counted and priced."""
    install_counter()
    meter = Meter(admit)
    _meters.append(meter)
    try:
        yield meter
    finally:
        _meters.remove(meter)


def install_counter() -> None:
    """Route every pynamodb call through the counter and the active meters (once per process)."""
    original = Connection._make_api_call
    if getattr(original, "counting", False):
        return

    def counted(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> dict[str, Any]:
        _calls[operation_name] += 1
        send: Callable[[], dict[str, Any]] = lambda: original(self, operation_name, operation_kwargs)  # noqa: E731
        for meter in list(_meters):
            send = _priced_by(meter, operation_name, operation_kwargs, send)
        return send()

    counted.counting = True  # type: ignore[attr-defined]
    Connection._make_api_call = counted  # type: ignore[method-assign]


def _priced_by(
    meter: Meter, name: str, kwargs: dict[str, Any], send: Callable[[], dict[str, Any]]
) -> Callable[[], dict[str, Any]]:
    return lambda: meter.call(name, kwargs, send)


def write_units(record: Model) -> int:
    """Write units of one put or update of this item: 1 per started KB of its size."""
    return math.ceil(item_size(record) / 1024)


def item_size(record: Model) -> int:
    """DynamoDB's item size of a pynamodb record (``steward.jobs.pricing.item_size`` of its stored form)."""
    return pricing.item_size(record.serialize())
