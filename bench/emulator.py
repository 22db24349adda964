"""Make the emulator's DynamoDB queries cost what DynamoDB's do, so benchmarks at 100,000 users finish.

moto answers every Query by listing and sorting every item of the table,
then keeping the items of the queried partition: a query's cost grows with
the table, and a job that reads page by page, or looks up each user's
devices in an index, takes time that grows with the square of the app's
size (a 100,000-user run would take days). DynamoDB reads only the queried
partition. This patch hands moto's query just the items of the partition it
names: the table's own partition, or for an index, the items whose index key
is the queried one (grouped once per table and index, and grouped again
after any write to that table). The rest of moto's query (key conditions,
sorting, filters, limits, the start key, the page size) runs unchanged on
the items it would have kept anyway.

It changes the emulator's speed only: what a query returns, and so every
unit the benchmarks count from the items each call touched, stays the same.
Benchmarks only; the tests run moto as it is, and check the patch with
`python -m bench.emulator`, which compares both moto's answers to the same calls.
"""

import base64
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import boto3
from moto import mock_aws
from moto.core.responses import ActionContext
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoResult

_scope = threading.local()
_lock = threading.Lock()
_writes: Counter[str] = Counter()  # per table name: writes so far
# (table name, index name) -> (the table's writes when grouped, items by index key)
_groups: dict[tuple[str, str], tuple[int, dict[DynamoType, list[Item]]]] = {}


def speed_up() -> None:
    """Install both patches (once per process)."""
    index_partitions()
    write_item_responses()


def index_partitions() -> None:
    """Install the partition-scoped queries (once per process)."""
    if getattr(Table.query, "partition_scoped", False):
        return
    all_items = Table.all_items
    query = Table.query

    def scoped_all_items(self: Table) -> list[Item]:
        partition: tuple[Table, list[Item]] | None = getattr(_scope, "partition", None)
        if partition is not None and partition[0] is self:
            return partition[1]
        return all_items(self)

    def scoped_query(self: Table, hash_key: DynamoType | None, *args: Any, **kwargs: Any) -> Any:
        index_name: str | None = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        items = _partition(self, hash_key, index_name, kwargs.get("hash_key_conditions") or [])
        if items is None:
            return query(self, hash_key, *args, **kwargs)
        _scope.partition = (self, items)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _scope.partition = None

    scoped_query.partition_scoped = True  # type: ignore[attr-defined]
    Table.all_items = scoped_all_items  # type: ignore[method-assign]
    Table.query = scoped_query  # type: ignore[method-assign]
    for name, tables_of in _WRITES.items():
        setattr(DynamoDBBackend, name, _counting(getattr(DynamoDBBackend, name), tables_of))


def _partition(
    table: Table, hash_key: DynamoType | None, index_name: str | None, conditions: list[tuple[str, DynamoType]]
) -> list[Item] | None:
    """The items a query of one partition can return, or None to leave the query to moto as it is."""
    if index_name is None:
        if hash_key is None or not table.range_key_attr:
            return None
        return list(table.items.get(hash_key, {}).values())
    if len(conditions) != 1:
        return None
    attribute, value = conditions[0]
    with _lock:
        writes = _writes[table.name]
        cached = _groups.get((table.name, index_name))
        if cached is None or cached[0] != writes:
            grouped: dict[DynamoType, list[Item]] = defaultdict(list)
            for partition in table.items.values():
                items: list[Item] = list(partition.values()) if isinstance(partition, dict) else [partition]
                for item in items:
                    key = item.attrs.get(attribute)
                    if key is not None:
                        grouped[key].append(item)
            cached = (writes, dict(grouped))
            _groups[(table.name, index_name)] = cached
        return list(cached[1].get(value, []))


def _counting(operation: Callable[..., Any], tables_of: Callable[..., list[str]]) -> Callable[..., Any]:
    def counted(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        try:
            return operation(self, *args, **kwargs)
        finally:
            with _lock:
                _writes.update(tables_of(*args, **kwargs))

    return counted


def _named(table_name: str, *args: Any, **kwargs: Any) -> list[str]:
    return [table_name]


def _batch(request_items: dict[str, Any], *args: Any, **kwargs: Any) -> list[str]:
    return list(request_items)


def _transaction(transact_items: list[dict[str, Any]], *args: Any, **kwargs: Any) -> list[str]:
    return [operation["TableName"] for item in transact_items for operation in item.values()]


_WRITES: dict[str, Callable[..., list[str]]] = {
    "put_item": _named,
    "update_item": _named,
    "delete_item": _named,
    "batch_write_item": _batch,
    "transact_write_items": _transaction,
}


# Responses: moto walks every attribute of every returned item through its
# shape-driven serializer, which costs more than the query itself. An item
# response (the items and keys it holds are DynamoDB JSON already) is written
# as JSON directly, binary values base64-encoded as DynamoDB sends them.
_ITEM_RESPONSE_KEYS = frozenset(
    {
        "Attributes",
        "ConsumedCapacity",
        "Count",
        "Item",
        "ItemCollectionMetrics",
        "Items",
        "LastEvaluatedKey",
        "Responses",
        "ScannedCount",
        "UnprocessedItems",
        "UnprocessedKeys",
    }
)


def write_item_responses() -> None:
    """Install the direct JSON writer of item responses (once per process)."""
    original = DynamoResult.execute_result
    if getattr(original, "direct", False):
        return

    def execute_result(self: DynamoResult, context: ActionContext) -> tuple[int, dict[str, str], str]:
        result = self.result
        if isinstance(result, dict) and result.keys() <= _ITEM_RESPONSE_KEYS:
            return 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(result, default=_json_value)
        return original(self, context)  # type: ignore[return-value]

    execute_result.direct = True  # type: ignore[attr-defined]
    DynamoResult.execute_result = execute_result  # type: ignore[method-assign,assignment]


def _json_value(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} in an item response")


# The check: the same calls, answered by moto as it is and by moto patched, give the same answers.


def _calls() -> list[Any]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    table = "emulator-check"
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "group")],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_group",
                "KeySchema": [
                    {"AttributeName": "group", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for index in range(30):
        client.put_item(
            TableName=table,
            Item={
                "pk": {"S": f"p{index % 3}"},
                "sk": {"S": f"s{index:03d}"},
                "group": {"S": f"g{index % 4}"},
                "number": {"N": str(index * 1.5)},
                "binary": {"B": bytes([index, 0, 255])},
                "strings": {"SS": ["a", "b"]},
                "numbers": {"NS": ["1", "2.5"]},
                "binaries": {"BS": [b"\x00\x01", b"\xff"]},
                "list": {"L": [{"S": "x"}, {"N": "3"}, {"M": {"k": {"BOOL": True}}}]},
                "map": {"M": {"none": {"NULL": True}, "b": {"B": b"\x01"}}},
                "flag": {"BOOL": False},
            },
        )
    key = {"pk": {"S": "p0"}, "sk": {"S": "s000"}}

    def by_group(group: str, **kwargs: Any) -> Any:
        return client.query(
            TableName=table,
            IndexName="by_group",
            KeyConditionExpression="#g = :g",
            ExpressionAttributeNames={"#g": "group"},
            ExpressionAttributeValues={":g": {"S": group}},
            **kwargs,
        )

    answers: list[Any] = [
        client.query(
            TableName=table,
            KeyConditionExpression="pk = :p AND sk > :s",
            ExpressionAttributeValues={":p": {"S": "p1"}, ":s": {"S": "s004"}},
            Limit=4,
            ExclusiveStartKey={"pk": {"S": "p1"}, "sk": {"S": "s010"}},
        ),
        by_group("g2", ScanIndexForward=False),
        client.get_item(TableName=table, Key=key, ReturnConsumedCapacity="TOTAL"),
        client.batch_get_item(RequestItems={table: {"Keys": [key, {"pk": {"S": "p2"}, "sk": {"S": "s002"}}]}}),
        client.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #g = :g",
            ExpressionAttributeNames={"#g": "group"},
            ExpressionAttributeValues={":g": {"S": "g9"}},
            ReturnValues="ALL_OLD",
        ),
        by_group("g9"),
    ]
    client.transact_write_items(
        TransactItems=[{"Put": {"TableName": table, "Item": {**key, "sk": {"S": "t"}, "group": {"S": "g9"}}}}]
    )
    client.batch_write_item(
        RequestItems={table: [{"PutRequest": {"Item": {**key, "sk": {"S": "u"}, "group": {"S": "g9"}}}}]}
    )
    answers.append(by_group("g9"))
    client.delete_item(TableName=table, Key=key)
    answers += [by_group("g9"), by_group("g0"), client.scan(TableName=table, Limit=5)]
    for answer in answers:
        answer.pop("ResponseMetadata", None)
        for items in answer.get("Responses", {}).values():
            items.sort(key=str)  # BatchGetItem answers in any order
    return answers


def main() -> None:
    with mock_aws():
        plain = _calls()
    speed_up()
    with mock_aws():
        patched = _calls()
    for number, (expected, answered) in enumerate(zip(plain, patched, strict=True), 1):
        if expected != answered:
            raise SystemExit(f"call {number}: moto answered {expected}, the patched moto {answered}")
    print(f"{len(plain)} answers equal")


if __name__ == "__main__":
    main()
