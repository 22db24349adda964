"""Labelled transactions, and the local emulator's rollback of a cancelled one."""

from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError

from steward.settings import StoreSettings
from steward.tables import ResourceRecord
from steward.transactions import MAX_TRANSACTION_ITEMS, Transaction

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PK = "app#resource"


def resource(resource_id: str, name: str = "before") -> ResourceRecord:
    return ResourceRecord(pk=PK, sk=resource_id, name=name, channels=["email"], created_at=NOW, updated_at=NOW)


def stored_names() -> dict[str, str]:
    return {record.sk: record.name for record in ResourceRecord.query(PK, consistent_read=True)}


def test_a_transaction_writes_everything(store: StoreSettings) -> None:
    resource("kept").save()
    resource("gone").save()
    transaction = Transaction()
    transaction.update("kept", resource("kept"), [ResourceRecord.name.set("after")], ResourceRecord.sk.exists())
    transaction.delete("gone", resource("gone"))
    transaction.put("new", resource("new"), ResourceRecord.sk.does_not_exist())

    assert transaction.commit() == set()
    assert stored_names() == {"kept": "after", "new": "before"}


def test_a_refused_transaction_names_the_failed_writes_and_writes_nothing(store: StoreSettings) -> None:
    resource("kept").save()
    resource("gone").save()
    resource("taken").save()
    transaction = Transaction()
    # Added out of pynamodb's send order (checks, deletes, puts, updates) on purpose.
    transaction.update("kept", resource("kept"), [ResourceRecord.name.set("after")], ResourceRecord.sk.exists())
    transaction.put("taken", resource("taken", "clobbered"), ResourceRecord.sk.does_not_exist())
    transaction.put("new", resource("new"))
    transaction.delete("gone", resource("gone"))
    transaction.condition_check("missing", ResourceRecord, PK, "missing", ResourceRecord.sk.exists())

    refused = transaction.commit()

    assert refused == {"taken", "missing"}
    assert stored_names() == {"kept": "before", "gone": "before", "taken": "before"}


def test_a_transaction_holds_at_most_100_writes(store: StoreSettings) -> None:
    transaction = Transaction()
    for index in range(MAX_TRANSACTION_ITEMS):
        transaction.put(index, resource(f"r{index}"))

    with pytest.raises(ValueError, match="at most 100"):
        transaction.put("one more", resource("extra"))
    assert transaction.commit() == set()
    assert len(stored_names()) == MAX_TRANSACTION_ITEMS


def test_the_emulator_undoes_earlier_writes_of_a_transaction_with_a_bad_item(store: StoreSettings) -> None:
    client = boto3.client("dynamodb")
    table = store.catalog_table
    written = {"pk": {"S": PK}, "sk": {"S": "written"}, "name": {"S": "x"}}
    keyless = {"pk": {"S": PK}, "name": {"S": "no sort key"}}

    with pytest.raises(ClientError) as cancelled:
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": written}},
                {"Put": {"TableName": table, "Item": keyless}},
            ]
        )

    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert stored_names() == {}
