"""A BatchWriteItem that hands some items back unprocessed, as DynamoDB does when it throttles a batch."""

from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from pynamodb.connection.table import TableConnection

from steward import batch_writes


class HandsBack[K: Hashable]:
    """Puts and deletes whose ``key_of(item or key)`` is in ``refuse`` come back unprocessed, ``times`` times each
    (forever when None); the others are written. Counts what was sent, and records the backoff's pauses instead of
    sleeping."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        key_of: Callable[[dict[str, Any]], K],
        refuse: set[K],
        times: int | None,
    ) -> None:
        self.left: dict[K, int | None] = dict.fromkeys(refuse, times)
        self.sent: Counter[K] = Counter()
        self.sleeps: list[float] = []
        original = TableConnection.batch_write_item

        def batch_write_item(
            connection: TableConnection, put_items: Any = None, delete_items: Any = None, **kwargs: Any
        ) -> Any:
            unprocessed: list[dict[str, Any]] = []

            def kept(items: Any, request: str, field: str) -> list[dict[str, Any]]:
                sent = []
                for item in items or []:
                    key = key_of(item)
                    self.sent[key] += 1
                    left = self.left.get(key, 0)
                    if left != 0:
                        self.left[key] = None if left is None else left - 1
                        unprocessed.append({request: {field: item}})
                    else:
                        sent.append(item)
                return sent

            # pynamodb first sends a delete's key untyped ({"pk": "..."}), and typed when it resends one DynamoDB
            # handed back, as DynamoDB hands it: typed here, for text keys.
            typed = [{name: value if isinstance(value, dict) else {"S": value} for name, value in key.items()}
                     for key in delete_items or []]  # fmt: skip
            puts, deletes = kept(put_items, "PutRequest", "Item"), kept(typed, "DeleteRequest", "Key")
            data = original(connection, put_items=puts, delete_items=deletes, **kwargs) if puts or deletes else {}
            return {**data, "UnprocessedItems": {connection.table_name: unprocessed} if unprocessed else {}}

        monkeypatch.setattr(TableConnection, "batch_write_item", batch_write_item)
        monkeypatch.setattr(batch_writes.time, "sleep", self.sleeps.append)
