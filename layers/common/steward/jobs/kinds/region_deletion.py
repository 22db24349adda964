"""delete_regions: delete the regions of a type, narrowed by tags (any of them), country and area, all together.

One worker per shard reads its regions a page at a time. The type, the
country and the tags are the query's filter; the area is tested in code on
each region's center (``Area.contains``: inside or on the edge, not in a
hole, either side of the 180th meridian).

Retries and drift. Regions are never updated (the API creates and deletes
them), so once selected a region stays selected for as long as it exists.
``apply`` deletes with BatchWriteItem, without conditions, and reads
nothing: a region already gone when its row is applied was deleted by an
earlier attempt at these rows (the engine stores the rows before applying
them, and a retry re-applies them), or by someone else in the moments
between the page's select (or recheck) and its apply; either way the row's
intent holds, and it reports ``deleted`` again. What can happen between a
dry run and its confirmation is caught by ``recheck``, which reads each
region again: one deleted by someone else meanwhile is ``drifted`` ("no
longer exists"), as is one that no longer matches the params.
"""

from collections.abc import Sequence
from typing import cast

from steward.jobs.engine import (
    Entity,
    JobContext,
    JobKind,
    JsonObject,
    Outcome,
    Page,
    PageCost,
    Plan,
    ReportRow,
    SinglePhase,
    WorkItem,
    shard_items,
)
from steward.jobs.models import JobType
from steward.jobs.params import DeleteRegionsParams
from steward.jobs.pricing import item_size, query_read_units, write_units
from steward.regions.models import Region
from steward.regions.repository import MAX_SCANNED_REGIONS
from steward.shard_reader import Position

DELETED = "deleted"
# Rows per page: 4 BatchWriteItem calls. A page reads at most MAX_SCANNED_REGIONS regions
# (geozones can hold 26 KB polygons), like a filtered list of regions.
REGIONS_PER_PAGE = 100
# What a region the filter dropped is assumed to weigh when the page kept none to measure.
NOMINAL_REGION_BYTES = 300
UNDELETED = "DynamoDB left it unprocessed after several attempts; run the job again"


class DeleteRegions(SinglePhase):
    def __init__(self, per_page: int = REGIONS_PER_PAGE, max_scanned: int = MAX_SCANNED_REGIONS) -> None:
        self.per_page = per_page
        self.max_scanned = max_scanned

    def plan(self, ctx: JobContext) -> Plan:
        return Plan(shard_items(ctx.services.shard_count))

    def select(self, ctx: JobContext, item: WorkItem, position: JsonObject | None) -> Page:
        shard = cast(int, item.shard)
        start = Position(shard) if position is None else Position.from_fields(position, ctx.services.shard_count)
        if start.shard != shard:
            raise ValueError(f"position {position!r} is not in shard {shard}")
        params = _params(ctx)
        batch = ctx.services.region_repository.select_shard(
            ctx.app_id,
            start,
            params.region_type,
            params.country,
            params.tags,
            max_items=self.per_page,
            max_scanned=self.max_scanned,
        )
        sizes = {region.region_id: region_bytes(ctx, region) for region in batch.regions}
        selected = [region for region in batch.regions if _mismatch(params, region) is None]
        rows = [ReportRow(Entity.REGION, region.region_id, DELETED, detail=region.name) for region in selected]
        # The filter's rejects were read too: priced at the size of those kept.
        kept = sum(sizes.values())
        mean = kept // len(sizes) if sizes else NOMINAL_REGION_BYTES
        read = kept + (batch.scanned - len(batch.regions)) * mean
        cost = PageCost(
            query_read_units(read, consistent=False),
            sum(write_units(sizes[region.region_id]) for region in selected),
        )
        position_next = None if batch.next is None else batch.next.as_fields()
        return Page(rows, batch.scanned, position_next, cost=cost)

    def recheck(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        params = _params(ctx)
        stored = ctx.services.region_repository.get_many(ctx.app_id, [row.id for row in rows if row.is_change])
        rechecked = []
        for row in rows:
            if not row.is_change:
                rechecked.append(row)
            elif (region := stored.get(row.id)) is None:
                rechecked.append(row.with_outcome(Outcome.DRIFTED, "no longer exists"))
            elif (reason := _mismatch(params, region)) is not None:
                rechecked.append(row.with_outcome(Outcome.DRIFTED, reason))
            else:
                rechecked.append(row)
        return rechecked

    def apply(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        undeleted = ctx.services.region_repository.delete_many(ctx.app_id, [row.id for row in rows if row.is_change])
        return [row.with_outcome(Outcome.FAILED, UNDELETED) if row.id in undeleted else row for row in rows]


def _params(ctx: JobContext) -> DeleteRegionsParams:
    return cast(DeleteRegionsParams, ctx.params)


def _mismatch(params: DeleteRegionsParams, region: Region) -> str | None:
    """Why the region is not selected by the params; None when it is."""
    if region.type is not params.region_type:
        return f"is a {region.type.value}, not a {params.region_type.value}"
    if params.country is not None and region.country != params.country:
        return f"is in {region.country}, not {params.country}"
    if params.tags is not None and not set(params.tags) & set(region.tags):
        return "has none of the tags"
    if params.area is not None and not params.area.contains(region.lat, region.lng):
        return "its center is outside the area"
    return None


def region_bytes(ctx: JobContext, region: Region) -> int:
    return item_size(ctx.services.region_repository.stored_item(ctx.app_id, region))


KINDS: dict[JobType, JobKind] = {JobType.DELETE_REGIONS: DeleteRegions()}
