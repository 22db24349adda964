"""Paginate one app's write-sharded collection with a single opaque cursor.

Shards are read in order, page by page, straight from DynamoDB's pages so a
request stops after a bounded number of scanned items even when a filter
matches almost nothing. The cursor holds only (shard, last sort key): the
partition key is always rebuilt from the caller's app id.
"""

from typing import Any

from pynamodb.expressions.condition import Condition
from pynamodb.models import Model

from steward.pagination import cursor_str, decode_cursor, encode_cursor, invalid_cursor
from steward.sharding import SEPARATOR, shard_key

# Stop reading once a request has looked at this many items (about 150 read
# units for 1 KB items), and hand back a cursor instead.
MAX_SCANNED_PER_REQUEST = 5000
# With a filter, each read asks for what is still missing and doubles while
# pages come back sparse, so dense filters read little and sparse ones few times.
_MAX_PAGE_SIZE = 1000


def query_shards[M: Model](
    model: type[M],
    app_id: str,
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
    shard, after = _start(cursor, shard_count)
    found: list[M] = []
    scanned = 0
    growth = 1
    while shard < shard_count:
        partition = shard_key(app_id, shard)
        remaining = limit - len(found)
        page_size = min(remaining * growth, _MAX_PAGE_SIZE)
        start_key = None if after is None else {"pk": {"S": partition}, "sk": {"S": after}}
        page: dict[str, Any] = next(
            model.query(
                partition,
                filter_condition=filter_condition,
                page_size=page_size,
                last_evaluated_key=start_key,
            ).page_iter
        )
        scanned += page.get("ScannedCount", 0)
        if filter_condition is not None and len(page.get("Items", [])) < page_size:
            growth *= 2
        for raw in page.get("Items", []):
            found.append(model.from_raw_data(raw))
            if len(found) == limit:
                return found, encode_cursor({"shard": shard, "after": raw["sk"]["S"]})
        last_key: dict[str, Any] | None = page.get("LastEvaluatedKey")
        if last_key is None:
            shard, after = shard + 1, None
        else:
            after = last_key["sk"]["S"]
        if scanned >= max_scanned and shard < shard_count:
            return found, encode_cursor({"shard": shard, "after": after} if after else {"shard": shard})
    return found, None


def _start(cursor: str | None, shard_count: int) -> tuple[int, str | None]:
    position = decode_cursor(cursor)
    if position is None:
        return 0, None
    shard = position.get("shard")
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shard_count:
        raise invalid_cursor()
    return shard, None if position.get("after") is None else cursor_str(position, "after")


def query_partition[M: Model](
    model: type[M], partition: str, cursor: str | None, limit: int, sort_key_prefix: str = ""
) -> tuple[list[M], str | None]:
    """One page of an unsharded partition (a small per-app catalog) and the cursor of what follows."""
    position = decode_cursor(cursor)
    start = None
    if position is not None:
        start = {"pk": {"S": partition}, "sk": {"S": cursor_str(position, "after")}}
    condition = model.sk.startswith(sort_key_prefix) if sort_key_prefix else None  # type: ignore[attr-defined]
    results = model.query(partition, condition, limit=limit, last_evaluated_key=start)
    records = list(results)
    next_cursor = None
    if results.last_evaluated_key is not None and records:
        next_cursor = encode_cursor({"after": results.last_evaluated_key["sk"]["S"]})
    return records, next_cursor


def cursor_after(pk: str, sk: str) -> str:
    """The query_shards cursor that resumes right after the item (pk, sk), for pages cut short."""
    return encode_cursor({"shard": int(pk.rsplit(SEPARATOR, 1)[1]), "after": sk})


def partition_cursor_after(sk: str) -> str:
    """The query_partition cursor that resumes right after the item with this sort key."""
    return encode_cursor({"after": sk})
