"""App B's key can neither read, list nor delete app A's regions (see test_isolation.py).

App A is ``stack.key(0)``, app B ``stack.key(1)``. Each test makes fresh
regions in A with a tag of its own, calls a route with B's key, and checks
that nothing of A leaks out or changes.
"""

from typing import Any
from uuid import uuid4

import pytest

from tests.support.client import A, B, RunningStack, all_items, assert_error, create_region, every_cursor, read_region

ROUTES_COVERED = {
    ("POST", "/v1/regions"),
    ("GET", "/v1/regions"),
    ("POST", "/v1/regions/batch"),
    ("GET", "/v1/regions/{region_id}"),
    ("DELETE", "/v1/regions/{region_id}"),
}
PAGE = 50  # the most a regions page may hold


def region(tag: str, region_type: str = "poi") -> dict[str, Any]:
    body: dict[str, Any] = {"type": region_type, "name": f"iso {region_type}", "tags": [tag, "iso"]}
    body.update(country="FR", lat=48.85, lng=2.35)
    if region_type == "geozone":
        body["geometry"] = {"kind": "circle", "radius_m": 100}
    return body


def all_regions(stack: RunningStack, app: int, cursor: str | None = None, **query: str) -> list[dict[str, Any]]:
    return all_items(stack, "/v1/regions", app=app, limit=PAGE, cursor=cursor, **query)


def region_ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["region_id"] for item in items}


def matches(item: dict[str, Any], query: dict[str, str]) -> bool:
    return all(value in item["tags"] if name == "tag" else item[name] == value for name, value in query.items())


class AppARegions:
    """A POI and a geozone of app A under a fresh tag, for one test."""

    def __init__(self, stack: RunningStack) -> None:
        self.tag = f"iso-{uuid4().hex}"
        self.regions = [
            create_region(stack, region(self.tag), app=A),
            create_region(stack, region(self.tag, "geozone"), app=A),
        ]
        self.ids = region_ids(self.regions)


@pytest.fixture
def a_regions(stack: RunningStack) -> AppARegions:
    return AppARegions(stack)


def assert_a_untouched(stack: RunningStack, a_regions: AppARegions) -> None:
    for created in a_regions.regions:
        assert read_region(stack, created["region_id"], app=A) == created


def test_get_region_of_another_app_is_not_found(stack: RunningStack, a_regions: AppARegions) -> None:
    for region_id in a_regions.ids:
        response = stack.api("GET", f"/v1/regions/{region_id}", key=stack.key(B))
        assert_error(response, 404, "region_not_found", "region_id")


def test_delete_region_of_another_app_is_not_found(stack: RunningStack, a_regions: AppARegions) -> None:
    for region_id in a_regions.ids:
        response = stack.api("DELETE", f"/v1/regions/{region_id}", key=stack.key(B))
        assert_error(response, 404, "region_not_found", "region_id")
    assert_a_untouched(stack, a_regions)


@pytest.mark.parametrize("query", [{}, {"tag": "iso"}, {"type": "poi"}, {"type": "geozone"}, {"country": "FR"}])
def test_list_regions_of_another_app_hides_them(
    stack: RunningStack, a_regions: AppARegions, query: dict[str, str]
) -> None:
    matching = {item["region_id"] for item in a_regions.regions if matches(item, query)}
    assert matching
    assert matching <= region_ids(all_regions(stack, A, **query))

    listed = all_regions(stack, B, **query)
    assert not region_ids(listed) & a_regions.ids
    # Whatever B lists, B can read: none of it is A's.
    for item in listed:
        assert read_region(stack, item["region_id"], app=B) == item
    assert all_regions(stack, B, tag=a_regions.tag) == []


def test_list_cursor_of_another_app_reveals_nothing(stack: RunningStack, a_regions: AppARegions) -> None:
    # Every cursor A can get, so that every shard position of A is tried on B.
    cursors = every_cursor(stack, "/v1/regions", app=A, tag="iso")
    assert cursors

    for cursor in cursors:
        assert not region_ids(all_regions(stack, B, cursor=cursor)) & a_regions.ids


def test_create_region_belongs_to_the_calling_app(stack: RunningStack, a_regions: AppARegions) -> None:
    b_region = create_region(stack, region(a_regions.tag), app=B)

    assert read_region(stack, b_region["region_id"], app=B) == b_region
    assert_error(stack.api("GET", f"/v1/regions/{b_region['region_id']}", key=stack.key(A)), 404, "region_not_found")
    assert region_ids(all_regions(stack, A, tag=a_regions.tag)) == a_regions.ids
    assert region_ids(all_regions(stack, B, tag=a_regions.tag)) == {b_region["region_id"]}


def test_batch_import_belongs_to_the_calling_app(stack: RunningStack, a_regions: AppARegions) -> None:
    body = {"regions": [region(a_regions.tag), region(a_regions.tag, "city")]}
    response = stack.api("POST", "/v1/regions/batch", key=stack.key(B), json=body)

    assert response.status_code == 200, response.text
    b_ids = {item["region_id"] for item in response.json()["results"]}
    assert len(b_ids) == 2
    assert region_ids(all_regions(stack, B, tag=a_regions.tag)) == b_ids
    assert region_ids(all_regions(stack, A, tag=a_regions.tag)) == a_regions.ids
    for region_id in b_ids:
        assert_error(stack.api("GET", f"/v1/regions/{region_id}", key=stack.key(A)), 404, "region_not_found")
    assert_a_untouched(stack, a_regions)
