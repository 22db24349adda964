"""delete_empty_tags and delete_tags: delete the device tags no (active) device carries, or the listed tags.

Devices lose a tag through the tag-change transactions of the API (a
device's ``tags`` set, its member item and the tag's count change
together), at most ``budget`` devices per row, read from the tag's member
items; the tag's item goes last, on condition that its count is 0, so a
device tagged meanwhile is never left with a tag that has no item.
``_containers`` tells how a tag with many devices spreads over pages.

With keep_tags_with_inactive_devices false, a tag whose devices are all
inactive counts as empty. Tags keep no count of inactive devices, so the
listing reads a non-empty tag's devices (bounded per page, resumed from the
position) until it meets an active one. Each row then checks the devices it
untags: if one became active since, the row is drifted and the tag stays.
"""

import math
from typing import cast

from steward.jobs.engine import (
    Entity,
    JobContext,
    JobKind,
    JsonObject,
    Outcome,
    PageCost,
    ReportRow,
    RetryPage,
)
from steward.jobs.kinds._containers import (
    Container,
    ContainerDeletion,
    Listed,
    ListedContainers,
    NamedContainers,
    PageRows,
    Undecided,
    Verdict,
    cursor_after,
    listing,
)
from steward.jobs.kinds._sizes import NOMINAL_DEVICE_BYTES, NOMINAL_MEMBER_BYTES, stored_bytes
from steward.jobs.models import JobType
from steward.jobs.params import DeleteEmptyTagsParams, DeleteTagsParams
from steward.jobs.pricing import batch_get_units, query_read_units, read_units, write_units
from steward.tables import tags_pk
from steward.tags.models import MAX_DEVICES_PER_REQUEST, Tag
from steward.transactions import MEMBERSHIPS_PER_TRANSACTION

DEVICES_UNTAGGED = "devices_untagged"


class _TagDeletion(ContainerDeletion):
    entity = Entity.TAG
    step_action = DEVICES_UNTAGGED

    def refusal(self, ctx: JobContext, tag: Tag) -> str | None:
        """Why the tag, as stored, is not (or no longer) to be deleted; None when it is."""
        return None

    def needs_inactive(self, ctx: JobContext) -> bool:
        """Whether every device a row untags must be inactive."""
        return False

    def step_detail(self, container: Container, first: int, last: int) -> str:
        return f"devices {first}-{last} of {container.members}"

    def removal_cost(self, ctx: JobContext, devices: int) -> PageCost:
        if devices == 0:
            return PageCost()
        # The member items, read from the first shard on (an empty query ends each shard).
        reads = query_read_units(devices * NOMINAL_MEMBER_BYTES, consistent=True)
        reads += ctx.services.shard_count * read_units(0, consistent=True)
        device_reads = batch_get_units([NOMINAL_DEVICE_BYTES] * devices, consistent=True)
        if self.needs_inactive(ctx):
            reads += device_reads  # whether they are all inactive
        # The bulk untag reads the devices again, writes 49 a transaction with the tag's count, reads the tag.
        reads += device_reads + read_units(0, consistent=True)
        transactions = math.ceil(devices / MEMBERSHIPS_PER_TRANSACTION)
        writes = devices * (
            write_units(NOMINAL_DEVICE_BYTES, transactional=True)
            + write_units(NOMINAL_MEMBER_BYTES, transactional=True)
        )
        writes += transactions * write_units(
            stored_bytes(pk=tags_pk(ctx.app_id), sk="", device_count=0), transactional=True
        )
        return PageCost(reads, writes)

    def row_cost(self, ctx: JobContext, container: Container, *, first: bool, last: bool) -> PageCost:
        cost = PageCost(read_units(container.item_bytes, consistent=True))
        if last:
            cost += PageCost(write_units=write_units(container.item_bytes))
        return cost

    def recheck_row(self, ctx: JobContext, row: ReportRow) -> ReportRow:
        tag = ctx.services.tag_repository.get(ctx.app_id, row.id)
        if tag is None:
            return row.with_outcome(Outcome.DRIFTED, "no longer exists")
        reason = self._refusal_now(ctx, tag)
        return row if reason is None else row.with_outcome(Outcome.DRIFTED, reason)

    def apply_row(self, ctx: JobContext, row: ReportRow) -> ReportRow:
        repository = ctx.services.tag_repository
        tag = repository.get(ctx.app_id, row.id)
        if tag is None:
            return row  # gone: an earlier attempt at this row deleted it (see _containers)
        reason = self.refusal(ctx, tag)
        if reason is not None:
            return row.with_outcome(Outcome.DRIFTED, reason)
        if tag.device_count > 0:
            device_ids = repository.first_devices(ctx.app_id, row.id, self.budget)
            reason = self._active_devices(ctx, row.id, device_ids)
            if reason is not None:
                return row.with_outcome(Outcome.DRIFTED, reason)
            for start in range(0, len(device_ids), MAX_DEVICES_PER_REQUEST):
                outcome = ctx.services.tags.change_devices(
                    ctx.app_id, row.id, [], device_ids[start : start + MAX_DEVICES_PER_REQUEST]
                )
                if outcome.failed:
                    # Throttled or raced: the engine retries the page, which untags what is left.
                    raise RetryPage(f"{len(outcome.failed)} devices could not be untagged yet")
        if self.is_step(row) or repository.delete_if_unused(ctx.app_id, row.id):
            return row
        left = repository.get(ctx.app_id, row.id)
        if left is None:
            return row
        reason = self.refusal(ctx, left)
        if reason is not None:  # tagged since it was read: not empty any more
            return row.with_outcome(Outcome.DRIFTED, reason)
        return row.with_outcome(
            Outcome.FAILED,
            f"{_devices(left.device_count)} still carry it, tagged after the job counted them; run the job again",
        )

    def _refusal_now(self, ctx: JobContext, tag: Tag) -> str | None:
        """Why the tag no longer qualifies, reading the devices the next row untags when they must be inactive."""
        reason = self.refusal(ctx, tag)
        if reason is None and tag.device_count > 0:
            device_ids = ctx.services.tag_repository.first_devices(ctx.app_id, tag.tag, self.budget)
            reason = self._active_devices(ctx, tag.tag, device_ids)
        return reason

    def _active_devices(self, ctx: JobContext, tag: str, device_ids: list[str]) -> str | None:
        if not self.needs_inactive(ctx):
            return None
        active = ctx.services.tag_repository.active_devices(ctx.app_id, tag, device_ids)
        if not active:
            return None
        return f"{len(active)} of the devices carrying it {'is' if len(active) == 1 else 'are'} active now"


class DeleteEmptyTags(_TagDeletion, ListedContainers):
    """Tags no device carries, or (keep_tags_with_inactive_devices false) no active device carries."""

    def refusal(self, ctx: JobContext, tag: Tag) -> str | None:
        if tag.device_count == 0 or not _keeps_inactive(ctx):
            return None
        return f"carried by {_devices(tag.device_count)} now"

    def needs_inactive(self, ctx: JobContext) -> bool:
        return not _keeps_inactive(ctx)

    def list_after(self, ctx: JobContext, after: str | None, rows: PageRows) -> Listed:
        page = ctx.services.tag_repository.list_tags(ctx.app_id, cursor_after(after), self.max_rows)
        entries = [(tag.tag, *self._verdict(ctx, tag)) for tag in page.items]
        return listing(rows, entries, page.next_cursor is not None)

    def judge(self, ctx: JobContext, state: JsonObject, rows: PageRows) -> Verdict:
        """Read the tag's devices from ``state``'s cursor: not selected at the first active one, selected at the end."""
        tag = str(state["id"])
        cursor: str | None = state.get("cursor")
        while rows.reads_left > 0:
            page = ctx.services.tag_repository.list_devices(ctx.app_id, tag, cursor, rows.reads_left)
            read = len(page.items)
            rows.reads_left -= max(1, read)
            rows.cost += PageCost(
                query_read_units(read * NOMINAL_MEMBER_BYTES, consistent=False)
                + batch_get_units([NOMINAL_DEVICE_BYTES] * read, consistent=False)
            )
            if any(device.active for device in page.items):
                return None
            cursor = page.next_cursor
            if cursor is None:
                return _container(tag, int(state["devices"]), int(state["item_bytes"]))
        return Undecided({**state, "cursor": cursor})

    def _verdict(self, ctx: JobContext, tag: Tag) -> tuple[int, Verdict]:
        size = _tag_bytes(ctx.app_id, tag.tag)
        if tag.device_count == 0:
            return size, _container(tag.tag, 0, size)
        if _keeps_inactive(ctx):
            return size, None
        return size, Undecided({"id": tag.tag, "devices": tag.device_count, "item_bytes": size, "cursor": None})


class DeleteTags(_TagDeletion, NamedContainers):
    """The listed tags: their devices are untagged, then the tags deleted; unknown tags are reported not_found."""

    def names(self, ctx: JobContext) -> list[str]:
        return cast(DeleteTagsParams, ctx.params).tags

    def look_up(self, ctx: JobContext, entity_id: str, rows: PageRows) -> Container | None:
        tag = ctx.services.tag_repository.get(ctx.app_id, entity_id)
        size = _tag_bytes(ctx.app_id, entity_id)
        rows.cost += PageCost(read_units(0 if tag is None else size, consistent=True))
        return None if tag is None else _container(tag.tag, tag.device_count, size)


def _container(tag: str, devices: int, item_bytes: int) -> Container:
    return Container(tag, tag, devices, f"{_devices(devices)} untagged", item_bytes)


def _tag_bytes(app_id: str, tag: str) -> int:
    return stored_bytes(pk=tags_pk(app_id), sk=tag, device_count=0)


def _keeps_inactive(ctx: JobContext) -> bool:
    return cast(DeleteEmptyTagsParams, ctx.params).keep_tags_with_inactive_devices


def _devices(count: int) -> str:
    return f"{count} device{'' if count == 1 else 's'}"


KINDS: dict[JobType, JobKind] = {
    JobType.DELETE_EMPTY_TAGS: DeleteEmptyTags(),
    JobType.DELETE_TAGS: DeleteTags(),
}
