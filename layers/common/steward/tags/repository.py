"""Data access for device tags (DevicesTable and CatalogTable).

Tags are a small per-app catalog under one partition (``<app_id>#tags``),
each with its device count; a tag's devices are write-sharded member items
(``<app_id>#tag#<tag>#<shard>``, sk the device id) holding keys only. Every
change is one transaction over the devices' ``tags`` sets, their member
items and the tag's count, so the three never disagree.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from pynamodb.exceptions import DeleteError
from pynamodb.expressions.condition import Condition, size

from steward.conditions import condition_failed
from steward.devices.models import Device
from steward.devices.repository import to_device
from steward.devices.tag_index import count_devices, delete_member, put_member
from steward.errors import Conflict, NotFound
from steward.pagination import Page, fit_page
from steward.sharded_query import cursor_after, query_partition, query_shards
from steward.sharding import partition_for, shard_key
from steward.tables import DeviceRecord, TagMemberRecord, TagRecord, tag_members_collection, tags_pk
from steward.tags.models import MAX_TAGS_PER_DEVICE, Tag
from steward.transactions import Transaction


@dataclass(frozen=True)
class TagChange:
    """Tag (``add``) or untag one device."""

    device_id: str
    add: bool


def tag_not_found(tag: str) -> NotFound:
    return NotFound(f"Tag {tag!r} does not exist.", code="tag_not_found", field="tag")


def tag_not_on_device(device_id: str, tag: str) -> NotFound:
    return NotFound(f"Device {device_id!r} does not carry tag {tag!r}.", code="tag_not_on_device", field="tag")


def too_many_tags(device_id: str) -> Conflict:
    return Conflict(
        f"Device {device_id!r} already carries {MAX_TAGS_PER_DEVICE} tags; untag it first.",
        code="too_many_tags",
        field="tag",
    )


class TagRepository:
    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count

    def get(self, app_id: str, tag: str) -> Tag | None:
        try:
            return _to_tag(TagRecord.get(tags_pk(app_id), tag, consistent_read=True))
        except TagRecord.DoesNotExist:
            return None

    def list_tags(self, app_id: str, cursor: str | None, limit: int) -> Page[Tag]:
        records, next_cursor = query_partition(TagRecord, tags_pk(app_id), cursor, limit)
        return Page[Tag](items=[_to_tag(record) for record in records], next_cursor=next_cursor)

    def list_devices(self, app_id: str, tag: str, cursor: str | None, limit: int) -> Page[Device]:
        members, next_cursor = query_shards(
            TagMemberRecord, tag_members_collection(app_id, tag), self.shard_count, cursor, limit
        )
        keys = [self._device_key(app_id, member.sk) for member in members]
        # Member items hold keys only; one BatchGetItem fetches the page's devices. Reads are
        # eventually consistent, so a device untagged (or deleted) meanwhile is dropped.
        fetched = {record.sk: record for record in DeviceRecord.batch_get(keys)} if keys else {}
        devices = (
            (to_device(fetched[member.sk]), cursor_after(member.pk, member.sk))
            for member in members
            if member.sk in fetched and tag in (fetched[member.sk].tags or ())
        )
        return fit_page(devices, next_cursor)

    def device_tags(self, app_id: str, device_ids: Collection[str]) -> dict[str, frozenset[str]]:
        """The tags of each of these devices that exists, read consistently (pynamodb asks 100 keys a call)."""
        if not device_ids:
            return {}
        keys = [self._device_key(app_id, device_id) for device_id in device_ids]
        records = DeviceRecord.batch_get(keys, consistent_read=True, attributes_to_get=["sk", "tags"])
        return {record.sk: frozenset(record.tags or ()) for record in records}

    def first_devices(self, app_id: str, tag: str, limit: int) -> list[str]:
        """Up to ``limit`` ids of devices carrying the tag, from the first shard on, read consistently.

        A bulk untag calls it again after each batch: what it untagged is gone,
        so each call sees what is left, and a retried call sees the same devices.
        """
        collection = tag_members_collection(app_id, tag)
        found: list[str] = []
        for shard in range(self.shard_count):
            if len(found) >= limit:
                break
            members = TagMemberRecord.query(
                shard_key(collection, shard), consistent_read=True, limit=limit - len(found)
            )
            found.extend(member.sk for member in members)
        return found

    def active_devices(self, app_id: str, tag: str, device_ids: Collection[str]) -> list[str]:
        """The devices among these that carry the tag and are active, read consistently, in id order."""
        if not device_ids:
            return []
        keys = [self._device_key(app_id, device_id) for device_id in device_ids]
        records = DeviceRecord.batch_get(keys, consistent_read=True, attributes_to_get=["sk", "tags", "active"])
        return sorted(record.sk for record in records if record.active and tag in (record.tags or ()))

    def delete_if_unused(self, app_id: str, tag: str) -> bool:
        """Delete the tag's item while no device carries it: True once it is gone, False when devices carry it.

        The count changes in the same transactions as the member items, so a
        count of 0 means no member is left; a tag already gone is left alone.
        """
        record = TagRecord(pk=tags_pk(app_id), sk=tag)
        try:
            record.delete(condition=TagRecord.sk.does_not_exist() | (TagRecord.device_count == 0))
        except DeleteError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def change(self, app_id: str, tag: str, changes: list[TagChange], now: datetime) -> set[str]:
        """Apply ``changes`` (at most 49 devices) and the tag's count in one transaction.

        Returns the ids of the devices whose condition failed (nothing was
        written then): a device that is gone, already (or no longer) carries
        the tag, or is full. Other failures raise.
        """
        transaction = Transaction()
        for change in changes:
            device = DeviceRecord(pk=partition_for(app_id, change.device_id, self.shard_count), sk=change.device_id)
            # The version bump makes identify's read-modify-write retry instead of writing back stale tags.
            touch = [DeviceRecord.updated_at.set(now), DeviceRecord.version.add(1)]
            if change.add:
                transaction.update(change.device_id, device, [DeviceRecord.tags.add({tag}), *touch], _can_add(tag))
                put_member(transaction, app_id, tag, change.device_id, self.shard_count, now)
            else:
                transaction.update(
                    change.device_id, device, [DeviceRecord.tags.delete({tag}), *touch], DeviceRecord.tags.contains(tag)
                )
                delete_member(transaction, app_id, tag, change.device_id, self.shard_count)
        if changes:
            delta = sum(1 if change.add else -1 for change in changes)
            count_devices(transaction, app_id, tag, delta, now)
        return {label for label in transaction.commit() if isinstance(label, str)}

    def _device_key(self, app_id: str, device_id: str) -> tuple[str, str]:
        return partition_for(app_id, device_id, self.shard_count), device_id


def _can_add(tag: str) -> Condition:
    """The device exists, lacks the tag and has room for it (``size`` of a missing set is no number)."""
    has_room = DeviceRecord.tags.does_not_exist() | (size(DeviceRecord.tags) < MAX_TAGS_PER_DEVICE)
    condition: Condition = DeviceRecord.sk.exists() & ~DeviceRecord.tags.contains(tag) & has_room
    return condition


def _to_tag(record: TagRecord) -> Tag:
    return Tag(
        tag=record.sk,
        device_count=int(record.device_count),
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
