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

Bulk joins (the split_audience job) cost less: each user's set is one
conditional UpdateItem, the member items go out with BatchWriteItem, and a
page's counts are added once, in one transaction with a receipt
(``join_many``, ``add_counts_once``). The counts are exact again once the
page's receipt is written.
"""

import json
import logging
import random
import secrets
import time
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pynamodb.exceptions import DeleteError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import size

from steward.batch import chunks
from steward.batch_writes import write_all
from steward.conditions import MAX_ATTEMPTS, condition_failed, resend_may_help
from steward.errors import Conflict, NotFound
from steward.pagination import Page, fit_page
from steward.retryable import throttled, transient
from steward.segments.models import MAX_SEGMENTS_PER_USER, SEGMENT_ID_PREFIX, Segment, SegmentKind
from steward.sharded_query import cursor_after, partition_cursor_after, query_partition, query_shards
from steward.sharding import partition_for, shard_key
from steward.tables import (
    ProfileRecord,
    ReceiptRecord,
    SegmentMemberRecord,
    SegmentNameRecord,
    SegmentRecord,
    receipts_pk,
    segment_members_collection,
    segment_names_pk,
    segments_pk,
)
from steward.transactions import (
    MAX_TRANSACTION_ITEMS,
    MEMBERSHIPS_PER_TRANSACTION,
    Transaction,
    applied,
)
from steward.users.models import User

logger = logging.getLogger(__name__)

_DRAIN_PAGE = 100
_DRAIN_WORKERS = 16
_SEGMENT = ("segment",)  # the label of the segment's own write (user ids are plain strings)
_RECEIPT = ("receipt",)
_JOIN_WORKERS = 16  # the profiles table's connection pool
_BACKOFF_SECONDS = 0.05
# A request's pauses on a busy segment: ceilings of 0.1, 0.2, 0.2 s (capped), so at most 0.5 s in all.
REQUEST_PAUSES = 3
_REQUEST_PAUSE_CAP = 0.2
SEGMENT_NAME_TAKEN = "segment_name_taken"


class SegmentBusy(Conflict):
    """A segment's counts stayed busy for as long as the caller would wait: retry later.

    Every membership change updates its segment's counts, so concurrent changes to one segment (deletions
    of its members, joins, a bulk change) conflict there; ``throttled`` when DynamoDB refused them instead.
    """

    def __init__(self, *, throttled: bool) -> None:
        super().__init__(
            "Other changes to one of the user's segments kept its member counts busy; retry the request.",
            code="concurrent_update",
        )
        self.throttled = throttled


@dataclass
class WaitBudget:
    """How long leaving segments waits out other writes to a segment's counts (their transactions are short).

    Each segment is tried up to MAX_ATTEMPTS times, with a doubling pause (0.1 s, then 0.2, 0.4, 0.8: about
    1.5 s a segment). ``retries`` caps the pauses of the whole call that owns the budget, across its segments
    and rounds (None: no cap): a request answers soon (``for_request``), where a job or a sweep can wait.
    """

    retries: int | None = None
    jitter: bool = False

    @classmethod
    def for_request(cls) -> "WaitBudget":
        """REQUEST_PAUSES pauses in all, each drawn at random up to its doubling ceiling (full jitter, so that
        parallel requests on one segment do not retry in step), capped: at most 0.5 s in all."""
        return cls(REQUEST_PAUSES, jitter=True)

    @property
    def spent(self) -> bool:
        return self.retries == 0

    def wait(self, attempt: int) -> bool:
        """After ``attempt`` tries of one segment: pause and True to try again, or False to give up."""
        if attempt >= MAX_ATTEMPTS or self.spent:
            return False
        if self.retries is not None:
            self.retries -= 1
        ceiling = _BACKOFF_SECONDS * 2**attempt
        time.sleep(random.uniform(0, min(ceiling, _REQUEST_PAUSE_CAP)) if self.jitter else ceiling)  # noqa: S311
        return True


@dataclass(frozen=True)
class MemberChange:
    user_id: str
    joining: bool  # False: leaving
    inactive: bool  # the user's active flag as read; the write is conditioned on it


class JoinOutcome(StrEnum):
    JOINED = "joined"
    AT_LIMIT = "at_limit"  # already in MAX_SEGMENTS_PER_USER segments
    GONE = "gone"  # the user no longer exists
    ALREADY_MEMBER = "already_member"  # added (and counted) by someone else
    FAILED = "failed"  # DynamoDB refused the write as sent


@dataclass(frozen=True)
class Join:
    user_id: str
    segment_id: str


@dataclass(frozen=True)
class JoinResult:
    outcome: JoinOutcome
    inactive: bool = False  # JOINED: the user's active flag was false when it joined
    error: str = ""  # FAILED: what DynamoDB said

    @property
    def joined(self) -> bool:
        return self.outcome is JoinOutcome.JOINED


# A segment's (members, inactive members) to add.
MemberCounts = tuple[int, int]


@dataclass(frozen=True)
class ChangeResult:
    refused_users: set[str]  # whose user item changed since it was read
    segment_refused: bool  # the segment is gone, deleting, or not static


def segment_not_found(segment_id: str) -> NotFound:
    return NotFound(f"Segment {segment_id!r} does not exist.", code="segment_not_found", field="segment_id")


def name_taken(name: str) -> Conflict:
    return Conflict(f"A segment named {name!r} already exists.", code=SEGMENT_NAME_TAKEN, field="name")


class SegmentRepository:
    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count

    def create(self, app_id: str, name: str, kind: SegmentKind, criteria: Any, now: datetime) -> Segment:
        """Create a segment and claim its name in one transaction (409 segment_name_taken)."""
        record, refused = self._create(app_id, f"{SEGMENT_ID_PREFIX}{secrets.token_hex(8)}", name, kind, criteria, now)
        if refused:
            raise name_taken(name)
        return to_segment(record)

    def create_static_as(self, app_id: str, segment_id: str, name: str, now: datetime) -> Segment:
        """Create an empty static segment with a chosen id; creating it again (a retried step) changes nothing.

        A bulk job names its segments' ids, so a step retried after it created
        some finds them its own. A name held by another segment is a Conflict
        (segment_name_taken).
        """
        record, refused = self._create(app_id, segment_id, name, SegmentKind.STATIC, None, now)
        if not refused:
            return to_segment(record)
        if self.names_taken(app_id, [name]).get(name) == segment_id:
            return self.get(app_id, segment_id)
        raise name_taken(name)

    def names_taken(self, app_id: str, names: Sequence[str]) -> dict[str, str]:
        """The names among ``names`` that a segment holds, each with that segment's id (consistent BatchGetItem)."""
        keys = [(segment_names_pk(app_id), name) for name in dict.fromkeys(names)]
        if not keys:
            return {}
        return {record.sk: record.segment_id for record in SegmentNameRecord.batch_get(keys, consistent_read=True)}

    def _create(
        self, app_id: str, segment_id: str, name: str, kind: SegmentKind, criteria: Any, now: datetime
    ) -> tuple[SegmentRecord, bool]:
        """The segment and its name claim in one transaction; True when a condition refused it (nothing written)."""
        record, claim = _new_segment(app_id, segment_id, name, kind, criteria, now)
        transaction = Transaction()
        transaction.put(_SEGMENT, record, SegmentRecord.sk.does_not_exist())
        transaction.put("name", claim, SegmentNameRecord.sk.does_not_exist())
        return record, bool(transaction.commit())

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
        _add_counts(transaction, _SEGMENT, app_id, segment_id, (members, inactive), now)
        refused = transaction.commit()
        return ChangeResult(
            refused_users={label for label in refused if isinstance(label, str)}, segment_refused=_SEGMENT in refused
        )

    def leave_all(self, app_id: str, user: User, now: datetime, budget: WaitBudget | None = None) -> set[str]:
        """Take a user out of each static segment it is in (before it is deleted).

        Returns the segments it could not leave because they are being deleted
        (their drain removes the member). A segment whose counts another write
        holds (or DynamoDB throttles) is tried again after a pause, as
        ``budget`` allows (by default, up to MAX_ATTEMPTS tries per segment);
        still busy, it is ``SegmentBusy``. A user that changed since it was
        read is a Conflict: the caller reads it again.
        """
        budget = budget or WaitBudget()
        kept = set()
        for segment_id in user.segments:
            change = MemberChange(user.user_id, joining=False, inactive=not user.active)
            attempt = 0
            while True:
                try:
                    result = self.change_members(app_id, segment_id, [change], now)
                    break
                except TransactWriteError as exc:
                    attempt += 1
                    if not transient(exc):
                        raise
                    if not budget.wait(attempt):  # other writes held the segment's counts all along
                        raise SegmentBusy(throttled=throttled(exc)) from exc
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
        return applied(transaction)

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
                write_all(SegmentMemberRecord, page, delete=True)
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

    # Bulk joins (split_audience): members written without a transaction per chunk, counts added per page.

    def join_many(self, app_id: str, joins: Sequence[Join], now: datetime) -> list[JoinResult]:
        """Add each user to its static segment, leaving the segments' counts to ``add_counts_once``.

        Each user's ``segments`` set is one conditional UpdateItem (conditions
        cannot be batched, so they run side by side): the user must exist, not
        be in the segment yet, and be in fewer than MAX_SEGMENTS_PER_USER
        segments. The update returns the user as written, so ``inactive`` is
        the user's state at the moment it joined, which is what a later change
        of its active flag moves between the counts. Then the member items of
        those that joined go out with BatchWriteItem (puts are idempotent).

        ``now`` marks the caller's writes: a job writes every item with its
        one moment. A user found in the segment already is the caller's own
        join when its member item is missing (a crash came between the two
        writes) or was written at ``now`` (a repeated call): JOINED again.
        Otherwise someone else added it, and counted it: ALREADY_MEMBER.

        An error that sending again might cure (throttling, a timeout) is
        raised: the caller repeats the whole call, which these writes allow.
        """

        def join(change: Join) -> JoinResult:
            profile = ProfileRecord(pk=partition_for(app_id, change.user_id, self.shard_count), sk=change.user_id)
            room = ProfileRecord.segments.does_not_exist() | (size(ProfileRecord.segments) < MAX_SEGMENTS_PER_USER)
            try:
                profile.update(
                    actions=[ProfileRecord.segments.add({change.segment_id}), ProfileRecord.version.add(1)],
                    condition=ProfileRecord.sk.exists() & ~ProfileRecord.segments.contains(change.segment_id) & room,
                )
            except UpdateError as exc:
                if condition_failed(exc):
                    return self._refused_join(app_id, change, now)
                if resend_may_help(exc):
                    raise
                return JoinResult(JoinOutcome.FAILED, error=str(exc.cause_response_message or exc))
            return JoinResult(JoinOutcome.JOINED, inactive=not profile.active)

        if not joins:
            return []
        with ThreadPoolExecutor(max_workers=min(_JOIN_WORKERS, len(joins))) as pool:
            results = list(pool.map(join, joins))
        joined = [change for change, result in zip(joins, results, strict=True) if result.joined]
        write_all(SegmentMemberRecord, (self._member(app_id, change, now) for change in joined))
        return results

    def open_to_members(self, app_id: str, segment_ids: Sequence[str]) -> set[str]:
        """Those of ``segment_ids`` that members can join: static segments that exist and are not being deleted."""
        keys = [(segments_pk(app_id), segment_id) for segment_id in dict.fromkeys(segment_ids)]
        if not keys:
            return set()
        records = SegmentRecord.batch_get(keys, consistent_read=True)
        return {record.sk for record in records if record.kind == SegmentKind.STATIC.value and not record.deleting}

    def add_counts_once(
        self, app_id: str, scope: str, key: str, counts: Mapping[str, MemberCounts], now: datetime
    ) -> set[str]:
        """Add ``counts`` to the static segments, once per (``scope``, ``key``): a repeated call adds nothing.

        Each transaction writes a receipt (``key`` and a chunk number, in
        ``scope``) on the condition that it does not exist, with the counts'
        updates: a call repeated after a crash finds its receipts and changes
        nothing. Counts are added, not set, so the changes others make
        meanwhile (a member's active flag, a member removed) stay counted.
        Returns the segments that are gone, being deleted or not static:
        nothing was added to them.
        """
        refused: set[str] = set()
        for number, chunk in enumerate(chunks(sorted(counts), MAX_TRANSACTION_ITEMS - 1)):
            receipt = ReceiptRecord(pk=receipts_pk(app_id, scope), sk=f"{key}#{number}", created_at=now, updated_at=now)
            pending = list(chunk)
            attempt = 0
            while True:
                transaction = Transaction()
                transaction.put(_RECEIPT, receipt, ReceiptRecord.sk.does_not_exist())
                for segment_id in pending:
                    _add_counts(transaction, segment_id, app_id, segment_id, counts[segment_id], now)
                try:
                    failed = transaction.commit()
                except TransactWriteError as exc:
                    # A member's change of state held a segment's counts for a moment: send again.
                    attempt += 1
                    if not transient(exc) or attempt >= MAX_ATTEMPTS:
                        raise
                    time.sleep(_BACKOFF_SECONDS * 2**attempt)
                    continue
                if _RECEIPT in failed or not failed:
                    break  # counted by an earlier call, or now
                gone = {label for label in failed if isinstance(label, str)}
                refused |= gone
                pending = [segment_id for segment_id in pending if segment_id not in gone]
        return refused

    def forget_receipts(self, app_id: str, scope: str) -> None:
        """Delete the receipts of ``scope`` once nothing can repeat its changes (the job has ended)."""
        write_all(ReceiptRecord, ReceiptRecord.query(receipts_pk(app_id, scope), consistent_read=True), delete=True)

    def member_item(self, app_id: str, change: Join, now: datetime) -> dict[str, dict[str, Any]]:
        """A member item as DynamoDB stores it (DynamoDB JSON): what its write is billed on."""
        item: dict[str, dict[str, Any]] = self._member(app_id, change, now).serialize()
        return item

    def receipt_item(self, app_id: str, scope: str, key: str, now: datetime) -> dict[str, dict[str, Any]]:
        """A receipt of ``add_counts_once`` as stored."""
        record = ReceiptRecord(pk=receipts_pk(app_id, scope), sk=f"{key}#0", created_at=now, updated_at=now)
        item: dict[str, dict[str, Any]] = record.serialize()
        return item

    def segment_items(self, app_id: str, segment_id: str, name: str, now: datetime) -> list[dict[str, dict[str, Any]]]:
        """A new static segment and its name claim as stored: what creating them is billed on.

        The counts are given seven digits, as they will have once members are counted.
        """
        record, claim = _new_segment(app_id, segment_id, name, SegmentKind.STATIC, None, now)
        record.member_count = record.inactive_member_count = 10**6
        return [record.serialize(), claim.serialize()]

    def _member(self, app_id: str, change: Join, now: datetime) -> SegmentMemberRecord:
        return SegmentMemberRecord(
            pk=partition_for(segment_members_collection(app_id, change.segment_id), change.user_id, self.shard_count),
            sk=change.user_id,
            created_at=now,
            updated_at=now,
        )

    def _refused_join(self, app_id: str, change: Join, now: datetime) -> JoinResult:
        """Why a join's condition failed, read again (see ``join_many``)."""
        try:
            record = ProfileRecord.get(
                partition_for(app_id, change.user_id, self.shard_count), change.user_id, consistent_read=True
            )
        except ProfileRecord.DoesNotExist:
            return JoinResult(JoinOutcome.GONE)
        if change.segment_id not in (record.segments or ()):
            return JoinResult(JoinOutcome.AT_LIMIT)
        member = self._member(app_id, change, now)
        try:
            member.refresh(consistent_read=True)
        except SegmentMemberRecord.DoesNotExist:
            return JoinResult(JoinOutcome.JOINED, inactive=not record.active)
        if member.created_at == now:
            return JoinResult(JoinOutcome.JOINED, inactive=not record.active)
        return JoinResult(JoinOutcome.ALREADY_MEMBER)

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


def _add_counts(
    transaction: Transaction, label: Hashable, app_id: str, segment_id: str, counts: MemberCounts, now: datetime
) -> None:
    """Add (members, inactive members) to a static segment's counts; refused when it is gone or being deleted."""
    members, inactive = counts
    transaction.update(
        label,
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


def _new_segment(
    app_id: str, segment_id: str, name: str, kind: SegmentKind, criteria: Any, now: datetime
) -> tuple[SegmentRecord, SegmentNameRecord]:
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
    return record, claim


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
