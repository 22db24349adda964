"""Make moto's TransactWriteItems cost what the transaction touches, not what the tables hold.

To undo a cancelled transaction, moto 5.2.5 deep-copies every table the
transaction names, once per item: a 49-member segment change against a
table of a few thousand users took seconds, and grew with every test. This
keeps moto's own transaction logic, stops it from copying whole tables, and
rolls a cancelled transaction back by restoring just the items it named.
moto is pinned exactly, so this internal hook cannot move under us.
"""

import copy
import types
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

_SavedItem = tuple[str, dict[str, Any], dict[str, Any] | None]
_moto_transact_write_items = DynamoDBBackend.transact_write_items


def install() -> None:
    """Idempotent; call before the first transaction (in-process moto or the server's process)."""
    if getattr(DynamoDBBackend.transact_write_items, "restores_items", False):
        return
    tables_not_copied = types.ModuleType("copy")
    tables_not_copied.__dict__.update(copy.__dict__)
    tables_not_copied.deepcopy = _deepcopy_except_tables  # type: ignore[attr-defined]
    dynamodb_models.copy = tables_not_copied  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]


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
