"""Selection: the users, devices, emails or phones that criteria select, a page at a time.

One engine for every reader of criteria: the preview counts what a page
selects, criteria segments list it, and bulk workers change it. A page reads
the target's table from a position, with the pushed-down filter and under a
read budget, then checks the residual in code. It returns what matched and
the position to resume from, so a caller can stop between any two pages.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from pynamodb.expressions.condition import Condition
from pynamodb.models import Model

from steward.criteria.evaluate import Subject, contact_subject, device_subject, matches, scopes_in, user_subject
from steward.criteria.fields import Scope
from steward.criteria.models import ContactSample, Node, Target
from steward.criteria.pushdown import plan
from steward.devices.models import Device
from steward.devices.repository import DeviceRepository, to_device
from steward.shard_reader import MAX_SCANNED_PER_REQUEST, Batch, Position, read_shards
from steward.tables import DeviceRecord, ProfileRecord
from steward.users.models import User
from steward.users.repository import UserRepository, to_user

# Items whose residual needs a keys-only index query each (a user's devices) are
# fewer per page than those needing a share of a BatchGetItem (a device's owner).
MAX_ITEMS_WITH_DEVICE_LOOKUPS = 200
MAX_ITEMS_WITH_OWNER_LOOKUPS = 1000

Selected = User | Device | ContactSample


@dataclass(frozen=True)
class SelectionPage:
    matches: list[Selected]
    scanned: int  # items DynamoDB read for this page
    next: Position | None  # None: the walk is complete
    also: int = 0  # how many matches the page's ``also`` criteria select too


@dataclass(frozen=True)
class SelectionLimits:
    max_scanned: int = MAX_SCANNED_PER_REQUEST
    max_device_lookups: int = MAX_ITEMS_WITH_DEVICE_LOOKUPS
    max_owner_lookups: int = MAX_ITEMS_WITH_OWNER_LOOKUPS


class Selection:
    def __init__(
        self,
        shard_count: int,
        users: UserRepository,
        devices: DeviceRepository,
        limits: SelectionLimits = SelectionLimits(),
    ) -> None:
        self.shard_count = shard_count
        self.users = users
        self.devices = devices
        self.limits = limits

    def page(
        self,
        app_id: str,
        target: Target,
        criteria: Node,
        now: datetime,
        start: Position,
        *,
        shard: int | None = None,
        max_items: int | None = None,
        also: Node | None = None,
    ) -> SelectionPage:
        """One page from ``start``: the whole app's shards in order, or ``shard`` alone.

        ``now`` fixes relative rules (within_last_days) across the pages of one walk. ``also``:
        criteria counted among the matches (the preview's deliverable ones), read with them.
        """
        if shard is not None and not (0 <= shard < self.shard_count and start.shard == shard):
            raise ValueError(f"A walk of shard {shard} must start in it, not in shard {start.shard}.")
        planned = plan(criteria, target, now)
        walk = _Walk(app_id, start, planned.condition, None if shard is None else shard + 1, max_items)
        if target is Target.DEVICES:
            candidates, scanned, position = self._devices(walk, planned.residual, also)
        else:
            candidates, scanned, position = self._users(walk, target, planned.residual, also)
        residual = planned.residual
        chosen = [
            (subject, item) for subject, item in candidates if residual is None or matches(residual, subject, now)
        ]
        counted = 0 if also is None else sum(1 for subject, _ in chosen if matches(also, subject, now))
        return SelectionPage([item for _, item in chosen], scanned, position, counted)

    def pages(
        self, app_id: str, target: Target, criteria: Node, now: datetime, *, shard: int | None = None
    ) -> Iterator[SelectionPage]:
        """Every page, from the start of the app's shards (or of ``shard``) to the end."""
        position: Position | None = Position(0 if shard is None else shard)
        while position is not None:
            page = self.page(app_id, target, criteria, now, position, shard=shard)
            yield page
            position = page.next

    def _users(
        self, walk: "_Walk", target: Target, residual: Node | None, also: Node | None
    ) -> tuple[Iterator[tuple[Subject, Selected]], int, Position | None]:
        needs_devices = Scope.DEVICE in scopes_in(residual) | scopes_in(also)
        budget = self.limits.max_device_lookups if needs_devices else self.limits.max_scanned
        batch = self._read(ProfileRecord, walk, budget)
        users = [to_user(record) for record in batch.items]
        app_id = walk.app_id
        devices = self.devices.devices_of_users(app_id, [user.user_id for user in users]) if needs_devices else {}

        def candidates() -> Iterator[tuple[Subject, Selected]]:
            for user in users:
                own_devices = devices.get(user.user_id, [])
                if target is Target.USERS:
                    yield user_subject(user, own_devices), user
                    continue
                is_email = target is Target.EMAILS
                for contact in user.emails if is_email else user.phones:
                    sample = ContactSample(user_id=user.user_id, address=contact.address, active=contact.active)
                    yield contact_subject(contact, user, is_email, own_devices), sample

        return candidates(), batch.scanned, batch.next

    def _devices(
        self, walk: "_Walk", residual: Node | None, also: Node | None
    ) -> tuple[Iterator[tuple[Subject, Selected]], int, Position | None]:
        needs_owner = bool((scopes_in(residual) | scopes_in(also)) & {Scope.USER, Scope.EMAIL, Scope.PHONE})
        budget = self.limits.max_owner_lookups if needs_owner else self.limits.max_scanned
        batch = self._read(DeviceRecord, walk, budget)
        devices = [to_device(record) for record in batch.items]
        owner_ids = [device.user_id for device in devices if device.user_id is not None]
        found = self.users.get_many(walk.app_id, owner_ids) if needs_owner else {}

        def candidates() -> Iterator[tuple[Subject, Selected]]:
            for device in devices:
                owner = found[device.user_id][0] if device.user_id in found else None
                yield device_subject(device, owner), device

        return candidates(), batch.scanned, batch.next

    def _read[M: Model](self, model: type[M], walk: "_Walk", budget: int) -> Batch[M]:
        """One budgeted read of the target's table; ``budget`` caps the items whose residual costs lookups."""
        return read_shards(
            model,
            walk.app_id,
            self.shard_count,
            walk.start,
            walk.condition,
            max_scanned=self.limits.max_scanned,
            max_items=budget if walk.max_items is None else min(budget, walk.max_items),
            end_shard=walk.end_shard,
        )


@dataclass(frozen=True)
class _Walk:
    """What one page reads: where, from where, with which pushed-down filter, and how far."""

    app_id: str
    start: Position
    condition: Condition | None
    end_shard: int | None  # exclusive; None: to the last shard
    max_items: int | None
