"""The split planner of the split_audience job: which of the segments ``<prefix>-1`` .. ``<prefix>-N`` each user joins.

Workers run in parallel, one per shard, and each sees only its own shard's
users, so the split must be computable user by user without sorting the
audience in memory. The order is fixed instead of sorted:

1. A counting pass counts the selected users of every shard (``counts``,
   in shard order).
2. The global order is (shard, user id): a shard's users are read in
   sort-key order, so user ``k`` (from 0) of shard ``s`` has the rank
   ``sum(counts[:s]) + k``. The same data gives the same ranks on every
   run, with no randomness. Shards are a stable hash of the user id, so the
   segments are not alphabetical slices of the ids.
3. Ranks are cut into N contiguous runs: the first ``total % N`` segments
   get ``ceil(total / N)`` users and the others ``floor(total / N)``, so
   sizes differ by at most one.

**Drift.** Users can be added or removed between the counting pass and the
assigning pass. The plan is fixed by the counting pass and never grows: the
k-th user a worker reads in its shard gets the rank ``offset + k`` only
while ``k`` is below the shard's count. Users read past the count are
skipped and reported as ``drifted`` (the last ones in sort-key order, not
necessarily the new ones); a shard that yields fewer users than counted
leaves its last ranks empty. So no segment is ever larger than planned; a
segment can come out smaller, and the job reports how many users drifted.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from steward.errors import InvalidInput


class SplitPlan:
    """How ``total`` selected users are cut into segments, by number (``num_segments``) or size (``max_segment_size``).

    With ``num_segments`` the number is kept even when there are fewer users
    than segments: the last segments are then empty. With
    ``max_segment_size`` there are ``ceil(total / max)`` segments, none larger
    than the maximum, and none at all when nothing is selected.
    """

    __slots__ = ("_base", "_larger", "num_segments", "total")

    def __init__(self, total: int, *, num_segments: int | None = None, max_segment_size: int | None = None) -> None:
        if total < 0:
            raise InvalidInput("the number of selected users cannot be negative", field="total")
        if (num_segments is None) == (max_segment_size is None):
            raise InvalidInput("give either num_segments or max_segment_size", field="num_segments")
        if num_segments is not None:
            if num_segments < 1:
                raise InvalidInput("num_segments must be at least 1", field="num_segments")
            count = num_segments
        else:
            assert max_segment_size is not None  # one of the two, checked above
            if max_segment_size < 1:
                raise InvalidInput("max_segment_size must be at least 1", field="max_segment_size")
            count = math.ceil(total / max_segment_size)
        self.total = total
        self.num_segments = count
        # The first ``_larger`` segments hold ``_base + 1`` users, the rest ``_base``.
        self._base, self._larger = divmod(total, count) if count else (0, 0)

    def __repr__(self) -> str:
        return f"SplitPlan(total={self.total}, num_segments={self.num_segments})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SplitPlan) and (self.total, self.num_segments) == (other.total, other.num_segments)

    def __hash__(self) -> int:
        return hash((self.total, self.num_segments))

    @property
    def sizes(self) -> tuple[int, ...]:
        """The planned size of each segment, segment 1 first."""
        return tuple(self._base + 1 if index < self._larger else self._base for index in range(self.num_segments))

    @property
    def empty_segments(self) -> int:
        """Segments that get nobody: only when ``num_segments`` is larger than the number of users."""
        return self.num_segments - min(self.total, self.num_segments)

    def segment_of(self, rank: int) -> int:
        """The segment (from 1) of the user at ``rank`` (from 0) in the global (shard, user id) order."""
        if not 0 <= rank < self.total:
            raise ValueError(f"rank {rank} is outside 0..{self.total - 1}")
        boundary = self._larger * (self._base + 1)  # the first rank of the smaller segments
        if rank < boundary:
            return rank // (self._base + 1) + 1
        return self._larger + (rank - boundary) // self._base + 1

    def shard_offsets(self, counts: Sequence[int]) -> tuple[int, ...]:
        """The rank of each shard's first user: ``sum(counts[:s])``. The counts must add up to the plan's total."""
        if any(count < 0 for count in counts):
            raise ValueError("a shard's count cannot be negative")
        if sum(counts) != self.total:
            raise ValueError(f"the shard counts add up to {sum(counts)}, not to the plan's {self.total}")
        return tuple(accumulate(counts[:-1], initial=0)) if counts else ()

    def shard(self, counts: Sequence[int], shard: int) -> "ShardSplit":
        """What the worker of ``shard`` needs: where its users start in the global order, and how many were counted."""
        if not 0 <= shard < len(counts):
            raise ValueError(f"shard {shard} is outside 0..{len(counts) - 1}")
        return ShardSplit(plan=self, shard=shard, offset=self.shard_offsets(counts)[shard], count=counts[shard])


def segment_name(prefix: str, segment: int) -> str:
    """The name of a segment of the split: ``<prefix>-<n>``, n from 1."""
    return f"{prefix}-{segment}"


@dataclass(frozen=True, slots=True)
class Drift:
    """How a shard's assigning pass differed from its count: users read past the count, or counted but not read."""

    drifted: int  # read after the shard's counted number: skipped, in no segment
    missing: int  # counted but not read (removed meanwhile): their ranks stay empty

    @property
    def changed(self) -> bool:
        return bool(self.drifted or self.missing)


@dataclass(frozen=True, slots=True)
class ShardSplit:
    """One shard's part of a plan.

    The shard's worker numbers the users it reads from 0 (``index``), in
    sort-key order, and carries the number across pages in its position.
    """

    plan: SplitPlan
    shard: int
    offset: int
    count: int

    def segment_at(self, index: int) -> int | None:
        """The segment of the ``index``-th user read in this shard, or None when it is past the count (drifted)."""
        if index < 0:
            raise ValueError(f"index {index} cannot be negative")
        if index >= self.count:
            return None
        return self.plan.segment_of(self.offset + index)

    def drift(self, read: int) -> Drift:
        """The check at the end of the shard: ``read`` users were read where ``count`` were counted."""
        if read < 0:
            raise ValueError(f"read {read} cannot be negative")
        return Drift(drifted=max(0, read - self.count), missing=max(0, self.count - read))
