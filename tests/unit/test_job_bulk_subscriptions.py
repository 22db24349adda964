"""bulk_update's add_subscription and update_subscription: the unsafe-status rules, contact sources, params, runs."""

from datetime import UTC, datetime
from typing import Any

import pytest

from steward.devices.models import Device, Transport
from steward.errors import InvalidInput
from steward.jobs.engine import JobRefused, Outcome
from steward.jobs.kinds import kind_for
from steward.jobs.kinds._subscriptions import changed_subscription
from steward.jobs.models import JobType
from steward.jobs.params import BulkUpdateParams, parse_params
from steward.settings import StoreSettings
from steward.types import Channel
from steward.users.models import Contact, Subscription, SubscriptionStatus, User
from tests.support.jobs import job_context, run_inline
from tests.support.reach import add_contact, confirm, dry_pages, identify, last_activity, services, user

APP, OTHER_APP = "app-a", "app-b"
KIND = kind_for(JobType.BULK_UPDATE)
NOW = datetime(2026, 5, 1, tzinfo=UTC)
ALL = {"source": "all"}
SAFE = ("Subscribed", "")
UNSAFE = ("Unsubscribed", "Complainer", "Hardbounced", "Invalid")


def params(action: str = "update_subscription", **fields: Any) -> BulkUpdateParams:
    raw = {"action": action, "selection": ALL, "resource_id": "news", "channel": "email", "status": "Subscribed"}
    if action == "add_subscription":
        raw["contact_source"] = "profile_fields"
    parsed = parse_params(JobType.BULK_UPDATE, {**raw, **fields})
    assert isinstance(parsed, BulkUpdateParams)
    return parsed


def profile(*subscriptions: tuple[str, str, str], email: bool = False, phone: bool = False) -> User:
    return User(
        user_id="u",
        fields={},
        created_at=NOW,
        updated_at=NOW,
        last_activity_at=NOW,
        active=True,
        deactivated_at=None,
        deactivation_reason=None,
        global_unsubscribed=False,
        emails=[Contact(address="u@example.com", active=email, added_at=NOW)],
        phones=[Contact(address="+33600000000", active=phone, added_at=NOW)],
        subscriptions=[
            Subscription(resource_id=resource, channel=Channel(channel), status=SubscriptionStatus(status))
            for resource, channel, status in subscriptions
        ],
        promo_codes=[],
    )


def push_device(active: bool) -> Device:
    return Device(
        device_id="d",
        user_id="u",
        transport=Transport.FCM,
        last_status="",
        has_succeeded=False,
        failure_streak=0,
        active=active,
        deactivated_at=None,
        deactivation_reason=None,
        last_error_code=None,
        last_error_message=None,
        attributes={},
        tags=[],
        created_at=NOW,
        updated_at=NOW,
        last_push_at=None,
    )


def outcome(job: BulkUpdateParams, user: User, devices: tuple[Device, ...] = ()) -> tuple[str | None, str]:
    subscription, reason = changed_subscription(job, user, devices)
    return (None if subscription is None else subscription.status.value), reason


# The rules, as pure functions.


@pytest.mark.parametrize("status", UNSAFE)
def test_subscribing_skips_a_profile_in_an_unsafe_status(status: str) -> None:
    user = profile(("news", "email", status), email=True)
    for job in (params(), params("add_subscription")):
        assert outcome(job, user) == (None, f"unsafe_status: {status}")
        assert outcome(params(job.action.value, include_unsafe=True), user) == ("Subscribed", "")


@pytest.mark.parametrize("status", UNSAFE)
def test_a_status_other_than_subscribed_is_set_over_an_unsafe_one(status: str) -> None:
    target = "Hardbounced" if status != "Hardbounced" else "Invalid"
    assert outcome(params(status=target), profile(("news", "email", status))) == (target, "")


def test_subscribing_over_a_safe_status_and_unchanged_statuses() -> None:
    assert outcome(params(status="Unsubscribed"), profile(("news", "email", "Subscribed"))) == ("Unsubscribed", "")
    assert outcome(params(), profile(("news", "email", "Subscribed"))) == (None, "unchanged")
    # The same resource on another channel is another subscription.
    assert outcome(params(), profile(("news", "sms", "Unsubscribed"))) == (None, "no_subscription")


def test_update_subscription_creates_none() -> None:
    assert outcome(params(), profile(email=True)) == (None, "no_subscription")
    assert outcome(params(include_unsafe=True), profile(email=True)) == (None, "no_subscription")


@pytest.mark.parametrize(
    ("channel", "user", "devices", "expected"),
    [
        ("email", profile(email=True), (), ("Subscribed", "")),
        ("email", profile(phone=True), (), (None, "no_contact")),  # an inactive email does not count
        ("sms", profile(phone=True), (), ("Subscribed", "")),
        ("whatsapp", profile(phone=True), (), ("Subscribed", "")),
        ("viber", profile(email=True), (), (None, "no_contact")),
        ("push", profile(email=True, phone=True), (push_device(False),), (None, "no_contact")),
        ("push", profile(), (push_device(False), push_device(True)), ("Subscribed", "")),
    ],
)
def test_profile_fields_need_an_active_contact_for_the_channel(
    channel: str, user: User, devices: tuple[Device, ...], expected: tuple[str | None, str]
) -> None:
    assert outcome(params("add_subscription", channel=channel), user, devices) == expected


@pytest.mark.parametrize(
    ("source_status", "new_status", "include_unsafe", "expected"),
    [
        ("Subscribed", "Subscribed", False, ("Subscribed", "")),
        ("Complainer", "Subscribed", False, (None, "source_unsafe_status: Complainer")),
        ("Hardbounced", "Unsubscribed", False, (None, "source_unsafe_status: Hardbounced")),
        ("Invalid", "Subscribed", True, ("Subscribed", "")),
        ("Unsubscribed", "Subscribed", True, ("Subscribed", "")),
        (None, "Subscribed", False, (None, "no_source_subscription")),
        (None, "Subscribed", True, (None, "no_source_subscription")),
    ],
)
def test_a_resource_source_copies_only_from_a_safe_subscription(
    source_status: str | None, new_status: str, include_unsafe: bool, expected: tuple[str | None, str]
) -> None:
    job = params(
        "add_subscription",
        contact_source="resource",
        source_resource_id="brand",
        status=new_status,
        include_unsafe=include_unsafe,
    )
    # The profile's email alone does not count: the contact comes from the source subscription.
    owned = (("brand", "email", source_status),) if source_status else (("brand", "sms", "Subscribed"),)
    assert outcome(job, profile(*owned, email=True)) == expected


def test_a_resource_source_and_an_unsafe_target_both_guard() -> None:
    job = params("add_subscription", contact_source="resource", source_resource_id="brand")
    user = profile(("brand", "email", "Subscribed"), ("news", "email", "Complainer"))
    assert outcome(job, user) == (None, "unsafe_status: Complainer")


# Params.


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"action": "update_subscription", "channel": "email", "status": "Subscribed"}, "params.resource_id"),
        ({"action": "update_subscription", "resource_id": "n", "status": "Subscribed"}, "params.channel"),
        ({"action": "update_subscription", "resource_id": "n", "channel": "email"}, "params.status"),
        (
            {"action": "update_subscription", "resource_id": "n", "channel": "fax", "status": "Subscribed"},
            "params.channel",
        ),
        (
            {"action": "update_subscription", "resource_id": "n", "channel": "email", "status": "Maybe"},
            "params.status",
        ),
        (
            {
                "action": "update_subscription",
                "resource_id": "n",
                "channel": "email",
                "status": "Subscribed",
                "contact_source": "profile_fields",
            },
            "params.contact_source",
        ),
        (
            {"action": "add_subscription", "resource_id": "n", "channel": "email", "status": "Subscribed"},
            "params.contact_source",
        ),
        (
            {
                "action": "add_subscription",
                "resource_id": "n",
                "channel": "email",
                "status": "Subscribed",
                "contact_source": "resource",
            },
            "params.source_resource_id",
        ),
        (
            {
                "action": "add_subscription",
                "resource_id": "n",
                "channel": "email",
                "status": "Subscribed",
                "contact_source": "resource",
                "source_resource_id": "n",
            },
            "params.source_resource_id",
        ),
        (
            {
                "action": "add_subscription",
                "resource_id": "n",
                "channel": "email",
                "status": "Subscribed",
                "contact_source": "profile_fields",
                "source_resource_id": "b",
            },
            "params.source_resource_id",
        ),
        ({"action": "update_fields", "set": {"a": 1}, "status": "Subscribed"}, "params.status"),
        (
            {
                "action": "update_subscription",
                "resource_id": "n",
                "channel": "email",
                "status": "Subscribed",
                "include_unsafe": "yes",
            },
            "params.include_unsafe",
        ),
    ],
)
def test_refused_subscription_params_name_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_params(JobType.BULK_UPDATE, {"selection": ALL, **raw})
    assert (caught.value.field, caught.value.code) == (field, "invalid_params")


def test_subscription_params_describe_the_change() -> None:
    job = params("add_subscription", include_unsafe=True)
    assert job.to_json()["include_unsafe"] is True
    assert job.describe() == (
        "add the email subscription to news as Subscribed, unsafe statuses included, for all users"
    )


def test_the_resources_must_exist_and_offer_the_channel(store: StoreSettings) -> None:
    resources = services().resource_repository
    news = resources.create(APP, "News", [Channel.EMAIL, Channel.SMS], NOW).resource_id
    brand = resources.create(APP, "Brand", [Channel.SMS], NOW).resource_id
    elsewhere = resources.create(OTHER_APP, "Theirs", [Channel.EMAIL], NOW).resource_id
    check = services().job_references.check
    check(APP, params(resource_id=news))
    check(
        APP,
        params(
            "add_subscription", channel="sms", resource_id=news, contact_source="resource", source_resource_id=brand
        ),
    )
    refused = [
        (params(resource_id=elsewhere), "unknown_resource", "params.resource_id"),
        (params(resource_id=brand), "channel_not_offered", "params.channel"),
        (
            params("add_subscription", resource_id=news, contact_source="resource", source_resource_id=brand),
            "channel_not_offered",
            "params.channel",
        ),
        (
            params("add_subscription", resource_id=news, contact_source="resource", source_resource_id="res_x"),
            "unknown_resource",
            "params.source_resource_id",
        ),
    ]
    for job, code, field in refused:
        with pytest.raises(InvalidInput) as caught:
            check(APP, job)
        assert (caught.value.code, caught.value.field) == (code, field)
    # A resource deleted after submission refuses the job at its plan step.
    resources.delete(APP, news)
    with pytest.raises(JobRefused):
        KIND.plan(job_context(APP, JobType.BULK_UPDATE, params(resource_id=news).to_json(), dry_run=True))


# Runs against moto's DynamoDB.


def _setup(store_app: str = APP) -> str:
    users = services().users
    news = services().resource_repository.create(store_app, "News", [Channel.EMAIL, Channel.PUSH], NOW).resource_id
    for user_id in ("fresh", "unsub", "complainer", "subscribed", "no-email"):
        users.upsert_batch(store_app, [{"user_id": user_id}])
        if user_id != "no-email":
            add_contact(store_app, user_id, "emails", f"{user_id}@example.com")
    for user_id, status in (("unsub", "Unsubscribed"), ("complainer", "Complainer"), ("subscribed", "Subscribed")):
        users.put_subscription(store_app, user_id, news, Channel.EMAIL, SubscriptionStatus(status))
    return news


def _statuses(app_id: str, news: str) -> dict[str, str | None]:
    found = {}
    for user_id in ("fresh", "unsub", "complainer", "subscribed", "no-email"):
        subscription = next((item for item in user(app_id, user_id).subscriptions if item.resource_id == news), None)
        found[user_id] = None if subscription is None else subscription.status.value
    return found


def test_add_subscription_runs_dry_and_real_and_leaves_the_rest_alone(store: StoreSettings) -> None:
    news = _setup()
    other_news = _setup(OTHER_APP)
    before = _statuses(APP, news)
    activity = last_activity(APP, "fresh", "unsub")
    job = params("add_subscription", resource_id=news).to_json()
    dry = run_inline(job_context(APP, JobType.BULK_UPDATE, job, dry_run=True))
    assert _statuses(APP, news) == before
    real = run_inline(job_context(APP, JobType.BULK_UPDATE, job, dry_run=False))
    expected = {
        "fresh": ("subscription_added", "new"),
        "unsub": (Outcome.SKIPPED, "unsafe_status: Unsubscribed"),
        "complainer": (Outcome.SKIPPED, "unsafe_status: Complainer"),
        "subscribed": (Outcome.SKIPPED, "unchanged"),
        "no-email": (Outcome.SKIPPED, "no_contact"),
    }
    for run in (dry, real):
        assert {row.id: (row.action, row.detail) for row in run.rows} == expected
    assert (real.counts.changed, real.counts.skipped) == (1, 4)
    assert _statuses(APP, news) == {**before, "fresh": "Subscribed"}
    assert last_activity(APP, "fresh", "unsub") == activity
    assert _statuses(OTHER_APP, other_news)["fresh"] is None
    # A profile left unchanged costs no write.
    ctx = job_context(
        APP,
        JobType.BULK_UPDATE,
        params("add_subscription", resource_id=news, status="Unsubscribed").to_json(),
        dry_run=True,
    )
    costs = [KIND.select(ctx, item, None).cost for item in KIND.plan(ctx).items]
    assert sum(cost.write_units for cost in costs) == 3  # not unsub (already so) nor no-email (no contact)


def test_add_push_subscription_reads_the_devices(store: StoreSettings) -> None:
    news = _setup()
    identify(APP, "d1", "no-email")
    job = params("add_subscription", resource_id=news, channel="push").to_json()
    real = run_inline(job_context(APP, JobType.BULK_UPDATE, job, dry_run=False))
    assert sorted(row.id for row in real.rows if row.is_change) == ["no-email"]


def test_update_subscription_with_include_unsafe_and_a_confirmed_drift(store: StoreSettings) -> None:
    news = _setup()
    job = params(resource_id=news, include_unsafe=True).to_json()
    pages = dry_pages(job_context(APP, JobType.BULK_UPDATE, job, dry_run=True))
    services().users.put_subscription(APP, "unsub", news, Channel.EMAIL, SubscriptionStatus.SUBSCRIBED)
    rows = confirm(job_context(APP, JobType.BULK_UPDATE, job, dry_run=False), KIND, pages)
    assert {row.id: (row.action, row.detail) for row in rows} == {
        "fresh": (Outcome.SKIPPED, "no_subscription"),
        "no-email": (Outcome.SKIPPED, "no_subscription"),
        "subscribed": (Outcome.SKIPPED, "unchanged"),
        "unsub": (Outcome.DRIFTED, "unchanged"),
        "complainer": ("subscription_updated", "was Complainer"),
    }
    assert _statuses(APP, news)["complainer"] == "Subscribed"
    assert _statuses(APP, news)["fresh"] is None
