"""steward.devices.lifecycle.identify as a pure function: no database involved."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from steward.devices.lifecycle import identify
from steward.devices.models import DeactivationReason, Device, IdentifyDevice, LastStatus, Transport

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)


def request(
    user_id: str = "user-1", transport: Transport = Transport.FCM, attributes: dict[str, str] | None = None
) -> IdentifyDevice:
    return IdentifyDevice(user_id=user_id, transport=transport, attributes=attributes)


def stored(**changes: Any) -> Device:
    """A device registered at T0 for user-1 with one attribute, then changed as given."""
    return identify(None, "device-1", request(attributes={"locale": "en"}), T0).model_copy(update=changes)


BOUNCED = {
    "last_status": LastStatus.BOUNCED,
    "failure_streak": 1,
    "last_error_code": "Unregistered",
    "last_error_message": "token gone",
    "last_push_at": T1,
}
SUPPRESSED = {
    **BOUNCED,
    "last_status": LastStatus.SUPPRESSED,
    "failure_streak": 2,
    "active": False,
    "deactivated_at": T1,
    "deactivation_reason": DeactivationReason.DELIVERY_ERROR,
}


def test_new_device_starts_unused_and_active() -> None:
    device = identify(None, "device-1", request(), T0)

    assert device.device_id == "device-1"
    assert device.user_id == "user-1"
    assert device.transport is Transport.FCM
    assert device.last_status is LastStatus.UNUSED
    assert device.has_succeeded is False
    assert device.failure_streak == 0
    assert device.active is True
    assert device.deactivated_at is None
    assert device.deactivation_reason is None
    assert device.last_error_code is None
    assert device.last_error_message is None
    assert device.attributes == {}
    assert device.tags == []
    assert device.created_at == device.updated_at == T0
    assert device.last_push_at is None


def test_new_device_keeps_given_attributes() -> None:
    device = identify(None, "device-1", request(attributes={"app_version": "1.2"}), T0)

    assert device.attributes == {"app_version": "1.2"}


@pytest.mark.parametrize("state", [BOUNCED, SUPPRESSED], ids=["bounced", "suppressed"])
def test_identify_of_failed_device_returns_to_unused(state: dict[str, Any]) -> None:
    current = stored(has_succeeded=True, **state)

    device = identify(current, "device-1", request(), T2)

    assert device.last_status is LastStatus.UNUSED
    assert device.failure_streak == 0
    assert device.last_error_code is None
    assert device.last_error_message is None
    assert device.active is True
    assert device.has_succeeded is True
    assert device.last_push_at == T1
    assert device.created_at == T0
    assert device.updated_at == T2


def test_sent_device_stays_sent() -> None:
    current = stored(last_status=LastStatus.SENT, has_succeeded=True, last_push_at=T1)

    device = identify(current, "device-1", request(user_id="user-2"), T2)

    assert device.last_status is LastStatus.SENT
    assert device.has_succeeded is True
    assert device.user_id == "user-2"


def test_device_deactivated_for_delivery_error_is_reactivated() -> None:
    device = identify(stored(**SUPPRESSED), "device-1", request(), T2)

    assert device.active is True
    assert device.deactivated_at is None
    assert device.deactivation_reason is None


def test_moving_device_to_another_user_reassociates() -> None:
    current = stored()

    device = identify(current, "device-1", request(user_id="user-2"), T1)

    assert device.user_id == "user-2"
    assert device.updated_at == T1
    assert device.created_at == T0
    assert current.user_id == "user-1"


def test_changing_transport_is_a_change() -> None:
    device = identify(stored(), "device-1", request(transport=Transport.APNS), T1)

    assert device.transport is Transport.APNS
    assert device.updated_at == T1


@pytest.mark.parametrize("attributes", [None, {"locale": "en"}], ids=["omitted", "same"])
def test_identify_with_nothing_changed_returns_the_same_object(attributes: dict[str, str] | None) -> None:
    current = stored(last_status=LastStatus.SENT, has_succeeded=True)

    device = identify(current, "device-1", request(attributes=attributes), T1)

    assert device is current
    assert device.updated_at == T0


def test_omitted_attributes_keep_stored_ones() -> None:
    device = identify(stored(), "device-1", request(user_id="user-2"), T1)

    assert device.attributes == {"locale": "en"}


def test_given_attributes_replace_stored_ones() -> None:
    device = identify(stored(), "device-1", request(attributes={"app_version": "2.0"}), T1)

    assert device.attributes == {"app_version": "2.0"}
    assert device.updated_at == T1


def test_empty_attributes_clear_stored_ones() -> None:
    device = identify(stored(), "device-1", request(attributes={}), T1)

    assert device.attributes == {}
