"""Data access for users: one ProfilesTable item per user, sharded like devices."""

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pynamodb.exceptions import DeleteError, UpdateError
from pynamodb.expressions.update import Action

from steward.conditions import condition_failed, read_modify_write, save_versioned
from steward.errors import NotFound
from steward.pagination import Page, fit_page
from steward.sharded_query import cursor_after, query_shards
from steward.sharding import partition_for, shard_key
from steward.tables import SUBSCRIPTION_KEY_SEPARATOR, ProfileRecord, subscription_key
from steward.types import Channel
from steward.users.models import Contact, PromoCode, Subscription, SubscriptionStatus, User
from steward.users.reading import read_if_few

# Activity from identify is recorded hourly: apps identify on every launch.
ACTIVITY_GRANULARITY = timedelta(hours=1)

UserChange = Callable[[User | None], User]

logger = logging.getLogger(__name__)


def user_not_found(user_id: str) -> NotFound:
    return NotFound(f"User {user_id!r} does not exist.", code="user_not_found", field="user_id")


class UserRepository:
    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count

    def get(self, app_id: str, user_id: str) -> User | None:
        record = self._get_record(app_id, user_id)
        return None if record is None else to_user(record)

    def get_many(
        self, app_id: str, user_ids: Iterable[str], *, consistent: bool = False
    ) -> dict[str, tuple[User, int]]:
        """Users and their versions by id, with BatchGetItem (100 keys a call); missing ids are left out."""
        keys = [(partition_for(app_id, user_id, self.shard_count), user_id) for user_id in dict.fromkeys(user_ids)]
        if not keys:
            return {}
        records = ProfileRecord.batch_get(keys, consistent_read=consistent)
        return {record.sk: (to_user(record), int(record.version)) for record in records}

    def existing_ids(self, app_id: str, user_ids: list[str]) -> set[str]:
        """Which ids are registered users: BatchGetItem of the keys alone, eventually consistent.

        Each profile still costs half a read unit (DynamoDB bills the item, not the projection).
        Never touches the users' activity.
        """
        keys = [(partition_for(app_id, user_id, self.shard_count), user_id) for user_id in dict.fromkeys(user_ids)]
        if not keys:
            return set()
        return {record.sk for record in ProfileRecord.batch_get(keys, attributes_to_get=["pk", "sk"])}

    def read_ids(self, app_id: str, limit: int, sink: Callable[[list[bytes]], None]) -> bool:
        """Hand ``sink`` the ids of all the app's users, a page at a time, if it has at most ``limit`` (estimated
        from its first shard: see ``reading.read_if_few``). Eventually consistent Queries of the keys."""

        def read_shard(shard: int) -> Iterator[bytes]:
            for record in ProfileRecord.query(shard_key(app_id, shard), attributes_to_get=["sk"], page_size=1000):
                yield record.sk.encode("utf-8")

        decision = read_if_few(self.shard_count, limit, read_shard, sink)
        logger.info(
            "Users of %s: read all %s (estimate %d, sampled %d, read %d, limit %d)",
            app_id, decision.read_all, decision.estimate, decision.sampled, decision.read, limit,
        )  # fmt: skip
        return decision.read_all

    def upsert(self, app_id: str, user_id: str, change: UserChange) -> User:
        """Read, apply ``change`` and write back only if nobody wrote in between (as for devices)."""

        def load() -> tuple[User | None, int | None]:
            record = self._get_record(app_id, user_id)
            return (None, None) if record is None else (to_user(record), int(record.version))

        def save(user: User, version: int | None) -> bool:
            return self.save_if_unchanged(app_id, user, version)

        return read_modify_write(load, change, save, "user")

    def save_if_unchanged(self, app_id: str, user: User, version: int | None) -> bool:
        """Write ``user`` if the stored item is still at ``version`` (None: does not exist yet)."""
        return save_versioned(_to_record(app_id, user, self.shard_count), version)

    def touch_activity(self, app_id: str, user_id: str, now: datetime) -> None:
        """Record activity of a registered user, at most once per ACTIVITY_GRANULARITY (one conditional write)."""
        record = ProfileRecord(pk=partition_for(app_id, user_id, self.shard_count), sk=user_id)
        stale = ProfileRecord.last_activity_at.does_not_exist() | (
            ProfileRecord.last_activity_at < now - ACTIVITY_GRANULARITY
        )
        try:
            record.update(
                actions=[ProfileRecord.last_activity_at.set(now), ProfileRecord.version.add(1)],
                condition=ProfileRecord.sk.exists() & stale,
            )
        except UpdateError as exc:
            if not condition_failed(exc):  # an unregistered user, or activity already recorded recently
                raise

    def get_with_version(self, app_id: str, user_id: str) -> tuple[User, int] | None:
        record = self._get_record(app_id, user_id)
        return None if record is None else (to_user(record), int(record.version))

    def delete(self, app_id: str, user_id: str, version: int) -> bool:
        """Delete the user if it is still at ``version``; False when it changed meanwhile."""
        record = ProfileRecord(pk=partition_for(app_id, user_id, self.shard_count), sk=user_id)
        try:
            record.delete(condition=ProfileRecord.version == version)
        except DeleteError as exc:
            if not condition_failed(exc):
                raise
            if self._get_record(app_id, user_id) is None:
                raise user_not_found(user_id) from exc
            return False
        return True

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[User]:
        records, next_cursor = query_shards(ProfileRecord, app_id, self.shard_count, cursor, limit)
        entries = ((to_user(record), cursor_after(record.pk, record.sk)) for record in records)
        return fit_page(entries, next_cursor)

    def save_contacts_if_unchanged(self, app_id: str, user: User, version: int) -> bool:
        """Write ``user``'s emails, phones and ``updated_at`` if the stored item is still at ``version``.

        One UpdateItem: a bulk change of contacts leaves the rest of the
        profile (fields, activity) exactly as it is stored. False when
        someone wrote in between (or the user is gone): read it again.
        """
        return self._update_at_version(
            app_id,
            user,
            version,
            [
                ProfileRecord.emails.set({contact.address: _contact_item(contact) for contact in user.emails}),
                ProfileRecord.phones.set({contact.address: _contact_item(contact) for contact in user.phones}),
            ],
        )

    def save_profile_if_unchanged(self, app_id: str, user: User, version: int) -> bool:
        """Write ``user``'s fields, ``global_unsubscribed`` and ``updated_at`` if still at ``version``.

        One UpdateItem for bulk updates: contacts, subscriptions and
        ``last_activity_at`` stay exactly as stored. False when someone wrote
        in between (or the user is gone): read it again.
        """
        return self._update_at_version(
            app_id,
            user,
            version,
            [
                ProfileRecord.fields.set(dict(user.fields)),
                ProfileRecord.global_unsubscribed.set(user.global_unsubscribed),
            ],
        )

    def save_subscriptions_if_unchanged(self, app_id: str, user: User, version: int) -> bool:
        """Write ``user``'s subscriptions and ``updated_at`` if still at ``version`` (bulk subscription changes).

        Fields, contacts and ``last_activity_at`` stay exactly as stored.
        False when someone wrote in between (or the user is gone).
        """
        subscriptions = {
            subscription_key(item.resource_id, item.channel.value): item.status.value for item in user.subscriptions
        }
        return self._update_at_version(app_id, user, version, [ProfileRecord.subscriptions.set(subscriptions)])

    def hold(self, app_id: str, user: User, version: int, now: datetime, by: str) -> bool:
        """Mark the user's deletion as started by ``by`` if it is still at ``version``; False when it changed.

        A deletion that decided on the user as read writes this before its
        first change; the same deleter's later attempts (a retried page) then
        finish it (``User.deletion_started_at``, ``User.deletion_started_by``).
        """
        actions: list[Action] = [ProfileRecord.deletion_started_at.set(now), ProfileRecord.deletion_started_by.set(by)]
        return self._update_at_version(app_id, user, version, actions)

    def release_hold(self, app_id: str, user: User, version: int) -> bool:
        """Remove another deleter's mark (its job ended, or it gave the user up) if still at ``version``."""
        actions: list[Action] = [ProfileRecord.deletion_started_at.remove(), ProfileRecord.deletion_started_by.remove()]
        return self._update_at_version(app_id, user, version, actions)

    def _update_at_version(self, app_id: str, user: User, version: int, actions: list[Action]) -> bool:
        """One UpdateItem of ``actions`` (and ``updated_at``, the version) if the item is still at ``version``."""
        record = ProfileRecord(pk=partition_for(app_id, user.user_id, self.shard_count), sk=user.user_id)
        try:
            record.update(
                actions=[*actions, ProfileRecord.updated_at.set(user.updated_at), ProfileRecord.version.add(1)],
                condition=ProfileRecord.version == version,
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def stored_item(self, app_id: str, user: User) -> dict[str, dict[str, Any]]:
        """The user as DynamoDB stores it (DynamoDB JSON): what its reads and writes are billed on."""
        item: dict[str, dict[str, Any]] = _to_record(app_id, user, self.shard_count).serialize()
        return item

    def _get_record(self, app_id: str, user_id: str) -> ProfileRecord | None:
        try:
            return ProfileRecord.get(partition_for(app_id, user_id, self.shard_count), user_id, consistent_read=True)
        except ProfileRecord.DoesNotExist:
            return None


def to_user(record: ProfileRecord) -> User:
    """The domain user of a stored item (also used by criteria evaluation)."""
    subscriptions = []
    for key, status in _as_dict(record.subscriptions).items():
        resource_id, _, channel = key.rpartition(SUBSCRIPTION_KEY_SEPARATOR)
        subscriptions.append(
            Subscription(resource_id=resource_id, channel=Channel(channel), status=SubscriptionStatus(status))
        )
    return User(
        user_id=record.sk,
        fields=_as_dict(record.fields),
        created_at=record.created_at,
        updated_at=record.updated_at,
        last_activity_at=record.last_activity_at,
        active=record.active,
        deactivated_at=record.deactivated_at,
        deactivation_reason=record.deactivation_reason,
        global_unsubscribed=record.global_unsubscribed,
        emails=_contacts(record.emails),
        phones=_contacts(record.phones),
        subscriptions=sorted(subscriptions, key=lambda item: (item.resource_id, item.channel)),
        promo_codes=[
            PromoCode(code=code, program_id=str(program))
            for code, program in sorted(_as_dict(record.promo_codes).items())
        ],
        segments=sorted(record.segments or ()),
        deletion_started_at=record.deletion_started_at,
        deletion_started_by=record.deletion_started_by,
    )


def _to_record(app_id: str, user: User, shard_count: int) -> ProfileRecord:
    return ProfileRecord(
        pk=partition_for(app_id, user.user_id, shard_count),
        sk=user.user_id,
        fields=dict(user.fields),
        created_at=user.created_at,
        updated_at=user.updated_at,
        last_activity_at=user.last_activity_at,
        active=user.active,
        deactivated_at=user.deactivated_at,
        deactivation_reason=user.deactivation_reason,
        global_unsubscribed=user.global_unsubscribed,
        emails={contact.address: _contact_item(contact) for contact in user.emails},
        phones={contact.address: _contact_item(contact) for contact in user.phones},
        subscriptions={
            subscription_key(item.resource_id, item.channel.value): item.status.value for item in user.subscriptions
        },
        promo_codes={item.code: item.program_id for item in user.promo_codes},
        segments=set(user.segments) or None,
        deletion_started_at=user.deletion_started_at,
        deletion_started_by=user.deletion_started_by,
    )


def _contact_item(contact: Contact) -> dict[str, Any]:
    item: dict[str, Any] = {"active": contact.active, "added_at": contact.added_at.isoformat()}
    # Only when set: most contacts never are, and every byte of a profile is billed on each write.
    if contact.deactivated_at is not None:
        item["deactivated_at"] = contact.deactivated_at.isoformat()
    if contact.deactivation_reason is not None:
        item["deactivation_reason"] = contact.deactivation_reason
    return item


def _contacts(stored: Any) -> list[Contact]:
    return [
        Contact(
            address=address,
            active=bool(item["active"]),
            added_at=datetime.fromisoformat(str(item["added_at"])),
            deactivated_at=None
            if item.get("deactivated_at") is None
            else datetime.fromisoformat(item["deactivated_at"]),
            deactivation_reason=item.get("deactivation_reason"),
        )
        for address, item in sorted(_as_dict(stored).items())
    ]


def _as_dict(stored: Any) -> dict[str, Any]:
    """A raw pynamodb map as plain Python values (numbers come back as int or float)."""
    if stored is None:
        return {}
    raw = stored.as_dict() if hasattr(stored, "as_dict") else dict(stored)
    return {key: _plain(value) for key, value in raw.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
