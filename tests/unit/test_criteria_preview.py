"""The preview service: targets, samples, pages, cursors and related lookups, on moto's DynamoDB."""

import copy
import json
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest

from steward.composition import Services
from steward.criteria.models import ContactSample, PreviewRequest, PreviewResult, Target
from steward.criteria.preview import CriteriaPreviewService
from steward.criteria.selection import SelectionLimits
from steward.devices.models import Device, LastStatus, Transport
from steward.errors import InvalidInput
from steward.pagination import decode_cursor, encode_cursor
from steward.settings import StoreSettings
from steward.users.models import User
from tests.support.criteria import APP, NOW, contact, make_device, make_user, store_users
from tests.support.service import SHARD_COUNT, call, load_event

ALL_USERS = {"field": "user_id", "op": "exists"}
ALL_DEVICES = {"field": "device.transport", "op": "exists"}


def service(**budgets: int) -> CriteriaPreviewService:
    return Services(SHARD_COUNT, clock=lambda: NOW, selection_limits=SelectionLimits(**budgets)).criteria


def preview(svc: CriteriaPreviewService, target: str, criteria: Any, **extra: Any) -> PreviewResult:
    return svc.preview(APP, PreviewRequest.model_validate({"target": target, "criteria": criteria, **extra}))


def all_pages(svc: CriteriaPreviewService, target: str, criteria: Any) -> list[PreviewResult]:
    pages = [preview(svc, target, criteria, sample_size=50)]
    while pages[-1].next_cursor is not None:
        pages.append(preview(svc, target, criteria, sample_size=50, cursor=pages[-1].next_cursor))
        assert len(pages) < 100
    return pages


def store_devices(devices: list[Device]) -> None:
    repository = Services(SHARD_COUNT).device_repository
    for device in devices:
        repository.upsert(APP, device.device_id, lambda _, device=device: device)  # type: ignore[misc]


def user_ids(page: PreviewResult) -> list[str]:
    return [item.user_id for item in page.sample if isinstance(item, User)]


def device_ids(page: PreviewResult) -> list[str]:
    return [item.device_id for item in page.sample if isinstance(item, Device)]


@pytest.fixture
def people(store: StoreSettings) -> list[User]:
    users = [
        make_user("ann", fields={"plan": "gold"}, emails=[contact("ann@x.io"), contact("ann@y.io", active=False)]),
        make_user("bob", fields={"plan": "free"}, phones=[contact("+4470")]),
        make_user("cid", fields={"plan": "gold"}, last_activity_at=NOW - timedelta(days=2)),
        make_user("dee"),
    ]
    store_users(users, SHARD_COUNT)
    store_devices(
        [
            make_device("ann-phone", "ann", transport=Transport.APNS),
            make_device("ann-tablet", "ann", active=False, last_status=LastStatus.SUPPRESSED),
            make_device("bob-phone", "bob", tags=["beta"]),
            make_device("ghost-phone", "ghost"),  # its user has no profile
            make_device("kiosk", None, transport=Transport.WEB_PUSH),  # dissociated at logout
        ]
    )
    return users


def test_users_preview_counts_and_samples(people: list[User]) -> None:
    page = preview(service(), "users", {"field": "fields.plan", "op": "eq", "value": "gold"})

    assert (page.matched, page.complete, page.next_cursor) == (2, True, None)
    assert sorted(user_ids(page)) == ["ann", "cid"]
    assert page.scanned == len(people)  # the filter ran in DynamoDB, which read every user once


def test_sample_size_caps_the_sample_not_the_count(people: list[User]) -> None:
    page = preview(service(), "users", ALL_USERS, sample_size=1)

    assert page.matched == len(people)
    assert len(page.sample) == 1


def test_device_rules_on_users_look_at_every_device(people: list[User]) -> None:
    svc = service()

    suppressed = preview(svc, "users", {"field": "device.last_status", "op": "eq", "value": "suppressed"})
    deviceless = preview(svc, "users", {"field": "device.transport", "op": "not_exists"})
    both = preview(
        svc,
        "users",
        {
            "all": [
                {"field": "device.active", "op": "eq", "value": False},
                {"field": "device.transport", "op": "eq", "value": "APNS"},
            ]
        },
    )

    assert user_ids(suppressed) == ["ann"]
    assert sorted(user_ids(deviceless)) == ["cid", "dee"]
    assert user_ids(both) == ["ann"]  # one device is inactive, the other is APNS


def test_devices_preview_applies_user_rules_to_the_owner(people: list[User]) -> None:
    svc = service()

    gold = preview(svc, "devices", {"field": "fields.plan", "op": "eq", "value": "gold"})
    ownerless = preview(svc, "devices", {"field": "user_id", "op": "not_exists"})
    free_beta = preview(
        svc,
        "devices",
        {
            "all": [
                {"field": "device.tags", "op": "contains", "value": "beta"},
                {"field": "fields.plan", "op": "ne", "value": "gold"},
            ]
        },
    )

    assert sorted(device_ids(gold)) == ["ann-phone", "ann-tablet"]
    assert sorted(device_ids(ownerless)) == ["ghost-phone", "kiosk"]
    assert device_ids(free_beta) == ["bob-phone"]


def test_devices_preview_pushes_device_rules(people: list[User]) -> None:
    page = preview(service(), "devices", {"field": "device.last_status", "op": "eq", "value": ""})

    assert sorted(device_ids(page)) == ["ann-phone", "bob-phone", "ghost-phone", "kiosk"]


def test_contact_previews_yield_one_subject_per_contact(people: list[User]) -> None:
    svc = service()

    emails = preview(svc, "emails", {"field": "email.active", "op": "eq", "value": True})
    phones = preview(svc, "phones", ALL_USERS)
    gold_emails = preview(svc, "emails", {"field": "fields.plan", "op": "eq", "value": "gold"})

    assert emails.sample == [ContactSample(user_id="ann", address="ann@x.io", active=True)]
    assert phones.sample == [ContactSample(user_id="bob", address="+4470", active=True)]
    assert gold_emails.matched == 2  # both of ann's; cid has none


def test_pages_add_up_and_never_repeat(people: list[User]) -> None:
    svc = service(max_scanned=1)

    pages = all_pages(svc, "users", ALL_USERS)

    assert len(pages) > 1
    assert sum(page.matched for page in pages) == len(people)
    assert sorted(user for page in pages for user in user_ids(page)) == sorted(user.user_id for user in people)
    assert all(not page.complete for page in pages[:-1])
    assert pages[-1].complete


def test_device_lookups_have_their_own_budget(people: list[User]) -> None:
    svc = service(max_device_lookups=2)

    pages = all_pages(svc, "users", {"field": "device.active", "op": "eq", "value": True})

    assert len(pages) >= 2
    assert sorted(user for page in pages for user in user_ids(page)) == ["ann", "bob"]


def test_owner_lookups_have_their_own_budget(people: list[User]) -> None:
    svc = service(max_owner_lookups=1)

    pages = all_pages(svc, "devices", {"field": "fields.plan", "op": "exists"})

    assert len(pages) >= 5
    assert sorted(device for page in pages for device in device_ids(page)) == ["ann-phone", "ann-tablet", "bob-phone"]


def test_the_first_pages_now_holds_for_every_page(people: list[User]) -> None:
    moments = iter([NOW, NOW + timedelta(days=30)])
    svc = Services(SHARD_COUNT, clock=lambda: next(moments), selection_limits=SelectionLimits(max_scanned=1)).criteria
    criteria = {"field": "last_activity_at", "op": "within_last_days", "value": 7}

    pages = all_pages(svc, "users", criteria)

    assert sum(page.matched for page in pages) == 1  # cid, 2 days before the first page's now


def test_a_cursor_only_continues_the_same_preview(people: list[User]) -> None:
    svc = service(max_scanned=1)
    cursor = preview(svc, "users", ALL_USERS).next_cursor
    assert cursor is not None

    for target, criteria in (("emails", ALL_USERS), ("users", {"field": "user_id", "op": "eq", "value": "ann"})):
        with pytest.raises(InvalidInput) as caught:
            preview(svc, target, criteria, cursor=cursor)
        assert (caught.value.code, caught.value.field) == ("invalid_cursor", "cursor")


@pytest.mark.parametrize(
    "change",
    [
        {"shard": SHARD_COUNT},
        {"shard": -1},
        {"shard": "0"},
        {"shard": True},
        {"after": ""},
        {"now": "yesterday"},
        {"now": "2026-01-01T00:00:00"},
    ],
)
def test_tampered_cursors_are_refused(people: list[User], change: dict[str, Any]) -> None:
    svc = service(max_scanned=1)
    cursor = preview(svc, "users", ALL_USERS).next_cursor
    position = decode_cursor(cursor)
    assert position is not None

    with pytest.raises(InvalidInput) as caught:
        preview(svc, "users", ALL_USERS, cursor=encode_cursor({**position, **change}))

    assert caught.value.code == "invalid_cursor"


def test_garbage_cursors_are_refused(people: list[User]) -> None:
    with pytest.raises(InvalidInput) as caught:
        preview(service(), "users", ALL_USERS, cursor="not a cursor!")

    assert caught.value.code == "invalid_cursor"


def test_another_apps_items_are_never_read(people: list[User]) -> None:
    svc = service()

    for target in Target:
        page = svc.preview("other-app", PreviewRequest(target=target, criteria=ALL_USERS))
        assert (page.matched, page.scanned, page.sample) == (0, 0, [])


def test_invalid_criteria_are_refused_before_reading(people: list[User]) -> None:
    with pytest.raises(InvalidInput) as caught:
        preview(service(), "users", {"all": [ALL_USERS, {"any": []}]})

    assert (caught.value.code, caught.value.field) == ("invalid_criteria", "criteria.all[1].any")


# --- through the real handler -------------------------------------------------------


def preview_event(body: Any, scopes: str = "read") -> dict[str, Any]:
    event = copy.deepcopy(load_event("http-api-identify-device.json"))
    event.update(rawPath="/v1/criteria/preview", body=json.dumps(body), pathParameters={"proxy": "criteria/preview"})
    event["requestContext"]["http"].update(method="POST", path="/v1/criteria/preview")
    event["requestContext"]["authorizer"]["lambda"]["scopes"] = scopes
    return event


def test_the_route_runs_with_a_read_only_key(api: ModuleType) -> None:
    status, body = call(api, preview_event({"target": "devices", "criteria": ALL_DEVICES}))

    assert status == 200
    assert body == {"matched": 0, "deliverable": 0, "scanned": 0, "complete": True, "next_cursor": None, "sample": []}


def test_the_route_needs_the_read_scope(api: ModuleType) -> None:
    status, body = call(api, preview_event({"target": "users", "criteria": ALL_USERS}, scopes="write admin"))

    assert status == 403
    assert body["error"]["code"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"target": "users", "criteria": {"field": "nope", "op": "exists"}}, "invalid_criteria", "criteria.field"),
        ({"target": "users", "criteria": []}, "invalid_criteria", "criteria"),
        ({"target": "accounts", "criteria": ALL_USERS}, "invalid_input", "target"),
        ({"target": "users", "criteria": ALL_USERS, "sample_size": 51}, "invalid_input", "sample_size"),
        ({"target": "users", "criteria": ALL_USERS, "sample_size": 0}, "invalid_input", "sample_size"),
        ({"target": "users", "criteria": ALL_USERS, "limit": 5}, "invalid_input", "limit"),
        ({"target": "users"}, "missing_field", "criteria"),
    ],
)
def test_bad_bodies_name_the_field(api: ModuleType, body: Any, code: str, field: str) -> None:
    status, response = call(api, preview_event(body))

    assert status == 422
    assert (response["error"]["code"], response["error"]["field"]) == (code, field)


def test_deliverable_leaves_out_globally_unsubscribed_users_and_inactive_contacts(store: StoreSettings) -> None:
    store_users(
        [
            make_user("ok", emails=[contact("ok@x.io"), contact("old@x.io", active=False)], phones=[contact("+441")]),
            make_user("gone", global_unsubscribed=True, emails=[contact("gone@x.io")], phones=[contact("+442")]),
        ],
        SHARD_COUNT,
    )
    store_devices(
        [
            make_device("ok-phone", "ok"),
            make_device("ok-old", "ok", active=False),
            make_device("gone-phone", "gone"),
            make_device("kiosk", None),  # no owner: reached while active
        ]
    )
    svc = service()
    everyone = {"field": "user_id", "op": "exists"}
    counts = {
        target: (page.matched, page.deliverable)
        for target, page in (
            ("users", preview(svc, "users", everyone)),
            ("emails", preview(svc, "emails", everyone)),
            ("phones", preview(svc, "phones", everyone)),
            ("devices", preview(svc, "devices", ALL_DEVICES)),
        )
    }
    assert counts == {"users": (2, 1), "emails": (3, 1), "phones": (2, 1), "devices": (4, 2)}
    # The criteria language tests the flag itself.
    flagged = preview(svc, "users", {"field": "global_unsubscribed", "op": "eq", "value": True})
    assert (user_ids(flagged), flagged.deliverable) == (["gone"], 0)
