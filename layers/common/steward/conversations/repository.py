"""Data access for conversations: one CatalogTable item each, write-sharded, with a due-date index.

Every item carries its place in the due index (``due_pk``, ``due_sk``): the
index partition of its settings group, status and shard, sorted by the time that ages it
(``last_activity_at``, or ``status_changed_at`` in delete). Every write
rewrites both and adds one to ``version``, which the index projects; the
sweep's conditional writes test that version, so any write since the sweep
read the index wins, activity in delete included (which changes neither key).
"""

import itertools
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pynamodb.exceptions import DeleteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from steward.conditions import condition_failed, read_modify_write, save_versioned
from steward.conversations.models import Conversation, ConversationFilter, ConversationStatus
from steward.conversations.retention import PURGED
from steward.errors import NotFound
from steward.pagination import Page, cursor_str, decode_cursor, encode_cursor, fit_page
from steward.sharded_query import cursor_after, query_shards
from steward.sharding import partition_for, shard_key, shard_of
from steward.tables import (
    ConversationRecord,
    conversation_user_key,
    conversations_collection,
    conversations_due_collection,
    due_group,
)

_CLOCK_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# Sorts after '#' (what follows the clock in a due key): "< cutoff + _AFTER_CLOCK" includes the cutoff itself.
_AFTER_CLOCK = "$"
# A user's conversations: index entries (keys and status, some 120 bytes) read per Query call, and
# conversations read per consistent BatchGetItem.
_USER_INDEX_PAGE = 1000
_USER_PAGE = 100
# Conversations in delete the user check reads at most (10 consistent BatchGetItem calls, some 2 s).
USER_CHECK_BUDGET = 1000
TOO_MANY_TO_CHECK = "too_many_to_check"


@dataclass(frozen=True)
class UserKeeper:
    """Why a user is kept: its live conversation, or None when it has too many in delete to check."""

    conversation_id: str | None

    @property
    def detail(self) -> str:
        return TOO_MANY_TO_CHECK if self.conversation_id is None else f"conversation {self.conversation_id}"


def conversation_not_found(conversation_id: str) -> NotFound:
    return NotFound(
        f"Conversation {conversation_id!r} does not exist.", code="conversation_not_found", field="conversation_id"
    )


def aging_clock(conversation: Conversation) -> datetime:
    """The time a conversation's idleness counts from: its last activity, or for delete its entry into delete."""
    if conversation.status == ConversationStatus.DELETE:
        return conversation.status_changed_at
    return conversation.last_activity_at


def clock_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime(_CLOCK_FORMAT)


@dataclass(frozen=True)
class DueEntry:
    """One due-index entry: enough for the sweep to decide without reading the conversation."""

    conversation_id: str
    status: ConversationStatus
    channel: str
    user_id: str | None
    clock: datetime
    due_sk: str
    version: int  # the conversation's version as the index showed it
    group: str  # the due-index group it was read from


class ConversationRepository:
    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count

    def create(self, app_id: str, conversation: Conversation, now: datetime, overridden: frozenset[str]) -> None:
        """``overridden``: the app's channels with retention overrides, which choose the due-index group."""
        record = self.record(app_id, conversation, now, overridden)
        if not save_versioned(record, None):
            raise RuntimeError("A fresh conversation id was taken.")  # 128 random bits: never in practice

    def get(self, app_id: str, conversation_id: str, *, consistent: bool = False) -> Conversation | None:
        record = self._get_record(app_id, conversation_id, consistent)
        return None if record is None else to_conversation(record)

    def update(
        self,
        app_id: str,
        conversation_id: str,
        change: Callable[[Conversation], Conversation],
        now: datetime,
        overridden: frozenset[str],
    ) -> Conversation:
        """Read, apply the pure ``change`` and write back only if nobody wrote in between; nothing when unchanged."""

        def load() -> tuple[Conversation | None, int | None]:
            record = self._get_record(app_id, conversation_id, True)
            if record is None:
                raise conversation_not_found(conversation_id)
            return to_conversation(record), int(record.version)

        def apply(current: Conversation | None) -> Conversation:
            assert current is not None  # load raised otherwise
            return change(current)

        def save(conversation: Conversation, version: int | None) -> bool:
            return save_versioned(self.record(app_id, conversation, now, overridden), version)

        return read_modify_write(load, apply, save, "conversation")

    def delete(self, app_id: str, conversation_id: str) -> bool:
        """Delete at once; False when there was no such conversation."""
        record = ConversationRecord(pk=self._pk(app_id, conversation_id), sk=conversation_id)
        try:
            record.delete(condition=ConversationRecord.sk.exists())
        except DeleteError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def list_page(
        self, app_id: str, conversation_filter: ConversationFilter, cursor: str | None, limit: int
    ) -> Page[Conversation]:
        if conversation_filter.user_id is not None:
            return self._list_for_user(app_id, conversation_filter, cursor, limit)
        condition: Condition | None = None
        if conversation_filter.status is not None:
            condition = ConversationRecord.status == conversation_filter.status.value
        if conversation_filter.channel is not None:
            by_channel = ConversationRecord.channel == conversation_filter.channel
            condition = by_channel if condition is None else condition & by_channel
        records, next_cursor = query_shards(
            ConversationRecord, conversations_collection(app_id), self.shard_count, cursor, limit, condition
        )
        return fit_page(
            ((to_conversation(record), cursor_after(record.pk, record.sk)) for record in records), next_cursor
        )

    def _list_for_user(
        self, app_id: str, conversation_filter: ConversationFilter, cursor: str | None, limit: int
    ) -> Page[Conversation]:
        assert conversation_filter.user_id is not None
        position = decode_cursor(cursor)
        key = conversation_user_key(app_id, conversation_filter.user_id)
        start = None
        if position is not None:
            after = cursor_str(position, "after")
            start = {"user_key": {"S": key}, "sk": {"S": after}, "pk": {"S": self._pk(app_id, after)}}
        condition = None
        if conversation_filter.status is not None:
            condition = ConversationRecord.status == conversation_filter.status.value
        results = ConversationRecord.by_user.query(
            key, filter_condition=condition, limit=limit, last_evaluated_key=start
        )
        keys = [(record.pk, record.sk) for record in results]
        next_cursor = None
        if results.last_evaluated_key is not None:
            next_cursor = encode_cursor({"after": results.last_evaluated_key["sk"]["S"]})
        # The index is eventually consistent: what it names is read again and checked.
        fetched = {record.sk: record for record in ConversationRecord.batch_get(keys)} if keys else {}
        conversations = (
            (to_conversation(fetched[sort_key]), encode_cursor({"after": sort_key}))
            for _, sort_key in keys
            if sort_key in fetched and _matches(fetched[sort_key], conversation_filter)
        )
        return fit_page(conversations, next_cursor)

    # The retention sweep

    def due_entries(
        self,
        app_id: str,
        group: str,
        status: ConversationStatus,
        shard: int,
        cutoff: datetime | None,
        after: str | None,
        limit: int,
    ) -> tuple[list[DueEntry], str | None]:
        """Index entries of one (group, status, shard) aged at or before ``cutoff`` (None: all), oldest first.

        From ``after`` on. Returns the entries and the sort key to resume after (None when none are left).
        """
        partition = shard_key(conversations_due_collection(app_id, group, status.value), shard)
        start = (
            None
            if after is None
            else {"due_pk": {"S": partition}, "due_sk": {"S": after}, **self._base_key(app_id, after)}
        )
        results = ConversationRecord.due.query(
            partition,
            None if cutoff is None else ConversationRecord.due_sk < clock_text(cutoff) + _AFTER_CLOCK,
            limit=limit,
            last_evaluated_key=start,
        )
        entries = [_entry(record, status, group) for record in results]
        resume = None if results.last_evaluated_key is None or not entries else entries[-1].due_sk
        return entries, resume

    def move(self, app_id: str, entry: DueEntry, final: ConversationStatus, now: datetime, group: str) -> bool:
        """Move a conversation to ``final``, only if it is still as the index showed it: activity meanwhile wins.

        One UpdateItem, without reading the conversation first. A sweep is not
        activity: ``last_activity_at`` stays, so idle time keeps counting from it.
        ``group`` is its due-index group under the settings now.
        """
        shard = shard_of(entry.conversation_id, self.shard_count)
        clock = now if final == ConversationStatus.DELETE else entry.clock
        actions = [
            ConversationRecord.status.set(final.value),
            ConversationRecord.status_changed_at.set(now),
            ConversationRecord.due_pk.set(shard_key(conversations_due_collection(app_id, group, final.value), shard)),
            ConversationRecord.due_sk.set(f"{clock_text(clock)}#{entry.conversation_id}"),
            ConversationRecord.updated_at.set(now),
            ConversationRecord.version.add(1),
        ]
        return self._update_as_read(app_id, entry, actions)

    def rehome(self, app_id: str, entry: DueEntry, group: str) -> bool:
        """Move an index entry to ``group`` (its channel's overrides came or went), only if unchanged since read.

        Not a change of the conversation: its status and timestamps stay.
        """
        shard = shard_of(entry.conversation_id, self.shard_count)
        partition = shard_key(conversations_due_collection(app_id, group, entry.status.value), shard)
        return self._update_as_read(
            app_id, entry, [ConversationRecord.due_pk.set(partition), ConversationRecord.version.add(1)]
        )

    def _update_as_read(self, app_id: str, entry: DueEntry, actions: Sequence[Action]) -> bool:
        record = ConversationRecord(pk=self._pk(app_id, entry.conversation_id), sk=entry.conversation_id)
        try:
            record.update(actions=list(actions), condition=_unchanged_since(entry))
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def purge(self, app_id: str, entry: DueEntry) -> bool:
        """Delete a conversation permanently, only if it is still in delete as the index showed it."""
        record = ConversationRecord(pk=self._pk(app_id, entry.conversation_id), sk=entry.conversation_id)
        try:
            record.delete(condition=_unchanged_since(entry))
        except DeleteError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def left_by_sweep(self, app_id: str, entry: DueEntry, now: datetime, replay: bool) -> str | None:
        """Where a sweep at ``now`` that read ``entry`` left the conversation, as far as its item shows.

        Its status, when a write after that read (a later version) set ``status_changed_at`` to the
        sweep's ``now``, which only that run's moves do; None otherwise. A conversation that is gone is
        ``purged`` only when re-applying a held page (``replay``), whose first attempt may have purged
        it; on a first attempt it was deleted by hand, which is not the sweep's purge. One consistent
        read: how an attempt whose conditional write was refused knows whether another attempt of the
        same page made it.
        """
        record = self._get_record(app_id, entry.conversation_id, True)
        if record is None:
            return PURGED if replay else None
        if int(record.version) > entry.version and record.status_changed_at == now:
            return str(record.status)
        return None

    def other_live_conversation(self, app_id: str, user_id: str, purged: Collection[str]) -> UserKeeper | None:
        """What keeps the user: one of its conversations, other than the ``purged`` ones, that is not in
        delete; None if none is.

        Stops at the first: the ``conversations_by_user`` index (that user's entries, with their status)
        is queried for entries not in delete, and each is confirmed with a consistent read, since the
        index is eventually consistent. Only when none is live are the entries it shows in delete read
        too (100 keys per consistent BatchGetItem), so that a conversation reopened a moment ago still
        counts: what a user about to be deleted costs, once. That second read is bounded: a user with
        more than ``USER_CHECK_BUDGET`` conversations in delete is kept as ``too_many_to_check`` (its
        conversations are purged all the same, and a later check, with fewer left, deletes it). A
        conversation created within the index's lag (usually under a second) can still be missed.
        """
        in_delete = ConversationRecord.status == ConversationStatus.DELETE.value
        live = self._first_live(app_id, self._user_entries(app_id, user_id, purged, ~in_delete), user_id, 1)
        if live is not None:
            return UserKeeper(live)
        shown = list(itertools.islice(self._user_entries(app_id, user_id, purged, in_delete), USER_CHECK_BUDGET + 1))
        if len(shown) > USER_CHECK_BUDGET:
            return UserKeeper(None)
        live = self._first_live(app_id, iter(shown), user_id, _USER_PAGE)
        return None if live is None else UserKeeper(live)

    def _user_entries(self, app_id: str, user_id: str, purged: Collection[str], shown: Condition) -> Iterator[str]:
        """The ids of the user's conversations the index shows as ``shown``, other than ``purged``."""
        entries = ConversationRecord.by_user.query(
            conversation_user_key(app_id, user_id), filter_condition=shown, page_size=_USER_INDEX_PAGE
        )
        return (record.sk for record in entries if record.sk not in purged)

    def _first_live(self, app_id: str, ids: Iterator[str], user_id: str, batch: int) -> str | None:
        """The first of ``ids`` that is really the user's and not in delete, read ``batch`` at a time."""
        for chunk in itertools.batched(ids, batch, strict=False):
            keys = [(self._pk(app_id, conversation_id), conversation_id) for conversation_id in chunk]
            for record in ConversationRecord.batch_get(keys, consistent_read=True):
                if record.user_id == user_id and record.status != ConversationStatus.DELETE.value:
                    return str(record.sk)
        return None

    # Records

    def _pk(self, app_id: str, conversation_id: str) -> str:
        return partition_for(conversations_collection(app_id), conversation_id, self.shard_count)

    def _base_key(self, app_id: str, due_sk: str) -> dict[str, Any]:
        conversation_id = due_sk.rsplit("#", 1)[-1]
        return {"pk": {"S": self._pk(app_id, conversation_id)}, "sk": {"S": conversation_id}}

    def _get_record(self, app_id: str, conversation_id: str, consistent: bool) -> ConversationRecord | None:
        try:
            return ConversationRecord.get(
                self._pk(app_id, conversation_id), conversation_id, consistent_read=consistent
            )
        except ConversationRecord.DoesNotExist:
            return None

    def record(
        self, app_id: str, conversation: Conversation, now: datetime, overridden: frozenset[str]
    ) -> ConversationRecord:
        """The item of a conversation, with its index keys (also for bulk loads, such as the benchmark's)."""
        shard = shard_of(conversation.conversation_id, self.shard_count)
        group = due_group(conversation.channel if conversation.channel in overridden else None)
        return ConversationRecord(
            pk=shard_key(conversations_collection(app_id), shard),
            sk=conversation.conversation_id,
            channel=conversation.channel,
            status=conversation.status.value,
            user_id=conversation.user_id,
            user_key=None if conversation.user_id is None else conversation_user_key(app_id, conversation.user_id),
            subject=conversation.subject,
            created_at=conversation.created_at,
            updated_at=now,
            last_activity_at=conversation.last_activity_at,
            status_changed_at=conversation.status_changed_at,
            due_pk=shard_key(conversations_due_collection(app_id, group, conversation.status.value), shard),
            due_sk=f"{clock_text(aging_clock(conversation))}#{conversation.conversation_id}",
        )


def _unchanged_since(entry: DueEntry) -> Condition:
    """The conversation is as the sweep read it: every write adds one to the version (activity included)."""
    condition: Condition = ConversationRecord.version == entry.version
    return condition


def _entry(record: ConversationRecord, status: ConversationStatus, group: str) -> DueEntry:
    clock_part, conversation_id = record.due_sk.rsplit("#", 1)
    return DueEntry(
        conversation_id=conversation_id,
        status=status,
        channel=record.channel,
        user_id=record.user_id,
        clock=datetime.strptime(clock_part, _CLOCK_FORMAT).replace(tzinfo=UTC),
        due_sk=record.due_sk,
        version=int(record.version),
        group=group,
    )


def _matches(record: ConversationRecord, conversation_filter: ConversationFilter) -> bool:
    if conversation_filter.user_id is not None and record.user_id != conversation_filter.user_id:
        return False
    if conversation_filter.status is not None and record.status != conversation_filter.status.value:
        return False
    return conversation_filter.channel is None or record.channel == conversation_filter.channel


def to_conversation(record: ConversationRecord) -> Conversation:
    return Conversation(
        conversation_id=record.sk,
        channel=record.channel,
        status=ConversationStatus(record.status),
        user_id=record.user_id,
        subject=record.subject,
        created_at=record.created_at,
        last_activity_at=record.last_activity_at,
        status_changed_at=record.status_changed_at,
    )
