"""An area to select regions by: a GeoJSON Polygon or MultiPolygon (RFC 7946), and the point-in-area test.

Positions are ``[lng, lat]`` (GeoJSON's order, not the ``lat``/``lng`` of a
region's body). Edges are straight lines in longitude/latitude, so an area
that crosses the 180th meridian comes split there, as a MultiPolygon whose
parts each stay within [-180, 180] (RFC 7946, section 3.1.9).

Rings are checked where pydantic knows their path (``coordinates[0][3]``),
so an error names the ring or position at fault. Errors whose pydantic type
is one of ``AREA_ERROR_CODES`` keep that type as their stable error code.

shapely is imported inside the functions that need it, as in
``steward.regions.service``: the API's cold start stays free of GEOS.
"""

import re
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, RootModel
from pydantic_core import PydanticCustomError

from steward.regions.models import Latitude, Longitude
from steward.schema import Schema

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

# The area is part of the job's params, which its audit entry records (at most 96 KB of
# JSON): 2,000 positions of 6-decimal coordinates take about 50 KB, and the whole
# params are measured again when a job is submitted.
MAX_AREA_POSITIONS = 2000
# A closed ring: three distinct corners plus the first one repeated.
MIN_RING_POSITIONS = 4
AREA_TYPES = ("Polygon", "MultiPolygon")

NOT_CLOSED = "polygon_not_closed"
TOO_FEW_POINTS = "polygon_too_few_points"
SELF_INTERSECTING = "polygon_self_intersecting"
INVALID_AREA = "invalid_area"
TOO_LARGE = "area_too_large"
# The codes a caller gets for a bad area, beyond the generic one of the field's owner.
AREA_ERROR_CODES = frozenset({NOT_CLOSED, TOO_FEW_POINTS, SELF_INTERSECTING, INVALID_AREA, TOO_LARGE})

_GEOS_REASON = re.compile(r"^(?P<reason>[^\[]+)\[(?P<x>\S+) (?P<y>\S+)\]$")

Position = Annotated[
    tuple[Longitude, Latitude],
    Field(description="`[lng, lat]` in degrees (WGS 84): GeoJSON's order. No altitude."),
]


def _closed_ring(ring: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(ring) < MIN_RING_POSITIONS:
        raise PydanticCustomError(
            TOO_FEW_POINTS,
            "a ring needs at least {minimum} positions (3 corners and the first repeated); it has {count}",
            {"minimum": MIN_RING_POSITIONS, "count": len(ring)},
        )
    if ring[0] != ring[-1]:
        raise PydanticCustomError(NOT_CLOSED, "a ring must end with its first position, to close it")
    return ring


Ring = Annotated[list[Position], Field(max_length=MAX_AREA_POSITIONS), AfterValidator(_closed_ring)]


def _valid_polygon(rings: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
    _check_size(rings)
    _check_shape(_polygon(rings), "the polygon is not valid")
    return rings


PolygonRings = Annotated[
    list[Ring],
    Field(
        min_length=1,
        max_length=MAX_AREA_POSITIONS // MIN_RING_POSITIONS,
        description="The outer ring, then any holes (RFC 7946 interior rings). Each ring is closed.",
    ),
    AfterValidator(_valid_polygon),
]


def _valid_parts(parts: list[list[list[tuple[float, float]]]]) -> list[list[list[tuple[float, float]]]]:
    _check_size([ring for rings in parts for ring in rings])
    # Each part was checked on its own (with its path); what is left is how the parts meet.
    _check_shape(_multipolygon(parts), "the polygons overlap, share an edge or are not valid")
    return parts


# RFC 7946 section 5 allows a bounding box on any GeoJSON object; it is accepted and not used.
BoundingBox = Annotated[
    list[float] | None, Field(default=None, min_length=4, max_length=6, exclude_if=lambda box: box is None)
]


class _GeoJsonObject(Schema):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bbox: BoundingBox = None


class PolygonArea(_GeoJsonObject):
    type: Literal["Polygon"]
    coordinates: PolygonRings


class MultiPolygonArea(_GeoJsonObject):
    type: Literal["MultiPolygon"]
    coordinates: Annotated[
        list[PolygonRings],
        Field(
            min_length=1,
            max_length=MAX_AREA_POSITIONS // MIN_RING_POSITIONS,
            description="Polygons that do not overlap; an area across the 180th meridian is split there.",
        ),
        AfterValidator(_valid_parts),
    ]


class Area(RootModel[Annotated[PolygonArea | MultiPolygonArea, Field(discriminator="type")]]):
    """A GeoJSON Polygon or MultiPolygon; ``contains`` tells whether a point lies in it (edges included)."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "description": (
                "A GeoJSON Polygon or MultiPolygon (RFC 7946) with `[lng, lat]` positions. Rings are closed, "
                f"of at least {MIN_RING_POSITIONS} positions; holes are allowed; at most {MAX_AREA_POSITIONS} "
                "positions in all. An area across the 180th meridian is a MultiPolygon split there."
            )
        },
    )

    def contains(self, lat: float, lng: float) -> bool:
        """Whether the point lies inside the area or on its edge; a point in a hole is outside."""
        import shapely

        shape = self._prepared
        # For a point, "covered by the area" and "intersects the area" are the same test,
        # and intersects_xy runs on the prepared geometry without building a Point.
        if shapely.intersects_xy(shape, lng, lat):
            return True
        # -180 and 180 are one meridian: a split area may reach it on either side only.
        return abs(lng) == 180 and bool(shapely.intersects_xy(shape, -lng, lat))

    @cached_property
    def _prepared(self) -> "BaseGeometry":
        # Built and prepared once per area, so testing thousands of points costs one build.
        import shapely

        area = self.root
        shape = _polygon(area.coordinates) if isinstance(area, PolygonArea) else _multipolygon(area.coordinates)
        shapely.prepare(shape)
        return shape


def _check_size(rings: list[list[tuple[float, float]]]) -> None:
    total = sum(len(ring) for ring in rings)
    if total > MAX_AREA_POSITIONS:
        raise PydanticCustomError(
            TOO_LARGE,
            "an area holds at most {maximum} positions in all; this one has {count}",
            {"maximum": MAX_AREA_POSITIONS, "count": total},
        )


def _check_shape(shape: "BaseGeometry", problem: str) -> None:
    from shapely.validation import explain_validity

    if shape.is_valid:
        return
    explanation = explain_validity(shape)
    if explanation.startswith("Too few points"):
        raise PydanticCustomError(TOO_FEW_POINTS, "a ring needs at least 3 distinct positions")
    code = SELF_INTERSECTING if "Self-intersection" in explanation else INVALID_AREA
    raise PydanticCustomError(code, "{problem}: {reason}", {"problem": problem, "reason": _describe(explanation)})


def _describe(explanation: str) -> str:
    """'Self-intersection[2 1]' -> 'Self-intersection at lng 2, lat 1' (GEOS works in x=lng, y=lat)."""
    match = _GEOS_REASON.match(explanation)
    if match is None:
        return explanation
    return f"{match['reason']} at lng {match['x']}, lat {match['y']}"


def _polygon(rings: list[list[tuple[float, float]]]) -> Any:
    from shapely.geometry import Polygon

    return Polygon(rings[0], rings[1:])


def _multipolygon(parts: list[list[list[tuple[float, float]]]]) -> Any:
    from shapely.geometry import MultiPolygon, Polygon

    return MultiPolygon([Polygon(rings[0], rings[1:]) for rings in parts])
