"""delete_empty_segments and delete_segments: delete the static segments without members, or the listed segments.

A segment goes as DELETE /v1/segments/{segment_id} takes it: marked
deleting (no member can join from then on), its members drained a bounded
number per row (each user's ``segments`` set, then the member items), and
the segment with its name claim last. ``_containers`` tells how a segment
with many members spreads over pages, one row each.

Criteria segments are never empty: their members are whoever their
criteria select when read, so delete_empty_segments leaves them alone. Only
delete_segments deletes them (they hold no members to drain).
"""

import json
from decimal import Decimal
from typing import cast

from steward.errors import NotFound
from steward.jobs.engine import (
    Entity,
    JobContext,
    JobKind,
    Outcome,
    PageCost,
    ReportRow,
)
from steward.jobs.kinds._containers import (
    Container,
    ContainerDeletion,
    Listed,
    ListedContainers,
    NamedContainers,
    PageRows,
    Verdict,
    cursor_after,
    listing,
)
from steward.jobs.kinds._sizes import NOMINAL_MEMBER_BYTES, NOMINAL_PROFILE_BYTES, stored_bytes
from steward.jobs.models import JobType
from steward.jobs.params import DeleteEmptySegmentsParams, DeleteSegmentsParams
from steward.jobs.pricing import query_read_units, read_units, write_units
from steward.segments.models import Segment, SegmentKind
from steward.tables import segment_names_pk, segments_pk

MEMBERS_REMOVED = "members_removed"
# What SegmentRepository.drain reads per query of a shard.
_DRAIN_QUERY = 100


class _SegmentDeletion(ContainerDeletion):
    entity = Entity.SEGMENT
    step_action = MEMBERS_REMOVED

    def refusal(self, ctx: JobContext, segment: Segment) -> str | None:
        """Why the segment is not (or no longer) to be deleted; None when it is."""
        return None

    def step_detail(self, container: Container, first: int, last: int) -> str:
        return f"{container.label}: members {first}-{last} of {container.members}"

    def removal_cost(self, ctx: JobContext, members: int) -> PageCost:
        if members == 0:  # nothing drained: no member could join once the segment was marked
            return PageCost()
        full, rest = divmod(members, _DRAIN_QUERY)
        queries = [_DRAIN_QUERY] * full + ([rest] if rest else [])
        reads = sum((query_read_units(count * NOMINAL_MEMBER_BYTES, consistent=True) for count in queries), Decimal(0))
        # A drain ends every shard with an empty query (the minimum unit each).
        reads += ctx.services.shard_count * read_units(0, consistent=True)
        writes = members * (write_units(NOMINAL_PROFILE_BYTES) + write_units(NOMINAL_MEMBER_BYTES))
        return PageCost(reads, writes)

    def row_cost(self, ctx: JobContext, container: Container, *, first: bool, last: bool) -> PageCost:
        item = container.item_bytes
        cost = PageCost(read_units(item, consistent=True))
        if first:  # marked deleting, then read again
            cost += PageCost(read_units(item, consistent=True), write_units(item))
        if last:  # the segment and its name claim, in one transaction
            claim = stored_bytes(pk=segment_names_pk(ctx.app_id), sk=container.label, segment_id=container.id)
            cost += PageCost(write_units=write_units(item, transactional=True) + write_units(claim, transactional=True))
        return cost

    def recheck_row(self, ctx: JobContext, row: ReportRow) -> ReportRow:
        try:
            segment = ctx.services.segment_repository.get(ctx.app_id, row.id)
        except NotFound:
            return row.with_outcome(Outcome.DRIFTED, "no longer exists")
        if segment.deleting:  # this job's first step marked it, or a DELETE did: finishing it is right
            return row
        reason = self.refusal(ctx, segment)
        return row if reason is None else row.with_outcome(Outcome.DRIFTED, reason)

    def apply_row(self, ctx: JobContext, row: ReportRow) -> ReportRow:
        repository = ctx.services.segment_repository
        try:
            segment = repository.get(ctx.app_id, row.id)
            if not segment.deleting:
                reason = self.refusal(ctx, segment)
                if reason is not None:
                    return row.with_outcome(Outcome.DRIFTED, reason)
                repository.start_deleting(ctx.app_id, row.id, ctx.now)
                # Read again: a member that joined before the mark is counted now, and none can join after it.
                segment = repository.get(ctx.app_id, row.id)
        except NotFound:
            return row  # gone: an earlier attempt at this row deleted it (see _containers)
        # member_count is None for a criteria segment, and 0 for a static one that had no member when marked.
        drained = not segment.member_count or repository.drain(ctx.app_id, row.id, self.budget)
        if self.is_step(row):
            return row
        if not drained:
            return row.with_outcome(
                Outcome.FAILED, "members remain that joined after the job counted them; run the job again"
            )
        repository.remove(ctx.app_id, segment)
        return row


class DeleteEmptySegments(_SegmentDeletion, ListedContainers):
    """Static segments without members, or (keep_segments_with_inactive_users false) without active members."""

    def list_after(self, ctx: JobContext, after: str | None, rows: PageRows) -> Listed:
        page = ctx.services.segment_repository.list_page(ctx.app_id, cursor_after(after), self.max_rows)
        entries = [(segment.segment_id, *self._verdict(ctx, segment)) for segment in page.items]
        return listing(rows, entries, page.next_cursor is not None)

    def refusal(self, ctx: JobContext, segment: Segment) -> str | None:
        if segment.kind is SegmentKind.CRITERIA:
            return "is a criteria segment, never empty"
        if _keeps_inactive(ctx):
            members = segment.member_count or 0
            return None if members == 0 else f"has {_members(members)} now"
        active = segment.active_member_count or 0
        return None if active == 0 else f"has {_members(active, 'active ')} now"

    def _verdict(self, ctx: JobContext, segment: Segment) -> tuple[int, Verdict]:
        size = segment_bytes(ctx.app_id, segment)
        if self.refusal(ctx, segment) is not None:
            return size, None
        members = segment.member_count or 0  # inactive ones, when they do not keep the segment
        adjective = "" if _keeps_inactive(ctx) else "inactive "
        summary = f"{segment.name} ({_members(members, adjective)})"
        return size, Container(segment.segment_id, segment.name, members, summary, size)


class DeleteSegments(_SegmentDeletion, NamedContainers):
    """The listed segments, static or criteria, with their members; unknown ids are reported not_found."""

    def names(self, ctx: JobContext) -> list[str]:
        return cast(DeleteSegmentsParams, ctx.params).segment_ids

    def look_up(self, ctx: JobContext, entity_id: str, rows: PageRows) -> Container | None:
        try:
            segment = ctx.services.segment_repository.get(ctx.app_id, entity_id)
        except NotFound:
            rows.cost += PageCost(read_units(0, consistent=True))
            return None
        size = segment_bytes(ctx.app_id, segment)
        rows.cost += PageCost(read_units(size, consistent=True))
        if segment.kind is SegmentKind.CRITERIA:
            return Container(segment.segment_id, segment.name, 0, f"{segment.name} (criteria segment)", size)
        members = segment.member_count or 0
        return Container(segment.segment_id, segment.name, members, f"{segment.name} ({_members(members)})", size)


def segment_bytes(app_id: str, segment: Segment) -> int:
    """The stored segment item's size, rebuilt from the segment."""
    criteria = None if segment.criteria is None else json.dumps(segment.criteria, separators=(",", ":"))
    return stored_bytes(
        pk=segments_pk(app_id),
        sk=segment.segment_id,
        name=segment.name,
        kind=segment.kind.value,
        criteria=criteria,
        member_count=segment.member_count or 0,
        inactive_member_count=segment.inactive_member_count or 0,
        deleting=segment.deleting,
    )


def _keeps_inactive(ctx: JobContext) -> bool:
    return cast(DeleteEmptySegmentsParams, ctx.params).keep_segments_with_inactive_users


def _members(count: int, adjective: str = "") -> str:
    if count == 0:
        return f"no {adjective}members"
    return f"{count} {adjective}member{'' if count == 1 else 's'}"


KINDS: dict[JobType, JobKind] = {
    JobType.DELETE_EMPTY_SEGMENTS: DeleteEmptySegments(),
    JobType.DELETE_SEGMENTS: DeleteSegments(),
}
