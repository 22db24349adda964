"""Unit tests run the real logic and pynamodb against moto's in-process DynamoDB.

The tables are created from template.yaml's own definitions (the builder the
benchmarks use too), so a key or index change in the template is what the
tests see.
"""

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from steward.pagination import Page
from steward.settings import StoreSettings
from steward_local.moto_tables import create_template_tables

SHARD_COUNT = 4  # small, so pagination crosses shards with few devices


@pytest.fixture
def store() -> Iterator[StoreSettings]:
    """Fresh, empty tables for one test, bound to the pynamodb models."""
    with mock_aws():
        yield create_template_tables(SHARD_COUNT, "test")


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serialise moto's DynamoDB requests, for tests that race our code against itself.

    Real DynamoDB applies each conditional write and transaction atomically;
    moto does not lock, so concurrent tests would see races inside the fake
    instead of in our code. The service's own interleaving (several requests
    per use case) is untouched.
    """
    lock = threading.RLock()
    original = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with lock:
            return original(self)

    monkeypatch.setattr(DynamoHandler, "call_action", call_action)


def collect_pages[T](fetch: Callable[[str | None], Page[T]], limit: int = 2, start: str | None = None) -> list[T]:
    """Follow next_cursor from ``start`` until it is None; every page respects the limit."""
    found: list[T] = []
    cursor = start
    for _ in range(100):
        page = fetch(cursor)
        assert len(page.items) <= limit
        found.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return found
    raise AssertionError("pagination never ended")
