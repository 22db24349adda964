"""Make moto's TransactWriteItems cost what the transaction touches, not what the tables hold.

To undo a cancelled transaction, moto 5.2.5 deep-copies every table the
transaction names, once per item: a 49-member segment change against a
table of a few thousand users took seconds, and grew with every test. This
keeps moto's own transaction logic, stops it from copying whole tables, and
rolls a cancelled transaction back by restoring just the items it named.
moto is pinned exactly, so this internal hook cannot move under us.

moto's server runs requests on many threads, but its DynamoDB applies a
write as a read-modify-write in Python, and a transaction item by item:
concurrent `ADD`s could lose increments, and restoring the items of a
cancelled transaction would undo a write that slipped in meanwhile. So
every item read and write here runs under one lock, which gives what
DynamoDB promises: each request, and each transaction, is atomic.
"""

import copy
import functools
import threading
import types
from collections.abc import Callable
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

_SavedItem = tuple[str, dict[str, Any], dict[str, Any] | None]
_moto_transact_write_items = DynamoDBBackend.transact_write_items
# Reentrant: a transaction (and its rollback) calls put_item and delete_item itself.
_ITEMS_LOCK = threading.RLock()
_ATOMIC_OPERATIONS = ("put_item", "update_item", "delete_item", "get_item", "query", "scan")


def install() -> None:
    """Idempotent; call before the first transaction (in-process moto or the server's process)."""
    if getattr(DynamoDBBackend.transact_write_items, "restores_items", False):
        return
    tables_not_copied = types.ModuleType("copy")
    tables_not_copied.__dict__.update(copy.__dict__)
    tables_not_copied.deepcopy = _deepcopy_except_tables  # type: ignore[attr-defined]
    dynamodb_models.copy = tables_not_copied  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = _atomic(_transact_write_items)  # type: ignore[method-assign]
    for name in _ATOMIC_OPERATIONS:
        setattr(DynamoDBBackend, name, _atomic(getattr(DynamoDBBackend, name)))


def _atomic[**P, R](operation: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(operation)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with _ITEMS_LOCK:
            return operation(*args, **kwargs)

    return locked


def _deepcopy_except_tables(value: Any, memo: dict[int, Any] | None = None) -> Any:
    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    saved = _save(self, transact_items)
    try:
        _moto_transact_write_items(self, transact_items)
    except Exception:
        for table_name, key, attributes in reversed(saved):
            if attributes is not None:
                self.put_item(table_name, attributes)
            elif self.get_item(table_name, key) is not None:
                self.delete_item(table_name, key)
        raise


_transact_write_items.restores_items = True  # type: ignore[attr-defined]


def _save(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[_SavedItem]:
    """Each named item as it is now (None when absent).

    An item that cannot be keyed (no table, a missing key) is skipped: moto
    fails that item without writing it, and still applies the others first.
    """
    saved: list[_SavedItem] = []
    for transact_item in transact_items:
        try:
            ((_, operation),) = transact_item.items()
            table_name = operation["TableName"]
            table = self.get_table(table_name)
            if "Key" in operation:
                key = operation["Key"]
            else:
                item = operation["Item"]
                key = {table.hash_key_attr: item[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = item[table.range_key_attr]
            current = self.get_item(table_name, key)
        except Exception:  # noqa: S112 (never written, so nothing to restore)
            continue
        saved.append((table_name, key, None if current is None else copy.deepcopy(current.to_json()["Attributes"])))
    return saved
