"""Unit tests run the real logic and pynamodb against moto's in-process DynamoDB.

The tables are created from template.yaml's own definitions (the builder the
benchmarks use too), so a key or index change in the template is what the
tests see. Helpers live in tests/support/.
"""

import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from steward.settings import StoreSettings
from steward_local.moto_tables import create_template_tables
from tests.support.service import SHARD_COUNT, load_function


@pytest.fixture
def store() -> Iterator[StoreSettings]:
    """Fresh, empty tables for one test, bound to the pynamodb models."""
    with mock_aws():
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
