"""Packed hash buckets: how an audience version's members are laid out and looked up.

An id's partition is CRC-32 of its UTF-8 bytes mod ``partitions`` (the
importer spills and deduplicates per partition); within its partition, its
bucket is its 12-byte BLAKE2b hash mod ``buckets_per_partition``, the same
for every partition and sized from the largest. A bucket holds the sorted
hashes of its members, about 170 (2 KB) on average in the largest partition
and fewer in the others, so a lookup reads one item of under 4 KB. 12 bytes
make a false "member" for a given id a chance of about 1 in 2^96 / 170.
Both hashes are stable: the same id finds the same bucket on every run.
"""

import hashlib
import math
import zlib
from bisect import bisect_left

HASH_BYTES = 12
# Members per bucket on average: 2 KB of hashes, so that even an unlucky bucket stays under 4 KB.
MEMBERS_PER_BUCKET = 170
# The importer spills a file into partitions of about this many bytes, deduplicated one at a time.
PARTITION_BYTES = 4 * 1024 * 1024
MAX_PARTITIONS = 256


def partitions_for(object_bytes: int) -> int:
    return max(1, min(MAX_PARTITIONS, math.ceil(object_bytes / PARTITION_BYTES)))


def buckets_per_partition(largest_partition_members: int) -> int:
    """Every partition has as many buckets: as many as its largest needs, so that no bucket passes 4 KB however
    unevenly the members fall into the partitions (a version's layout keeps the number it was written with)."""
    return max(1, math.ceil(largest_partition_members / MEMBERS_PER_BUCKET))


def buckets_per_partition_of_average(members: int, partitions: int) -> int:
    """The earlier rule, from the average partition's members: fan-out jobs planned before the rule was recorded
    on them pack with it (a partition with more members than the average gets fuller buckets)."""
    return max(1, math.ceil(members / (partitions * MEMBERS_PER_BUCKET)))


def partition_of(user_id: bytes, partitions: int) -> int:
    return zlib.crc32(user_id) % partitions


def member_hash(user_id: bytes) -> bytes:
    return hashlib.blake2b(user_id, digest_size=HASH_BYTES).digest()


def bucket_in_partition(hashed: bytes, per_partition: int) -> int:
    return int.from_bytes(hashed[:8], "big") % per_partition


def bucket_of(user_id: bytes, partitions: int, per_partition: int) -> tuple[int, bytes]:
    """The bucket number of an id, and its hash."""
    hashed = member_hash(user_id)
    return partition_of(user_id, partitions) * per_partition + bucket_in_partition(hashed, per_partition), hashed


def pack(hashes: list[bytes]) -> bytes:
    return b"".join(sorted(hashes))


def contains(packed: bytes, hashed: bytes) -> bool:
    """Binary search over the fixed-width hashes of a bucket."""
    count = len(packed) // HASH_BYTES
    index = bisect_left(range(count), hashed, key=lambda i: packed[i * HASH_BYTES : (i + 1) * HASH_BYTES])
    return index < count and packed[index * HASH_BYTES : (index + 1) * HASH_BYTES] == hashed
