"""Retried push results (same push_id) apply once; one item's outage does not sink a batch."""

import pytest
from pydantic import ValidationError

from steward.composition import Services
from steward.devices.models import MAX_ATTRIBUTES_BYTES, IdentifyDevice, PushResult, Transport
from steward.devices.service import DeviceService
from steward.settings import StoreSettings

APP = "app-a"


@pytest.fixture
def service(store: StoreSettings) -> DeviceService:
    service = Services(store.shard_count).devices
    service.identify(APP, "fcm:one", IdentifyDevice(user_id="u", transport=Transport.FCM))
    return service


def test_a_retried_failure_does_not_count_twice(service: DeviceService) -> None:
    failure = PushResult(accepted=False, error_code="UNAVAILABLE", push_id="msg-1")

    first = service.record_push_result(APP, "fcm:one", failure)
    retried = service.record_push_result(APP, "fcm:one", failure)

    assert (first.last_status, first.failure_streak) == ("bounced", 1)
    assert (retried.last_status, retried.failure_streak, retried.active) == ("bounced", 1, True)
    assert retried.last_push_id == "msg-1"


def test_a_new_push_id_counts_as_a_new_failure(service: DeviceService) -> None:
    service.record_push_result(APP, "fcm:one", PushResult(accepted=False, push_id="msg-1"))

    second = service.record_push_result(APP, "fcm:one", PushResult(accepted=False, push_id="msg-2"))

    assert (second.last_status, second.active) == ("suppressed", False)


def test_a_retried_failure_after_suppression_answers_the_device(service: DeviceService) -> None:
    service.record_push_result(APP, "fcm:one", PushResult(accepted=False, push_id="msg-1"))
    service.record_push_result(APP, "fcm:one", PushResult(accepted=False, push_id="msg-2"))

    retried = service.record_push_result(APP, "fcm:one", PushResult(accepted=False, push_id="msg-2"))

    assert (retried.last_status, retried.failure_streak) == ("suppressed", 2)


def test_results_without_push_id_are_not_deduplicated(service: DeviceService) -> None:
    service.record_push_result(APP, "fcm:one", PushResult(accepted=False))

    assert service.record_push_result(APP, "fcm:one", PushResult(accepted=False)).last_status == "suppressed"


def test_an_unexpected_error_fails_only_its_item(service: DeviceService, monkeypatch: pytest.MonkeyPatch) -> None:
    service.identify(APP, "fcm:two", IdentifyDevice(user_id="u", transport=Transport.FCM))
    original = service.repository.record_success

    def throttled(app_id: str, device_id: str, result: PushResult, now: object) -> object:
        if device_id == "fcm:two":
            raise RuntimeError("ProvisionedThroughputExceededException")
        return original(app_id, device_id, result, now)  # type: ignore[arg-type]

    monkeypatch.setattr(service.repository, "record_success", throttled)

    outcome = service.record_push_results(
        APP, [{"device_id": "fcm:one", "accepted": True}, {"device_id": "fcm:two", "accepted": True}]
    )

    assert [item.ok for item in outcome.results] == [True, False]
    assert outcome.results[1].error is not None
    assert outcome.results[1].error.code == "internal_error"


def test_attributes_are_capped_in_bytes() -> None:
    fits = {f"k{index}": "x" * 100 for index in range(MAX_ATTRIBUTES_BYTES // 110)}
    too_big = {f"k{index}": "é" * 500 for index in range(3)}

    assert IdentifyDevice(user_id="u", transport=Transport.FCM, attributes=fits).attributes == fits
    with pytest.raises(ValidationError, match="attributes take"):
        IdentifyDevice(user_id="u", transport=Transport.FCM, attributes=too_big)
