"""User use cases: upsert (single and batch), read, delete, list, contacts, subscriptions."""

from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from steward.batch import run_batch
from steward.clock import utc_now
from steward.errors import InvalidInput
from steward.pagination import Page
from steward.resources.repository import ResourceRepository
from steward.types import Channel, UserId
from steward.users import lifecycle
from steward.users.models import (
    MAX_BATCH_USERS,
    BatchUser,
    Subscription,
    SubscriptionStatus,
    UpsertUser,
    User,
    UserBatchOutcome,
    UserOutcome,
)
from steward.users.repository import UserRepository, user_not_found

_USER_ID = TypeAdapter(UserId)


class UserService:
    def __init__(self, users: UserRepository, resources: ResourceRepository) -> None:
        self.users = users
        self.resources = resources

    def upsert(self, app_id: str, user_id: str, request: UpsertUser) -> User:
        now = utc_now()
        return self.users.upsert(app_id, user_id, lambda current: lifecycle.upsert(current, user_id, request, now))

    def upsert_batch(self, app_id: str, raw_users: list[Any]) -> UserBatchOutcome:
        """Up to 100 users: one BatchGetItem reads them all, then one conditional write each.

        A user changed by someone else in between is upserted again on its own.
        """
        now = utc_now()
        stored = self.users.get_many(app_id, _valid_user_ids(raw_users)) if len(raw_users) <= MAX_BATCH_USERS else {}

        def apply(item: BatchUser) -> User:
            current, version = stored.pop(item.user_id, (None, None))
            updated = lifecycle.upsert(current, item.user_id, item, now)
            if updated == current or self.users.save_if_unchanged(app_id, updated, version):
                return updated
            return self.upsert(app_id, item.user_id, item)  # lost a race (or a repeated id): start over

        results = run_batch(raw_users, BatchUser, "user_id", apply, collection="users", max_items=MAX_BATCH_USERS)
        outcomes = [
            UserOutcome(
                index=result.index,
                user_id=result.key,
                ok=result.error is None,
                updated_at=None if result.value is None else result.value.updated_at,
                error=result.error,
            )
            for result in results
        ]
        return UserBatchOutcome.of(outcomes)

    def get(self, app_id: str, user_id: str) -> User:
        user = self.users.get(app_id, user_id)
        if user is None:
            raise user_not_found(user_id)
        return user

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[User]:
        return self.users.list_page(app_id, cursor, limit)

    def put_contact(self, app_id: str, user_id: str, kind: str, address: str, active: bool) -> User:
        now = utc_now()
        return self._change_existing(
            app_id, user_id, lambda user: lifecycle.put_contact(user, kind, address, active, now)
        )

    def remove_contact(self, app_id: str, user_id: str, kind: str, address: str) -> User:
        now = utc_now()
        return self._change_existing(app_id, user_id, lambda user: lifecycle.remove_contact(user, kind, address, now))

    def put_subscription(
        self, app_id: str, user_id: str, resource_id: str, channel: Channel, status: SubscriptionStatus
    ) -> Subscription:
        resource = self.resources.get(app_id, resource_id)  # NotFound for an unknown resource
        if channel not in resource.channels:
            raise InvalidInput(
                f"Resource {resource_id!r} does not offer the {channel} channel.",
                code="channel_not_offered",
                field="channel",
            )
        subscription = Subscription(resource_id=resource_id, channel=channel, status=status)
        now = utc_now()
        self._change_existing(app_id, user_id, lambda user: lifecycle.put_subscription(user, subscription, now))
        return subscription

    def subscriptions(self, app_id: str, user_id: str) -> list[Subscription]:
        return self.get(app_id, user_id).subscriptions

    def _change_existing(self, app_id: str, user_id: str, change: Callable[[User], User]) -> User:
        def only_existing(current: User | None) -> User:
            if current is None:
                raise user_not_found(user_id)
            return change(current)

        return self.users.upsert(app_id, user_id, only_existing)


def _valid_user_ids(raw_users: list[Any]) -> list[str]:
    """Ids worth reading up front; invalid items fail their own validation later."""
    ids = []
    for raw in raw_users:
        try:
            ids.append(_USER_ID.validate_python(raw.get("user_id") if isinstance(raw, dict) else None))
        except ValidationError:
            continue
    return ids
