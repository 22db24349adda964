"""The device lifecycle as pure functions: what identify does to a device.

Push results are conditional writes in the repository; identify needs the
current state first, so its rules live here where they can be read (and
tested) without a database.
"""

from datetime import datetime

from steward.devices.models import DeactivationReason, Device, IdentifyDevice, LastStatus

_FAILED_STATUSES = {LastStatus.BOUNCED, LastStatus.SUPPRESSED}


def identify(current: Device | None, device_id: str, request: IdentifyDevice, now: datetime) -> Device:
    """Register a device or refresh it; returns ``current`` itself when nothing changes."""
    if current is None:
        return Device(
            device_id=device_id,
            user_id=request.user_id,
            transport=request.transport,
            last_status=LastStatus.UNUSED,
            has_succeeded=False,
            failure_streak=0,
            active=True,
            deactivated_at=None,
            deactivation_reason=None,
            last_error_code=None,
            last_error_message=None,
            attributes=request.attributes or {},
            tags=[],
            created_at=now,
            updated_at=now,
            last_push_at=None,
        )

    changes: dict[str, object] = {"user_id": request.user_id, "transport": request.transport}
    if request.attributes is not None:
        changes["attributes"] = request.attributes
    if current.last_status in _FAILED_STATUSES:
        # The app holds this token again, so the provider's complaint is stale.
        changes.update(last_status=LastStatus.UNUSED, failure_streak=0, last_error_code=None, last_error_message=None)
    if not current.active and current.deactivation_reason == DeactivationReason.DELIVERY_ERROR:
        changes.update(active=True, deactivated_at=None, deactivation_reason=None)

    candidate = current.model_copy(update=changes)
    if candidate == current:
        return current
    return candidate.model_copy(update={"updated_at": now})
