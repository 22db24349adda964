"""The tag index of devices: the writes that keep tag members and counts in step with ``Device.tags``.

A device's ``tags`` set, the tag's member items and the tag's ``device_count``
only ever change together, in one transaction. Tagging (the tags package)
and device deletion both use these writes; they live with devices so that
tags depends on devices and never the other way round.
"""

from datetime import datetime

from steward.sharding import partition_for
from steward.tables import TagMemberRecord, TagRecord, tag_members_collection, tags_pk
from steward.transactions import Transaction


def member_record(app_id: str, tag: str, device_id: str, shard_count: int) -> TagMemberRecord:
    return TagMemberRecord(pk=partition_for(tag_members_collection(app_id, tag), device_id, shard_count), sk=device_id)


def put_member(
    transaction: Transaction, app_id: str, tag: str, device_id: str, shard_count: int, now: datetime
) -> None:
    record = member_record(app_id, tag, device_id, shard_count)
    record.created_at = record.updated_at = now
    transaction.put(("member", tag, device_id), record)


def delete_member(transaction: Transaction, app_id: str, tag: str, device_id: str, shard_count: int) -> None:
    transaction.delete(("member", tag, device_id), member_record(app_id, tag, device_id, shard_count))


def count_devices(transaction: Transaction, app_id: str, tag: str, delta: int, now: datetime) -> None:
    """Add ``delta`` to the tag's device count, creating the tag on its first device."""
    transaction.update(
        ("counter", tag),
        TagRecord(pk=tags_pk(app_id), sk=tag),
        [
            TagRecord.device_count.add(delta),
            TagRecord.created_at.set(TagRecord.created_at | now),
            TagRecord.updated_at.set(now),
        ],
    )


def release_tags(
    transaction: Transaction, app_id: str, device_id: str, tags: set[str], shard_count: int, now: datetime
) -> None:
    """The writes that take a deleted device out of each of its tags (2 per tag)."""
    for tag in sorted(tags):
        delete_member(transaction, app_id, tag, device_id, shard_count)
        count_devices(transaction, app_id, tag, -1, now)
