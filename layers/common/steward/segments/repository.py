"""Data access for segments (CatalogTable) and the membership side of users (ProfilesTable).

Layout:
- ``<app>#segment`` / ``seg_<hex>``: the segment, with its member counts;
- ``<app>#segment-name`` / name: claims the name, written with the segment;
- ``<app>#segment#<segment_id>#<shard>`` / user id: one item per member of a
  static segment, write-sharded like the users;
- the user's own ``segments`` set: which static segments it is in.

Every membership change is one transaction over the member item, the user's
set and the segment's counts, so the counts are exact: a maintenance job
finds empty segments (ignoring inactive users) from the segment items alone.
Conditions on the user's ``active`` flag and set make a change that raced
another one fail instead of counting twice.
"""

import json
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pynamodb.exceptions import DeleteError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import size

from steward.conditions import condition_failed
from steward.errors import Conflict, NotFound
from steward.pagination import Page, fit_page
from steward.segments.models import MAX_SEGMENTS_PER_USER, SEGMENT_ID_PREFIX, Segment, SegmentKind
from steward.sharded_query import cursor_after, partition_cursor_after, query_partition, query_shards
from steward.sharding import partition_for, shard_key
from steward.tables import (
    ProfileRecord,
    SegmentMemberRecord,
    SegmentNameRecord,
    SegmentRecord,
    segment_members_collection,
    segment_names_pk,
    segments_pk,
)
from steward.transactions import MEMBERSHIPS_PER_TRANSACTION, Transaction, transient
from steward.users.models import User

logger = logging.getLogger(__name__)

_DRAIN_PAGE = 100
_DRAIN_WORKERS = 16
_SEGMENT = ("segment",)  # the label of the segment's own write (user ids are plain strings)


@dataclass(frozen=True)
class MemberChange:
    user_id: str
    joining: bool  # False: leaving
    inactive: bool  # the user's active flag as read; the write is conditioned on it


@dataclass(frozen=True)
class ChangeResult:
    refused_users: set[str]  # whose user item changed since it was read
    segment_refused: bool  # the segment is gone, deleting, or not static


def segment_not_found(segment_id: str) -> NotFound:
    return NotFound(f"Segment {segment_id!r} does not exist.", code="segment_not_found", field="segment_id")


class SegmentRepository:
    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count

    def create(self, app_id: str, name: str, kind: SegmentKind, criteria: Any, now: datetime) -> Segment:
        """Create a segment and claim its name in one transaction (409 segment_name_taken)."""
        segment_id = f"{SEGMENT_ID_PREFIX}{secrets.token_hex(8)}"
        record = SegmentRecord(
            pk=segments_pk(app_id),
            sk=segment_id,
            name=name,
            kind=kind.value,
            criteria=None if criteria is None else json.dumps(criteria, separators=(",", ":")),
            member_count=0,
            inactive_member_count=0,
            deleting=False,
            created_at=now,
            updated_at=now,
        )
        claim = SegmentNameRecord(
            pk=segment_names_pk(app_id), sk=name, segment_id=segment_id, created_at=now, updated_at=now
        )
        transaction = Transaction()
        transaction.put(_SEGMENT, record, SegmentRecord.sk.does_not_exist())
        transaction.put("name", claim, SegmentNameRecord.sk.does_not_exist())
        if transaction.commit():
            raise Conflict(f"A segment named {name!r} already exists.", code="segment_name_taken", field="name")
        return to_segment(record)

    def get(self, app_id: str, segment_id: str) -> Segment:
        try:
            return to_segment(SegmentRecord.get(segments_pk(app_id), segment_id, consistent_read=True))
        except SegmentRecord.DoesNotExist as exc:
            raise segment_not_found(segment_id) from exc

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[Segment]:
        records, next_cursor = query_partition(SegmentRecord, segments_pk(app_id), cursor, limit)
        # A criteria segment carries up to 64 KB of criteria: a full page could pass Lambda's 6 MB.
        entries = ((to_segment(record), partition_cursor_after(record.sk)) for record in records)
        return fit_page(entries, next_cursor)

    def change_members(self, app_id: str, segment_id: str, changes: list[MemberChange], now: datetime) -> ChangeResult:
        """Apply up to MEMBERSHIPS_PER_TRANSACTION joins and leaves of one static segment, atomically."""
        if len(changes) > MEMBERSHIPS_PER_TRANSACTION:
            raise ValueError(f"At most {MEMBERSHIPS_PER_TRANSACTION} member changes fit in one transaction.")
        transaction = Transaction()
        for change in changes:
            member = SegmentMemberRecord(
                pk=partition_for(segment_members_collection(app_id, segment_id), change.user_id, self.shard_count),
                sk=change.user_id,
                created_at=now,
                updated_at=now,
            )
            profile = ProfileRecord(pk=partition_for(app_id, change.user_id, self.shard_count), sk=change.user_id)
            as_read = ProfileRecord.sk.exists() & (ProfileRecord.active == (not change.inactive))
            if change.joining:
                transaction.put(change.user_id, member)
                room = ProfileRecord.segments.does_not_exist() | (size(ProfileRecord.segments) < MAX_SEGMENTS_PER_USER)
                transaction.update(
                    change.user_id,
                    profile,
                    [ProfileRecord.segments.add({segment_id}), ProfileRecord.version.add(1)],
                    as_read & ~ProfileRecord.segments.contains(segment_id) & room,
                )
            else:
                transaction.delete(change.user_id, member)
                transaction.update(
                    change.user_id,
                    profile,
                    [ProfileRecord.segments.delete({segment_id}), ProfileRecord.version.add(1)],
                    as_read & ProfileRecord.segments.contains(segment_id),
                )
        members = sum(1 if change.joining else -1 for change in changes)
        inactive = sum((1 if change.joining else -1) for change in changes if change.inactive)
        transaction.update(
            _SEGMENT,
            SegmentRecord(pk=segments_pk(app_id), sk=segment_id),
            [
                SegmentRecord.member_count.add(members),
                SegmentRecord.inactive_member_count.add(inactive),
                SegmentRecord.updated_at.set(now),
            ],
            SegmentRecord.sk.exists()
            & (SegmentRecord.kind == SegmentKind.STATIC.value)
            & (SegmentRecord.deleting == False),  # noqa: E712 (a DynamoDB condition)
        )
        refused = transaction.commit()
        return ChangeResult(
            refused_users={label for label in refused if isinstance(label, str)}, segment_refused=_SEGMENT in refused
        )

    def leave_all(self, app_id: str, user: User, now: datetime) -> set[str]:
        """Take a user out of each static segment it is in (before it is deleted).

        Returns the segments it could not leave because they are being deleted
        (their drain removes the member). A user that changed since it was read
        is a Conflict: the caller reads it again.
        """
        kept = set()
        for segment_id in user.segments:
            change = MemberChange(user.user_id, joining=False, inactive=not user.active)
            try:
                result = self.change_members(app_id, segment_id, [change], now)
            except TransactWriteError as exc:
                if transient(exc):  # a bulk change held the segment's counts
                    raise Conflict("The segment is busy; retry the request.", code="concurrent_update") from exc
                raise
            if result.refused_users:
                raise Conflict("The user changed concurrently; retry the request.", code="concurrent_update")
            if result.segment_refused:
                kept.add(segment_id)
        return kept

    def move_user_activity(
        self, app_id: str, user: User, version: int, active: bool, reason: str | None, now: datetime
    ) -> bool:
        """Set the user's active flag and move it between its segments' inactive counts, in one transaction.

        False when the user changed since it was read at ``version`` (its
        segments may differ), or a bulk change held a segment's counts: read
        it again and retry.
        """
        transaction = Transaction()
        transaction.update(
            user.user_id,
            ProfileRecord(pk=partition_for(app_id, user.user_id, self.shard_count), sk=user.user_id),
            [
                ProfileRecord.active.set(active),
                ProfileRecord.deactivated_at.set(now) if not active else ProfileRecord.deactivated_at.remove(),
                ProfileRecord.deactivation_reason.set(reason)
                if not active and reason
                else ProfileRecord.deactivation_reason.remove(),
                ProfileRecord.updated_at.set(now),
                ProfileRecord.version.add(1),
            ],
            ProfileRecord.version == version,  # the segments as read
        )
        for segment_id in user.segments:
            transaction.update(
                segment_id,
                SegmentRecord(pk=segments_pk(app_id), sk=segment_id),
                [SegmentRecord.inactive_member_count.add(-1 if active else 1)],
                SegmentRecord.sk.exists(),
            )
        try:
            return not transaction.commit()
        except TransactWriteError as exc:
            if transient(exc):
                return False
            raise

    def member_ids_page(
        self, app_id: str, segment_id: str, cursor: str | None, limit: int
    ) -> tuple[list[tuple[str, str]], str | None]:
        """Member ids, each with the cursor that resumes right after it, and the page's cursor."""
        records, next_cursor = query_shards(
            SegmentMemberRecord, segment_members_collection(app_id, segment_id), self.shard_count, cursor, limit
        )
        return [(record.sk, cursor_after(record.pk, record.sk)) for record in records], next_cursor

    def start_deleting(self, app_id: str, segment_id: str, now: datetime) -> None:
        """Mark the segment as deleting: from now on no member can join it."""
        try:
            SegmentRecord(pk=segments_pk(app_id), sk=segment_id).update(
                actions=[SegmentRecord.deleting.set(True), SegmentRecord.updated_at.set(now)],
                condition=SegmentRecord.sk.exists(),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                raise segment_not_found(segment_id) from exc
            raise

    def drain(self, app_id: str, segment_id: str, budget: int) -> bool:
        """Remove members of a deleting segment, at most ``budget``; True once none is left.

        Each page first takes the segment out of its users' sets, then deletes
        the member items with BatchWriteItem: a crash in between leaves member
        items that the next call removes again. Reads are consistent, so a member
        that joined just before deleting started is not missed.
        """
        collection = segment_members_collection(app_id, segment_id)
        removed = 0
        for shard in range(self.shard_count):
            while True:
                if removed >= budget:
                    return False
                page = list(
                    SegmentMemberRecord.query(
                        shard_key(collection, shard), consistent_read=True, limit=min(_DRAIN_PAGE, budget - removed)
                    )
                )
                if not page:
                    break
                self._forget_segment(app_id, segment_id, [record.sk for record in page])
                with SegmentMemberRecord.batch_write() as batch:
                    for record in page:
                        batch.delete(record)
                removed += len(page)
        return True

    def remove(self, app_id: str, segment: Segment) -> None:
        """Delete the segment and free its name (members must be gone: see drain).

        Both deletes are conditioned, so a DELETE repeated concurrently (a client
        retrying) never frees the name that a newer segment has claimed since.
        """
        record = SegmentRecord(pk=segments_pk(app_id), sk=segment.segment_id)
        transaction = Transaction()
        transaction.delete(_SEGMENT, record, SegmentRecord.sk.exists())
        transaction.delete(
            "name",
            SegmentNameRecord(pk=segment_names_pk(app_id), sk=segment.name),
            SegmentNameRecord.segment_id == segment.segment_id,
        )
        refused = transaction.commit()
        if refused == {"name"}:  # the name was freed already: the segment item alone is left
            try:
                record.delete(condition=SegmentRecord.sk.exists())
            except DeleteError as exc:
                if not condition_failed(exc):
                    raise
        # A refused segment delete: a concurrent DELETE removed it first.

    def _forget_segment(self, app_id: str, segment_id: str, user_ids: list[str]) -> None:
        def forget(user_id: str) -> None:
            profile = ProfileRecord(pk=partition_for(app_id, user_id, self.shard_count), sk=user_id)
            try:
                profile.update(
                    actions=[ProfileRecord.segments.delete({segment_id}), ProfileRecord.version.add(1)],
                    condition=ProfileRecord.sk.exists(),
                )
            except UpdateError as exc:
                if not condition_failed(exc):  # the user was deleted: nothing to forget
                    raise

        # Conditional updates cannot be batched; they run side by side as in steward.batch.
        with ThreadPoolExecutor(max_workers=_DRAIN_WORKERS) as pool:
            list(pool.map(forget, user_ids))


def to_segment(record: SegmentRecord) -> Segment:
    static = record.kind == SegmentKind.STATIC.value
    members = int(record.member_count) if static else None
    inactive = int(record.inactive_member_count) if static else None
    return Segment(
        segment_id=record.sk,
        name=record.name,
        kind=SegmentKind(record.kind),
        criteria=None if record.criteria is None else json.loads(record.criteria),
        member_count=members,
        inactive_member_count=inactive,
        active_member_count=None if members is None or inactive is None else members - inactive,
        deleting=bool(record.deleting),
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
