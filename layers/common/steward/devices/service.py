"""Device use cases: identify, push results, logout and reads."""

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError

from steward.clock import utc_now
from steward.devices import lifecycle
from steward.devices.models import (
    MAX_BATCH_RESULTS,
    Device,
    DeviceFilter,
    DevicePushResult,
    IdentifyDevice,
    ItemError,
    PushResult,
    PushResultBatchOutcome,
    PushResultOutcome,
)
from steward.devices.repository import DeviceRepository, device_not_found
from steward.errors import Conflict, InvalidInput, StewardError
from steward.pagination import Page

# Conditional updates cannot be batched in DynamoDB (BatchWriteItem has no
# conditions), so a batch runs its single-item writes side by side.
BATCH_WORKERS = 16
# Bounded retries when a concurrent writer moves the device between two writes.
_ATTEMPTS = 3
logger = logging.getLogger(__name__)


class DeviceService:
    def __init__(self, repository: DeviceRepository) -> None:
        self.repository = repository

    def identify(self, app_id: str, device_id: str, request: IdentifyDevice) -> Device:
        now = utc_now()
        return self.repository.upsert(
            app_id, device_id, lambda current: lifecycle.identify(current, device_id, request, now)
        )

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
        if len(raw_results) > MAX_BATCH_RESULTS:
            raise InvalidInput(
                f"A batch holds at most {MAX_BATCH_RESULTS} results; got {len(raw_results)}.",
                code="batch_too_large",
                field="results",
            )
        outcomes: list[PushResultOutcome | None] = [None] * len(raw_results)
        by_device: dict[str, list[tuple[int, DevicePushResult]]] = {}
        for index, raw in enumerate(raw_results):
            try:
                item = DevicePushResult.model_validate(raw)
            except ValidationError as exc:
                outcomes[index] = _invalid_item(index, raw, exc)
                continue
            by_device.setdefault(item.device_id, []).append((index, item))

        def apply_in_order(items: list[tuple[int, DevicePushResult]]) -> None:
            for index, item in items:
                try:
                    device = self.record_push_result(app_id, item.device_id, item)
                    outcomes[index] = PushResultOutcome(index=index, device_id=item.device_id, ok=True, device=device)
                except StewardError as exc:
                    error = ItemError(code=exc.code, message=exc.message, field=exc.field)
                    outcomes[index] = PushResultOutcome(index=index, device_id=item.device_id, ok=False, error=error)
                except Exception:  # one item's outage (throttling, timeout) must not hide the others' outcomes
                    logger.exception("Push result %d of a batch failed", index)  # no device id: it is a push token
                    error = ItemError(code="internal_error", message="This result was not applied; retry it.")
                    outcomes[index] = PushResultOutcome(index=index, device_id=item.device_id, ok=False, error=error)

        with ThreadPoolExecutor(max_workers=BATCH_WORKERS) as pool:
            list(pool.map(apply_in_order, by_device.values()))

        done = [outcome for outcome in outcomes if outcome is not None]
        succeeded = sum(1 for outcome in done if outcome.ok)
        return PushResultBatchOutcome(succeeded=succeeded, failed=len(done) - succeeded, results=done)

    def logout(self, app_id: str, device_id: str, user_id: str | None) -> None:
        self.repository.delete(app_id, device_id, user_id)

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


def _invalid_item(index: int, raw: Any, exc: ValidationError) -> PushResultOutcome:
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    device_id = raw.get("device_id") if isinstance(raw, dict) else None
    return PushResultOutcome(
        index=index,
        device_id=device_id if isinstance(device_id, str) else None,
        ok=False,
        error=ItemError(
            code="invalid_input",
            message=first["msg"],
            field=f"results[{index}]" + (f".{location}" if location else ""),
        ),
    )
