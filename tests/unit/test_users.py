"""Users through the real service and pynamodb: upserts, batches, contacts, subscriptions, activity."""

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from steward.clock import utc_now
from steward.composition import Services
from steward.devices.models import IdentifyDevice, Transport
from steward.errors import InvalidInput, NotFound
from steward.settings import StoreSettings
from steward.sharding import partition_for
from steward.tables import ProfileRecord
from steward.types import Channel
from steward.users.models import SubscriptionStatus, UpsertUser, normalize_date
from steward.users.service import UserService

APP = "app-a"


@pytest.fixture
def service(store: StoreSettings) -> UserService:
    return Services(store.shard_count).users


def test_upsert_creates_then_merges_fields(service: UserService) -> None:
    service.upsert(APP, "u1", UpsertUser(fields={"age": 30, "city": "Oslo"}))

    merged = service.upsert(APP, "u1", UpsertUser(fields={"age": 31, "city": None, "vip": True}))

    assert merged.fields == {"age": 31, "vip": True}
    assert merged.last_activity_at is not None
    assert service.get(APP, "u1") == merged


def test_a_migrated_last_activity_is_set_on_creation_and_never_moves_back(service: UserService) -> None:
    old, older, newer = (utc_now() - timedelta(days=days) for days in (400, 800, 100))

    created = service.upsert(APP, "moved", UpsertUser(last_activity_at=old))
    backwards = service.upsert(APP, "moved", UpsertUser(fields={"a": 1}, last_activity_at=older))
    forwards = service.upsert(APP, "moved", UpsertUser(last_activity_at=newer))
    batch = service.upsert_batch(
        APP,
        [
            {"user_id": "moved", "last_activity_at": older.isoformat()},
            {"user_id": "batch-new", "last_activity_at": old.isoformat()},
        ],
    )

    assert created.last_activity_at == old
    assert backwards.last_activity_at == old
    assert backwards.fields == {"a": 1}
    assert forwards.last_activity_at == newer
    assert not batch.failed
    assert service.get(APP, "moved").last_activity_at == newer
    assert service.get(APP, "batch-new").last_activity_at == old
    # Without it, an upsert is the user's activity.
    assert service.upsert(APP, "moved", UpsertUser()).last_activity_at > newer


# Named ids: a parameter made from the clock would differ between pytest-xdist's workers.
@pytest.mark.parametrize(
    "moment",
    [(utc_now() + timedelta(hours=1)).isoformat(), "2026-01-01T00:00:00", "yesterday"],
    ids=["an-hour-ahead", "no-offset", "not-a-date"],
)
def test_a_last_activity_in_the_future_or_without_offset_is_refused(moment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        UpsertUser.model_validate({"last_activity_at": moment})
    assert caught.value.errors()[0]["loc"] == ("last_activity_at",)


def test_dates_are_stored_as_utc_iso_strings() -> None:
    assert normalize_date("2024-05-01") == "2024-05-01T00:00:00Z"
    assert normalize_date("2024-05-01T12:00:00+02:00") == "2024-05-01T10:00:00Z"
    assert normalize_date("not a date") is None
    assert UpsertUser(fields={"birthday": "1990-01-31"}).fields["birthday"] == "1990-01-31T00:00:00Z"


@pytest.mark.parametrize("fields", [{"1bad": 1}, {"x": "y" * 1025}, {"x": {"nested": 1}}])
def test_bad_fields_are_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        UpsertUser.model_validate({"fields": fields})


def test_batch_upserts_each_item_and_reports_bad_ones(service: UserService) -> None:
    service.upsert(APP, "existing", UpsertUser(fields={"keep": 1}))
    batch = [
        {"user_id": "existing", "fields": {"added": 2}},
        {"user_id": "new-1", "fields": {"age": 40}},
        {"user_id": "", "fields": {}},
        {"user_id": "new-2", "fields": {"bad name": 1}},
        {"user_id": "new-1", "fields": {"age": 41}},
    ]

    outcome = service.upsert_batch(APP, batch)

    assert [item.ok for item in outcome.results] == [True, True, False, False, True]
    assert outcome.results[2].error is not None
    assert outcome.results[2].error.field == "users[2].user_id"
    assert service.get(APP, "existing").fields == {"keep": 1, "added": 2}
    assert service.get(APP, "new-1").fields == {"age": 41}


def test_batch_of_more_than_100_is_refused(service: UserService) -> None:
    with pytest.raises(InvalidInput) as raised:
        service.upsert_batch(APP, [{"user_id": f"u{index}"} for index in range(101)])
    assert raised.value.code == "batch_too_large"


def test_contacts_are_added_updated_and_removed(service: UserService) -> None:
    service.upsert(APP, "u1", UpsertUser())

    service.put_contact(APP, "u1", "emails", "a@example.com", True)
    updated = service.put_contact(APP, "u1", "emails", "a@example.com", False)
    removed = service.remove_contact(APP, "u1", "emails", "a@example.com")

    assert [(contact.address, contact.active) for contact in updated.emails] == [("a@example.com", False)]
    assert removed.emails == []
    with pytest.raises(NotFound):
        service.remove_contact(APP, "u1", "emails", "a@example.com")


def test_contacts_need_a_registered_user(service: UserService) -> None:
    with pytest.raises(NotFound) as raised:
        service.put_contact(APP, "ghost", "phones", "+4712345678", True)
    assert raised.value.code == "user_not_found"


def test_contacts_are_capped(service: UserService) -> None:
    service.upsert(APP, "u1", UpsertUser())
    for index in range(10):
        service.put_contact(APP, "u1", "phones", f"+4790000{index:03d}", True)

    with pytest.raises(InvalidInput) as raised:
        service.put_contact(APP, "u1", "phones", "+4790000999", True)
    assert raised.value.code == "too_many_contacts"


def test_subscriptions_need_a_resource_offering_the_channel(service: UserService) -> None:
    resource = Services(1).resources.create(APP, "Newsletter", [Channel.EMAIL])
    service.upsert(APP, "u1", UpsertUser())

    service.put_subscription(APP, "u1", resource.resource_id, Channel.EMAIL, SubscriptionStatus.SUBSCRIBED)
    service.put_subscription(APP, "u1", resource.resource_id, Channel.EMAIL, SubscriptionStatus.UNSUBSCRIBED)

    assert [(item.channel, item.status) for item in service.subscriptions(APP, "u1")] == [
        (Channel.EMAIL, SubscriptionStatus.UNSUBSCRIBED)
    ]
    with pytest.raises(InvalidInput) as raised:
        service.put_subscription(APP, "u1", resource.resource_id, Channel.SMS, SubscriptionStatus.SUBSCRIBED)
    assert raised.value.code == "channel_not_offered"
    with pytest.raises(NotFound):
        service.put_subscription(APP, "u1", "res_missing", Channel.EMAIL, SubscriptionStatus.SUBSCRIBED)


def test_identify_records_activity_at_most_hourly(service: UserService, store: StoreSettings) -> None:
    devices = Services(store.shard_count).devices
    service.upsert(APP, "u1", UpsertUser())
    record = ProfileRecord.get(partition_for(APP, "u1", store.shard_count), "u1")
    record.update(actions=[ProfileRecord.last_activity_at.set(utc_now() - timedelta(hours=2))])

    devices.identify(APP, "fcm:one", IdentifyDevice(user_id="u1", transport=Transport.FCM))
    first = service.get(APP, "u1").last_activity_at
    devices.identify(APP, "fcm:two", IdentifyDevice(user_id="u1", transport=Transport.FCM))

    assert first is not None
    assert utc_now() - first < timedelta(minutes=1)
    assert service.get(APP, "u1").last_activity_at == first


def test_identify_does_not_register_users(store: StoreSettings, service: UserService) -> None:
    Services(store.shard_count).devices.identify(
        APP, "fcm:one", IdentifyDevice(user_id="stranger", transport=Transport.FCM)
    )

    with pytest.raises(NotFound):
        service.get(APP, "stranger")


def test_users_are_listed_across_shards_and_isolated_per_app(service: UserService) -> None:
    for index in range(7):
        service.upsert(APP, f"u{index}", UpsertUser())
    service.upsert("app-b", "u0", UpsertUser(fields={"other": True}))

    seen, cursor = [], None
    while True:
        page = service.list_page(APP, cursor, 3)
        seen += [user.user_id for user in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break

    assert sorted(seen) == [f"u{index}" for index in range(7)]
    assert service.get(APP, "u0").fields == {}
