"""Read one app's sharded collection under a budget, and say how much was read.

The same walk as ``steward.sharded_query.query_shards`` (shards in order,
DynamoDB's own pages, a (shard, sort key) position rebuilt into a key from
the caller's app id), plus what a preview needs on top: the number of items
DynamoDB scanned, and a second budget on the items returned, for criteria
whose residual costs extra reads per item.
"""

from dataclasses import dataclass
from typing import Any

from pynamodb.expressions.condition import Condition
from pynamodb.models import Model

from steward.sharding import shard_key

# DynamoDB's Limit caps the items a page scans; growing it while pages come back
# sparse keeps dense filters from over-reading and sparse ones from many round trips.
_MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Position:
    shard: int
    after: str | None = None  # last sort key read in that shard


@dataclass(frozen=True)
class Batch[M: Model]:
    items: list[M]
    scanned: int
    next: Position | None  # None: every shard has been read


def read_shards[M: Model](
    model: type[M],
    app_id: str,
    shard_count: int,
    start: Position,
    condition: Condition | None,
    *,
    max_scanned: int,
    max_items: int,
) -> Batch[M]:
    """Items from ``start`` on that pass ``condition``; stops after ``max_scanned`` scanned or ``max_items`` found."""
    shard, after = start.shard, start.after
    found: list[M] = []
    scanned = 0
    growth = 1
    while shard < shard_count:
        page_size = max(1, min((max_items - len(found)) * growth, max_scanned - scanned, _MAX_PAGE_SIZE))
        partition = shard_key(app_id, shard)
        start_key = None if after is None else {"pk": {"S": partition}, "sk": {"S": after}}
        page: dict[str, Any] = next(
            model.query(
                partition, filter_condition=condition, page_size=page_size, last_evaluated_key=start_key
            ).page_iter
        )
        scanned += page.get("ScannedCount", 0)
        raw_items: list[dict[str, Any]] = page.get("Items", [])
        if len(raw_items) < page_size:
            growth *= 2
        for raw in raw_items:
            found.append(model.from_raw_data(raw))
            if len(found) == max_items:
                # Cut inside the page: what follows this item is read again by the next request.
                return Batch(found, scanned, Position(shard, raw["sk"]["S"]))
        last_key: dict[str, Any] | None = page.get("LastEvaluatedKey")
        if last_key is None:
            shard, after = shard + 1, None
        else:
            after = last_key["sk"]["S"]
        if scanned >= max_scanned and shard < shard_count:
            return Batch(found, scanned, Position(shard, after))
    return Batch(found, scanned, None)
