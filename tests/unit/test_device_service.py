"""DeviceService through DeviceRepository against moto's DynamoDB (the `store` fixture)."""

import base64
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from steward.composition import Services
from steward.devices.models import (
    DeactivationReason,
    Device,
    DeviceFilter,
    IdentifyDevice,
    LastStatus,
    PushResult,
    Transport,
)
from steward.devices.service import DeviceService
from steward.errors import Conflict, InvalidInput, NotFound, StewardError
from steward.pagination import encode_cursor
from steward.settings import StoreSettings
from steward.tables import DeviceRecord, device_user_key
from tests.support.service import collect_pages

APP = "app-a"
OTHER_APP = "app-b"


pytestmark = pytest.mark.usefixtures("atomic_moto")


@pytest.fixture
def service(store: StoreSettings) -> DeviceService:
    return Services(store.shard_count).devices


def identify(
    service: DeviceService,
    device_id: str,
    user_id: str = "user-1",
    transport: Transport = Transport.FCM,
    app_id: str = APP,
) -> Device:
    return service.identify(app_id, device_id, IdentifyDevice(user_id=user_id, transport=transport))


def fail(service: DeviceService, device_id: str, code: str | None = "Unregistered", app_id: str = APP) -> Device:
    result = PushResult(accepted=False, error_code=code, error_message=None if code is None else f"{code}!")
    return service.record_push_result(app_id, device_id, result)


def accept(service: DeviceService, device_id: str, app_id: str = APP) -> Device:
    return service.record_push_result(app_id, device_id, PushResult(accepted=True))


def ids(devices: list[Device]) -> list[str]:
    return sorted(device.device_id for device in devices)


# Push results, one at a time.


def test_accepted_push_marks_device_sent(service: DeviceService) -> None:
    identify(service, "d1")
    fail(service, "d1")

    device = accept(service, "d1")

    assert device.last_status is LastStatus.SENT
    assert device.has_succeeded is True
    assert device.failure_streak == 0
    assert device.active is True
    assert device.last_push_at is not None
    assert service.get(APP, "d1") == device


def test_first_failure_bounces_and_stores_error(service: DeviceService) -> None:
    identify(service, "d1")

    device = fail(service, "d1", code="BadDeviceToken")

    assert device.last_status is LastStatus.BOUNCED
    assert device.failure_streak == 1
    assert device.last_error_code == "BadDeviceToken"
    assert device.last_error_message == "BadDeviceToken!"
    assert device.active is True
    assert device.has_succeeded is False
    assert service.get(APP, "d1") == device


def test_second_consecutive_failure_suppresses_and_deactivates(service: DeviceService) -> None:
    identify(service, "d1")
    fail(service, "d1", code="First")

    device = fail(service, "d1", code="Second")

    assert device.last_status is LastStatus.SUPPRESSED
    assert device.failure_streak == 2
    assert device.active is False
    assert device.deactivated_at is not None
    assert device.deactivation_reason is DeactivationReason.DELIVERY_ERROR
    assert device.last_error_code == "Second"
    assert service.get(APP, "d1") == device


def test_accepted_push_between_failures_resets_the_streak(service: DeviceService) -> None:
    identify(service, "d1")
    fail(service, "d1")
    accept(service, "d1")

    device = fail(service, "d1")

    assert device.last_status is LastStatus.BOUNCED
    assert device.failure_streak == 1
    assert device.active is True
    assert device.has_succeeded is True


def test_failure_without_error_code_clears_the_previous_error(service: DeviceService) -> None:
    identify(service, "d1")
    fail(service, "d1", code="Old")
    accept(service, "d1")

    device = fail(service, "d1", code=None)

    assert device.last_error_code is None
    assert device.last_error_message is None


@pytest.mark.parametrize("accepted", [True, False])
def test_result_for_missing_device_is_not_found(service: DeviceService, accepted: bool) -> None:
    with pytest.raises(NotFound) as caught:
        service.record_push_result(APP, "ghost", PushResult(accepted=accepted))

    assert caught.value.code == "device_not_found"
    assert service.repository.get(APP, "ghost") is None


@pytest.mark.parametrize("accepted", [True, False])
def test_result_for_inactive_device_is_conflict(service: DeviceService, accepted: bool) -> None:
    identify(service, "d1")
    fail(service, "d1")
    suppressed = fail(service, "d1")

    with pytest.raises(Conflict) as caught:
        service.record_push_result(APP, "d1", PushResult(accepted=accepted))

    assert caught.value.code == "device_inactive"
    assert service.get(APP, "d1") == suppressed


def test_identify_after_suppression_reactivates(service: DeviceService) -> None:
    identify(service, "d1")
    accept(service, "d1")
    fail(service, "d1")
    fail(service, "d1")

    device = identify(service, "d1")

    assert device.last_status is LastStatus.UNUSED
    assert device.failure_streak == 0
    assert device.active is True
    assert device.deactivated_at is None
    assert device.deactivation_reason is None
    assert device.last_error_code is None
    assert device.has_succeeded is True
    assert service.get(APP, "d1") == device
    assert fail(service, "d1").last_status is LastStatus.BOUNCED


def test_identify_with_nothing_changed_keeps_the_stored_device(service: DeviceService) -> None:
    first = identify(service, "d1")

    again = identify(service, "d1")

    assert again == first
    assert service.get(APP, "d1") == first


# Batches.


def test_batch_over_limit_is_rejected(service: DeviceService) -> None:
    identify(service, "d1")
    batch = [{"device_id": "d1", "accepted": False}] * 101

    with pytest.raises(InvalidInput) as caught:
        service.record_push_results(APP, batch)

    assert caught.value.code == "batch_too_large"
    assert service.get(APP, "d1").failure_streak == 0


def test_batch_of_exactly_the_limit_is_processed(service: DeviceService) -> None:
    outcome = service.record_push_results(APP, [{}] * 100)

    assert outcome.failed == 100
    assert [result.index for result in outcome.results] == list(range(100))


@pytest.mark.parametrize(
    ("bad_item", "field"),
    [
        ({"device_id": "d2"}, "results[1].accepted"),
        ({"device_id": "", "accepted": True}, "results[1].device_id"),
        ({"device_id": "d2", "accepted": "maybe"}, "results[1].accepted"),
        ({"device_id": "d2", "accepted": True, "extra": 1}, "results[1].extra"),
        ("not an object", "results[1]"),
    ],
)
def test_batch_reports_bad_item_and_applies_the_others(service: DeviceService, bad_item: Any, field: str) -> None:
    for device_id in ("d1", "d2", "d3"):
        identify(service, device_id)
    batch = [{"device_id": "d1", "accepted": True}, bad_item, {"device_id": "d3", "accepted": False}]

    outcome = service.record_push_results(APP, batch)

    assert (outcome.succeeded, outcome.failed) == (2, 1)
    assert [result.index for result in outcome.results] == [0, 1, 2]
    assert [result.ok for result in outcome.results] == [True, False, True]
    error = outcome.results[1].error
    assert error is not None
    assert (error.code, error.field) == ("invalid_input", field)
    assert service.get(APP, "d1").last_status is LastStatus.SENT
    assert service.get(APP, "d2").last_status is LastStatus.UNUSED
    assert service.get(APP, "d3").last_status is LastStatus.BOUNCED


def test_batch_reports_refused_items(service: DeviceService) -> None:
    identify(service, "d1")

    outcome = service.record_push_results(
        APP, [{"device_id": "ghost", "accepted": True}, {"device_id": "d1", "accepted": True}]
    )

    assert [result.ok for result in outcome.results] == [False, True]
    assert outcome.results[0].device_id == "ghost"
    assert outcome.results[0].error is not None
    assert outcome.results[0].error.code == "device_not_found"


def test_batch_keeps_order_per_device(service: DeviceService) -> None:
    for device_id in ("d1", "d2"):
        identify(service, device_id)
    batch = [
        {"device_id": "d1", "accepted": False, "error_code": "A"},
        {"device_id": "d2", "accepted": False},
        {"device_id": "d1", "accepted": False, "error_code": "B"},
        {"device_id": "d2", "accepted": True},
        {"device_id": "d2", "accepted": False},
    ]

    outcome = service.record_push_results(APP, batch)

    assert outcome.succeeded == 5
    statuses = [result.device.last_status for result in outcome.results if result.device is not None]
    assert statuses == [
        LastStatus.BOUNCED,
        LastStatus.BOUNCED,
        LastStatus.SUPPRESSED,
        LastStatus.SENT,
        LastStatus.BOUNCED,
    ]
    d1 = service.get(APP, "d1")
    assert (d1.last_status, d1.failure_streak, d1.active, d1.last_error_code) == (LastStatus.SUPPRESSED, 2, False, "B")
    d2 = service.get(APP, "d2")
    assert (d2.last_status, d2.failure_streak, d2.has_succeeded) == (LastStatus.BOUNCED, 1, True)


def test_batch_applies_a_long_sequence_for_one_device_in_order(service: DeviceService) -> None:
    identify(service, "d1")
    batch = [{"device_id": "d1", "accepted": index % 2 == 1} for index in range(60)]

    outcome = service.record_push_results(APP, batch)

    assert outcome.succeeded == 60
    statuses = [result.device.last_status for result in outcome.results if result.device is not None]
    assert statuses == [LastStatus.BOUNCED, LastStatus.SENT] * 30


# Logout.


@pytest.mark.parametrize("expected_user", ["user-1", None])
def test_logout_deletes_the_device(service: DeviceService, expected_user: str | None) -> None:
    identify(service, "d1")

    service.logout(APP, "d1", expected_user)

    with pytest.raises(NotFound):
        service.get(APP, "d1")
    assert service.list_for_user(APP, "user-1", None, 10).items == []


def test_logout_by_another_user_is_refused(service: DeviceService) -> None:
    device = identify(service, "d1")

    with pytest.raises(Conflict) as caught:
        service.logout(APP, "d1", "user-2")

    assert caught.value.code == "device_owned_by_other_user"
    assert service.get(APP, "d1") == device


def test_logout_of_missing_device_is_not_found(service: DeviceService) -> None:
    with pytest.raises(NotFound) as caught:
        service.logout(APP, "ghost", "user-1")

    assert caught.value.code == "device_not_found"


def test_dissociate_removes_the_user_and_drops_out_of_user_listing(service: DeviceService) -> None:
    identify(service, "d1")
    identify(service, "d2")

    device = service.dissociate(APP, "d1", "user-1")

    assert device.user_id is None
    assert service.get(APP, "d1").user_id is None
    assert ids(service.list_for_user(APP, "user-1", None, 10).items) == ["d2"]
    assert [record.sk for record in DeviceRecord.by_user.query(device_user_key(APP, "user-1"))] == ["d2"]
    assert ids(service.list_for_app(APP, DeviceFilter(), None, 10).items) == ["d1", "d2"]


def test_dissociate_by_another_user_is_refused(service: DeviceService) -> None:
    identify(service, "d1")

    with pytest.raises(Conflict) as caught:
        service.dissociate(APP, "d1", "user-2")

    assert caught.value.code == "device_owned_by_other_user"
    assert service.get(APP, "d1").user_id == "user-1"


def test_identify_after_dissociate_reassociates(service: DeviceService) -> None:
    identify(service, "d1")
    service.dissociate(APP, "d1", None)

    identify(service, "d1", user_id="user-2")

    assert ids(service.list_for_user(APP, "user-2", None, 10).items) == ["d1"]
    assert service.list_for_user(APP, "user-1", None, 10).items == []


# Listing.


@pytest.fixture
def fleet(service: DeviceService) -> None:
    """d0..d11 over all four shards: even FCM, odd APNS; d0-1 sent, d2-3 bounced, d4-5 suppressed."""
    for number in range(12):
        identify(service, f"d{number}", transport=Transport.FCM if number % 2 == 0 else Transport.APNS)
    for device_id in ("d0", "d1"):
        accept(service, device_id)
    for device_id in ("d2", "d3", "d4", "d5"):
        fail(service, device_id)
    for device_id in ("d4", "d5"):
        fail(service, device_id)


@pytest.mark.usefixtures("fleet")
@pytest.mark.parametrize(
    ("device_filter", "expected"),
    [
        (DeviceFilter(), [f"d{n}" for n in range(12)]),
        (DeviceFilter(transport=Transport.APNS), [f"d{n}" for n in range(1, 12, 2)]),
        (DeviceFilter(last_status=LastStatus.SENT), ["d0", "d1"]),
        (DeviceFilter(last_status=LastStatus.UNUSED), [f"d{n}" for n in range(6, 12)]),
        (DeviceFilter(active=False), ["d4", "d5"]),
        (DeviceFilter(active=True, transport=Transport.FCM), ["d0", "d2", "d6", "d8", "d10"]),
        (DeviceFilter(last_status=LastStatus.BOUNCED, transport=Transport.APNS), ["d3"]),
        (DeviceFilter(transport=Transport.HMS), []),
    ],
)
def test_list_for_app_filters_across_shards_and_paginates(
    service: DeviceService, device_filter: DeviceFilter, expected: list[str]
) -> None:
    found = collect_pages(lambda cursor: service.list_for_app(APP, device_filter, cursor, 2))

    assert len(found) == len({device.device_id for device in found})
    assert ids(found) == sorted(expected)


@pytest.mark.usefixtures("fleet")
def test_list_for_app_returns_everything_in_one_large_page(service: DeviceService) -> None:
    page = service.list_for_app(APP, DeviceFilter(), None, 50)

    assert len(page.items) == 12
    assert page.next_cursor is None


def test_list_for_user_paginates(service: DeviceService) -> None:
    for number in range(5):
        identify(service, f"mine-{number}", user_id="user-1")
    for number in range(3):
        identify(service, f"theirs-{number}", user_id="user-2")

    found = collect_pages(lambda cursor: service.list_for_user(APP, "user-1", cursor, 2))

    assert ids(found) == [f"mine-{number}" for number in range(5)]


# Isolation between apps.


def test_same_device_id_in_two_apps_is_independent(service: DeviceService) -> None:
    identify(service, "shared", user_id="alice", app_id=APP)
    identify(service, "shared", user_id="bob", transport=Transport.APNS, app_id=OTHER_APP)

    fail(service, "shared", app_id=APP)
    fail(service, "shared", app_id=APP)
    service.logout(APP, "shared", "alice")

    other = service.get(OTHER_APP, "shared")
    assert (other.user_id, other.transport, other.last_status, other.active) == (
        "bob",
        Transport.APNS,
        LastStatus.UNUSED,
        True,
    )
    assert service.list_for_user(OTHER_APP, "alice", None, 10).items == []
    assert ids(service.list_for_user(OTHER_APP, "bob", None, 10).items) == ["shared"]


def test_cursor_from_one_app_never_returns_another_apps_devices(service: DeviceService) -> None:
    for number in range(8):
        identify(service, f"d{number}", user_id="alice", app_id=APP)
        identify(service, f"d{number}", user_id="bob", app_id=OTHER_APP)
    app_cursor = service.list_for_app(APP, DeviceFilter(), None, 2).next_cursor
    user_cursor = service.list_for_user(APP, "alice", None, 2).next_cursor
    assert app_cursor is not None
    assert user_cursor is not None

    by_app = collect_pages(lambda cursor: service.list_for_app(OTHER_APP, DeviceFilter(), cursor or app_cursor, 2))
    by_user = collect_pages(lambda cursor: service.list_for_user(OTHER_APP, "bob", cursor or user_cursor, 2))

    assert by_app
    assert {device.user_id for device in by_app} == {"bob"}
    assert by_user
    assert {device.user_id for device in by_user} == {"bob"}


TAMPERED_CURSORS = [
    "!!not-a-cursor!!",
    "a",
    base64.urlsafe_b64encode(bytes(range(128, 176))).decode(),
    base64.urlsafe_b64encode(b"[1, 2]").decode(),
    encode_cursor({"shard": 99}),
    encode_cursor({"shard": -1}),
    encode_cursor({"shard": "0"}),
    encode_cursor({"shard": 0, "after": 5}),
]


@pytest.mark.parametrize("cursor", TAMPERED_CURSORS)
def test_tampered_app_cursor_is_invalid(service: DeviceService, cursor: str) -> None:
    identify(service, "d1")

    with pytest.raises(InvalidInput) as caught:
        service.list_for_app(APP, DeviceFilter(), cursor, 2)

    assert caught.value.code == "invalid_cursor"


@pytest.mark.parametrize("cursor", [*TAMPERED_CURSORS[:4], encode_cursor({"shard": 1}), encode_cursor({"after": ""})])
def test_tampered_user_cursor_is_invalid(service: DeviceService, cursor: str) -> None:
    identify(service, "d1")

    with pytest.raises(InvalidInput) as caught:
        service.list_for_user(APP, "user-1", cursor, 2)

    assert caught.value.code == "invalid_cursor"


# Concurrency.


def test_concurrent_failures_lose_no_update(service: DeviceService) -> None:
    identify(service, "d1")
    start = threading.Barrier(20)

    def report_failure(_: int) -> str:
        start.wait()
        try:
            fail(service, "d1")
        except StewardError as exc:
            return exc.code
        return "ok"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = Counter(pool.map(report_failure, range(20)))

    device = service.get(APP, "d1")
    assert device.failure_streak == outcomes["ok"]
    assert outcomes == {"ok": 2, "device_inactive": 18}
    assert (device.last_status, device.active) == (LastStatus.SUPPRESSED, False)
