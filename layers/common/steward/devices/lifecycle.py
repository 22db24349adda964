"""The device lifecycle as pure functions: what identify and the maintenance jobs do to a device.

Push results are conditional writes in the repository; identify needs the
current state first, so its rules live here where they can be read (and
tested) without a database.
"""

from datetime import datetime

from steward.devices.models import DeactivationReason, Device, IdentifyDevice, LastStatus, Transport

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


# What the maintenance jobs do to a device. The repository writes each with a
# conditional update whose condition is the matching predicate below.


def reactivation_drift(
    device: Device,
    transport: Transport,
    start: datetime,
    end: datetime,
    reason: DeactivationReason = DeactivationReason.DELIVERY_ERROR,
) -> str | None:
    """Why reactivate_devices would leave ``device`` alone, or None when it reactivates it.

    It reactivates the devices of ``transport`` deactivated for ``reason`` in [start, end).
    """
    if device.active:
        return "active"
    if device.deactivation_reason != reason:
        return f"deactivation_reason {device.deactivation_reason or 'none'}"
    if device.transport != transport:
        return f"transport {device.transport.value}"
    if device.deactivated_at is None or not start <= device.deactivated_at < end:
        return "deactivated outside the window"
    return None


def reactivate(device: Device, now: datetime) -> Device:
    """An inactive device made usable again: unused, no failure streak, no error; ``device`` itself when active."""
    if device.active:
        return device
    return device.model_copy(
        update={
            "active": True,
            "deactivated_at": None,
            "deactivation_reason": None,
            "last_status": LastStatus.UNUSED,
            "failure_streak": 0,
            "last_error_code": None,
            "last_error_message": None,
            "updated_at": now,
        }
    )


def deactivate(device: Device, now: datetime) -> Device:
    """An active device deactivated by a job (reason ``deactivated_by_job``); ``device`` itself when inactive."""
    if not device.active:
        return device
    return device.model_copy(
        update={
            "active": False,
            "deactivated_at": now,
            "deactivation_reason": DeactivationReason.JOB,
            "updated_at": now,
        }
    )


def deactivated_by_job_at(device: Device, now: datetime) -> bool:
    """Whether ``device`` is as a job that ran at ``now`` left it: how a retried job recognises its own work."""
    return not device.active and device.deactivation_reason == DeactivationReason.JOB and device.deactivated_at == now
