"""Unit tests run the real logic and pynamodb against moto's in-process DynamoDB.

The tables are created from template.yaml's own definitions (the builder the
benchmarks use too), so a key or index change in the template is what the
tests see. Helpers live in tests/support/.
"""

import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler

from steward.settings import StoreSettings
from steward_local.moto_tables import create_template_tables
from tests.support.service import JOBS_BUS, SHARD_COUNT, load_function


@pytest.fixture
def store() -> Iterator[StoreSettings]:
    """Fresh, empty tables for one test, bound to the pynamodb models."""
    with mock_aws():
        boto3.client("events").create_event_bus(Name=JOBS_BUS)
        yield create_template_tables(SHARD_COUNT, "test")


@pytest.fixture
def api(store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The real API function, on this test's tables."""
    return load_function("api", store, monkeypatch)


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


@pytest.fixture
def conflicts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The next N TransactWriteItems calls are cancelled with TransactionConflict (set ``conflicts[0] = N``)."""
    return _cancelled_transactions(monkeypatch, ("TransactionConflict", "Transaction is ongoing for the item", None))


@pytest.fixture
def throttled_transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The next N TransactWriteItems calls are cancelled with ThrottlingError (set ``throttled_transactions[0]``)."""
    return _cancelled_transactions(monkeypatch, ("ThrottlingError", "Throughput exceeds the current capacity", None))


def _cancelled_transactions(monkeypatch: pytest.MonkeyPatch, reason: tuple[str, str, None]) -> list[int]:
    """A counter: while above 0, each TransactWriteItems call is cancelled with ``reason`` on its last item."""
    remaining = [0]
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        if remaining[0] > 0:
            remaining[0] -= 1
            reasons: list[Any] = [(None, None, None)] * len(transact_items)
            reasons[-1] = reason
            raise TransactionCanceledException(reasons)
        original(self, transact_items)

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", transact_write_items)
    return remaining
