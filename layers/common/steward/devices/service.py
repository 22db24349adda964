"""Device use cases: identify, push results, logout and reads."""

from typing import Any

from steward.batch import run_batch
from steward.clock import utc_now
from steward.devices import lifecycle
from steward.devices.models import (
    MAX_BATCH_RESULTS,
    Device,
    DeviceFilter,
    DevicePushResult,
    IdentifyDevice,
    PushResult,
    PushResultBatchOutcome,
    PushResultOutcome,
)
from steward.devices.repository import DeviceRepository, device_not_found
from steward.errors import Conflict
from steward.pagination import Page
from steward.users.repository import UserRepository

# Bounded retries when a concurrent writer moves the device between two writes.
_ATTEMPTS = 3


class DeviceService:
    def __init__(self, repository: DeviceRepository, users: UserRepository) -> None:
        self.repository = repository
        self.users = users

    def identify(self, app_id: str, device_id: str, request: IdentifyDevice) -> Device:
        now = utc_now()
        device = self.repository.upsert(
            app_id, device_id, lambda current: lifecycle.identify(current, device_id, request, now)
        )
        self.users.touch_activity(app_id, request.user_id, now)
        return device

    def get(self, app_id: str, device_id: str) -> Device:
        device = self.repository.get(app_id, device_id)
        if device is None:
            raise device_not_found(device_id)
        return device

    def record_push_result(self, app_id: str, device_id: str, result: PushResult) -> Device:
        now = utc_now()
        for _ in range(_ATTEMPTS):
            if result.accepted:
                device = self.repository.record_success(app_id, device_id, result, now)
            else:
                device = self.repository.record_first_failure(
                    app_id, device_id, result, now
                ) or self.repository.record_repeated_failure(app_id, device_id, result, now)
            if device is None:
                device = self._after_refusal(app_id, device_id, result)
            if device is not None:
                return device
        raise Conflict("The device changed concurrently; retry the result.", code="concurrent_update")

    def record_push_results(self, app_id: str, raw_results: list[Any]) -> PushResultBatchOutcome:
        """Apply a batch; each item is validated and applied on its own, in order per device."""
        results = run_batch(
            raw_results,
            DevicePushResult,
            "device_id",
            lambda item: self.record_push_result(app_id, item.device_id, item),
            collection="results",
            max_items=MAX_BATCH_RESULTS,
        )
        outcomes = [
            PushResultOutcome(
                index=result.index,
                device_id=result.key,
                ok=result.error is None,
                device=result.value,
                error=result.error,
            )
            for result in results
        ]
        return PushResultBatchOutcome.of(outcomes)

    def logout(self, app_id: str, device_id: str, user_id: str | None) -> None:
        self.repository.delete(app_id, device_id, user_id, utc_now())

    def dissociate(self, app_id: str, device_id: str, user_id: str | None) -> Device:
        return self.repository.dissociate(app_id, device_id, user_id, utc_now())

    def list_for_user(self, app_id: str, user_id: str, cursor: str | None, limit: int) -> Page[Device]:
        return self.repository.list_for_user(app_id, user_id, cursor, limit)

    def list_for_app(self, app_id: str, device_filter: DeviceFilter, cursor: str | None, limit: int) -> Page[Device]:
        return self.repository.list_for_app(app_id, device_filter, cursor, limit)

    def _after_refusal(self, app_id: str, device_id: str, result: PushResult) -> Device | None:
        """Why a push-result write was refused: raises, returns the device (a retried result), or None (a race)."""
        device = self.repository.get(app_id, device_id)
        if device is None:
            raise device_not_found(device_id)
        if result.push_id is not None and device.last_push_id == result.push_id:
            return device  # already applied: answering again makes client retries safe
        if not device.active:
            raise Conflict(
                f"Device {device_id!r} is deactivated ({device.deactivation_reason}); identify it again first.",
                code="device_inactive",
            )
        return None
