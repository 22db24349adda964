"""RegionService through RegionRepository against moto's DynamoDB (the `store` fixture)."""

import math
from typing import Any

import pytest

from steward.batch import ItemError
from steward.composition import Services
from steward.errors import InvalidInput, NotFound
from steward.regions.models import (
    MAX_BATCH_REGIONS,
    MAX_POLYGON_POINTS,
    MAX_RADIUS_M,
    REGION_ID_PATTERN,
    GeometryKind,
    NewRegion,
    Region,
    RegionFilter,
    RegionType,
)
from steward.regions.service import RegionService
from steward.settings import StoreSettings
from steward.sharding import shard_of
from steward.tables import RegionRecord
from tests.support.batch_writes import HandsBack
from tests.support.service import collect_pages

APP = "app-a"
OTHER_APP = "app-b"
# A 1-degree square around Paris, and a bow-tie whose edges cross at (lat 1, lng 1).
SQUARE = [[48.0, 2.0], [48.0, 3.0], [49.0, 3.0], [49.0, 2.0], [48.0, 2.0]]
BOW_TIE = [[0.0, 0.0], [2.0, 2.0], [0.0, 2.0], [2.0, 0.0], [0.0, 0.0]]


@pytest.fixture
def service(store: StoreSettings) -> RegionService:
    return Services(store.shard_count).regions


def body(region_type: str = "poi", **overrides: Any) -> dict[str, Any]:
    """A valid region body (a POI in Paris) with some fields replaced."""
    region: dict[str, Any] = {
        "type": region_type,
        "name": "Louvre",
        "tags": ["museum"],
        "country": "FR",
        "lat": 48.8606,
        "lng": 2.3376,
    }
    region.update(overrides)
    return region


def polygon(points: list[list[float]]) -> dict[str, Any]:
    return {"kind": "polygon", "points": [{"lat": lat, "lng": lng} for lat, lng in points]}


def geozone(geometry: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return body("geozone", **{"name": "Paris zone", "geometry": geometry, **overrides})


def create(service: RegionService, raw: dict[str, Any], app_id: str = APP) -> Region:
    return service.create(app_id, NewRegion.model_validate(raw))


def rejection(service: RegionService, raw: Any) -> ItemError:
    """How a one-region import refuses ``raw``; checks that nothing was written."""
    result = service.import_regions(APP, [raw])
    assert (result.succeeded, result.failed) == (0, 1), result
    outcome = result.results[0]
    assert outcome.region_id is None
    assert outcome.error is not None
    assert service.list_for_app(APP, RegionFilter(), None, 50).items == []
    return outcome.error


def listed(service: RegionService, app_id: str = APP, **criteria: Any) -> list[Region]:
    region_filter = RegionFilter(**criteria)
    return collect_pages(lambda cursor: service.list_for_app(app_id, region_filter, cursor, 2))


def ids(regions: list[Region]) -> set[str]:
    return {region.region_id for region in regions}


# Create, read, delete.


def test_create_then_get_returns_the_region(service: RegionService) -> None:
    created = create(service, body(tags=["museum", "art"]))

    assert REGION_ID_PATTERN.match(created.region_id)
    assert (created.type, created.name, created.country) == (RegionType.POI, "Louvre", "FR")
    assert (created.lat, created.lng, created.tags, created.geometry) == (48.8606, 2.3376, ["museum", "art"], None)
    assert created.created_at == created.updated_at
    assert service.get(APP, created.region_id) == created


def test_each_create_gets_a_new_id(service: RegionService) -> None:
    assert create(service, body()).region_id != create(service, body()).region_id


def test_region_is_stored_in_its_app_region_shard(service: RegionService, store: StoreSettings) -> None:
    created = create(service, body())

    shard = shard_of(created.region_id, store.shard_count)
    record = RegionRecord.get(f"{APP}#region#{shard:02d}", created.region_id)
    assert (record.region_type, record.country, record.geometry) == ("poi", "FR", None)


def test_polygon_geozone_round_trips_its_points(service: RegionService) -> None:
    points = [[-33.8688, 151.2093], [-33.8, 151.2093], [-33.8, 151.3], [-33.8688, 151.2093]]
    created = create(service, geozone(polygon(points), country="AU", lat=-33.85, lng=151.25))

    fetched = service.get(APP, created.region_id)
    assert fetched == created
    assert fetched.geometry is not None
    assert fetched.geometry.kind is GeometryKind.POLYGON
    assert [[point.lat, point.lng] for point in fetched.geometry.points or ()] == points
    assert fetched.geometry.radius_m is None


def test_circle_geozone_round_trips_its_radius(service: RegionService) -> None:
    created = create(service, geozone({"kind": "circle", "radius_m": 250.5}))

    fetched = service.get(APP, created.region_id)
    assert fetched == created
    assert fetched.geometry is not None
    assert (fetched.geometry.kind, fetched.geometry.radius_m, fetched.geometry.points) == (
        GeometryKind.CIRCLE,
        250.5,
        None,
    )


@pytest.mark.parametrize("region_type", ["poi", "city", "country"])
def test_non_geozones_are_their_center(service: RegionService, region_type: str) -> None:
    created = create(service, body(region_type))
    assert service.get(APP, created.region_id).type.value == region_type


def test_tags_are_deduplicated_in_order(service: RegionService) -> None:
    assert create(service, body(tags=["b", "a", "b", "a"])).tags == ["b", "a"]


def test_delete_removes_the_region(service: RegionService) -> None:
    created = create(service, body())

    service.delete(APP, created.region_id)

    with pytest.raises(NotFound) as raised:
        service.get(APP, created.region_id)
    assert (raised.value.code, raised.value.field) == ("region_not_found", "region_id")
    with pytest.raises(NotFound) as again:
        service.delete(APP, created.region_id)
    assert again.value.code == "region_not_found"


@pytest.mark.parametrize("region_id", ["rgn_" + "0" * 32, "nope", "RGN_" + "a" * 32, "rgn_" + "a" * 2000])
def test_unknown_or_malformed_id_is_not_found(service: RegionService, region_id: str) -> None:
    for call in (service.get, service.delete):
        with pytest.raises(NotFound) as raised:
            call(APP, region_id)
        assert (raised.value.code, raised.value.field) == ("region_not_found", "region_id")


# Validation: field rules (pydantic) and the rules that span fields (the service).


@pytest.mark.parametrize("lat", [90, -90, 0, 45.123456789])
@pytest.mark.parametrize("lng", [180, -180, 0])
def test_coordinate_bounds_are_inclusive(service: RegionService, lat: float, lng: float) -> None:
    created = create(service, body(lat=lat, lng=lng))
    assert (created.lat, created.lng) == (lat, lng)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"lat": 90.000001}, "lat"),
        ({"lat": -91}, "lat"),
        ({"lng": 180.5}, "lng"),
        ({"lng": -181}, "lng"),
        ({"lat": True}, "lat"),
        ({"lat": "48.8"}, "lat"),
        ({"lat": float("nan")}, "lat"),
        ({"lng": float("inf")}, "lng"),
        ({"country": "fr"}, "country"),
        ({"country": "FRA"}, "country"),
        ({"country": "F1"}, "country"),
        ({"country": ""}, "country"),
        ({"type": "continent"}, "type"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"tags": ["ok", ""]}, "tags[1]"),
        ({"tags": ["t"] * 51}, "tags"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_field_is_named(service: RegionService, overrides: dict[str, Any], field: str) -> None:
    error = rejection(service, body(**overrides))
    assert (error.code, error.field) == ("invalid_input", f"regions[0].{field}")


@pytest.mark.parametrize("missing", ["type", "name", "country", "lat", "lng"])
def test_missing_field_is_named(service: RegionService, missing: str) -> None:
    raw = body()
    del raw[missing]
    error = rejection(service, raw)
    assert (error.code, error.field) == ("missing_field", f"regions[0].{missing}")


def test_geometry_on_a_non_geozone_is_refused(service: RegionService) -> None:
    error = rejection(service, body("city", geometry={"kind": "circle", "radius_m": 100}))
    assert (error.code, error.field) == ("invalid_input", "regions[0].geometry")


def test_geozone_without_geometry_is_refused(service: RegionService) -> None:
    error = rejection(service, body("geozone"))
    assert (error.code, error.field) == ("missing_field", "regions[0].geometry")


@pytest.mark.parametrize(
    ("geometry", "code", "field"),
    [
        ({"kind": "circle", "radius_m": 0}, "invalid_input", "geometry.radius_m"),
        ({"kind": "circle", "radius_m": -5}, "invalid_input", "geometry.radius_m"),
        ({"kind": "circle", "radius_m": MAX_RADIUS_M + 1}, "invalid_input", "geometry.radius_m"),
        ({"kind": "circle", "radius_m": "100"}, "invalid_input", "geometry.radius_m"),
        ({"kind": "circle"}, "missing_field", "geometry.radius_m"),
        ({"kind": "circle", "radius_m": 10, "points": polygon(SQUARE)["points"]}, "invalid_input", "geometry.points"),
        ({"kind": "polygon"}, "missing_field", "geometry.points"),
        ({**polygon(SQUARE), "radius_m": 10}, "invalid_input", "geometry.radius_m"),
        ({"kind": "hexagon"}, "invalid_input", "geometry.kind"),
        ({"radius_m": 10}, "missing_field", "geometry.kind"),
    ],
)
def test_bad_geometry_is_named(service: RegionService, geometry: dict[str, Any], code: str, field: str) -> None:
    error = rejection(service, geozone(geometry))
    assert (error.code, error.field) == (code, f"regions[0].{field}")


def test_circle_of_max_radius_is_accepted(service: RegionService) -> None:
    created = create(service, geozone({"kind": "circle", "radius_m": MAX_RADIUS_M}))
    assert created.geometry is not None
    assert created.geometry.radius_m == MAX_RADIUS_M


@pytest.mark.parametrize(("index", "coordinate"), [(0, "lat"), (2, "lng")])
def test_polygon_point_out_of_range_is_named(service: RegionService, index: int, coordinate: str) -> None:
    geometry = polygon(SQUARE)
    geometry["points"][index][coordinate] = 200.0

    error = rejection(service, geozone(geometry))
    assert (error.code, error.field) == ("invalid_input", f"regions[0].geometry.points[{index}].{coordinate}")


def test_unclosed_polygon_names_its_last_point(service: RegionService) -> None:
    error = rejection(service, geozone(polygon(SQUARE[:-1])))
    assert (error.code, error.field) == ("polygon_not_closed", "regions[0].geometry.points[3]")


def test_self_intersecting_bow_tie_is_refused_with_the_crossing(service: RegionService) -> None:
    error = rejection(service, geozone(polygon(BOW_TIE)))

    assert (error.code, error.field) == ("polygon_self_intersecting", "regions[0].geometry.points")
    assert "lng 1" in error.message
    assert "lat 1" in error.message


def test_the_same_bow_tie_closed_as_a_square_is_accepted(service: RegionService) -> None:
    square = [[0.0, 0.0], [0.0, 2.0], [2.0, 2.0], [2.0, 0.0], [0.0, 0.0]]
    assert create(service, geozone(polygon(square))).geometry is not None


@pytest.mark.parametrize(
    ("points", "code"),
    [
        ([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]], "polygon_too_few_points"),
        ([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0]], "polygon_too_few_points"),
        ([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 0.0]], "polygon_self_intersecting"),  # collinear: no area
        (
            [[0.0, 0.0], [0.0, 2.0], [1.0, 1.0], [2.0, 2.0], [2.0, 0.0], [1.0, 1.0], [0.0, 0.0]],
            "polygon_self_intersecting",
        ),
    ],
)
def test_degenerate_polygons_are_refused(service: RegionService, points: list[list[float]], code: str) -> None:
    error = rejection(service, geozone(polygon(points)))
    assert (error.code, error.field) == (code, "regions[0].geometry.points")


def test_polygon_size_is_bounded(service: RegionService) -> None:
    # A closed ring of MAX_POLYGON_POINTS points on a small circle is accepted; one more point is not.
    corners = MAX_POLYGON_POINTS - 1
    ring = [
        [48 + math.sin(2 * math.pi * i / corners) / 10, 2 + math.cos(2 * math.pi * i / corners) / 10]
        for i in range(corners)
    ]
    ring.append(ring[0])
    created = create(service, geozone(polygon(ring)))
    assert created.geometry is not None
    assert len(created.geometry.points or ()) == MAX_POLYGON_POINTS
    assert service.get(APP, created.region_id) == created
    service.delete(APP, created.region_id)

    error = rejection(service, geozone(polygon([ring[0], *ring])))
    assert (error.code, error.field) == ("invalid_input", "regions[0].geometry.points")


def test_create_refuses_cross_field_errors_with_their_field(service: RegionService) -> None:
    with pytest.raises(InvalidInput) as raised:
        create(service, geozone(polygon(BOW_TIE)))
    assert (raised.value.code, raised.value.field) == ("polygon_self_intersecting", "geometry.points")

    with pytest.raises(InvalidInput) as raised:
        create(service, body("geozone"))
    assert (raised.value.code, raised.value.field) == ("missing_field", "geometry")
    assert service.list_for_app(APP, RegionFilter(), None, 50).items == []


# Listing and filters.


@pytest.fixture
def catalog(service: RegionService) -> dict[str, Region]:
    """Regions of APP in several types, tags and countries, plus look-alikes in OTHER_APP."""
    regions = {
        "louvre": create(service, body("poi", tags=["museum", "paris"])),
        "orsay": create(service, body("poi", name="Orsay", tags=["museum"])),
        "eiffel": create(service, body("poi", name="Eiffel", tags=["paris", "view"])),
        "prado": create(service, body("poi", name="Prado", country="ES", lat=40.41, lng=-3.69, tags=["museum"])),
        "paris": create(service, body("city", name="Paris", tags=["paris", "capital"])),
        "madrid": create(service, body("city", name="Madrid", country="ES", tags=["capital"])),
        "lyon": create(service, body("city", name="Lyon", tags=["river"])),
        "france": create(service, body("country", name="France", tags=[])),
        "zone": create(service, geozone(polygon(SQUARE), tags=["paris"])),
        "ring": create(service, geozone({"kind": "circle", "radius_m": 500}, country="ES", tags=["museum"])),
    }
    for raw in (body("poi", tags=["museum", "paris"]), body("city", tags=["capital"]), geozone(polygon(SQUARE))):
        create(service, raw, app_id=OTHER_APP)
    return regions


def named(catalog: dict[str, Region], *names: str) -> set[str]:
    return {catalog[name].region_id for name in names}


def test_catalog_spreads_over_shards(catalog: dict[str, Region], store: StoreSettings) -> None:
    assert len({shard_of(region.region_id, store.shard_count) for region in catalog.values()}) > 1


def test_list_without_filter_returns_every_region_of_the_app(
    service: RegionService, catalog: dict[str, Region]
) -> None:
    regions = listed(service)
    assert len(regions) == len(catalog)
    assert ids(regions) == named(catalog, *catalog)
    assert {region.region_id: region for region in regions} == {region.region_id: region for region in catalog.values()}


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"type": RegionType.POI}, {"louvre", "orsay", "eiffel", "prado"}),
        ({"type": RegionType.CITY}, {"paris", "madrid", "lyon"}),
        ({"type": RegionType.GEOZONE}, {"zone", "ring"}),
        ({"type": RegionType.COUNTRY}, {"france"}),
        ({"tag": "museum"}, {"louvre", "orsay", "prado", "ring"}),
        ({"tag": "paris"}, {"louvre", "eiffel", "paris", "zone"}),
        ({"tag": "pari"}, set()),
        ({"country": "ES"}, {"prado", "madrid", "ring"}),
        ({"country": "DE"}, set()),
        ({"type": RegionType.POI, "tag": "museum"}, {"louvre", "orsay", "prado"}),
        ({"type": RegionType.POI, "tag": "museum", "country": "FR"}, {"louvre", "orsay"}),
        ({"type": RegionType.CITY, "country": "ES", "tag": "capital"}, {"madrid"}),
    ],
)
def test_list_filters_across_shards_in_pages_of_two(
    service: RegionService, catalog: dict[str, Region], criteria: dict[str, Any], expected: set[str]
) -> None:
    regions = listed(service, **criteria)

    assert len(regions) == len(expected)  # no region twice across pages
    assert ids(regions) == named(catalog, *expected)


def test_list_rejects_a_forged_cursor(service: RegionService) -> None:
    with pytest.raises(InvalidInput) as raised:
        service.list_for_app(APP, RegionFilter(), "not-a-cursor", 2)
    assert raised.value.code == "invalid_cursor"


# Bulk import.


def test_batch_imports_good_items_and_names_each_bad_one(service: RegionService) -> None:
    raws: list[Any] = [
        body(name="Good 1"),
        body(lat=95),
        geozone(polygon(SQUARE), name="Good 2"),
        geozone(polygon(BOW_TIE)),
        "not a region",
        geozone({"kind": "circle", "radius_m": 30}, name="Good 3"),
        body("city", geometry={"kind": "circle", "radius_m": 1}),
    ]

    result = service.import_regions(APP, raws)

    assert (result.succeeded, result.failed) == (3, 4)
    assert [outcome.index for outcome in result.results] == list(range(len(raws)))
    assert [outcome.ok for outcome in result.results] == [True, False, True, False, False, True, False]
    errors = {outcome.index: outcome.error for outcome in result.results if outcome.error is not None}
    assert {index: (error.code, error.field) for index, error in errors.items()} == {
        1: ("invalid_input", "regions[1].lat"),
        3: ("polygon_self_intersecting", "regions[3].geometry.points"),
        4: ("invalid_input", "regions[4]"),
        6: ("invalid_input", "regions[6].geometry"),
    }
    imported = {outcome.region_id: raws[outcome.index]["name"] for outcome in result.results if outcome.ok}
    assert None not in imported
    assert {service.get(APP, str(region_id)).name for region_id in imported} == {"Good 1", "Good 2", "Good 3"}
    assert ids(listed(service)) == set(imported)


def test_batch_of_max_size_is_written_in_several_calls(service: RegionService) -> None:
    result = service.import_regions(APP, [body(name=f"r{index}") for index in range(MAX_BATCH_REGIONS)])

    assert (result.succeeded, result.failed) == (MAX_BATCH_REGIONS, 0)
    assert {region.name for region in listed(service)} == {f"r{index}" for index in range(MAX_BATCH_REGIONS)}


def test_batch_too_large_is_refused_whole(service: RegionService) -> None:
    with pytest.raises(InvalidInput) as raised:
        service.import_regions(APP, [body()] * (MAX_BATCH_REGIONS + 1))

    assert (raised.value.code, raised.value.field) == ("batch_too_large", "regions")
    assert service.list_for_app(APP, RegionFilter(), None, 50).items == []


def test_empty_batch_imports_nothing(service: RegionService) -> None:
    assert service.import_regions(APP, []).model_dump() == {"succeeded": 0, "failed": 0, "results": []}


def flaky_batch_writes(monkeypatch: pytest.MonkeyPatch, refuse: set[str], times: int | None) -> HandsBack[str]:
    """Leaves the regions named in ``refuse`` unprocessed, ``times`` times each (forever when None)."""
    return HandsBack(monkeypatch, lambda item: str(item["name"]["S"]), refuse, times)


def test_batch_retries_unprocessed_items_with_backoff(service: RegionService, monkeypatch: pytest.MonkeyPatch) -> None:
    # pynamodb resends twice on its own; four refusals need one backoff round of ours.
    flaky = flaky_batch_writes(monkeypatch, refuse={"r3", "r30"}, times=4)

    result = service.import_regions(APP, [body(name=f"r{index}") for index in range(40)])

    assert (result.succeeded, result.failed) == (40, 0)
    assert len(listed(service)) == 40
    assert len(flaky.sleeps) >= 1
    # Only what DynamoDB left unprocessed is sent again.
    assert {name: count for name, count in flaky.sent.items() if count > 1} == {"r3": 5, "r30": 5}
    assert all(0 <= pause <= 1 for pause in flaky.sleeps)


def test_batch_reports_items_that_stay_unprocessed(service: RegionService, monkeypatch: pytest.MonkeyPatch) -> None:
    flaky_batch_writes(monkeypatch, refuse={"r3", "r30"}, times=None)

    result = service.import_regions(APP, [body(name=f"r{index}") for index in range(40)])

    assert (result.succeeded, result.failed) == (38, 2)
    failed = [outcome for outcome in result.results if not outcome.ok]
    assert [outcome.index for outcome in failed] == [3, 30]
    assert all(outcome.error is not None and outcome.error.code == "internal_error" for outcome in failed)
    assert all(outcome.region_id is None for outcome in failed)
    assert {region.name for region in listed(service)} == {f"r{index}" for index in range(40)} - {"r3", "r30"}


# Isolation between apps.


def test_another_app_cannot_read_list_or_delete(service: RegionService, catalog: dict[str, Region]) -> None:
    louvre = catalog["louvre"]

    with pytest.raises(NotFound):
        service.get(OTHER_APP, louvre.region_id)
    with pytest.raises(NotFound):
        service.delete(OTHER_APP, louvre.region_id)
    assert service.get(APP, louvre.region_id) == louvre

    other = listed(service, OTHER_APP)
    assert len(other) == 3
    assert not ids(other) & named(catalog, *catalog)
    assert not ids(listed(service, OTHER_APP, tag="museum")) & named(catalog, *catalog)


def test_a_cursor_of_one_app_reads_only_the_callers_app(service: RegionService, catalog: dict[str, Region]) -> None:
    cursors: list[str] = []
    cursor: str | None = None
    for _ in range(len(catalog)):
        page = service.list_for_app(APP, RegionFilter(), cursor, 1)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        cursors.append(cursor)
    assert cursors

    for cursor in cursors:
        regions = collect_pages(
            lambda position: service.list_for_app(OTHER_APP, RegionFilter(), position, 2), start=cursor
        )
        assert not ids(regions) & named(catalog, *catalog)


def test_batch_import_stays_in_the_callers_app(service: RegionService) -> None:
    result = service.import_regions(OTHER_APP, [body(), body("city")])

    assert result.succeeded == 2
    assert listed(service, APP) == []
    for outcome in result.results:
        with pytest.raises(NotFound):
            service.get(APP, str(outcome.region_id))
