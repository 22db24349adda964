"""What the criteria tests share: users, devices, criteria, and selecting with both evaluators.

``select_both`` is the heart of the targeted tests: it selects users in code
(over the in-memory users and over what DynamoDB returns without a filter)
and with the pushed-down FilterExpression plus the residual, asserts that all
three agree, and returns the selection.
"""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from steward.composition import Services
from steward.criteria.evaluate import matches, user_subject
from steward.criteria.models import Node, Target
from steward.criteria.parse import parse_criteria
from steward.criteria.pushdown import plan
from steward.devices.models import Device, LastStatus, Transport
from steward.shard_reader import Position, read_shards
from steward.tables import ProfileRecord
from steward.types import Channel
from steward.users.models import Contact, Subscription, SubscriptionStatus, User
from steward.users.repository import to_user
from tests.support.service import SHARD_COUNT

APP = "app-criteria"
NOW = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
CREATED = datetime(2025, 1, 1, tzinfo=UTC)
EVERYTHING = 10**9  # a read budget no test reaches
ACTIVE = {"field": "active", "op": "eq", "value": True}


def nested(depth: int) -> dict[str, Any]:
    """Criteria ``depth`` groups deep: an ``all`` of ACTIVE inside ``any`` groups."""
    node: dict[str, Any] = {"all": [ACTIVE]}
    for _ in range(depth - 1):
        node = {"any": [node]}
    return node


def make_user(user_id: str, **changes: Any) -> User:
    defaults: dict[str, Any] = {
        "user_id": user_id,
        "fields": {},
        "created_at": CREATED,
        "updated_at": CREATED,
        "last_activity_at": None,
        "active": True,
        "deactivated_at": None,
        "deactivation_reason": None,
        "global_unsubscribed": False,
        "emails": [],
        "phones": [],
        "subscriptions": [],
        "promo_codes": [],
    }
    return User(**{**defaults, **changes})


def contact(address: str, active: bool = True) -> Contact:
    return Contact(address=address, active=active, added_at=CREATED)


def subscription(resource_id: str, channel: str, status: str) -> Subscription:
    return Subscription(resource_id=resource_id, channel=Channel(channel), status=SubscriptionStatus(status))


def make_device(device_id: str, user_id: str | None, **changes: Any) -> Device:
    defaults: dict[str, Any] = {
        "device_id": device_id,
        "user_id": user_id,
        "transport": Transport.FCM,
        "last_status": LastStatus.UNUSED,
        "has_succeeded": False,
        "failure_streak": 0,
        "active": True,
        "deactivated_at": None,
        "deactivation_reason": None,
        "last_error_code": None,
        "last_error_message": None,
        "attributes": {},
        "tags": [],
        "created_at": CREATED,
        "updated_at": CREATED,
        "last_push_at": None,
    }
    return Device(**{**defaults, **changes})


def store_users(users: Iterable[User], shard_count: int) -> None:
    repository = Services(shard_count).user_repository
    for user in users:
        assert repository.save_if_unchanged(APP, user, None)


def select_in_memory(node: Node, users: Iterable[User], now: datetime = NOW) -> set[str]:
    return {user.user_id for user in users if matches(node, user_subject(user), now)}


def read_all_users(shard_count: int = SHARD_COUNT) -> list[User]:
    batch = read_shards(
        ProfileRecord, APP, shard_count, Position(0), None, max_scanned=EVERYTHING, max_items=EVERYTHING
    )
    assert batch.next is None
    return [to_user(record) for record in batch.items]


def select_unfiltered(node: Node, shard_count: int, now: datetime = NOW) -> set[str]:
    """Every stored user, read back and evaluated in code only."""
    return select_in_memory(node, read_all_users(shard_count), now)


def select_pushed_down(node: Node, shard_count: int, now: datetime = NOW) -> set[str]:
    """DynamoDB filters with the pushed-down condition; code checks only the residual."""
    planned = plan(node, Target.USERS, now)
    batch = read_shards(
        ProfileRecord, APP, shard_count, Position(0), planned.condition, max_scanned=EVERYTHING, max_items=EVERYTHING
    )
    assert batch.next is None
    users = [to_user(record) for record in batch.items]
    if planned.residual is None:
        return {user.user_id for user in users}
    return select_in_memory(planned.residual, users, now)


def select_both(
    criteria: Any, users: list[User], shard_count: int, now: datetime = NOW, *, stored: bool = False
) -> set[str]:
    """Store the users (unless ``stored``), select them three ways, check that they agree, return the selection."""
    if not stored:
        store_users(users, shard_count)
    node = parse_criteria(criteria)
    in_memory = select_in_memory(node, users, now)
    assert select_unfiltered(node, shard_count, now) == in_memory, "stored users evaluate differently"
    assert select_pushed_down(node, shard_count, now) == in_memory, f"pushdown disagrees for {criteria}"
    return in_memory
