"""Region use cases: create, bulk import, read, list and delete, and the rules that span fields."""

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from steward.batch import ItemError
from steward.clock import utc_now
from steward.errors import InvalidInput
from steward.pagination import Page
from steward.regions.models import (
    MAX_BATCH_REGIONS,
    MIN_POLYGON_POINTS,
    REGION_ID_PATTERN,
    REGION_ID_PREFIX,
    Geometry,
    GeometryKind,
    NewRegion,
    Point,
    Region,
    RegionFilter,
    RegionImportBatchOutcome,
    RegionImportOutcome,
    RegionType,
)
from steward.regions.repository import RegionRepository, region_not_found

# GEOS explains an invalid polygon as "Reason[x y]".
_GEOS_REASON = re.compile(r"^(?P<reason>[^\[]+)\[(?P<x>\S+) (?P<y>\S+)\]$")


class RegionService:
    def __init__(self, repository: RegionRepository) -> None:
        self.repository = repository

    def create(self, app_id: str, request: NewRegion) -> Region:
        check_region(request)
        region = _new_region(request, utc_now())
        self.repository.create(app_id, region)
        return region

    def import_regions(self, app_id: str, raw_regions: Sequence[Any]) -> RegionImportBatchOutcome:
        """Validate each region on its own, then write the valid ones with BatchWriteItem."""
        if len(raw_regions) > MAX_BATCH_REGIONS:
            raise InvalidInput(
                f"A batch holds at most {MAX_BATCH_REGIONS} regions; got {len(raw_regions)}.",
                code="batch_too_large",
                field="regions",
            )
        now = utc_now()
        outcomes: dict[int, RegionImportOutcome] = {}
        valid: dict[int, Region] = {}
        for index, raw in enumerate(raw_regions):
            try:
                request = NewRegion.model_validate(raw)
                check_region(request)
            except ValidationError as exc:
                outcomes[index] = _rejected(index, _validation_error(exc))
            except InvalidInput as exc:
                outcomes[index] = _rejected(index, exc)
            else:
                valid[index] = _new_region(request, now)

        unwritten = self.repository.put_many(app_id, list(valid.values()))
        for index, region in valid.items():
            if region.region_id in unwritten:
                error = ItemError(code="internal_error", message="This region was not imported; send it again.")
                outcomes[index] = RegionImportOutcome(index=index, ok=False, error=error)
            else:
                outcomes[index] = RegionImportOutcome(index=index, ok=True, region_id=region.region_id)

        return RegionImportBatchOutcome.of([outcomes[index] for index in sorted(outcomes)])

    def get(self, app_id: str, region_id: str) -> Region:
        region = self.repository.get(app_id, _known_id(region_id))
        if region is None:
            raise region_not_found(region_id)
        return region

    def delete(self, app_id: str, region_id: str) -> None:
        self.repository.delete(app_id, _known_id(region_id))

    def list_for_app(self, app_id: str, region_filter: RegionFilter, cursor: str | None, limit: int) -> Page[Region]:
        return self.repository.list_for_app(app_id, region_filter, cursor, limit)


def check_region(region: NewRegion) -> None:
    """The rules that span fields; raises InvalidInput naming the field to fix."""
    geometry = region.geometry
    if region.type is not RegionType.GEOZONE:
        if geometry is not None:
            raise InvalidInput(
                f"Only a geozone has a geometry; a {region.type.value} is its center (lat, lng).", field="geometry"
            )
        return
    if geometry is None:
        raise InvalidInput("A geozone needs a geometry: a polygon or a circle.", code="missing_field", field="geometry")
    if geometry.kind is GeometryKind.CIRCLE:
        _check_circle(geometry)
    else:
        _check_polygon(geometry)


def _check_circle(geometry: Geometry) -> None:
    if geometry.points is not None:
        raise InvalidInput("A circle has no points; give radius_m.", field="geometry.points")
    if geometry.radius_m is None:
        raise InvalidInput("A circle needs radius_m.", code="missing_field", field="geometry.radius_m")


def _check_polygon(geometry: Geometry) -> None:
    if geometry.radius_m is not None:
        raise InvalidInput("A polygon has no radius_m; give points.", field="geometry.radius_m")
    if geometry.points is None:
        raise InvalidInput("A polygon needs points.", code="missing_field", field="geometry.points")
    check_polygon(geometry.points)


def check_polygon(points: Sequence[Point]) -> None:
    """A closed ring of at least 3 distinct points that does not cross itself."""
    if len(points) < MIN_POLYGON_POINTS:
        raise InvalidInput(
            f"A polygon needs at least {MIN_POLYGON_POINTS} points (3 corners and the first repeated); "
            f"got {len(points)}.",
            code="polygon_too_few_points",
            field="geometry.points",
        )
    if points[0] != points[-1]:
        raise InvalidInput(
            "The last point must repeat the first one, to close the polygon.",
            code="polygon_not_closed",
            field=f"geometry.points[{len(points) - 1}]",
        )
    if len(set(points)) < 3:
        raise InvalidInput(
            "A polygon needs at least 3 distinct points.", code="polygon_too_few_points", field="geometry.points"
        )
    # Imported here, not at module level: keeps the API's cold start free of GEOS/numpy (~60 ms).
    from shapely.geometry import Polygon
    from shapely.validation import explain_validity

    polygon = Polygon([(point.lng, point.lat) for point in points])
    if not polygon.is_valid:
        raise InvalidInput(
            f"The polygon crosses or touches itself: {_describe(explain_validity(polygon))}.",
            code="polygon_self_intersecting",
            field="geometry.points",
        )


def _describe(explanation: str) -> str:
    """'Self-intersection[2 1]' -> 'Self-intersection at lng 2, lat 1' (GEOS works in x=lng, y=lat)."""
    match = _GEOS_REASON.match(explanation)
    if match is None:
        return explanation
    return f"{match['reason']} at lng {match['x']}, lat {match['y']}"


def _known_id(region_id: str) -> str:
    # Ids are ours: anything else cannot exist, and must not reach DynamoDB as a key (over 1 KB is a 400).
    if not REGION_ID_PATTERN.match(region_id):
        raise region_not_found(region_id[:100])
    return region_id


def _new_region(request: NewRegion, now: datetime) -> Region:
    return Region(
        region_id=f"{REGION_ID_PREFIX}{uuid.uuid4().hex}",
        type=request.type,
        name=request.name,
        tags=request.tags,
        country=request.country,
        lat=request.lat,
        lng=request.lng,
        geometry=request.geometry,
        created_at=now,
        updated_at=now,
    )


def _validation_error(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    code = "missing_field" if first["type"] == "missing" else "invalid_input"
    return InvalidInput(first["msg"], code=code, field=_field_path(first["loc"]))


def _field_path(location: Sequence[int | str]) -> str | None:
    """('geometry', 'points', 3, 'lat') -> 'geometry.points[3].lat'."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path or None


def _rejected(index: int, exc: InvalidInput) -> RegionImportOutcome:
    field = f"regions[{index}]" + (f".{exc.field}" if exc.field else "")
    return RegionImportOutcome(index=index, ok=False, error=ItemError(code=exc.code, message=exc.message, field=field))
