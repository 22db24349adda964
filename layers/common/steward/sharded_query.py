"""Paginate one app's collection with a single opaque cursor: sharded (through the shard reader) or not."""

from pynamodb.expressions.condition import Condition
from pynamodb.models import Model

from steward.pagination import cursor_str, decode_cursor, encode_cursor, invalid_cursor
from steward.shard_reader import MAX_SCANNED_PER_REQUEST, Position, read_shards
from steward.sharding import SEPARATOR


def query_shards[M: Model](
    model: type[M],
    collection: str,
    shard_count: int,
    cursor: str | None,
    limit: int,
    filter_condition: Condition | None = None,
    max_scanned: int = MAX_SCANNED_PER_REQUEST,
) -> tuple[list[M], str | None]:
    """Return up to ``limit`` items of the app's collection and the cursor of what follows.

    ``max_scanned`` bounds the items read per request; collections of large
    items (regions with polygons) pass a smaller one.
    """
    fields = decode_cursor(cursor)
    start = Position(0) if fields is None else Position.from_fields(fields, shard_count)
    batch = read_shards(
        model, collection, shard_count, start, filter_condition, max_scanned=max_scanned, max_items=limit
    )
    return batch.items, None if batch.next is None else encode_cursor(batch.next.as_fields())


def query_partition[M: Model](
    model: type[M], partition: str, cursor: str | None, limit: int, sort_key_prefix: str = ""
) -> tuple[list[M], str | None]:
    """One page of an unsharded partition (a small per-app catalog) and the cursor of what follows."""
    position = decode_cursor(cursor)
    start = None
    if position is not None:
        after = cursor_str(position, "after")
        if not after.startswith(sort_key_prefix):  # DynamoDB refuses a start key outside the key condition
            raise invalid_cursor()
        start = {"pk": {"S": partition}, "sk": {"S": after}}
    condition = model.sk.startswith(sort_key_prefix) if sort_key_prefix else None  # type: ignore[attr-defined]
    results = model.query(partition, condition, limit=limit, last_evaluated_key=start)
    records = list(results)
    next_cursor = None
    if results.last_evaluated_key is not None and records:
        next_cursor = encode_cursor({"after": results.last_evaluated_key["sk"]["S"]})
    return records, next_cursor


def cursor_after(pk: str, sk: str) -> str:
    """The query_shards cursor that resumes right after the item (pk, sk), for pages cut short."""
    return encode_cursor(Position(int(pk.rsplit(SEPARATOR, 1)[1]), sk).as_fields())


def partition_cursor_after(sk: str) -> str:
    """The query_partition cursor that resumes right after the item with this sort key."""
    return encode_cursor({"after": sk})
