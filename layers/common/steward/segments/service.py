"""Segment use cases: create, read, delete, change and list members."""

import logging
import re
from dataclasses import dataclass, field

from pydantic import TypeAdapter

from steward.batch import check_add_remove, chunks, refuse_add_and_remove, split_ids
from steward.clock import utc_now
from steward.criteria.parse import parse_criteria
from steward.criteria.preview import CriteriaPreviewService
from steward.errors import Conflict, InvalidInput
from steward.pagination import Page, fit_page
from steward.segments.models import (
    MAX_MEMBER_CHANGES,
    MAX_SEGMENTS_PER_USER,
    SEGMENT_ID_PREFIX,
    ChangeMembers,
    CreateSegment,
    MemberChangeOutcome,
    Segment,
    SegmentKind,
)
from steward.segments.repository import (
    MemberChange,
    SegmentRepository,
    segment_not_found,
)
from steward.transactions import MEMBERSHIPS_PER_TRANSACTION
from steward.types import UserId
from steward.users.models import User
from steward.users.repository import UserRepository

logger = logging.getLogger(__name__)

# Users whose item changed between our read and our write are read again and retried this often.
ATTEMPTS = 3
# Members removed per DELETE request: about 100 conditional writes per second per worker thread
# keeps a request well inside the API's 30 s; a larger segment takes several DELETEs.
DRAIN_BUDGET = 2000
_SEGMENT_ID = re.compile(rf"^{SEGMENT_ID_PREFIX}[0-9a-f]{{16}}$")
_USER_ID = TypeAdapter(UserId)


class SegmentService:
    def __init__(
        self,
        repository: SegmentRepository,
        users: UserRepository,
        criteria: CriteriaPreviewService,
        drain_budget: int = DRAIN_BUDGET,
    ) -> None:
        self.repository = repository
        self.users = users
        self.criteria = criteria
        self.drain_budget = drain_budget

    def create(self, app_id: str, request: CreateSegment) -> Segment:
        if request.kind is SegmentKind.CRITERIA:
            if request.criteria is None:
                raise InvalidInput("A criteria segment needs criteria.", code="criteria_required", field="criteria")
            parse_criteria(request.criteria)  # 422 invalid_criteria with the path of the bad part
        elif request.criteria is not None:
            raise InvalidInput(
                "A static segment has members, not criteria.", code="criteria_not_allowed", field="criteria"
            )
        return self.repository.create(app_id, request.name, request.kind, request.criteria, utc_now())

    def get(self, app_id: str, segment_id: str) -> Segment:
        if not _SEGMENT_ID.match(segment_id):
            raise segment_not_found(segment_id)  # cannot exist, and may be too long for a key
        return self.repository.get(app_id, segment_id)

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[Segment]:
        return self.repository.list_page(app_id, cursor, limit)

    def delete(self, app_id: str, segment_id: str) -> Segment | None:
        """Delete a segment; None once it is gone, or the segment (deleting) when members remain.

        A static segment's members are removed first, a bounded number per
        call, so a large segment takes several calls; each call continues.
        """
        segment = self.get(app_id, segment_id)
        if segment.kind is SegmentKind.STATIC:
            if not segment.deleting:
                self.repository.start_deleting(app_id, segment_id, utc_now())
            if not self.repository.drain(app_id, segment_id, self.drain_budget):
                return self.repository.get(app_id, segment_id)
        self.repository.remove(app_id, segment)
        return None

    def change_members(self, app_id: str, segment_id: str, request: ChangeMembers) -> MemberChangeOutcome:
        """Add and remove up to 1,000 members, in transactions of up to 49 users."""
        check_add_remove(request.add, request.remove, MAX_MEMBER_CHANGES, "members")
        to_add, invalid_adds, repeated_adds = split_ids(request.add, _USER_ID)
        to_remove, invalid_removes, repeated_removes = split_ids(request.remove, _USER_ID)
        refuse_add_and_remove(to_add, to_remove)
        segment = self.get(app_id, segment_id)
        _require_changeable(segment)

        pending = {user_id: True for user_id in to_add} | {user_id: False for user_id in to_remove}
        outcome = _Tally()
        outcome.unchanged = repeated_adds + repeated_removes  # an id repeated in a list changes nothing more
        for _ in range(ATTEMPTS):
            if not pending:
                break
            changes = self._plan(app_id, segment_id, pending, outcome)
            pending = self._apply(app_id, segment_id, changes, outcome)
        outcome.failed.extend(pending)
        return MemberChangeOutcome(
            added=outcome.added,
            removed=outcome.removed,
            unchanged=outcome.unchanged,
            not_found=outcome.not_found,
            at_segment_limit=outcome.at_limit,
            invalid=invalid_adds + invalid_removes,
            failed=outcome.failed,
            segment=self.repository.get(app_id, segment_id),
        )

    def members(self, app_id: str, segment_id: str, cursor: str | None, limit: int) -> Page[User]:
        """One page of members: stored ones for static segments, matching users for criteria segments."""
        segment = self.get(app_id, segment_id)
        if segment.kind is SegmentKind.CRITERIA:
            return self.criteria.matching_users(app_id, segment.criteria, cursor, limit)
        members, next_cursor = self.repository.member_ids_page(app_id, segment_id, cursor, limit)
        found = self.users.get_many(app_id, [user_id for user_id, _ in members])
        # A user deleted since the member item was read has left the segment.
        users = ((found[user_id][0], after) for user_id, after in members if user_id in found)
        return fit_page(users, next_cursor)

    def _plan(self, app_id: str, segment_id: str, pending: dict[str, bool], outcome: "_Tally") -> list[MemberChange]:
        """Read the users and decide, for each, the write to make (if any).

        Consistent reads: a skip decided here (unchanged, not found) is final.
        """
        stored = self.users.get_many(app_id, pending, consistent=True)
        changes = []
        for user_id, joining in pending.items():
            if user_id not in stored:
                outcome.not_found.append(user_id)
                continue
            user = stored[user_id][0]
            if joining == (segment_id in user.segments):
                outcome.unchanged += 1
            elif joining and len(user.segments) >= MAX_SEGMENTS_PER_USER:
                outcome.at_limit.append(user_id)
            else:
                changes.append(MemberChange(user_id, joining=joining, inactive=not user.active))
        return changes

    def _apply(self, app_id: str, segment_id: str, changes: list[MemberChange], outcome: "_Tally") -> dict[str, bool]:
        """Write the changes chunk by chunk; returns those to read again and retry."""
        retry: dict[str, bool] = {}
        # One chunk after the other: they all update the segment's counts, and
        # concurrent transactions on one item are refused.
        for chunk in chunks(changes, MEMBERSHIPS_PER_TRANSACTION):
            try:
                result = self.repository.change_members(app_id, segment_id, chunk, utc_now())
            except Exception:  # one chunk's outage (throttling, a conflict) must not hide the others' outcomes
                logger.exception("A segment member transaction failed")
                outcome.failed.extend(change.user_id for change in chunk)
                continue
            if result.segment_refused:
                _require_changeable(self.repository.get(app_id, segment_id))
                raise Conflict(f"Segment {segment_id!r} changed concurrently.", code="concurrent_update")
            if result.refused_users:
                # A refused transaction wrote nothing: the whole chunk is read again and retried.
                retry.update((change.user_id, change.joining) for change in chunk)
                continue
            for change in chunk:
                if change.joining:
                    outcome.added += 1
                else:
                    outcome.removed += 1
        return retry


@dataclass
class _Tally:
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    not_found: list[str] = field(default_factory=list)
    at_limit: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _require_changeable(segment: Segment) -> None:
    if segment.kind is not SegmentKind.STATIC:
        raise Conflict(
            "A criteria segment's members are the users its criteria select.",
            code="segment_not_static",
            field="segment_id",
        )
    if segment.deleting:
        raise Conflict("The segment is being deleted.", code="segment_deleting", field="segment_id")
