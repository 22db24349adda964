"""Reading an app's user ids once, but only when the app is small enough for that to be the cheaper way.

A caller (the audience importer) would rather read the app's users once than
look ``limit`` ids up one by one when the app has at most ``limit`` users.
Users spread evenly over the write shards by a stable hash, so the first
shard's count times the shard count estimates the app's users. The first
shard is read up to ``limit / shards`` users: past that the app is too big,
and the read stops having spent a shard's share of the lookups' cost at
most (reading until ``limit`` users, as before, could spend as much as the
lookups themselves). Otherwise every shard is read, still bounded by
``limit`` should the estimate be wrong.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

logger = logging.getLogger(__name__)
PAGE = 1000


@dataclass(frozen=True)
class UsersRead:
    read_all: bool
    sampled: int  # users read from the first shard
    estimate: int  # the app's users: counted when read whole, else the first shard's share times the shards
    read: int  # users read in all


def read_if_few(
    shard_count: int, limit: int, read_shard: Callable[[int], Iterable[bytes]], sink: Callable[[list[bytes]], None]
) -> UsersRead:
    """Hand ``sink`` every user id, a page at a time, if the app has at most ``limit`` users."""
    cap = limit // shard_count + 1
    read = sampled = 0
    for shard in range(shard_count):
        page: list[bytes] = []
        for user_id in read_shard(shard):
            read += 1
            if shard == 0:
                sampled += 1
                if sampled > cap:
                    return UsersRead(False, sampled, sampled * shard_count, read)
            if read > limit:
                return UsersRead(False, sampled, sampled * shard_count, read)
            page.append(user_id)
            if len(page) == PAGE:
                sink(page)
                page = []
        if page:
            sink(page)
    return UsersRead(True, sampled, read, read)
