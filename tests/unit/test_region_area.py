"""The region area filter: GeoJSON Polygon and MultiPolygon, validated, and the point-in-area test (edges inside)."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from steward.regions.area import MAX_AREA_POSITIONS, Area, MultiPolygonArea, PolygonArea

# Positions are [lng, lat]. A 2x2 square with a 1x1 notch cut from its top right: an L.
L_SHAPE = [[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2], [0, 0]]
SQUARE = [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]
HOLE = [[1, 1], [1, 3], [3, 3], [3, 1], [1, 1]]  # clockwise, as RFC 7946 asks of holes
BOW_TIE = [[0, 0], [2, 2], [0, 2], [2, 0], [0, 0]]
# An area 20 degrees wide around the 180th meridian, split there as RFC 7946 asks.
EAST_OF_SPLIT = [[170, -10], [180, -10], [180, 10], [170, 10], [170, -10]]
WEST_OF_SPLIT = [[-180, -10], [-170, -10], [-170, 10], [-180, 10], [-180, -10]]


def polygon(*rings: Any) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def multipolygon(*parts: Any) -> dict[str, Any]:
    return {"type": "MultiPolygon", "coordinates": list(parts)}


def area(raw: dict[str, Any]) -> Area:
    return Area.model_validate(raw)


def refusal(raw: Any) -> tuple[str, tuple[int | str, ...], str]:
    with pytest.raises(ValidationError) as caught:
        Area.model_validate(raw)
    first = caught.value.errors()[0]
    return first["type"], first["loc"], first["msg"]


# --- accepted shapes and the point test ---------------------------------------------------------


def test_a_polygon_and_a_multipolygon_are_read_by_their_type() -> None:
    assert isinstance(area(polygon(SQUARE)).root, PolygonArea)
    assert isinstance(area(multipolygon([EAST_OF_SPLIT], [WEST_OF_SPLIT])).root, MultiPolygonArea)


def test_positions_are_lng_then_lat() -> None:
    # A thin box: 0..10 east, 0..1 north.
    box = area(polygon([[0, 0], [10, 0], [10, 1], [0, 1], [0, 0]]))

    assert box.contains(lat=0.5, lng=9)
    assert not box.contains(lat=9, lng=0.5)


def test_a_concave_polygon_leaves_its_notch_outside() -> None:
    shape = area(polygon(L_SHAPE))

    assert shape.contains(lat=0.5, lng=0.5)
    assert shape.contains(lat=1.5, lng=0.5)
    assert shape.contains(lat=0.5, lng=1.5)
    assert not shape.contains(lat=1.5, lng=1.5)  # the notch


def test_a_point_on_an_edge_or_a_vertex_is_inside() -> None:
    shape = area(polygon(L_SHAPE))

    assert shape.contains(lat=0, lng=1)  # bottom edge
    assert shape.contains(lat=1.5, lng=1)  # the notch's inner edge
    assert shape.contains(lat=2, lng=0)  # a corner
    assert shape.contains(lat=1, lng=1)  # the concave corner
    assert not shape.contains(lat=2.000001, lng=0)


def test_a_point_in_a_hole_is_outside_and_the_holes_edge_is_inside() -> None:
    shape = area(polygon(SQUARE, HOLE))

    assert shape.contains(lat=0.5, lng=0.5)
    assert not shape.contains(lat=2, lng=2)
    assert shape.contains(lat=1, lng=2)  # on the hole's edge: the area's boundary


def test_a_multipolygon_split_at_the_antimeridian_holds_both_sides() -> None:
    shape = area(multipolygon([EAST_OF_SPLIT], [WEST_OF_SPLIT]))

    assert shape.contains(lat=0, lng=175)
    assert shape.contains(lat=0, lng=-175)
    assert shape.contains(lat=5, lng=180)  # on the split line
    assert shape.contains(lat=5, lng=-180)
    assert not shape.contains(lat=0, lng=0)
    assert not shape.contains(lat=20, lng=175)


def test_both_names_of_the_180th_meridian_are_one_line() -> None:
    # Only the eastern part: a point given as lng -180 is on its edge all the same.
    shape = area(polygon(EAST_OF_SPLIT))

    assert shape.contains(lat=0, lng=-180)
    assert not shape.contains(lat=11, lng=-180)


def test_ring_orientation_does_not_matter() -> None:
    # RFC 7946 asks for counterclockwise outer rings but tells parsers not to refuse the others.
    assert area(polygon(list(reversed(SQUARE)))).contains(lat=2, lng=2)


def test_the_prepared_geometry_is_built_once() -> None:
    shape = area(polygon(SQUARE))

    assert shape.contains(lat=1, lng=1)
    assert shape._prepared is shape._prepared
    assert shape == area(polygon(SQUARE))  # the cache is not part of the value


def test_it_dumps_back_to_geojson() -> None:
    raw = polygon(SQUARE, HOLE)

    assert area(raw).model_dump(mode="json") == raw
    assert area(area(raw).model_dump(mode="json")) == area(raw)


@given(
    lng=st.floats(min_value=-180, max_value=180, allow_nan=False),
    lat=st.floats(min_value=-90, max_value=90, allow_nan=False),
)
def test_a_rectangle_holds_exactly_the_points_within_its_bounds(lng: float, lat: float) -> None:
    shape = area(polygon([[-10, -5], [20, -5], [20, 15], [-10, 15], [-10, -5]]))

    assert shape.contains(lat=lat, lng=lng) == (-10 <= lng <= 20 and -5 <= lat <= 15)


@given(lat=st.floats(min_value=0, max_value=4), lng=st.floats(min_value=0, max_value=4))
def test_the_square_with_a_hole_holds_what_is_not_strictly_inside_the_hole(lat: float, lng: float) -> None:
    in_hole = 1 < lat < 3 and 1 < lng < 3

    assert area(polygon(SQUARE, HOLE)).contains(lat=lat, lng=lng) == (not in_hole)


@given(
    lat=st.floats(min_value=-0.5, max_value=4.5) | st.sampled_from([0.0, 1.0, 3.0, 4.0]),
    lng=st.floats(min_value=-0.5, max_value=4.5) | st.sampled_from([0.0, 1.0, 3.0, 4.0]),
)
def test_contains_is_shapelys_covers(lat: float, lng: float) -> None:
    from shapely.geometry import Point, Polygon

    covers = Polygon(SQUARE, [HOLE]).covers(Point(lng, lat))

    assert area(polygon(SQUARE, HOLE)).contains(lat=lat, lng=lng) == covers


# --- refusals -------------------------------------------------------------------------------


def test_an_open_ring_is_refused_naming_the_ring() -> None:
    code, location, _ = refusal(polygon([[0, 0], [2, 0], [2, 2], [0, 2]]))

    assert (code, location) == ("polygon_not_closed", ("Polygon", "coordinates", 0))


def test_an_open_hole_is_refused_naming_the_hole() -> None:
    code, location, _ = refusal(polygon(SQUARE, HOLE[:-1]))

    assert (code, location) == ("polygon_not_closed", ("Polygon", "coordinates", 1))


def test_a_ring_of_three_positions_is_refused() -> None:
    code, location, message = refusal(polygon([[0, 0], [2, 0], [0, 0]]))

    assert (code, location) == ("polygon_too_few_points", ("Polygon", "coordinates", 0))
    assert "at least 4 positions" in message


def test_a_ring_of_four_positions_but_two_distinct_is_refused() -> None:
    code, location, _ = refusal(polygon([[0, 0], [2, 0], [0, 0], [0, 0]]))

    assert (code, location) == ("polygon_too_few_points", ("Polygon", "coordinates"))


@pytest.mark.parametrize(
    ("position", "index"),
    [([180.5, 0], 0), ([-181, 0], 0), ([0, 90.1], 1), ([0, -91], 1)],
)
def test_coordinates_out_of_range_are_refused_naming_the_number(position: list[float], index: int) -> None:
    code, location, _ = refusal(polygon([[0, 0], position, [1, 1], [0, 0]]))

    assert code in {"less_than_equal", "greater_than_equal"}
    assert location == ("Polygon", "coordinates", 0, 1, index)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1.5", True, None])
def test_a_coordinate_must_be_a_finite_number(bad: Any) -> None:
    _, location, _ = refusal(polygon([[0, 0], [bad, 1], [1, 1], [0, 0]]))

    assert location == ("Polygon", "coordinates", 0, 1, 0)


@pytest.mark.parametrize("position", [[1], [1, 2, 3], []])
def test_a_position_is_exactly_lng_and_lat(position: list[float]) -> None:
    _, location, _ = refusal(polygon([[0, 0], position, [1, 1], [0, 0]]))

    # A missing number is named by its index, an extra one by the position.
    assert location[:4] == ("Polygon", "coordinates", 0, 1)


def test_a_self_intersecting_ring_is_refused_with_where() -> None:
    code, location, message = refusal(polygon(BOW_TIE))

    assert (code, location) == ("polygon_self_intersecting", ("Polygon", "coordinates"))
    assert "at lng 1, lat 1" in message


def test_a_hole_outside_its_shell_is_refused() -> None:
    code, _, message = refusal(polygon(SQUARE, [[5, 5], [5, 6], [6, 6], [5, 5]]))

    assert code == "invalid_area"
    assert "Hole lies outside shell" in message


def test_a_bad_part_of_a_multipolygon_is_named() -> None:
    code, location, _ = refusal(multipolygon([EAST_OF_SPLIT], [BOW_TIE]))

    assert (code, location) == ("polygon_self_intersecting", ("MultiPolygon", "coordinates", 1))


def test_overlapping_parts_are_refused() -> None:
    code, location, message = refusal(multipolygon([SQUARE], [[[3, 3], [6, 3], [6, 6], [3, 6], [3, 3]]]))

    assert code == "polygon_self_intersecting"
    assert location == ("MultiPolygon", "coordinates")
    assert message.startswith("the polygons overlap")


def test_too_many_positions_in_all_are_refused() -> None:
    # Two parts, each under the cap, over it together.
    half = MAX_AREA_POSITIONS // 2 + 1
    ring = [[i / half, 0.0] for i in range(half - 2)] + [[0.5, 1.0], [0.0, 0.0]]
    far = [[lng + 10, lat] for lng, lat in ring]

    assert area(polygon(ring)).contains(lat=0.5, lng=0.5)
    code, location, _ = refusal(multipolygon([ring], [far]))
    assert (code, location) == ("area_too_large", ("MultiPolygon", "coordinates"))


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "Point", "coordinates": [0, 0]},
        {"coordinates": [SQUARE]},
        {"type": "Polygon", "coordinates": []},
        {"type": "MultiPolygon", "coordinates": []},
        {"type": "Polygon", "coordinates": [SQUARE], "bbox": [0, 0]},
        {"type": "polygon", "coordinates": [SQUARE]},
    ],
)
def test_other_shapes_are_refused(raw: dict[str, Any]) -> None:
    refusal(raw)


def test_a_bounding_box_is_accepted_and_ignored() -> None:
    boxed = area({**polygon(SQUARE), "bbox": [0, 0, 4, 4]})
    split = area({**multipolygon([SQUARE]), "bbox": [0, 0, 4, 4]})

    assert boxed.contains(2, 2)
    assert split.contains(2, 2)
    assert not boxed.contains(5, 5)
