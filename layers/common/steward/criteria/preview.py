"""Preview: how many users, devices, emails or phones criteria select, page by page, with a sample.

One request reads the app's shards of the target's table with the pushed-down
filter, under a read budget, checks the residual in code and returns the
count of this page plus a cursor. The client sums ``matched`` over pages.
The cursor also carries the ``now`` of the first page, so within_last_days
means the same on every page, and a fingerprint of the target and criteria,
so a cursor is never continued with other criteria.
"""

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from pynamodb.expressions.condition import Condition

from steward.clock import utc_now
from steward.criteria.evaluate import (
    Subject,
    contact_subject,
    device_subject,
    matches,
    scopes_in,
    user_subject,
)
from steward.criteria.fields import Scope
from steward.criteria.models import ContactSample, Node, PreviewRequest, PreviewResult, Target
from steward.criteria.parse import parse_criteria
from steward.criteria.pushdown import plan
from steward.criteria.reader import Position, read_shards
from steward.criteria.related import devices_of_users, owners
from steward.devices.models import Device
from steward.devices.repository import to_device
from steward.errors import InvalidInput
from steward.pagination import (
    MAX_PAGE_BYTES,
    Page,
    cursor_str,
    decode_cursor,
    encode_cursor,
    fit_page,
    invalid_cursor,
    response_bytes,
)
from steward.sharded_query import MAX_SCANNED_PER_REQUEST
from steward.sharding import shard_of
from steward.tables import DeviceRecord, ProfileRecord
from steward.users.models import User
from steward.users.repository import to_user

# Items whose residual needs a keys-only index query each (a user's devices) are
# fewer per request than those needing a share of a BatchGetItem (a device's owner).
MAX_ITEMS_WITH_DEVICE_LOOKUPS = 200
MAX_ITEMS_WITH_OWNER_LOOKUPS = 1000

SampleItem = User | Device | ContactSample
MAX_SAMPLE_BYTES = MAX_PAGE_BYTES
# The range a cursor's `now` must lie in: no first page was read outside it.
EARLIEST_NOW = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_NOW = datetime(3000, 1, 1, tzinfo=UTC)


class CriteriaPreviewService:
    def __init__(
        self,
        shard_count: int,
        *,
        clock: Callable[[], datetime] = utc_now,
        max_scanned: int = MAX_SCANNED_PER_REQUEST,
        max_device_lookups: int = MAX_ITEMS_WITH_DEVICE_LOOKUPS,
        max_owner_lookups: int = MAX_ITEMS_WITH_OWNER_LOOKUPS,
    ) -> None:
        self.shard_count = shard_count
        self.clock = clock
        self.max_scanned = max_scanned
        self.max_device_lookups = max_device_lookups
        self.max_owner_lookups = max_owner_lookups

    def preview(self, app_id: str, request: PreviewRequest) -> PreviewResult:
        node = parse_criteria(request.criteria)
        fingerprint = _fingerprint(request.target, request.criteria)
        start, now = self._resume(request.cursor, fingerprint)
        planned = plan(node, request.target, now)
        if request.target is Target.DEVICES:
            candidates, scanned, position = self._devices(app_id, start, planned.condition, planned.residual)
        else:
            candidates, scanned, position = self._users(
                app_id, request.target, start, planned.condition, planned.residual
            )
        matched = 0
        sample: list[SampleItem] = []
        sample_bytes = 0
        for subject, item in candidates:
            if planned.residual is None or matches(planned.residual, subject, now):
                matched += 1
                if len(sample) < request.sample_size and sample_bytes < MAX_SAMPLE_BYTES:
                    # Large profiles make a shorter sample, never an answer over Lambda's 6 MB.
                    sample_bytes += response_bytes(item)
                    if not sample or sample_bytes <= MAX_SAMPLE_BYTES:
                        sample.append(item)
        return PreviewResult(
            matched=matched,
            scanned=scanned,
            complete=position is None,
            next_cursor=None if position is None else _cursor(position, now, fingerprint),
            sample=sample,
        )

    def matching_users(self, app_id: str, criteria: Any, cursor: str | None, limit: int) -> Page[User]:
        """One page of the users that criteria select (the members of a criteria segment).

        A page reads under the same budget as a preview, so it may hold fewer
        than ``limit`` users, or none, and still have a next one.
        """
        node = parse_criteria(criteria)
        fingerprint = _fingerprint(Target.USERS, criteria)
        start, now = self._resume(cursor, fingerprint)
        planned = plan(node, Target.USERS, now)
        candidates, _, position = self._users(
            app_id, Target.USERS, start, planned.condition, planned.residual, max_items=limit
        )
        users = (
            # A page cut for size resumes right after its last user (profiles are sharded by user id).
            (item, _cursor(Position(shard_of(item.user_id, self.shard_count), item.user_id), now, fingerprint))
            for subject, item in candidates
            if isinstance(item, User) and (planned.residual is None or matches(planned.residual, subject, now))
        )
        return fit_page(users, None if position is None else _cursor(position, now, fingerprint))

    def _users(
        self,
        app_id: str,
        target: Target,
        start: Position,
        condition: Condition | None,
        residual: Node | None,
        max_items: int | None = None,
    ) -> tuple[Iterator[tuple[Subject, SampleItem]], int, Position | None]:
        needs_devices = Scope.DEVICE in scopes_in(residual)
        budget = self.max_device_lookups if needs_devices else self.max_scanned
        batch = read_shards(
            ProfileRecord,
            app_id,
            self.shard_count,
            start,
            condition,
            max_scanned=self.max_scanned,
            max_items=budget if max_items is None else min(budget, max_items),
        )
        users = [to_user(record) for record in batch.items]
        devices = devices_of_users(app_id, [user.user_id for user in users]) if needs_devices else {}

        def candidates() -> Iterator[tuple[Subject, SampleItem]]:
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
        self, app_id: str, start: Position, condition: Condition | None, residual: Node | None
    ) -> tuple[Iterator[tuple[Subject, SampleItem]], int, Position | None]:
        needs_owner = bool(scopes_in(residual) & {Scope.USER, Scope.EMAIL, Scope.PHONE})
        batch = read_shards(
            DeviceRecord,
            app_id,
            self.shard_count,
            start,
            condition,
            max_scanned=self.max_scanned,
            max_items=self.max_owner_lookups if needs_owner else self.max_scanned,
        )
        devices = [to_device(record) for record in batch.items]
        owner_ids = [device.user_id for device in devices if device.user_id is not None]
        found = owners(app_id, owner_ids, self.shard_count) if needs_owner else {}

        def candidates() -> Iterator[tuple[Subject, SampleItem]]:
            for device in devices:
                owner = None if device.user_id is None else found.get(device.user_id)
                yield device_subject(device, owner), device

        return candidates(), batch.scanned, batch.next

    def _resume(self, cursor: str | None, fingerprint: str) -> tuple[Position, datetime]:
        """Where to start and the ``now`` of this preview: fresh, or as the first page fixed them."""
        position = decode_cursor(cursor)
        if position is None:
            return Position(0), self.clock()
        if position.get("q") != fingerprint:
            raise InvalidInput(
                "This cursor belongs to a preview of another target or other criteria.",
                code="invalid_cursor",
                field="cursor",
            )
        shard = position.get("shard")
        if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < self.shard_count:
            raise invalid_cursor()
        after = None if position.get("after") is None else cursor_str(position, "after")
        raw_now = position.get("now")
        try:
            now = datetime.fromisoformat(raw_now) if isinstance(raw_now, str) else None
        except ValueError:
            now = None
        # Dates far from today (0001-01-01) overflow the date arithmetic of within_last_days.
        if now is None or now.tzinfo is None or not EARLIEST_NOW <= now < LATEST_NOW:
            raise invalid_cursor()
        return Position(shard, after), now


def _cursor(position: Position, now: datetime, fingerprint: str) -> str:
    state: dict[str, Any] = {"shard": position.shard, "now": now.isoformat(), "q": fingerprint}
    if position.after is not None:
        state["after"] = position.after
    return encode_cursor(state)


def _fingerprint(target: Target, criteria: Any) -> str:
    canonical = json.dumps(
        {"target": target.value, "criteria": criteria},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
