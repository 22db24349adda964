"""deactivate_users: deactivate the push devices, email addresses or phone numbers that criteria select.

Only active ones are selected (the criteria, and ``device.active`` /
``email.active`` / ``phone.active`` true). A device becomes inactive with
reason ``deactivated_by_job`` (identify does not bring it back); a contact
becomes inactive with ``deactivation_reason`` ``deactivated_by_job``; both
record ``deactivated_at`` = the job's ``now``, which is how a retried page
recognises its own work. A user the job leaves with no active device, email
or phone is deactivated (reason ``no_active_contact``) through
``UserActivation.set_active_when``, which moves it to its segments' inactive
counts in the same transaction; ``last_activity_at`` is never touched.

Emails and phones live in the user's profile, so all the contacts of one
user come in one page: that page deactivates them in one conditional write
of the profile, then the user. A user's devices lie in several shards, which
workers walk side by side, so its row belongs to one page: the one that
holds the greatest id of the devices this job deactivates (or has), which
every page computes the same way whatever the order they run in. That page
deactivates the user once nothing but such devices reaches it: the user may
go a moment before its last devices do, in the pages of their own shards.

Report rows: ``device`` / ``email`` / ``phone`` (id: the device id or the
address, user_id: the owner), action ``deactivated``; for a user the job
leaves unreachable, a consequence row ``user`` ``deactivated`` with detail
``no_active_contact``, in the same page, applied after the page's devices
or contacts.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from steward.conditions import MAX_ATTEMPTS
from steward.criteria.evaluate import contact_subject, device_subject, matches, scopes_in
from steward.criteria.fields import Scope, resolve_field
from steward.criteria.models import Combinator, ContactSample, Group, Node, Operator, Rule, Target
from steward.criteria.parse import parse_criteria
from steward.devices import lifecycle as device_lifecycle
from steward.devices.models import Device
from steward.devices.repository import JobWrite
from steward.errors import Conflict
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
    NOMINAL_PROFILE_BYTES,
    Kind,
    Meter,
    deactivated_for_no_contact_at,
    each,
    failed,
    next_of,
    reach_left,
    sizes_of,
    start_of,
)
from steward.jobs.models import JobType
from steward.jobs.params import DeactivateUsersParams, Medium
from steward.shard_reader import Position
from steward.usecases.user_activation import NO_ACTIVE_CONTACT
from steward.users import lifecycle as user_lifecycle
from steward.users.models import Contact, User

DEACTIVATED = "deactivated"
# Devices per page: as many conditional updates, one after the other.
DEVICE_PAGE = 500
# Users per page of emails or phones: at most 10 contacts each, one profile write per user.
CONTACT_PAGE = 100

_TARGETS = {Medium.PUSH: Target.DEVICES, Medium.EMAIL: Target.EMAILS, Medium.SMS: Target.PHONES}
_ACTIVE_FIELDS = {Medium.PUSH: "device.active", Medium.EMAIL: "email.active", Medium.SMS: "phone.active"}
_CONTACTS: dict[Medium, tuple[Entity, Kind]] = {
    Medium.EMAIL: (Entity.EMAIL, "emails"),
    Medium.SMS: (Entity.PHONE, "phones"),
}
_KIND_OF_ENTITY: dict[Entity, Kind] = {Entity.EMAIL: "emails", Entity.PHONE: "phones"}
_GONE = "deleted"
_NO_LONGER_MATCHES = "no longer matches the criteria"


def _params(ctx: JobContext) -> DeactivateUsersParams:
    params = ctx.params
    assert isinstance(params, DeactivateUsersParams)
    return params


def _criteria(params: DeactivateUsersParams) -> Node:
    """The job's criteria, and only active devices, emails or phones."""
    active = resolve_field(_ACTIVE_FIELDS[params.medium])
    assert active is not None
    return Group(Combinator.ALL, (parse_criteria(params.criteria), Rule(active, Operator.EQ, True)))


def _user_row(user_id: str) -> ReportRow:
    return ReportRow(Entity.USER, user_id, DEACTIVATED, user_id, NO_ACTIVE_CONTACT, consequence=True)


class DeactivateUsers(SinglePhase):
    def plan(self, ctx: JobContext) -> Plan:
        return Plan(shard_items(ctx.services.shard_count))

    # Selection.

    def select(self, ctx: JobContext, item: WorkItem, position: JsonObject | None) -> Page:
        params = _params(ctx)
        start = start_of(ctx, item, position)
        if params.medium is Medium.PUSH:
            return self._select_devices(ctx, params, start)
        return self._select_contacts(ctx, params, start)

    def _select_devices(self, ctx: JobContext, params: DeactivateUsersParams, start: Position) -> Page:
        node = _criteria(params)
        page = ctx.services.selection.page(
            ctx.app_id, Target.DEVICES, node, ctx.now, start, shard=start.shard, max_items=DEVICE_PAGE
        )
        devices = [found for found in page.matches if isinstance(found, Device)]
        repository = ctx.services.device_repository
        sizes = sizes_of(repository.stored_item(ctx.app_id, device) for device in devices)
        meter = Meter()
        meter.walk(page.scanned, sizes, NOMINAL_DEVICE_BYTES)
        if scopes_in(node) - {Scope.DEVICE}:
            # The selection reads the owners the criteria look at (at most 4 KB each, eventually consistent).
            meter.gets([0] * len({device.user_id for device in devices if device.user_id}), consistent=False)
        # An update is billed on the larger of the item before and after (which has the date and reason).
        after = sizes_of(repository.stored_item(ctx.app_id, device_lifecycle.deactivate(d, ctx.now)) for d in devices)
        meter.writes(max(pair) for pair in zip(sizes, after, strict=True))
        rows = [ReportRow(Entity.DEVICE, device.device_id, DEACTIVATED, device.user_id or "") for device in devices]
        rows.extend(self._unreached_owners(ctx, node, devices, meter))
        return Page(rows, page.scanned, next_of(page.next), cost=meter.cost())

    def _unreached_owners(self, ctx: JobContext, node: Node, devices: list[Device], meter: Meter) -> list[ReportRow]:
        """A row per owner the job leaves unreachable whose greatest device the job deactivates is in this page."""
        here = {device.device_id for device in devices}
        owner_ids = sorted({device.user_id for device in devices if device.user_id is not None})
        owners = ctx.services.user_repository.get_many(ctx.app_id, owner_ids)
        user_sizes = {user_id: self._user_size(ctx, user) for user_id, (user, _) in owners.items()}
        meter.gets(user_sizes.values(), consistent=False)
        # Only a user no email or phone reaches needs its devices looked up.
        candidates = [user_id for user_id, (user, _) in owners.items() if user.active and reach_left(user, []) is None]
        owned = ctx.services.device_repository.devices_of_users(ctx.app_id, candidates)
        meter.index_queries(len(candidates))
        meter.gets(self._device_sizes(ctx, owned), consistent=False)
        rows = []
        for user_id in candidates:
            user, own = owners[user_id][0], owned.get(user_id, [])
            going = [device for device in own if self._leaving(ctx, node, device, user)]
            staying = [device for device in own if device not in going]
            if going and max(device.device_id for device in going) in here and reach_left(user, staying) is None:
                rows.append(_user_row(user_id))
                meter.gets([user_sizes[user_id]], consistent=True)  # apply reads the user...
                meter.index_queries(1)  # ...and its devices
                meter.gets(self._device_sizes(ctx, {user_id: own}), consistent=True)
                meter.user_transition(user_sizes[user_id], len(user.segments))
        return rows

    def _leaving(self, ctx: JobContext, node: Node, device: Device, owner: User) -> bool:
        """Whether the job deactivates ``device`` (active, and the criteria select it), or has already."""
        return device_lifecycle.deactivated_by_job_at(device, ctx.now) or matches(
            node, device_subject(device, owner), ctx.now
        )

    def _select_contacts(self, ctx: JobContext, params: DeactivateUsersParams, start: Position) -> Page:
        entity, kind = _CONTACTS[params.medium]
        page = ctx.services.selection.page(
            ctx.app_id,
            _TARGETS[params.medium],
            _criteria(params),
            ctx.now,
            start,
            shard=start.shard,
            max_items=CONTACT_PAGE,
        )
        by_user: dict[str, list[str]] = defaultdict(list)
        for found in page.matches:
            if isinstance(found, ContactSample):
                by_user[found.user_id].append(found.address)
        meter = Meter()
        users = ctx.services.user_repository.get_many(ctx.app_id, by_user)
        user_sizes = {user_id: self._user_size(ctx, user) for user_id, (user, _) in users.items()}
        meter.walk(page.scanned, list(user_sizes.values()), NOMINAL_PROFILE_BYTES)
        meter.gets(user_sizes.values(), consistent=False)  # this read
        meter.gets(user_sizes.values(), consistent=True)  # apply's read
        # Users whose every other email and phone is inactive: reachable only if a device is active.
        unreached = [
            user_id
            for user_id, addresses in by_user.items()
            if user_id in users
            and users[user_id][0].active
            and reach_left(users[user_id][0], [], [(kind, address) for address in addresses]) is None
        ]
        devices = ctx.services.device_repository.devices_of_users(ctx.app_id, unreached)
        meter.index_queries(2 * len(unreached))  # here, and apply's check
        device_sizes = self._device_sizes(ctx, devices)
        meter.gets(device_sizes, consistent=False)
        meter.gets(device_sizes, consistent=True)
        rows: list[ReportRow] = []
        for user_id, addresses in by_user.items():
            rows.extend(ReportRow(entity, address, DEACTIVATED, user_id) for address in addresses)
            if user_id in users:
                user = users[user_id][0]
                after = user_lifecycle.deactivate_contacts(user, kind, addresses, ctx.now)
                meter.writes([max(user_sizes[user_id], self._user_size(ctx, after))])
            if user_id in unreached and not any(device.active for device in devices.get(user_id, [])):
                rows.append(_user_row(user_id))
                meter.user_transition(user_sizes[user_id], len(users[user_id][0].segments))
        return Page(rows, page.scanned, next_of(page.next), cost=meter.cost())

    def _user_size(self, ctx: JobContext, user: User) -> int:
        return sizes_of([ctx.services.user_repository.stored_item(ctx.app_id, user)])[0]

    def _device_sizes(self, ctx: JobContext, devices: Mapping[str, list[Device]]) -> list[int]:
        repository = ctx.services.device_repository
        return sizes_of(repository.stored_item(ctx.app_id, device) for own in devices.values() for device in own)

    def _staying(self, ctx: JobContext, node: Node, user: User, own: Iterable[Device]) -> list[Device]:
        """The user's devices the job leaves as they are: for push, those it does not deactivate."""
        if _params(ctx).medium is not Medium.PUSH:
            return list(own)
        return [device for device in own if not self._leaving(ctx, node, device, user)]

    # Confirmation.

    def recheck(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        node = _criteria(_params(ctx))
        device_ids = [row.id for row in rows if row.entity is Entity.DEVICE and row.action == DEACTIVATED]
        devices = ctx.services.device_repository.get_many(ctx.app_id, device_ids, consistent=True)
        owner_ids = {device.user_id for device in devices.values() if device.user_id is not None}
        user_ids = owner_ids | {row.user_id for row in rows if row.entity is not Entity.DEVICE and row.user_id}
        users = {
            user_id: user
            for user_id, (user, _) in ctx.services.user_repository.get_many(
                ctx.app_id, user_ids, consistent=True
            ).items()
        }
        # Devices matter to the user rows, and to contact rows whose criteria look at devices.
        needing_devices = {row.id for row in rows if row.entity is Entity.USER}
        if Scope.DEVICE in scopes_in(node):
            needing_devices |= {row.user_id for row in rows if row.entity in _KIND_OF_ENTITY}
        owned = ctx.services.device_repository.devices_of_users(
            ctx.app_id, [user_id for user_id in users if user_id in needing_devices], consistent=True
        )

        def now_as(row: ReportRow) -> ReportRow:
            if row.action != DEACTIVATED or row.entity is Entity.USER:
                return row
            if row.entity is Entity.DEVICE:
                device = devices.get(row.id)
                if device is None:
                    return row.with_outcome(Outcome.DRIFTED, _GONE)
                if not device.active:
                    return row.with_outcome(Outcome.DRIFTED, _inactive(device.deactivation_reason))
                owner = users.get(device.user_id) if device.user_id is not None else None
                subject = device_subject(device, owner)
            else:
                user = users.get(row.user_id)
                contact = _contact(user, _KIND_OF_ENTITY[row.entity], row.id) if user is not None else None
                if user is None or contact is None:
                    return row.with_outcome(Outcome.DRIFTED, _GONE)
                if not contact.active:
                    return row.with_outcome(Outcome.DRIFTED, _inactive(contact.deactivation_reason))
                subject = contact_subject(contact, user, row.entity is Entity.EMAIL, owned.get(row.user_id, []))
            return row if matches(node, subject, ctx.now) else row.with_outcome(Outcome.DRIFTED, _NO_LONGER_MATCHES)

        checked = [now_as(row) for row in rows]
        # The contacts this page still deactivates: a user row counts on them.
        gone = [
            (row.user_id, _KIND_OF_ENTITY[row.entity], row.id)
            for row in checked
            if row.entity in _KIND_OF_ENTITY and row.action == DEACTIVATED
        ]

        def user_now(row: ReportRow) -> ReportRow:
            if row.entity is not Entity.USER or row.action != DEACTIVATED:
                return row
            user = users.get(row.id)
            if user is None:
                return row.with_outcome(Outcome.DRIFTED, _GONE)
            if not user.active:
                return row.with_outcome(Outcome.DRIFTED, _inactive(user.deactivation_reason))
            staying = self._staying(ctx, node, user, owned.get(row.id, []))
            left = reach_left(user, staying, [(kind, address) for user_id, kind, address in gone if user_id == row.id])
            return row if left is None else row.with_outcome(Outcome.DRIFTED, left)

        return [user_now(row) for row in checked]

    # Changes.

    def apply(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        outcomes: dict[int, ReportRow] = {}
        todo = [(index, row) for index, row in enumerate(rows) if row.action == DEACTIVATED]
        devices = [(index, row) for index, row in todo if row.entity is Entity.DEVICE]
        for (index, row), result in zip(
            devices, each(devices, lambda pair: self._deactivate_device(ctx, pair[1])), strict=True
        ):
            outcomes[index] = failed(row, result) if isinstance(result, Exception) else result
        contacts: dict[str, list[tuple[int, ReportRow]]] = defaultdict(list)
        for index, row in todo:
            if row.entity in _KIND_OF_ENTITY:
                contacts[row.user_id].append((index, row))
        groups = list(contacts.values())
        # One BatchGetItem reads the page's profiles; a profile that changed before its write is read again alone.
        read = ctx.services.user_repository.get_many(ctx.app_id, contacts, consistent=True)
        for group, results in zip(
            groups, each(groups, lambda group: self._deactivate_contacts(ctx, group, read)), strict=True
        ):
            for index, row in group:
                outcomes[index] = failed(row, results) if isinstance(results, Exception) else results[index]
        # The users last, once the page's devices or contacts are inactive.
        users = [(index, row) for index, row in todo if row.entity is Entity.USER]
        node = _criteria(_params(ctx))
        settled = self._settle_users(ctx, node, [row.id for _, row in users])
        for (index, row), result in zip(users, settled, strict=True):
            outcomes[index] = failed(row, result) if isinstance(result, Exception) else result
        return [outcomes.get(index, row) for index, row in enumerate(rows)]

    def _deactivate_device(self, ctx: JobContext, row: ReportRow) -> ReportRow:
        write = ctx.services.device_repository.deactivate_for_job(ctx.app_id, row.id, ctx.now)
        if write.result in (JobWrite.CHANGED, JobWrite.ALREADY):
            return row
        if write.result is JobWrite.MISSING or write.device is None:
            return row.with_outcome(Outcome.NOT_FOUND, "")
        return row.with_outcome(Outcome.DRIFTED, _inactive(write.device.deactivation_reason))

    def _deactivate_contacts(
        self, ctx: JobContext, group: list[tuple[int, ReportRow]], read: Mapping[str, tuple[User, int]]
    ) -> dict[int, ReportRow]:
        """One user's rows of the page: one conditional write of its contacts (read again and retried on a race)."""
        repository = ctx.services.user_repository
        user_id = group[0][1].user_id
        by_kind: dict[Kind, list[str]] = defaultdict(list)
        for _, row in group:
            by_kind[_KIND_OF_ENTITY[row.entity]].append(row.id)
        stored = read.get(user_id)
        for _ in range(MAX_ATTEMPTS):
            if stored is None:
                return {index: row.with_outcome(Outcome.NOT_FOUND, "") for index, row in group}
            user, version = stored
            updated = user
            for kind, addresses in by_kind.items():
                updated = user_lifecycle.deactivate_contacts(updated, kind, addresses, ctx.now)
            if updated == user or repository.save_contacts_if_unchanged(ctx.app_id, updated, version):
                return {index: self._contact_outcome(ctx, updated, row) for index, row in group}
            stored = repository.get_with_version(ctx.app_id, user_id)
        raise Conflict("The user changed concurrently too many times.", code="concurrent_update")

    def _contact_outcome(self, ctx: JobContext, user: User, row: ReportRow) -> ReportRow:
        contact = _contact(user, _KIND_OF_ENTITY[row.entity], row.id)
        if contact is None:
            return row.with_outcome(Outcome.NOT_FOUND, "")
        if user_lifecycle.deactivated_by_job_at(contact, ctx.now):
            return row
        return row.with_outcome(Outcome.DRIFTED, _inactive(contact.deactivation_reason))

    def _settle_users(self, ctx: JobContext, node: Node, user_ids: list[str]) -> list[ReportRow | Exception]:
        """Deactivate each user the job leaves unreachable (or recognise that it did); each one's row."""
        if not user_ids:
            return []
        users = ctx.services.user_repository.get_many(ctx.app_id, user_ids, consistent=True)
        unreached = [user_id for user_id, (user, _) in users.items() if reach_left(user, []) is None]
        owned = ctx.services.device_repository.devices_of_users(ctx.app_id, unreached, consistent=True)

        def settle(user_id: str) -> ReportRow:
            row = _user_row(user_id)
            if user_id not in users:
                return row.with_outcome(Outcome.NOT_FOUND, "")
            user = users[user_id][0]
            if deactivated_for_no_contact_at(user, ctx.now):
                return row
            if not user.active:
                return row.with_outcome(Outcome.DRIFTED, _inactive(user.deactivation_reason))
            left = reach_left(user, self._staying(ctx, node, user, owned.get(user_id, [])))
            if left is not None:
                return row.with_outcome(Outcome.DRIFTED, left)
            # On condition of the profile as read: an email or phone added meanwhile keeps the user active.
            after = ctx.services.user_activation.set_active_when(
                ctx.app_id,
                user_id,
                False,
                NO_ACTIVE_CONTACT,
                ctx.now,
                lambda now_user: reach_left(now_user, []) is None,
            )
            if after is None:
                return row.with_outcome(Outcome.NOT_FOUND, "")
            if deactivated_for_no_contact_at(after, ctx.now):
                return row
            return row.with_outcome(Outcome.DRIFTED, reach_left(after, []) or _inactive(after.deactivation_reason))

        return each(user_ids, settle)


def _inactive(reason: str | None) -> str:
    """A drifted row's detail: the entity was deactivated by something else (and why, when known)."""
    return f"inactive ({reason})" if reason else "inactive"


def _contact(user: User | None, kind: Kind, address: str) -> Contact | None:
    if user is None:
        return None
    contacts = user.emails if kind == "emails" else user.phones
    return next((contact for contact in contacts if contact.address == address), None)


KINDS: dict[JobType, JobKind] = {JobType.DEACTIVATE_USERS: DeactivateUsers()}
