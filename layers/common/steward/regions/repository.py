"""Data access for regions: CatalogTable items, write-sharded per app like devices."""

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import DeleteError, PutError
from pynamodb.expressions.condition import Condition

from steward.batch import chunks
from steward.batch_writes import BATCH_WRITE_SIZE, write_chunk
from steward.conditions import condition_failed
from steward.errors import Conflict, NotFound
from steward.pagination import Page, fit_page
from steward.regions.models import Geometry, GeometryKind, Point, Region, RegionFilter, RegionType
from steward.shard_reader import Position, read_shards
from steward.sharded_query import cursor_after, query_shards
from steward.sharding import partition_for
from steward.tables import RegionRecord, regions_collection

logger = logging.getLogger(__name__)

# A geozone can hold a 26 KB polygon: a filtered list stops after this many
# regions read (at most about 650 read units) and hands back a cursor.
MAX_SCANNED_REGIONS = 200


@dataclass(frozen=True)
class RegionBatch:
    """Regions of one shard that passed a filter, what was read to find them, and where to go on."""

    regions: list[Region]
    scanned: int
    next: Position | None  # None: the shard is read to its end


def region_not_found(region_id: str) -> NotFound:
    return NotFound(f"Region {region_id!r} does not exist.", code="region_not_found", field="region_id")


class RegionRepository:
    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count

    def create(self, app_id: str, region: Region) -> None:
        try:
            self._to_record(app_id, region).save(condition=RegionRecord.sk.does_not_exist())
        except PutError as exc:
            if condition_failed(exc):
                raise Conflict(f"Region {region.region_id!r} already exists.", code="region_exists") from exc
            raise

    def put_many(self, app_id: str, regions: Sequence[Region]) -> set[str]:
        """Write with BatchWriteItem, 25 a call; returns the ids that could not be written.

        BatchWriteItem has no conditions; ids are fresh random ones, and
        writing the same item twice is harmless, so retries are safe.
        """
        records = [self._to_record(app_id, region) for region in regions]
        unwritten: set[str] = set()
        for chunk in chunks(records, BATCH_WRITE_SIZE):
            unwritten |= self._write_chunk(chunk)
        return unwritten

    def get(self, app_id: str, region_id: str) -> Region | None:
        try:
            record = RegionRecord.get(self._partition(app_id, region_id), region_id, consistent_read=True)
        except RegionRecord.DoesNotExist:
            return None
        return to_region(record)

    def delete(self, app_id: str, region_id: str) -> None:
        record = RegionRecord(pk=self._partition(app_id, region_id), sk=region_id)
        try:
            record.delete(condition=RegionRecord.sk.exists())
        except DeleteError as exc:
            if condition_failed(exc):
                raise region_not_found(region_id) from exc
            raise

    def list_for_app(self, app_id: str, region_filter: RegionFilter, cursor: str | None, limit: int) -> Page[Region]:
        records, next_cursor = query_shards(
            RegionRecord,
            regions_collection(app_id),
            self.shard_count,
            cursor,
            limit,
            _filter_condition(region_filter),
            max_scanned=MAX_SCANNED_REGIONS,
        )
        entries = ((to_region(record), cursor_after(record.pk, record.sk)) for record in records)
        return fit_page(entries, next_cursor)

    def select_shard(
        self,
        app_id: str,
        start: Position,
        region_type: RegionType,
        country: str | None,
        tags: Sequence[str] | None,
        *,
        max_items: int,
        max_scanned: int = MAX_SCANNED_REGIONS,
    ) -> RegionBatch:
        """One shard's regions of a type, in a country and with any of ``tags`` when given, from ``start`` on."""
        condition = _filter_condition(RegionFilter(type=region_type, country=country))
        if tags:
            condition = _any_tag(tags) if condition is None else condition & _any_tag(tags)
        batch = read_shards(
            RegionRecord,
            regions_collection(app_id),
            self.shard_count,
            start,
            condition,
            max_scanned=max_scanned,
            max_items=max_items,
            end_shard=start.shard + 1,
        )
        return RegionBatch([to_region(record) for record in batch.items], batch.scanned, batch.next)

    def get_many(self, app_id: str, region_ids: Collection[str]) -> dict[str, Region]:
        """The regions among these ids that exist, read consistently (pynamodb asks 100 keys a call)."""
        keys = [(self._partition(app_id, region_id), region_id) for region_id in region_ids]
        if not keys:
            return {}
        return {record.sk: to_region(record) for record in RegionRecord.batch_get(keys, consistent_read=True)}

    def delete_many(self, app_id: str, region_ids: Sequence[str]) -> set[str]:
        """Delete with BatchWriteItem, 25 a call; returns the ids that could not be deleted.

        No conditions: deleting a region that is already gone changes nothing, so retries are safe.
        """
        records = [RegionRecord(pk=self._partition(app_id, region_id), sk=region_id) for region_id in region_ids]
        undeleted: set[str] = set()
        for chunk in chunks(records, BATCH_WRITE_SIZE):
            undeleted |= self._write_chunk(chunk, delete=True)
        return undeleted

    def stored_item(self, app_id: str, region: Region) -> dict[str, Any]:
        """The region's item in DynamoDB JSON, as stored: what reading or deleting it is billed by."""
        item: dict[str, Any] = self._to_record(app_id, region).serialize()
        return item

    def _write_chunk(self, chunk: list[RegionRecord], *, delete: bool = False) -> set[str]:
        left, failure = write_chunk(RegionRecord, chunk, delete=delete)
        if left:
            logger.warning("BatchWriteItem left %d regions unwritten or undeleted", len(left), exc_info=failure)
        return {record.sk for record in left}

    def _partition(self, app_id: str, region_id: str) -> str:
        return partition_for(regions_collection(app_id), region_id, self.shard_count)

    def _to_record(self, app_id: str, region: Region) -> RegionRecord:
        return RegionRecord(
            pk=self._partition(app_id, region.region_id),
            sk=region.region_id,
            region_type=region.type.value,
            name=region.name,
            tags=list(region.tags),
            country=region.country,
            lat=region.lat,
            lng=region.lng,
            geometry=None if region.geometry is None else _geometry_item(region.geometry),
            created_at=region.created_at,
            updated_at=region.updated_at,
        )


def to_region(record: RegionRecord) -> Region:
    return Region(
        region_id=record.sk,
        type=record.region_type,
        name=record.name,
        tags=list(record.tags or ()),
        country=record.country,
        lat=float(record.lat),
        lng=float(record.lng),
        geometry=None if record.geometry is None else _geometry(record.geometry.as_dict()),
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _geometry_item(geometry: Geometry) -> dict[str, object]:
    # Points as [lat, lng] pairs: a quarter fewer bytes (and write units) than {lat, lng} maps.
    if geometry.kind is GeometryKind.CIRCLE:
        return {"kind": geometry.kind.value, "radius_m": geometry.radius_m}
    return {"kind": geometry.kind.value, "points": [[point.lat, point.lng] for point in geometry.points or ()]}


def _geometry(item: dict[str, Any]) -> Geometry:
    kind = GeometryKind(item["kind"])
    if kind is GeometryKind.CIRCLE:
        return Geometry(kind=kind, radius_m=float(item["radius_m"]))
    points = [Point(lat=float(lat), lng=float(lng)) for lat, lng in item["points"]]
    return Geometry(kind=kind, points=points)


def _filter_condition(region_filter: RegionFilter) -> Condition | None:
    parts: list[Condition] = []
    if region_filter.type is not None:
        parts.append(RegionRecord.region_type == region_filter.type.value)
    if region_filter.country is not None:
        parts.append(RegionRecord.country == region_filter.country)
    if region_filter.tag is not None:
        parts.append(RegionRecord.tags.contains(region_filter.tag))
    if not parts:
        return None
    condition = parts[0]
    for part in parts[1:]:
        condition &= part
    return condition


def _any_tag(tags: Sequence[str]) -> Condition:
    condition: Condition = RegionRecord.tags.contains(tags[0])
    for tag in tags[1:]:
        condition |= RegionRecord.tags.contains(tag)
    return condition
