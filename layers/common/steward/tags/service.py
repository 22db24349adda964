"""Tag use cases: tag and untag one device, tag and untag in bulk, list tags and a tag's devices."""

import logging
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from pynamodb.exceptions import PynamoDBException, TransactWriteError

from steward.batch import check_add_remove, chunks, refuse_add_and_remove, split_ids
from steward.clock import utc_now
from steward.devices.models import Device
from steward.devices.repository import DeviceRepository, device_not_found
from steward.errors import Conflict
from steward.pagination import Page
from steward.retryable import transient
from steward.tags.models import MAX_DEVICES_PER_REQUEST, MAX_TAGS_PER_DEVICE, BulkTagOutcome, Tag
from steward.tags.outcome import Tally
from steward.tags.repository import (
    TagChange,
    TagRepository,
    tag_not_found,
    tag_not_on_device,
    too_many_tags,
)
from steward.transactions import MEMBERSHIPS_PER_TRANSACTION
from steward.types import DeviceId

# Bounded retries when concurrent writers change devices between our read and our transaction.
ATTEMPTS = 3
_DEVICE_ID = TypeAdapter(DeviceId)
logger = logging.getLogger(__name__)


class TagService:
    def __init__(self, repository: TagRepository, devices: DeviceRepository) -> None:
        self.repository = repository
        self.devices = devices

    def tag(self, app_id: str, device_id: str, tag: str) -> Device:
        """Tag one device; tagging it again changes nothing."""
        change = TagChange(device_id, add=True)
        for _ in range(ATTEMPTS):
            if self._written(app_id, tag, change):
                return self._device(app_id, device_id)
            device = self._device(app_id, device_id)
            if tag in device.tags:
                return device
            if len(device.tags) >= MAX_TAGS_PER_DEVICE:
                raise too_many_tags(device_id)
        raise _concurrent_update()

    def untag(self, app_id: str, device_id: str, tag: str) -> Device:
        change = TagChange(device_id, add=False)
        for _ in range(ATTEMPTS):
            if self._written(app_id, tag, change):
                return self._device(app_id, device_id)
            if tag not in self._device(app_id, device_id).tags:
                raise tag_not_on_device(device_id, tag)
        raise _concurrent_update()

    def change_devices(self, app_id: str, tag: str, raw_add: list[Any], raw_remove: list[Any]) -> BulkTagOutcome:
        """Tag and untag up to 1,000 devices; each device gets an outcome, counts stay exact.

        One consistent BatchGetItem per 100 devices tells which exist and which
        already carry the tag; then one transaction per 49 devices to change,
        one after the other since they all update the tag's count.
        """
        check_add_remove(raw_add, raw_remove, MAX_DEVICES_PER_REQUEST, "devices")
        tally = Tally(tag)
        add = self._valid_ids(raw_add, tally)
        remove = self._valid_ids(raw_remove, tally)
        refuse_add_and_remove(add, remove)
        wanted = [TagChange(device_id, add=True) for device_id in add] + [
            TagChange(device_id, add=False) for device_id in remove
        ]
        stored = self.repository.device_tags(app_id, [change.device_id for change in wanted])
        pending = [change for change in wanted if tally.settle(change, stored.get(change.device_id))]
        now = utc_now()
        for chunk in chunks(pending, MEMBERSHIPS_PER_TRANSACTION):
            self._write_chunk(app_id, tag, chunk, tally, now)
        stored_tag = self.repository.get(app_id, tag)
        return tally.outcome(0 if stored_tag is None else stored_tag.device_count)

    def list_tags(self, app_id: str, cursor: str | None, limit: int) -> Page[Tag]:
        return self.repository.list_tags(app_id, cursor, limit)

    def list_devices(self, app_id: str, tag: str, cursor: str | None, limit: int) -> Page[Device]:
        if self.repository.get(app_id, tag) is None:
            raise tag_not_found(tag)
        return self.repository.list_devices(app_id, tag, cursor, limit)

    def _write_chunk(self, app_id: str, tag: str, chunk: list[TagChange], tally: Tally, now: datetime) -> None:
        for _ in range(ATTEMPTS):
            try:
                refused = self.repository.change(app_id, tag, chunk, now)
                if not refused:
                    tally.written(chunk)
                    return
                # Some devices changed since they were read: their new state decides, the rest go again.
                stored = self.repository.device_tags(app_id, refused)
            except PynamoDBException:  # a conflict or throttling must not hide the other chunks' outcomes
                logger.exception("Tagging %d devices failed", len(chunk))  # no ids: they may be push tokens
                tally.fail(chunk)
                return
            chunk = [
                change
                for change in chunk
                if change.device_id not in refused or tally.settle(change, stored.get(change.device_id))
            ]
            if not chunk:
                return
        tally.fail(chunk)

    def _written(self, app_id: str, tag: str, change: TagChange) -> bool:
        """Whether one device's change went through; False when its condition failed or the moment was bad."""
        try:
            return not self.repository.change(app_id, tag, [change], utc_now())
        except TransactWriteError as exc:
            if transient(exc):
                return False
            raise

    def _valid_ids(self, raw_ids: list[Any], tally: Tally) -> list[str]:
        """The valid ids, each once; the others are counted as invalid or unchanged (repeats)."""
        unique, invalid, repeats = split_ids(raw_ids, _DEVICE_ID)
        tally.invalid.extend(invalid)
        tally.unchanged += repeats
        return unique

    def _device(self, app_id: str, device_id: str) -> Device:
        device = self.devices.get(app_id, device_id)
        if device is None:
            raise device_not_found(device_id)
        return device


def _concurrent_update() -> Conflict:
    return Conflict("The device changed concurrently too many times; retry the request.", code="concurrent_update")
