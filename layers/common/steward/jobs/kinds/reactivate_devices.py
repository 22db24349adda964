"""reactivate_devices: bring back the devices of one transport that delivery errors deactivated in a window.

``reason: deactivated_by_job`` brings back instead the devices a
deactivate_users job deactivated (identify does not), so such a job can be
undone. A worker per device shard reads it with a pushed-down filter (the
transport, inactive, the reason, ``deactivated_at`` in [start, end)) and
reactivates each device as ``lifecycle.reactivate`` says: active, status
unused, no failure streak, no last error. The write is a conditional update
on those same rules (``lifecycle.reactivation_drift``) that bumps the
version, so identify's read-modify-write cannot write the old state back; it
records the job's id on the device (``reactivated_by``, not part of the
domain device), which is how a retried page recognises its own work.

Owners: a user that deactivate_users deactivated because nothing reached it
(reason ``no_active_contact``) is reachable again once it has an active
device, so it is reactivated (and moved back in its segments' inactive
counts) with its device. Users deactivated for any other reason stay as they
are. A user's devices lie in several shards, which workers walk side by
side, so its row belongs to one page: the one that holds the greatest id of
its devices this job reactivates (or has), which every page computes the
same way, whatever the order they run in. That page applies the user's row
after its devices' rows.

Report rows: ``device`` (id, user_id: the owner) ``reactivated``; a
consequence row ``user`` ``reactivated`` with detail ``active_device`` for
each owner brought back.
"""

from collections.abc import Sequence

from steward.devices import lifecycle
from steward.devices.models import Device
from steward.devices.repository import DeviceWrite, JobWrite
from steward.jobs.engine import (
    Entity,
    JobContext,
    JobKind,
    JsonObject,
    Outcome,
    Page,
    Plan,
    ReportRow,
    SinglePhase,
    WorkItem,
    shard_items,
)
from steward.jobs.kinds._reach import (
    NOMINAL_DEVICE_BYTES,
    Meter,
    each,
    failed,
    next_of,
    sizes_of,
    start_of,
)
from steward.jobs.models import JobType
from steward.jobs.params import ReactivateDevicesParams
from steward.usecases.user_activation import NO_ACTIVE_CONTACT
from steward.users.models import User

REACTIVATED = "reactivated"
ACTIVE_DEVICE = "active_device"
# Devices per page: as many conditional updates, one after the other.
DEVICE_PAGE = 500
_GONE = "deleted"


def _params(ctx: JobContext) -> ReactivateDevicesParams:
    params = ctx.params
    assert isinstance(params, ReactivateDevicesParams)
    return params


def _user_row(user_id: str) -> ReportRow:
    return ReportRow(Entity.USER, user_id, REACTIVATED, user_id, ACTIVE_DEVICE, consequence=True)


class ReactivateDevices(SinglePhase):
    def plan(self, ctx: JobContext) -> Plan:
        return Plan(shard_items(ctx.services.shard_count))

    # Selection.

    def select(self, ctx: JobContext, item: WorkItem, position: JsonObject | None) -> Page:
        params = _params(ctx)
        repository = ctx.services.device_repository
        devices, scanned, next_position = repository.deactivated_page(
            ctx.app_id,
            start_of(ctx, item, position),
            reason=params.reason,
            since=params.start,
            before=params.end,
            transport=params.transport,
            max_items=DEVICE_PAGE,
        )
        sizes = sizes_of(repository.stored_item(ctx.app_id, device) for device in devices)
        meter = Meter()
        meter.walk(scanned, sizes, NOMINAL_DEVICE_BYTES)
        meter.writes(sizes)  # an update is billed on the larger item: the one with the error and dates
        rows = [ReportRow(Entity.DEVICE, device.device_id, REACTIVATED, device.user_id or "") for device in devices]
        rows.extend(self._owner_rows(ctx, devices, meter))
        return Page(rows, scanned, next_of(next_position), cost=meter.cost())

    def _owner_rows(self, ctx: JobContext, devices: list[Device], meter: Meter) -> list[ReportRow]:
        """A row per owner this page brings back: deactivated for want of a contact, and its greatest device here."""
        here = {device.device_id for device in devices}
        owner_ids = sorted({device.user_id for device in devices if device.user_id is not None})
        owners = ctx.services.user_repository.get_many(ctx.app_id, owner_ids)
        user_sizes = {user_id: self._user_size(ctx, user) for user_id, (user, _) in owners.items()}
        meter.gets(user_sizes.values(), consistent=False)
        candidates = [user_id for user_id, (user, _) in owners.items() if _user_drift(user) is None]
        bringing = self._bringing_back(ctx, candidates, consistent=False)
        meter.index_queries(len(candidates))
        meter.gets([NOMINAL_DEVICE_BYTES] * sum(len(own) for own in bringing.values()), consistent=False)
        rows = []
        for user_id in candidates:
            own = bringing.get(user_id, [])
            if own and max(device.device_id for device in own) in here:
                rows.append(_user_row(user_id))
                user = owners[user_id][0]
                meter.gets([user_sizes[user_id]], consistent=True)  # apply reads the user...
                meter.index_queries(1)  # ...and its devices
                meter.gets([NOMINAL_DEVICE_BYTES] * len(own), consistent=True)
                meter.user_transition(user_sizes[user_id], len(user.segments))
        return rows

    def _bringing_back(self, ctx: JobContext, user_ids: list[str], *, consistent: bool) -> dict[str, list[Device]]:
        """Each user's devices that this job reactivates now or has reactivated (active, with its id on them)."""
        params = _params(ctx)
        return {
            user_id: [
                device
                for device, reactivated_by in devices
                if lifecycle.reactivation_drift(device, params.transport, params.start, params.end, params.reason)
                is None
                or (device.active and reactivated_by == ctx.job.job_id)
            ]
            for user_id, devices in ctx.services.device_repository.reactivations_of_users(
                ctx.app_id, user_ids, consistent=consistent
            ).items()
        }

    def _user_size(self, ctx: JobContext, user: User) -> int:
        return sizes_of([ctx.services.user_repository.stored_item(ctx.app_id, user)])[0]

    # Confirmation.

    def recheck(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        params = _params(ctx)
        device_ids = [row.id for row in rows if row.entity is Entity.DEVICE and row.action == REACTIVATED]
        devices = ctx.services.device_repository.get_many(ctx.app_id, device_ids, consistent=True)
        user_ids = [row.id for row in rows if row.entity is Entity.USER and row.action == REACTIVATED]
        users = ctx.services.user_repository.get_many(ctx.app_id, user_ids, consistent=True)
        brought = self._bringing_back(ctx, [user_id for user_id in user_ids if user_id in users], consistent=True)

        def now_as(row: ReportRow) -> ReportRow:
            if row.action != REACTIVATED:
                return row
            if row.entity is Entity.DEVICE:
                device = devices.get(row.id)
                if device is None:
                    return row.with_outcome(Outcome.DRIFTED, _GONE)
                drift = lifecycle.reactivation_drift(device, params.transport, params.start, params.end, params.reason)
                return row if drift is None else row.with_outcome(Outcome.DRIFTED, drift)
            if row.id not in users:
                return row.with_outcome(Outcome.DRIFTED, _GONE)
            drift = _user_drift(users[row.id][0])
            if drift is None and not brought.get(row.id):
                drift = "no device of it to reactivate"
            return row if drift is None else row.with_outcome(Outcome.DRIFTED, drift)

        return [now_as(row) for row in rows]

    # Changes.

    def apply(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        # The devices first: a user's row needs one of its devices active.
        order = sorted(range(len(rows)), key=lambda index: rows[index].entity is Entity.USER)
        todo = [(index, rows[index]) for index in order if rows[index].action == REACTIVATED]
        results = each(todo, lambda pair: self._apply_one(ctx, pair[1]))
        outcomes = {
            index: failed(row, result) if isinstance(result, Exception) else result
            for (index, row), result in zip(todo, results, strict=True)
        }
        return [outcomes.get(index, row) for index, row in enumerate(rows)]

    def _apply_one(self, ctx: JobContext, row: ReportRow) -> ReportRow:
        return self._reactivate_device(ctx, row) if row.entity is Entity.DEVICE else self._reactivate_user(ctx, row)

    def _reactivate_device(self, ctx: JobContext, row: ReportRow) -> ReportRow:
        params = _params(ctx)
        write: DeviceWrite = ctx.services.device_repository.reactivate_for_job(
            ctx.app_id, row.id, params.transport, params.start, params.end, ctx.job.job_id, ctx.now, params.reason
        )
        if write.result in (JobWrite.CHANGED, JobWrite.ALREADY):
            return row
        if write.device is None:
            return row.with_outcome(Outcome.NOT_FOUND, "")
        drift = lifecycle.reactivation_drift(write.device, params.transport, params.start, params.end, params.reason)
        return row.with_outcome(Outcome.DRIFTED, drift or "changed meanwhile")

    def _reactivate_user(self, ctx: JobContext, row: ReportRow) -> ReportRow:
        user = ctx.services.user_repository.get(ctx.app_id, row.id)
        if user is None:
            return row.with_outcome(Outcome.NOT_FOUND, "")
        if user.active:
            # This job's own write (a retried page) carries its moment; anyone else's does not.
            return row if user.updated_at == ctx.now else row.with_outcome(Outcome.DRIFTED, "active")
        drift = _user_drift(user)
        if drift is not None:
            return row.with_outcome(Outcome.DRIFTED, drift)
        owned = ctx.services.device_repository.devices_of_users(ctx.app_id, [row.id], consistent=True)
        if not any(device.active for device in owned.get(row.id, [])):
            return row.with_outcome(Outcome.DRIFTED, "no active device")
        after = ctx.services.user_activation.set_active_when(
            ctx.app_id, row.id, True, None, ctx.now, lambda now_user: _user_drift(now_user) is None
        )
        if after is None:
            return row.with_outcome(Outcome.NOT_FOUND, "")
        if after.active:
            return row
        return row.with_outcome(Outcome.DRIFTED, _user_drift(after) or "inactive")


def _user_drift(user: User) -> str | None:
    """Why the job would leave ``user`` as it is, or None when it brings it back."""
    if user.active:
        return "active"
    if user.deactivation_reason != NO_ACTIVE_CONTACT:
        return f"deactivation_reason {user.deactivation_reason or 'none'}"
    return None


KINDS: dict[JobType, JobKind] = {JobType.REACTIVATE_DEVICES: ReactivateDevices()}
