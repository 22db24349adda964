"""delete_regions against moto: its filters together, areas through the job, bounded pages, retries, drift."""

import math
from typing import Any

import pytest

from steward.composition import Services
from steward.jobs.engine import Outcome
from steward.jobs.kinds.region_deletion import UNDELETED, DeleteRegions
from steward.jobs.models import JobType
from steward.regions.models import NewRegion, RegionFilter
from steward.settings import StoreSettings
from tests.support.batch_writes import HandsBack
from tests.support.jobs import InlineRun, confirm, job_context, listed, pages_of, run_inline, run_job, stored_items
from tests.support.service import SHARD_COUNT, collect_pages

A, B = "app-a", "app-b"
JOB = JobType.DELETE_REGIONS

# A U: a square (lng 0-3, lat 0-3) with a notch cut from the top middle (lng 1-2, lat 1-3). Positions are [lng, lat].
U_SHAPE = [[0, 0], [3, 0], [3, 3], [2, 3], [2, 1], [1, 1], [1, 3], [0, 3], [0, 0]]
SQUARE = [[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]]
HOLE = [[14, 14], [16, 14], [16, 16], [14, 16], [14, 14]]
# Lng 170 to -170 across the 180th meridian, split there as RFC 7946 asks.
EAST_OF_SPLIT = [[170, -10], [180, -10], [180, 10], [170, 10], [170, -10]]
WEST_OF_SPLIT = [[-180, -10], [-170, -10], [-170, 10], [-180, 10], [-180, -10]]


@pytest.fixture
def services(store: StoreSettings) -> Services:
    return Services(SHARD_COUNT)


def region(
    services: Services,
    name: str,
    *,
    region_type: str = "poi",
    lng: float = 2.35,
    lat: float = 48.85,
    country: str = "FR",
    tags: tuple[str, ...] = (),
    app_id: str = A,
) -> str:
    body: dict[str, Any] = {
        "type": region_type,
        "name": name,
        "tags": list(tags),
        "country": country,
        "lat": lat,
        "lng": lng,
    }
    if region_type == "geozone":
        ring = [[lat - 0.01, lng - 0.01], [lat - 0.01, lng + 0.01], [lat + 0.01, lng + 0.01], [lat - 0.01, lng - 0.01]]
        body["geometry"] = {"kind": "polygon", "points": [{"lat": point[0], "lng": point[1]} for point in ring]}
    return services.regions.create(app_id, NewRegion.model_validate(body)).region_id


def remaining(services: Services, app_id: str = A) -> set[str]:
    """The names of the app's regions, of every type."""
    regions = collect_pages(lambda cursor: services.regions.list_for_app(app_id, RegionFilter(), cursor, 50), 50)
    return {region.name for region in regions}


def run(params: dict[str, Any], *, dry_run: bool, kind: DeleteRegions | None = None) -> InlineRun:
    return run_job(A, JOB, params, dry_run=dry_run, kind=kind)


def names(run: InlineRun, action: str = "deleted") -> set[str]:
    return {row.detail for row in run.rows if row.action == action}


def select(services: Services, params: dict[str, Any]) -> set[str]:
    """What a dry run selects, checked against what the real run deletes and leaves."""
    before = {row.detail for row in run({**params}, dry_run=True).rows}
    real = run(params, dry_run=False)
    assert names(real) == before
    return before


# The filters.


def test_type_tags_and_country_narrow_the_selection_together(services: Services) -> None:
    region(services, "louvre", tags=("museum", "paris"))
    region(services, "zoo", tags=("zoo",))
    region(services, "park", tags=("park",))
    region(services, "pergamon", country="DE", tags=("museum",))
    region(services, "lyon", region_type="city", tags=("museum",))
    region(services, "other app", tags=("museum",), app_id=B)

    dry = run({"region_type": "poi", "tags": ["museum", "zoo"], "country": "FR"}, dry_run=True)
    real = run({"region_type": "poi", "tags": ["museum", "zoo"], "country": "FR"}, dry_run=False)

    assert names(dry) == {"louvre", "zoo"}
    assert listed(real.rows) == listed(dry.rows)
    assert remaining(services) == {"park", "pergamon", "lyon"}
    assert remaining(services, B) == {"other app"}


def test_the_type_alone_selects_every_region_of_that_type(services: Services) -> None:
    region(services, "paris zone", region_type="geozone")
    region(services, "louvre")
    region(services, "lille zone", region_type="geozone", country="FR", tags=("north",))

    assert select(services, {"region_type": "geozone"}) == {"paris zone", "lille zone"}
    assert remaining(services) == {"louvre"}


# The area, through the job.


@pytest.mark.parametrize(
    ("lng", "lat", "inside"),
    [
        (0.5, 2.0, True),  # in the U's left arm
        (1.5, 0.5, True),  # in its base
        (1.5, 2.0, False),  # in the notch: inside the U's bounding box, outside the U
        (3.0, 1.5, True),  # on the outer edge
        (2.0, 2.0, True),  # on the notch's edge
        (4.0, 1.0, False),
    ],
)
def test_a_concave_area_selects_the_centers_inside_it_or_on_its_edge(
    services: Services, lng: float, lat: float, inside: bool
) -> None:
    region(services, "probe", lng=lng, lat=lat)

    selected = select(services, {"region_type": "poi", "area": {"type": "Polygon", "coordinates": [U_SHAPE]}})

    assert selected == ({"probe"} if inside else set())


def test_a_hole_is_outside_the_area_and_its_edge_inside(services: Services) -> None:
    region(services, "in the ring", lng=12, lat=12)
    region(services, "in the hole", lng=15, lat=15)
    region(services, "on the hole's edge", lng=14, lat=15)
    region(services, "outside", lng=25, lat=15)

    selected = select(services, {"region_type": "poi", "area": {"type": "Polygon", "coordinates": [SQUARE, HOLE]}})

    assert selected == {"in the ring", "on the hole's edge"}
    assert remaining(services) == {"in the hole", "outside"}


def test_an_area_split_at_the_antimeridian_selects_both_sides(services: Services) -> None:
    region(services, "east", lng=175, lat=0)
    region(services, "west", lng=-175, lat=5)
    region(services, "on the meridian", lng=180, lat=-5)
    region(services, "on the meridian, west", lng=-180, lat=5)
    region(services, "greenwich", lng=0, lat=0)
    region(services, "too far north", lng=175, lat=20)
    area = {"type": "MultiPolygon", "coordinates": [[EAST_OF_SPLIT], [WEST_OF_SPLIT]]}

    selected = select(services, {"region_type": "poi", "area": area})

    assert selected == {"east", "west", "on the meridian", "on the meridian, west"}
    assert remaining(services) == {"greenwich", "too far north"}


def test_the_area_combines_with_the_other_filters(services: Services) -> None:
    region(services, "tagged inside", lng=12, lat=12, tags=("keep-out",))
    region(services, "untagged inside", lng=12, lat=12)
    region(services, "tagged outside", lng=30, lat=12, tags=("keep-out",))
    region(services, "elsewhere inside", lng=12, lat=12, country="IT", tags=("keep-out",))
    params = {
        "region_type": "poi",
        "tags": ["keep-out"],
        "country": "FR",
        "area": {"type": "Polygon", "coordinates": [SQUARE]},
    }

    assert select(services, params) == {"tagged inside"}


# Runs, pages and retries.


def test_the_dry_run_changes_nothing_and_counts_what_it_read(services: Services) -> None:
    for index in range(6):
        region(services, f"poi {index}", lng=12 if index % 2 else 30, lat=12)
    before = stored_items()

    dry = run({"region_type": "poi", "area": {"type": "Polygon", "coordinates": [SQUARE]}}, dry_run=True)

    assert stored_items() == before
    assert (dry.counts.scanned, dry.counts.matched) == (6, 3)


def test_pages_are_bounded_and_cover_every_shard(services: Services) -> None:
    for index in range(30):
        region(services, f"poi {index}")
    sizes: list[int] = []
    kind = DeleteRegions(per_page=4, max_scanned=6)

    real = run_inline(
        job_context(A, JOB, {"region_type": "poi"}, dry_run=False),
        kind,
        on_page=lambda _item, page: sizes.append(len(page.rows)),
    )

    assert max(sizes) == 4
    assert len(real.rows) == 30
    assert remaining(services) == set()


def test_applying_the_same_rows_twice_changes_nothing_more_and_reports_the_same(services: Services) -> None:
    for index in range(5):
        region(services, f"poi {index}")
    ctx = job_context(A, JOB, {"region_type": "poi"}, dry_run=False)
    kind = DeleteRegions()
    rows = [row for page in pages_of(job_context(A, JOB, {"region_type": "poi"}, dry_run=True)) for row in page]

    first = kind.apply(ctx, rows)
    after = stored_items()
    second = kind.apply(ctx, rows)

    assert second == first
    assert {row.action for row in first} == {"deleted"}
    assert stored_items() == after
    assert remaining(services) == set()


def test_a_region_deleted_since_the_dry_run_is_drifted(services: Services) -> None:
    gone = region(services, "gone")
    kept = region(services, "kept")
    params = {"region_type": "poi"}
    pages = pages_of(job_context(A, JOB, params, dry_run=True))
    services.regions.delete(A, gone)

    rows = confirm(job_context(A, JOB, params, dry_run=False), pages)

    assert {(row.id, row.action, row.detail) for row in rows} == {
        (gone, Outcome.DRIFTED, "no longer exists"),
        (kept, "deleted", "kept"),
    }
    assert remaining(services) == set()


def test_a_region_dynamodb_leaves_unprocessed_fails_and_the_others_are_deleted(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = region(services, "stuck")
    free = region(services, "free")
    # DynamoDB hands the stuck region's delete back, every time.
    HandsBack(monkeypatch, lambda key: str(key["sk"]["S"]), {stuck}, None)

    real = run({"region_type": "poi"}, dry_run=False)

    assert {(row.id, row.action, row.detail) for row in real.rows} == {
        (free, "deleted", "free"),
        (stuck, Outcome.FAILED, UNDELETED),
    }
    assert real.counts.failed == 1
    assert remaining(services) == {"stuck"}


def test_the_estimate_prices_deleting_each_region_by_its_size(services: Services) -> None:
    region(services, "small")
    # A geozone whose polygon has 400 corners on a circle of 1 degree: about 10 KB stored.
    ring = [
        {"lat": math.sin(2 * math.pi * index / 400), "lng": math.cos(2 * math.pi * index / 400)} for index in range(400)
    ]
    geometry = {"kind": "polygon", "points": [*ring, ring[0]]}
    body = {"type": "geozone", "name": "large", "country": "FR", "lat": 0.0, "lng": 0.0, "geometry": geometry}
    large = services.regions.create(A, NewRegion.model_validate(body))
    costs = {}
    for region_type in ("poi", "geozone"):
        run_inline(
            job_context(A, JOB, {"region_type": region_type}, dry_run=True),
            on_page=lambda _item, page: costs.update({row.id: page.cost for row in page.rows}),
        )

    small_cost = next(cost for region_id, cost in costs.items() if region_id != large.region_id)
    assert small_cost.write_units == 1
    assert costs[large.region_id].write_units > 5
