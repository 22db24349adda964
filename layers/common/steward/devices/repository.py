"""Data access for devices: every state change is one conditional write."""

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pynamodb.exceptions import DeleteError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from steward.conditions import MAX_ATTEMPTS, condition_failed, read_modify_write, save_versioned
from steward.devices import lifecycle
from steward.devices.models import DeactivationReason, Device, DeviceFilter, LastStatus, PushResult, Transport
from steward.devices.tag_index import release_tags
from steward.errors import Conflict, NotFound
from steward.pagination import Page, cursor_str, decode_cursor, encode_cursor, fit_page
from steward.retryable import transient
from steward.shard_reader import Position, read_shards
from steward.sharded_query import cursor_after, query_shards
from steward.sharding import partition_for
from steward.tables import DeviceRecord, device_user_key
from steward.transactions import Transaction

_LOOKUP_WORKERS = 16  # DeviceRecord's connection pool size

DeviceChange = Callable[[Device | None], Device]


class JobWrite(StrEnum):
    """What a maintenance job's conditional write of one device did."""

    CHANGED = "changed"  # this call made the change
    ALREADY = "already"  # the same job made it before (a retried page)
    REFUSED = "refused"  # the device no longer qualifies: ``device`` says how it is
    MISSING = "missing"


@dataclass(frozen=True)
class DeviceWrite:
    result: JobWrite
    device: Device | None  # after the write, or as found when refused; None when missing


@dataclass(frozen=True)
class _AsRead:
    """What a device's delete is conditioned on: its tags (released with it) and the version they were read at.

    With its creation time: a device deleted and identified again restarts its version, and could reach the
    one read with other tags.
    """

    tags: frozenset[str]
    version: int
    created_at: datetime


class DeviceRepository:
    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count

    def get(self, app_id: str, device_id: str) -> Device | None:
        record = self._get_record(app_id, device_id)
        return None if record is None else to_device(record)

    def upsert(self, app_id: str, device_id: str, change: DeviceChange) -> Device:
        """Read, apply ``change`` and write back only if nobody wrote in between.

        ``change`` is pure; returning the current device unchanged skips the write.
        """

        def load() -> tuple[Device | None, int | None]:
            record = self._get_record(app_id, device_id)
            return (None, None) if record is None else (to_device(record), int(record.version))

        def save(device: Device, version: int | None) -> bool:
            return save_versioned(_to_record(app_id, device, self.shard_count), version)

        return read_modify_write(load, change, save, "device")

    def record_success(self, app_id: str, device_id: str, result: PushResult, now: datetime) -> Device | None:
        """Accepted push -> sent, streak reset. None when the device is missing or inactive."""
        return self._transition(
            app_id,
            device_id,
            result,
            [
                DeviceRecord.last_status.set(LastStatus.SENT.value),
                DeviceRecord.has_succeeded.set(True),
                DeviceRecord.failure_streak.set(0),
                DeviceRecord.last_push_at.set(now),
                DeviceRecord.updated_at.set(now),
            ],
            DeviceRecord.active == True,  # noqa: E712 (a DynamoDB condition, not a Python comparison)
        )

    def record_first_failure(self, app_id: str, device_id: str, result: PushResult, now: datetime) -> Device | None:
        """A failure after a success (or none yet) -> bounced. None unless the streak was 0."""
        return self._transition(
            app_id,
            device_id,
            result,
            [
                DeviceRecord.last_status.set(LastStatus.BOUNCED.value),
                DeviceRecord.failure_streak.set(1),
                *_error_actions(result),
                DeviceRecord.last_push_at.set(now),
                DeviceRecord.updated_at.set(now),
            ],
            (DeviceRecord.active == True) & (DeviceRecord.failure_streak == 0),  # noqa: E712
        )

    def record_repeated_failure(self, app_id: str, device_id: str, result: PushResult, now: datetime) -> Device | None:
        """A consecutive failure -> suppressed and deactivated. None unless the streak was already >= 1."""
        return self._transition(
            app_id,
            device_id,
            result,
            [
                DeviceRecord.last_status.set(LastStatus.SUPPRESSED.value),
                DeviceRecord.failure_streak.add(1),
                DeviceRecord.active.set(False),
                DeviceRecord.deactivated_at.set(now),
                DeviceRecord.deactivation_reason.set(DeactivationReason.DELIVERY_ERROR.value),
                *_error_actions(result),
                DeviceRecord.last_push_at.set(now),
                DeviceRecord.updated_at.set(now),
            ],
            (DeviceRecord.active == True) & (DeviceRecord.failure_streak >= 1),  # noqa: E712
        )

    def delete(
        self,
        app_id: str,
        device_id: str,
        expected_user_id: str | None,
        now: datetime,
        *,
        as_read: tuple[Device, int] | None = None,
    ) -> None:
        """Delete a device and release its tags (their member items and counts) with it.

        A device without tags (most) goes in one DeleteItem, refused if it has
        tags; a tagged one is deleted in one transaction with its releases, on
        condition that nobody wrote it since it was read (every device write
        moves its version; its creation time tells a device deleted and
        identified again), then read again and retried. ``as_read`` is the
        device and its version as the caller read it (consistently): a tagged
        one goes straight to its transaction. Without it, a tagged device
        costs a refused DeleteItem and a read first.
        """
        read = None if as_read is None else _AsRead(frozenset(as_read[0].tags), as_read[1], as_read[0].created_at)
        for _ in range(MAX_ATTEMPTS):
            if read is None or not read.tags:
                deleted = self._delete_untagged(app_id, device_id, expected_user_id)
            else:
                deleted = self._delete_tagged(app_id, device_id, read, expected_user_id, now)
            if deleted:
                return
            record = self._get_record(app_id, device_id)
            if record is None:
                raise device_not_found(device_id)
            if expected_user_id is not None and record.user_id != expected_user_id:
                raise _owned_by_other(device_id, expected_user_id)
            read = _AsRead(frozenset(record.tags or ()), int(record.version), record.created_at)
        raise Conflict("The device changed concurrently too many times; retry the request.", code="concurrent_update")

    def dissociate(self, app_id: str, device_id: str, expected_user_id: str | None, now: datetime) -> Device:
        record = DeviceRecord(pk=partition_for(app_id, device_id, self.shard_count), sk=device_id)
        try:
            record.update(
                actions=[
                    DeviceRecord.user_id.remove(),
                    DeviceRecord.user_key.remove(),
                    DeviceRecord.updated_at.set(now),
                    DeviceRecord.version.add(1),
                ],
                condition=_ownership_condition(expected_user_id),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                self._raise_ownership_error(app_id, device_id, expected_user_id, exc)
            raise
        return to_device(record)

    def list_for_user(self, app_id: str, user_id: str, cursor: str | None, limit: int) -> Page[Device]:
        position = decode_cursor(cursor)
        key = device_user_key(app_id, user_id)
        start = None
        if position is not None:
            after = cursor_str(position, "after")
            start = {
                "user_key": {"S": key},
                "sk": {"S": after},
                "pk": {"S": partition_for(app_id, after, self.shard_count)},
            }
        results = DeviceRecord.by_user.query(key, limit=limit, last_evaluated_key=start)
        keys = [(record.pk, record.sk) for record in results]
        next_cursor = None
        if results.last_evaluated_key is not None and keys:
            next_cursor = encode_cursor({"after": keys[-1][1]})
        # The index holds keys only; one BatchGetItem fetches the devices. The index
        # is eventually consistent, so a device that just moved to another user is dropped.
        fetched = {record.sk: record for record in DeviceRecord.batch_get(keys)} if keys else {}
        devices = (
            (to_device(fetched[sort_key]), encode_cursor({"after": sort_key}))
            for _, sort_key in keys
            if sort_key in fetched and fetched[sort_key].user_id == user_id
        )
        return fit_page(devices, next_cursor)

    def devices_of_users(
        self, app_id: str, user_ids: Iterable[str], *, consistent: bool = False
    ) -> dict[str, list[Device]]:
        """Each user's devices, sorted by device id (users without devices map to []).

        One keys-only index query per user, run side by side, then one
        BatchGetItem per 100 devices for all of them together (strongly
        consistent if asked: the index itself never is).
        """
        records = self._records_of_users(app_id, user_ids, consistent)
        return {user_id: [to_device(record) for record in owned] for user_id, owned in records.items()}

    def list_for_app(self, app_id: str, device_filter: DeviceFilter, cursor: str | None, limit: int) -> Page[Device]:
        records, next_cursor = query_shards(
            DeviceRecord, app_id, self.shard_count, cursor, limit, _filter_condition(device_filter)
        )
        entries = ((to_device(record), cursor_after(record.pk, record.sk)) for record in records)
        return fit_page(entries, next_cursor)

    def versioned_devices_of_users(
        self, app_id: str, user_ids: Iterable[str], *, consistent: bool = False
    ) -> dict[str, list[tuple[Device, int]]]:
        """``devices_of_users``, each device with its version: what a conditional write of it (``delete``) needs."""
        records = self._records_of_users(app_id, user_ids, consistent)
        return {
            user_id: [(to_device(record), int(record.version)) for record in owned]
            for user_id, owned in records.items()
        }

    def reactivations_of_users(
        self, app_id: str, user_ids: Iterable[str], *, consistent: bool = False
    ) -> dict[str, list[tuple[Device, str | None]]]:
        """``devices_of_users``, each device with the reactivate_devices job that last reactivated it, if any."""
        records = self._records_of_users(app_id, user_ids, consistent)
        return {
            user_id: [(to_device(record), record.reactivated_by) for record in owned]
            for user_id, owned in records.items()
        }

    def get_many(self, app_id: str, device_ids: Iterable[str], *, consistent: bool = False) -> dict[str, Device]:
        """Devices by id, with BatchGetItem (100 keys a call); missing ids are left out."""
        keys = [
            (partition_for(app_id, device_id, self.shard_count), device_id) for device_id in dict.fromkeys(device_ids)
        ]
        if not keys:
            return {}
        return {record.sk: to_device(record) for record in DeviceRecord.batch_get(keys, consistent_read=consistent)}

    def deactivated_page(
        self,
        app_id: str,
        start: Position,
        *,
        reason: DeactivationReason,
        since: datetime,
        before: datetime,
        transport: Transport | None = None,
        max_items: int,
    ) -> tuple[list[Device], int, Position | None]:
        """From ``start``, in its shard only: the inactive devices deactivated for ``reason`` in [since, before).

        One filtered read of the shard (see ``read_shards``): the devices
        found, the items DynamoDB scanned, and where to go on (None: the shard is done).
        """
        condition = (
            (DeviceRecord.active == False)  # noqa: E712 (a DynamoDB condition, not a Python comparison)
            & (DeviceRecord.deactivation_reason == reason.value)
            & (DeviceRecord.deactivated_at >= since)
            & (DeviceRecord.deactivated_at < before)
        )
        if transport is not None:
            condition = (DeviceRecord.transport == transport.value) & condition
        batch = read_shards(
            DeviceRecord, app_id, self.shard_count, start, condition, max_items=max_items, end_shard=start.shard + 1
        )
        return [to_device(record) for record in batch.items], batch.scanned, batch.next

    def reactivate_for_job(
        self,
        app_id: str,
        device_id: str,
        transport: Transport,
        start: datetime,
        end: datetime,
        job_id: str,
        now: datetime,
        reason: DeactivationReason = DeactivationReason.DELIVERY_ERROR,
    ) -> DeviceWrite:
        """reactivate_devices on one device: ``lifecycle.reactivate`` as a conditional update.

        The condition is ``lifecycle.reactivation_drift`` finding nothing
        (inactive for ``reason``, of ``transport``, deactivated in
        [start, end)); the version is bumped so identify's read-modify-write
        cannot write the old state back. The job's id stays on the device so
        that the job recognises its own work.
        """
        condition = (
            (DeviceRecord.active == False)  # noqa: E712
            & (DeviceRecord.deactivation_reason == reason.value)
            & (DeviceRecord.transport == transport.value)
            & (DeviceRecord.deactivated_at >= start)
            & (DeviceRecord.deactivated_at < end)
        )
        actions = [
            DeviceRecord.active.set(True),
            DeviceRecord.deactivated_at.remove(),
            DeviceRecord.deactivation_reason.remove(),
            DeviceRecord.last_status.set(LastStatus.UNUSED.value),
            DeviceRecord.failure_streak.set(0),
            DeviceRecord.last_error_code.remove(),
            DeviceRecord.last_error_message.remove(),
            DeviceRecord.updated_at.set(now),
            DeviceRecord.reactivated_by.set(job_id),
        ]
        return self._job_write(
            app_id, device_id, actions, condition, lambda record: record.active and record.reactivated_by == job_id
        )

    def deactivate_for_job(self, app_id: str, device_id: str, now: datetime) -> DeviceWrite:
        """deactivate_users on one device: ``lifecycle.deactivate`` as a conditional update (it must be active)."""
        actions = [
            DeviceRecord.active.set(False),
            DeviceRecord.deactivated_at.set(now),
            DeviceRecord.deactivation_reason.set(DeactivationReason.JOB.value),
            DeviceRecord.updated_at.set(now),
        ]
        return self._job_write(
            app_id,
            device_id,
            actions,
            DeviceRecord.active == True,  # noqa: E712
            lambda record: lifecycle.deactivated_by_job_at(to_device(record), now),
        )

    def stored_item(self, app_id: str, device: Device) -> dict[str, dict[str, Any]]:
        """The device as DynamoDB stores it (DynamoDB JSON): what its reads and writes are billed on."""
        item: dict[str, dict[str, Any]] = _to_record(app_id, device, self.shard_count).serialize()
        return item

    def _records_of_users(
        self, app_id: str, user_ids: Iterable[str], consistent: bool
    ) -> dict[str, list[DeviceRecord]]:
        users = list(dict.fromkeys(user_ids))
        if not users:
            return {}
        with ThreadPoolExecutor(max_workers=min(_LOOKUP_WORKERS, len(users))) as pool:
            keys_by_user = dict(
                zip(users, pool.map(lambda user_id: self._keys_of(app_id, user_id), users), strict=True)
            )
        keys = [key for user_keys in keys_by_user.values() for key in user_keys]
        records = (
            {record.sk: record for record in DeviceRecord.batch_get(keys, consistent_read=consistent)} if keys else {}
        )
        owned: dict[str, list[DeviceRecord]] = {}
        for user_id, user_keys in keys_by_user.items():
            # The index is eventually consistent: a device that just moved to another user is left out.
            mine = [records[sk] for _, sk in user_keys if sk in records and records[sk].user_id == user_id]
            owned[user_id] = sorted(mine, key=lambda record: record.sk)
        return owned

    def _job_write(
        self,
        app_id: str,
        device_id: str,
        actions: Sequence[Action],
        condition: Condition,
        done_before: Callable[[DeviceRecord], bool],
    ) -> DeviceWrite:
        """One conditional update of a job; when refused, the device as it is and whether the job did it already."""
        record = DeviceRecord(pk=partition_for(app_id, device_id, self.shard_count), sk=device_id)
        try:
            record.update(
                actions=[*actions, DeviceRecord.version.add(1)], condition=DeviceRecord.sk.exists() & condition
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            found = self._get_record(app_id, device_id)
            if found is None:
                return DeviceWrite(JobWrite.MISSING, None)
            return DeviceWrite(JobWrite.ALREADY if done_before(found) else JobWrite.REFUSED, to_device(found))
        return DeviceWrite(JobWrite.CHANGED, to_device(record))

    def _keys_of(self, app_id: str, user_id: str) -> list[tuple[str, str]]:
        return [(record.pk, record.sk) for record in DeviceRecord.by_user.query(device_user_key(app_id, user_id))]

    def _get_record(self, app_id: str, device_id: str) -> DeviceRecord | None:
        try:
            return DeviceRecord.get(partition_for(app_id, device_id, self.shard_count), device_id, consistent_read=True)
        except DeviceRecord.DoesNotExist:
            return None

    def _transition(
        self, app_id: str, device_id: str, result: PushResult, actions: list[Action], condition: Condition
    ) -> Device | None:
        record = DeviceRecord(pk=partition_for(app_id, device_id, self.shard_count), sk=device_id)
        condition = DeviceRecord.sk.exists() & condition
        actions = [*actions, DeviceRecord.version.add(1)]
        if result.push_id is not None:
            # A retried result (same push_id) is refused here and answered as a duplicate.
            condition &= DeviceRecord.last_push_id.does_not_exist() | (DeviceRecord.last_push_id != result.push_id)
            actions.append(DeviceRecord.last_push_id.set(result.push_id))
        try:
            record.update(actions=actions, condition=condition)
        except UpdateError as exc:
            if condition_failed(exc):
                return None
            raise
        return to_device(record)

    def _delete_untagged(self, app_id: str, device_id: str, expected_user_id: str | None) -> bool:
        record = DeviceRecord(pk=partition_for(app_id, device_id, self.shard_count), sk=device_id)
        try:
            record.delete(condition=_ownership_condition(expected_user_id) & DeviceRecord.tags.does_not_exist())
        except DeleteError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def _delete_tagged(
        self, app_id: str, device_id: str, read: _AsRead, expected_user_id: str | None, now: datetime
    ) -> bool:
        transaction = Transaction()
        unchanged = (
            _ownership_condition(expected_user_id)
            & (DeviceRecord.version == read.version)
            & (DeviceRecord.created_at == read.created_at)
        )
        record = DeviceRecord(pk=partition_for(app_id, device_id, self.shard_count), sk=device_id)
        transaction.delete("device", record, unchanged)
        release_tags(transaction, app_id, device_id, set(read.tags), self.shard_count, now)
        try:
            return not transaction.commit()
        except TransactWriteError as exc:
            if transient(exc):  # a tag change held a counter: read again and retry
                return False
            raise

    def _raise_ownership_error(
        self, app_id: str, device_id: str, expected_user_id: str | None, cause: Exception
    ) -> None:
        if self.get(app_id, device_id) is None:
            raise device_not_found(device_id) from cause
        raise _owned_by_other(device_id, expected_user_id) from cause


def device_not_found(device_id: str) -> NotFound:
    return NotFound(f"Device {device_id!r} does not exist.", code="device_not_found", field="device_id")


class DeviceOwnedByOther(Conflict):
    """The device belongs to another user than the one the request names (identified by it since)."""


def _owned_by_other(device_id: str, expected_user_id: str | None) -> DeviceOwnedByOther:
    return DeviceOwnedByOther(
        f"Device {device_id!r} does not belong to user {expected_user_id!r}.",
        code="device_owned_by_other_user",
        field="user_id",
    )


def _ownership_condition(expected_user_id: str | None) -> Condition:
    condition = DeviceRecord.sk.exists()
    if expected_user_id is not None:
        condition &= DeviceRecord.user_id == expected_user_id
    return condition


def _error_actions(result: PushResult) -> list[Action]:
    code, message = result.error_code, result.error_message
    return [
        DeviceRecord.last_error_code.set(code) if code else DeviceRecord.last_error_code.remove(),
        DeviceRecord.last_error_message.set(message) if message else DeviceRecord.last_error_message.remove(),
    ]


def _filter_condition(device_filter: DeviceFilter) -> Condition | None:
    parts: list[Condition] = []
    if device_filter.transport is not None:
        parts.append(DeviceRecord.transport == device_filter.transport.value)
    if device_filter.last_status is not None:
        parts.append(DeviceRecord.last_status == device_filter.last_status.value)
    if device_filter.active is not None:
        parts.append(DeviceRecord.active == device_filter.active)
    if not parts:
        return None
    condition = parts[0]
    for part in parts[1:]:
        condition &= part
    return condition


def _to_record(app_id: str, device: Device, shard_count: int) -> DeviceRecord:
    return DeviceRecord(
        pk=partition_for(app_id, device.device_id, shard_count),
        sk=device.device_id,
        user_id=device.user_id,
        user_key=None if device.user_id is None else device_user_key(app_id, device.user_id),
        transport=device.transport.value,
        last_status=device.last_status.value,
        has_succeeded=device.has_succeeded,
        failure_streak=device.failure_streak,
        active=device.active,
        deactivated_at=device.deactivated_at,
        deactivation_reason=None if device.deactivation_reason is None else device.deactivation_reason.value,
        last_error_code=device.last_error_code,
        last_error_message=device.last_error_message,
        attributes=dict(device.attributes),
        tags=set(device.tags) or None,
        created_at=device.created_at,
        updated_at=device.updated_at,
        last_push_at=device.last_push_at,
        last_push_id=device.last_push_id,
    )


def to_device(record: DeviceRecord) -> Device:
    return Device(
        device_id=record.sk,
        user_id=record.user_id,
        transport=record.transport,
        last_status=record.last_status,
        has_succeeded=record.has_succeeded,
        failure_streak=int(record.failure_streak),
        active=record.active,
        deactivated_at=record.deactivated_at,
        deactivation_reason=record.deactivation_reason,
        last_error_code=record.last_error_code,
        last_error_message=record.last_error_message,
        attributes=dict(record.attributes.as_dict()) if record.attributes is not None else {},
        tags=sorted(record.tags or ()),
        created_at=record.created_at,
        updated_at=record.updated_at,
        last_push_at=record.last_push_at,
        last_push_id=record.last_push_id,
    )
