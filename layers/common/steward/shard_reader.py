"""Read one app's write-sharded collection in order, under a budget, from a resumable position.

Every walk over shards goes through ``read_shards``: list routes (through
``sharded_query``), the criteria preview and selection, and the bulk
workers. Shards are read in order, straight from DynamoDB's pages, so a
call stops after a bounded number of scanned items even when a filter
matches almost nothing. A position holds only (shard, last sort key): the
partition key is always rebuilt from the caller's app id, so a forged
position cannot reach another app's items.
"""

from dataclasses import dataclass
from typing import Any

from pynamodb.expressions.condition import Condition
from pynamodb.models import Model

from steward.pagination import cursor_str, invalid_cursor
from steward.sharding import shard_key

# Stop reading once a call has looked at this many items (about 150 read
# units for 1 KB items), and hand back a position instead.
MAX_SCANNED_PER_REQUEST = 5000
# DynamoDB's Limit caps the items a page scans; growing it while pages come back
# sparse keeps dense filters from over-reading and sparse ones from many round trips.
_MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Position:
    shard: int
    after: str | None = None  # last sort key read in that shard

    def as_fields(self) -> dict[str, Any]:
        """The position's part of a cursor."""
        return {"shard": self.shard} if self.after is None else {"shard": self.shard, "after": self.after}

    @classmethod
    def from_fields(cls, fields: dict[str, Any], shard_count: int) -> "Position":
        """The position a decoded cursor names, refusing one this API cannot have issued."""
        shard = fields.get("shard")
        if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shard_count:
            raise invalid_cursor()
        return cls(shard, None if fields.get("after") is None else cursor_str(fields, "after"))


@dataclass(frozen=True)
class Batch[M: Model]:
    items: list[M]
    scanned: int
    next: Position | None  # None: every shard up to the end has been read


def read_shards[M: Model](
    model: type[M],
    collection: str,
    shard_count: int,
    start: Position,
    condition: Condition | None = None,
    *,
    max_scanned: int = MAX_SCANNED_PER_REQUEST,
    max_items: int,
    end_shard: int | None = None,
) -> Batch[M]:
    """Items from ``start`` on that pass ``condition``; stops after ``max_scanned`` scanned or ``max_items`` found.

    ``collection`` is the app's collection name (the app id for devices and
    users); ``end_shard`` (exclusive) narrows the walk, e.g. to one shard for
    a worker that owns it.
    """
    end = shard_count if end_shard is None else min(end_shard, shard_count)
    shard, after = start.shard, start.after
    found: list[M] = []
    scanned = 0
    growth = 1
    while shard < end:
        page_size = max(1, min((max_items - len(found)) * growth, max_scanned - scanned, _MAX_PAGE_SIZE))
        partition = shard_key(collection, shard)
        start_key = None if after is None else {"pk": {"S": partition}, "sk": {"S": after}}
        page: dict[str, Any] = next(
            model.query(
                partition, filter_condition=condition, page_size=page_size, last_evaluated_key=start_key
            ).page_iter
        )
        scanned += page.get("ScannedCount", 0)
        raw_items: list[dict[str, Any]] = page.get("Items", [])
        if condition is not None and len(raw_items) < page_size:
            growth *= 2  # a sparse filter; without one, a short page only means the shard ended
        for raw in raw_items:
            found.append(model.from_raw_data(raw))
            if len(found) == max_items:
                # Cut inside the page: what follows this item is read again by the next call.
                return Batch(found, scanned, Position(shard, raw["sk"]["S"]))
        last_key: dict[str, Any] | None = page.get("LastEvaluatedKey")
        if last_key is None:
            shard, after = shard + 1, None
        else:
            after = last_key["sk"]["S"]
        if scanned >= max_scanned and shard < end:
            return Batch(found, scanned, Position(shard, after))
    return Batch(found, scanned, None)
