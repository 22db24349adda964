"""Stable write-sharding of per-app collections.

Python's hash() is randomised per process, so shards come from a keyed-less
BLAKE2b digest instead: the same id lands on the same shard on every run,
every machine and every Python version.
"""

import hashlib

SEPARATOR = "#"


def shard_of(item_id: str, shard_count: int) -> int:
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard_count


def shard_key(app_id: str, shard: int) -> str:
    """Partition key of one shard of an app's collection, e.g. ``acme#07``."""
    return f"{app_id}{SEPARATOR}{shard:02d}"


def partition_for(app_id: str, item_id: str, shard_count: int) -> str:
    return shard_key(app_id, shard_of(item_id, shard_count))


def slice_point(item_id: str) -> float:
    """Where ``item_id`` falls in [0, 100): the same on every run, spread evenly, and apart from its shard."""
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8, person=b"steward-slice").digest()
    return int.from_bytes(digest, "big") * 100 / 2**64
