"""Regions through the local API: gateway, authorizer, handler, DynamoDB.

The stack is shared by the session, so every test tags its regions with a
fresh tag and lists only that tag.
"""

from typing import Any

import pytest

from tests.support.client import (
    RunningStack,
    all_items,
    assert_error,
    create_key,
    create_region,
    fresh_tag,
    read_region,
)

SQUARE = [{"lat": 48.0, "lng": 2.0}, {"lat": 48.0, "lng": 3.0}, {"lat": 49.0, "lng": 3.0}, {"lat": 49.0, "lng": 2.0}]
BOW_TIE = [{"lat": 0.0, "lng": 0.0}, {"lat": 2.0, "lng": 2.0}, {"lat": 0.0, "lng": 2.0}, {"lat": 2.0, "lng": 0.0}]
PAGE = 2


def region(region_type: str = "poi", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": region_type, "name": "Louvre", "country": "FR", "lat": 48.8606, "lng": 2.3376}
    body.update(overrides)
    return body


def polygon(points: list[dict[str, float]], closed: bool = True) -> dict[str, Any]:
    return {"kind": "polygon", "points": [*points, points[0]] if closed else points}


def list_all(stack: RunningStack, limit: int = PAGE, **query: str) -> list[dict[str, Any]]:
    """Every region matching ``query``, a few per page, so that listings cross pages."""
    return all_items(stack, "/v1/regions", limit=limit, **query)


def names(items: list[dict[str, Any]]) -> list[str]:
    return sorted(item["name"] for item in items)


def test_create_get_delete(stack: RunningStack) -> None:
    tag = fresh_tag()
    created = create_region(stack, region(tags=[tag, "museum"]))

    assert created["region_id"].startswith("rgn_")
    assert {key: created[key] for key in ("type", "name", "tags", "country", "lat", "lng", "geometry")} == {
        "type": "poi",
        "name": "Louvre",
        "tags": [tag, "museum"],
        "country": "FR",
        "lat": 48.8606,
        "lng": 2.3376,
        "geometry": None,
    }
    assert read_region(stack, created["region_id"]) == created

    response = stack.api("DELETE", f"/v1/regions/{created['region_id']}", key=stack.key(0))
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_error(stack.api("GET", f"/v1/regions/{created['region_id']}", key=stack.key(0)), 404, "region_not_found")
    assert_error(
        stack.api("DELETE", f"/v1/regions/{created['region_id']}", key=stack.key(0)),
        404,
        "region_not_found",
        "region_id",
    )


@pytest.mark.parametrize("geometry", [polygon(SQUARE), {"kind": "circle", "radius_m": 150}], ids=["polygon", "circle"])
def test_geozones_keep_their_geometry(stack: RunningStack, geometry: dict[str, Any]) -> None:
    created = create_region(stack, region("geozone", name="Zone", geometry=geometry))

    expected = {"points": None, "radius_m": None, **geometry}
    assert created["geometry"] == expected
    assert read_region(stack, created["region_id"])["geometry"] == expected


@pytest.mark.parametrize("region_id", ["rgn_" + "0" * 32, "batch", "not-a-region"])
def test_unknown_region_is_not_found(stack: RunningStack, region_id: str) -> None:
    assert_error(stack.api("GET", f"/v1/regions/{region_id}", key=stack.key(0)), 404, "region_not_found", "region_id")
    assert_error(
        stack.api("DELETE", f"/v1/regions/{region_id}", key=stack.key(0)), 404, "region_not_found", "region_id"
    )


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"lat": 90.5}, "invalid_input", "lat"),
        ({"lng": -180.01}, "invalid_input", "lng"),
        ({"country": "fr"}, "invalid_input", "country"),
        ({"type": "planet"}, "invalid_input", "type"),
        ({"name": None}, "invalid_input", "name"),
        ({"geometry": {"kind": "circle", "radius_m": 5}}, "invalid_input", "geometry"),
        ({"type": "geozone"}, "missing_field", "geometry"),
        ({"type": "geozone", "geometry": {"kind": "circle", "radius_m": 0}}, "invalid_input", "geometry.radius_m"),
        ({"type": "geozone", "geometry": {"kind": "circle"}}, "missing_field", "geometry.radius_m"),
        (
            {"type": "geozone", "geometry": polygon([*SQUARE[:2], {"lat": 95.0, "lng": 3.0}, SQUARE[3]])},
            "invalid_input",
            "geometry.points[2].lat",
        ),
        ({"type": "geozone", "geometry": polygon(SQUARE, closed=False)}, "polygon_not_closed", "geometry.points[3]"),
        ({"type": "geozone", "geometry": polygon(BOW_TIE)}, "polygon_self_intersecting", "geometry.points"),
        ({"type": "geozone", "geometry": polygon(SQUARE[:2])}, "polygon_too_few_points", "geometry.points"),
    ],
)
def test_create_rejects_bad_regions_and_creates_nothing(
    stack: RunningStack, overrides: dict[str, Any], code: str, field: str
) -> None:
    tag = fresh_tag()
    response = stack.api("POST", "/v1/regions", key=stack.key(0), json=region(tags=[tag], **overrides))

    assert_error(response, 422, code, field)
    assert list_all(stack, tag=tag) == []


def test_create_names_a_missing_field(stack: RunningStack) -> None:
    body = region()
    del body["lat"]
    assert_error(stack.api("POST", "/v1/regions", key=stack.key(0), json=body), 422, "missing_field", "lat")


def test_batch_imports_the_good_regions_and_names_each_bad_one(stack: RunningStack) -> None:
    tag = fresh_tag()
    regions: list[Any] = [
        region(name="A", tags=[tag]),
        region(name="B", tags=[tag], lat=-95),
        region("geozone", name="C", tags=[tag], geometry=polygon(SQUARE)),
        region("geozone", name="D", tags=[tag], geometry=polygon(BOW_TIE)),
        region("city", name="E", tags=[tag], country="Fr"),
        42,
    ]

    response = stack.api("POST", "/v1/regions/batch", key=stack.key(0), json={"regions": regions})

    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["succeeded"], result["failed"]) == (2, 4)
    assert [item["index"] for item in result["results"]] == list(range(6))
    errors = {
        item["index"]: (item["error"]["code"], item["error"]["field"]) for item in result["results"] if item["error"]
    }
    assert errors == {
        1: ("invalid_input", "regions[1].lat"),
        3: ("polygon_self_intersecting", "regions[3].geometry.points"),
        4: ("invalid_input", "regions[4].country"),
        5: ("invalid_input", "regions[5]"),
    }
    imported = {item["region_id"] for item in result["results"] if item["ok"]}
    assert names([read_region(stack, region_id) for region_id in imported]) == ["A", "C"]
    assert names(list_all(stack, tag=tag)) == ["A", "C"]


def test_batch_of_max_size_is_imported(stack: RunningStack) -> None:
    tag = fresh_tag()
    regions = [region(name=f"r{index:03d}", tags=[tag]) for index in range(100)]

    response = stack.api("POST", "/v1/regions/batch", key=stack.key(0), json={"regions": regions})

    assert response.status_code == 200, response.text
    assert (response.json()["succeeded"], response.json()["failed"]) == (100, 0)
    assert names(list_all(stack, limit=50, tag=tag)) == [f"r{index:03d}" for index in range(100)]


def test_batch_too_large_is_refused_whole(stack: RunningStack) -> None:
    tag = fresh_tag()
    regions = [region(tags=[tag])] * 101

    response = stack.api("POST", "/v1/regions/batch", key=stack.key(0), json={"regions": regions})

    assert_error(response, 422, "batch_too_large", "regions")
    assert list_all(stack, tag=tag) == []


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [({}, "missing_field", "regions"), ({"regions": {"a": 1}}, "invalid_input", "regions")],
)
def test_batch_body_must_hold_a_list(stack: RunningStack, body: dict[str, Any], code: str, field: str) -> None:
    assert_error(stack.api("POST", "/v1/regions/batch", key=stack.key(0), json=body), 422, code, field)


def test_list_filters_and_paginates(stack: RunningStack) -> None:
    tag = fresh_tag()
    regions = [
        region("poi", name="poi-fr", tags=[tag]),
        region("poi", name="poi-es", tags=[tag], country="ES"),
        region("poi", name="poi-fr-2", tags=[tag, "museum"]),
        region("city", name="city-fr", tags=[tag]),
        region("city", name="city-es", tags=[tag, "museum"], country="ES"),
        region("country", name="country-fr", tags=[tag]),
        region("geozone", name="zone-fr", tags=[tag], geometry={"kind": "circle", "radius_m": 10}),
        region("poi", name="untagged-fr"),
    ]
    response = stack.api("POST", "/v1/regions/batch", key=stack.key(0), json={"regions": regions})
    assert response.json()["succeeded"] == len(regions), response.text

    assert names(list_all(stack, tag=tag)) == sorted(body["name"] for body in regions[:-1])
    assert names(list_all(stack, tag=tag, type="poi")) == ["poi-es", "poi-fr", "poi-fr-2"]
    assert names(list_all(stack, tag=tag, country="ES")) == ["city-es", "poi-es"]
    assert names(list_all(stack, tag=tag, type="city", country="FR")) == ["city-fr"]
    assert names(list_all(stack, tag=tag, type="geozone")) == ["zone-fr"]
    assert "untagged-fr" in names(list_all(stack, limit=50, type="poi", country="FR"))
    assert list_all(stack, tag=fresh_tag()) == []


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ({"type": "planet"}, "invalid_input", "type"),
        ({"country": "fr"}, "invalid_input", "country"),
        ({"tag": ""}, "invalid_input", "tag"),
        ({"limit": "0"}, "invalid_input", "limit"),
        ({"limit": "51"}, "invalid_input", "limit"),
        ({"cursor": "garbage!"}, "invalid_cursor", "cursor"),
    ],
)
def test_list_rejects_bad_query(stack: RunningStack, query: dict[str, str], code: str, field: str) -> None:
    assert_error(stack.api("GET", "/v1/regions", key=stack.key(0), params=query), 422, code, field)


def test_a_read_only_key_can_read_but_not_write(stack: RunningStack) -> None:
    reader = create_key(stack, ["read"], name="reader")["api_key"]
    created = create_region(stack, region(tags=[fresh_tag()]))

    assert stack.api("GET", f"/v1/regions/{created['region_id']}", key=reader).json() == created
    assert stack.api("GET", "/v1/regions", key=reader).status_code == 200
    assert_error(stack.api("POST", "/v1/regions", key=reader, json=region()), 403, "insufficient_scope")
    assert_error(stack.api("POST", "/v1/regions/batch", key=reader, json={"regions": []}), 403, "insufficient_scope")
    assert_error(stack.api("DELETE", f"/v1/regions/{created['region_id']}", key=reader), 403, "insufficient_scope")
    assert read_region(stack, created["region_id"]) == created


def test_openapi_documents_the_regions_routes(stack: RunningStack) -> None:
    document = stack.api("GET", "/openapi.json").json()
    paths = document["paths"]

    operations = [
        paths["/v1/regions"]["post"],
        paths["/v1/regions"]["get"],
        paths["/v1/regions/batch"]["post"],
        paths["/v1/regions/{region_id}"]["get"],
        paths["/v1/regions/{region_id}"]["delete"],
    ]
    assert all(operation["tags"] == ["Regions"] for operation in operations)
    assert "201" in paths["/v1/regions"]["post"]["responses"]
    assert "204" in paths["/v1/regions/{region_id}"]["delete"]["responses"]
    assert {parameter["name"] for parameter in paths["/v1/regions"]["get"]["parameters"]} == {
        "type",
        "tag",
        "country",
        "cursor",
        "limit",
    }
    schemas = document["components"]["schemas"]
    for field in ("type", "name", "tags", "country", "lat", "lng", "geometry"):
        assert schemas["NewRegion"]["properties"][field].get("description"), field
    for field in ("kind", "points", "radius_m"):
        assert schemas["Geometry"]["properties"][field].get("description"), field
