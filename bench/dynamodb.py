"""Shared by the benchmarks: moto tables from the template, a DynamoDB call counter, item sizes."""

import math
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pynamodb.connection.base import Connection
from pynamodb.models import Model

from steward.settings import StoreSettings
from steward_local.moto_tables import create_template_tables

_calls: Counter[str] = Counter()


def create_tables(shard_count: int) -> StoreSettings:
    """Inside mock_aws: the template's tables, bound to the models, and every pynamodb call counted."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    settings = create_template_tables(shard_count, "bench")
    _install_counter()
    return settings


@contextmanager
def counting() -> Iterator[Counter[str]]:
    """The DynamoDB calls made inside the block, by operation."""
    _calls.clear()
    yield _calls


def write_units(record: Model) -> int:
    """Write units of one put or update of this item: 1 per started KB of its size."""
    return math.ceil(item_size(record) / 1024)


def item_size(record: Model) -> int:
    """DynamoDB's item size: attribute names plus values (numbers approximated by their digits)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in record.serialize().items())


def _install_counter() -> None:
    original = Connection._make_api_call
    if getattr(original, "counting", False):
        return

    def counted(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> dict[str, Any]:
        _calls[operation_name] += 1
        return original(self, operation_name, operation_kwargs)

    counted.counting = True  # type: ignore[attr-defined]
    Connection._make_api_call = counted  # type: ignore[method-assign]


def _value_size(value: dict[str, Any]) -> int:
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return math.ceil(len(content.strip("-").replace(".", "")) / 2) + 1
    if kind == "B":
        return len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(name.encode()) + _value_size(item) + 1 for name, item in content.items())
    if kind == "L":
        return 3 + sum(_value_size(item) + 1 for item in content)
    if kind == "SS":
        return sum(len(item.encode()) for item in content)
    raise ValueError(kind)
