"""Domain objects and input shapes for regions.

Field-level rules (ranges, sizes, formats) live here so that pydantic names
the offending field; rules that span fields (a geozone's geometry, a
polygon's shape) live in ``steward.regions.service``.
"""

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, field_validator

from steward.batch import BatchOutcome, ItemOutcome
from steward.numbers import storable_number
from steward.schema import Schema
from steward.types import no_control_characters

MAX_BATCH_REGIONS = 100
# A stored point takes 17 bytes (6 decimals) to 26 (full floats), so a polygon
# stays under ~26 KB: far from DynamoDB's 400 KB item limit, ~26 write units a write.
MAX_POLYGON_POINTS = 1000
# A closed ring: three distinct corners plus the first one repeated.
MIN_POLYGON_POINTS = 4
# Beyond this a circle stops being a geozone (use a country or city region instead).
MAX_RADIUS_M = 1_000_000.0
MAX_TAGS = 50
# Full regions are returned in lists, and a geozone can be ~55 KB of JSON:
# 50 of them (under 3 MB) stay well clear of Lambda's 6 MB response limit.
DEFAULT_REGION_PAGE_SIZE = 25
MAX_REGION_PAGE_SIZE = 50

REGION_ID_PREFIX = "rgn_"
REGION_ID_PATTERN = re.compile(r"^rgn_[0-9a-f]{32}$")


class RegionType(StrEnum):
    GEOZONE = "geozone"
    POI = "poi"
    CITY = "city"
    COUNTRY = "country"


class GeometryKind(StrEnum):
    POLYGON = "polygon"
    CIRCLE = "circle"


# strict: a latitude of `true` or "48.8" is a client bug, not a coordinate.
# storable_number: a value like 1e-200 is in range but DynamoDB cannot store it.
Latitude = Annotated[
    float,
    Field(ge=-90, le=90, strict=True, allow_inf_nan=False, description="Degrees north, -90 to 90 (WGS 84)."),
    AfterValidator(storable_number),
]
Longitude = Annotated[
    float,
    Field(ge=-180, le=180, strict=True, allow_inf_nan=False, description="Degrees east, -180 to 180 (WGS 84)."),
    AfterValidator(storable_number),
]
# Format only, on purpose: the ISO list changes, and codes in wide use such as
# XK (Kosovo) are not officially assigned, so a hard-coded list would reject them.
CountryCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    Field(description="ISO 3166-1 alpha-2 code in capitals, e.g. FR. Only the format is checked."),
]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(no_control_characters)]
RegionName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(no_control_characters),
]


class Point(Schema):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: Latitude
    lng: Longitude


class Geometry(Schema):
    """A geozone's area: a polygon, or a circle around the region's center."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: GeometryKind = Field(description="`polygon` (give `points`) or `circle` (give `radius_m`).")
    points: list[Point] | None = Field(
        default=None,
        max_length=MAX_POLYGON_POINTS,
        description=(
            f"Polygon only: a closed ring (the last point repeats the first) of {MIN_POLYGON_POINTS} to "
            f"{MAX_POLYGON_POINTS} points, at least 3 of them distinct, that does not cross itself. "
            "Edges are straight lines in longitude/latitude, so a polygon cannot cross the 180th meridian: "
            "split it in two."
        ),
    )
    radius_m: Annotated[float, AfterValidator(storable_number)] | None = Field(
        default=None,
        gt=0,
        le=MAX_RADIUS_M,
        strict=True,
        allow_inf_nan=False,
        description=f"Circle only: radius in meters around the region's `lat`/`lng`, at most {MAX_RADIUS_M:,.0f}.",
    )


class NewRegion(Schema):
    """Body of POST /v1/regions, and one item of POST /v1/regions/batch."""

    model_config = ConfigDict(extra="forbid")

    type: RegionType = Field(description="geozone, poi (point of interest), city or country.")
    name: RegionName = Field(description="Display name, 1-200 characters.")
    tags: list[Tag] = Field(
        default_factory=list,
        max_length=MAX_TAGS,
        description=f"Up to {MAX_TAGS} labels of 1-64 characters to filter on; duplicates are dropped.",
    )
    country: CountryCode
    lat: Latitude = Field(description="Latitude of the region's center, -90 to 90.")
    lng: Longitude = Field(description="Longitude of the region's center, -180 to 180.")
    geometry: Geometry | None = Field(
        default=None, description="Required for a geozone, and only allowed there: other types are their center."
    )

    @field_validator("tags")
    @classmethod
    def _unique(cls, tags: list[str]) -> list[str]:
        return list(dict.fromkeys(tags))


class Region(Schema):
    model_config = ConfigDict(frozen=True)

    region_id: str = Field(description="Server-generated id, e.g. `rgn_` followed by 32 hex digits.")
    type: RegionType
    name: str
    tags: list[str]
    country: str = Field(description="ISO 3166-1 alpha-2 code.")
    lat: float = Field(description="Latitude of the center.")
    lng: float = Field(description="Longitude of the center.")
    geometry: Geometry | None = Field(description="A geozone's polygon or circle; null for other types.")
    created_at: datetime
    updated_at: datetime


class RegionFilter(Schema):
    model_config = ConfigDict(frozen=True)

    type: RegionType | None = None
    tag: str | None = None
    country: str | None = None


class RegionImportOutcome(ItemOutcome):
    """What happened to one region of a batch: its new id, or why it was not imported (`field`: "regions[3].lat")."""

    region_id: str | None = Field(default=None, description="The new region's id, when it was imported.")


class RegionImportBatchOutcome(BatchOutcome[RegionImportOutcome]):
    pass
