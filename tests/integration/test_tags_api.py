"""Device tags over HTTP: tag and untag, bulk changes, listings, bad input, scopes."""

import base64
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.client import (
    A,
    RunningStack,
    all_items,
    assert_error,
    bulk_tag,
    create_key,
    device_path,
    fresh_id,
    fresh_tag,
    identify,
    listed_count,
    read_device,
    tag_devices_path,
    tag_path,
    tagged_ids,
    tilde_encoded,
)

MAX_TAGS_PER_DEVICE = 20


def new_device(stack: RunningStack, prefix: str = "fcm:tags-") -> str:
    device_id = fresh_id(prefix)
    identify(stack, device_id, "tag-user")
    return device_id


def test_tag_and_untag_a_device(stack: RunningStack) -> None:
    device_id, tag = new_device(stack), fresh_tag()

    tagged = stack.api("PUT", tag_path(device_id, tag), stack.key(A))
    again = stack.api("PUT", tag_path(device_id, tag), stack.key(A))

    assert tagged.status_code == 200, tagged.text
    assert (tagged.json()["device_id"], tagged.json()["tags"]) == (device_id, [tag])
    assert again.status_code == 200
    assert again.json() == tagged.json()  # idempotent: nothing written
    assert read_device(stack, device_id) == tagged.json()
    assert all_items(stack, tag_devices_path(tag)) == [tagged.json()]
    assert listed_count(stack, tag) == 1

    untagged = stack.api("DELETE", tag_path(device_id, tag), stack.key(A))
    twice = stack.api("DELETE", tag_path(device_id, tag), stack.key(A))

    assert untagged.status_code == 200, untagged.text
    assert untagged.json()["tags"] == []
    assert_error(twice, 404, "tag_not_on_device", "tag")
    assert listed_count(stack, tag) == 0  # listed with 0 until the cleanup job deletes it
    assert all_items(stack, tag_devices_path(tag)) == []


def test_bulk_add_and_remove(stack: RunningStack) -> None:
    tag = fresh_tag()
    ids = [new_device(stack) for _ in range(5)]
    ghost = f"fcm:ghost-{uuid.uuid4().hex}"

    first = bulk_tag(stack, tag, [*ids[:4], ids[0], ghost, 7, ""], [])
    second = bulk_tag(stack, tag, [ids[4], ids[3]], [ids[0], ids[1], None])

    assert first == {
        "added": 4,
        "removed": 0,
        "unchanged": 1,
        "not_found": [ghost],
        "too_many_tags": [],
        "invalid": ["7", ""],
        "failed": [],
        "device_count": 4,
    }
    assert second == {
        "added": 1,
        "removed": 2,
        "unchanged": 1,
        "not_found": [],
        "too_many_tags": [],
        "invalid": ["null"],
        "failed": [],
        "device_count": 3,
    }
    assert tagged_ids(stack, tag) == sorted(ids[2:5])
    assert listed_count(stack, tag) == 3
    assert read_device(stack, ids[0])["tags"] == []


def test_bulk_of_many_devices_keeps_the_count_exact(stack: RunningStack) -> None:
    tag = fresh_tag()
    ids = [new_device(stack, "hms:bulk-") for _ in range(110)]  # three transactions

    added = bulk_tag(stack, tag, ids, [])
    mixed = bulk_tag(stack, tag, [], ids[:60])

    assert (added["added"], added["device_count"], added["failed"]) == (110, 110, [])
    assert (mixed["removed"], mixed["device_count"]) == (60, 50)
    assert tagged_ids(stack, tag) == sorted(ids[60:])
    assert listed_count(stack, tag) == 50


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        pytest.param({"add": ["d"] * 1001}, "batch_too_large", "add", id="add-too-long"),
        pytest.param({"remove": ["d"] * 1001}, "batch_too_large", "remove", id="remove-too-long"),
        pytest.param({"add": ["a"] * 600, "remove": ["r"] * 401}, "batch_too_large", None, id="together-too-long"),
        pytest.param({"add": ["same"], "remove": ["same"]}, "id_in_add_and_remove", "remove", id="in-both"),
        pytest.param({"add": "d1"}, "invalid_input", "add", id="add-not-a-list"),
        pytest.param({"add": [], "tags": []}, "invalid_input", "tags", id="unknown-field"),
        pytest.param([], "invalid_input", None, id="body-not-an-object"),
    ],
)
def test_bulk_rejects_bad_bodies(stack: RunningStack, body: Any, code: str, field: str | None) -> None:
    tag = fresh_tag()

    assert_error(stack.api("POST", tag_devices_path(tag), stack.key(A), json=body), 422, code, field)
    assert listed_count(stack, tag) is None  # nothing written


def test_bulk_rejects_malformed_json(stack: RunningStack) -> None:
    response = stack.api(
        "POST",
        tag_devices_path(fresh_tag()),
        stack.key(A),
        data=b'{"add": [',
        headers={"content-type": "application/json"},
    )

    assert_error(response, 422, "malformed_json", None)


def test_bulk_of_exactly_1000_ids_is_accepted(stack: RunningStack) -> None:
    device_id, tag = new_device(stack), fresh_tag()

    outcome = bulk_tag(
        stack, tag, [device_id, *(f"ghost-{n}" for n in range(599))], [f"ghost-r{n}" for n in range(400)]
    )

    assert (outcome["added"], len(outcome["not_found"]), outcome["device_count"]) == (1, 999, 1)


BAD_TAGS = [
    pytest.param("bad tag", id="space"),
    pytest.param("x" * 65, id="too-long"),
    pytest.param("tag*", id="star"),
    pytest.param("étiquette", id="non-ascii"),
    pytest.param("50%", id="percent"),
    pytest.param("~dGFn", id="encoded-mark"),
]


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_bad_tag_names_are_rejected_on_every_route(stack: RunningStack, tag: str) -> None:
    device_id = new_device(stack)
    before = read_device(stack, device_id)

    for method, path, body in [
        ("PUT", tag_path(device_id, tag), None),
        ("DELETE", tag_path(device_id, tag), None),
        ("POST", tag_devices_path(tag), {"add": [device_id]}),
        ("GET", tag_devices_path(tag), None),
    ]:
        assert_error(stack.api(method, path, stack.key(A), json=body), 422, "invalid_path_parameter", "tag")
    assert read_device(stack, device_id) == before


def test_tag_with_a_slash_never_reaches_a_route(stack: RunningStack) -> None:
    device_id = new_device(stack)

    response = stack.api("GET", "/v1/tags/a%2Fb/devices", stack.key(A))

    assert_error(response, 404, "route_not_found")
    assert read_device(stack, device_id)["tags"] == []


def test_every_allowed_character_and_the_longest_name(stack: RunningStack) -> None:
    device_id = new_device(stack)
    names = [f"Az09_.:-{uuid.uuid4().hex[:8]}", ("L" + uuid.uuid4().hex * 2)[:64]]

    for name in names:
        response = stack.api("PUT", tag_path(device_id, name), stack.key(A))
        assert response.status_code == 200, response.text
        assert tagged_ids(stack, name) == [device_id]
        assert bulk_tag(stack, name, [], [device_id])["device_count"] == 0
    assert read_device(stack, device_id)["tags"] == []


@pytest.mark.parametrize(
    "device_id",
    [
        "https://updates.push.services.mozilla.com/wpush/v2/{unique}",
        "https://push.example.com/{unique}/tags/vip",  # ends like the tag route itself
        "https://db5p.notify.windows.com/w/?token={unique}",  # '?' needs the base64url form
    ],
)
def test_device_ids_with_slashes(stack: RunningStack, device_id: str) -> None:
    unique, tag = device_id.format(unique=uuid.uuid4().hex), fresh_tag()
    response = stack.api(
        "PUT", f"/v1/devices/{_encoded(unique)}", stack.key(A), json={"user_id": "u", "transport": "WebPush"}
    )
    assert response.status_code == 200, response.text
    path = f"/v1/devices/{_encoded(unique)}/tags/{tag}"

    tagged = stack.api("PUT", path, stack.key(A))

    assert tagged.status_code == 200, tagged.text
    assert (tagged.json()["device_id"], tagged.json()["tags"]) == (unique, [tag])
    assert tagged_ids(stack, tag) == [unique]
    assert bulk_tag(stack, tag, [unique], [])["unchanged"] == 1
    untagged = stack.api("DELETE", path, stack.key(A))
    assert (untagged.status_code, untagged.json()["tags"]) == (200, [])


def _encoded(device_id: str) -> str:
    """URL-encoded, or '~' + base64url when the path cannot carry the id."""
    if "?" in device_id or device_id.endswith("/tags/vip"):
        return tilde_encoded(device_id)
    return quote(device_id, safe="")


def test_unknown_device_and_unknown_tag(stack: RunningStack) -> None:
    ghost, tag = f"fcm:ghost-{uuid.uuid4().hex}", fresh_tag()

    assert_error(stack.api("PUT", tag_path(ghost, tag), stack.key(A)), 404, "device_not_found", "device_id")
    assert_error(stack.api("DELETE", tag_path(ghost, tag), stack.key(A)), 404, "device_not_found", "device_id")
    assert_error(stack.api("GET", tag_devices_path(tag), stack.key(A)), 404, "tag_not_found", "tag")
    assert listed_count(stack, tag) is None  # the refused tagging created no tag


def test_a_device_carries_at_most_twenty_tags(stack: RunningStack) -> None:
    device_id, other = new_device(stack), new_device(stack)
    prefix = uuid.uuid4().hex[:8]
    assert bulk_tag(stack, f"{prefix}-0", [device_id], [])["added"] == 1
    for number in range(1, MAX_TAGS_PER_DEVICE):
        assert stack.api("PUT", tag_path(device_id, f"{prefix}-{number}"), stack.key(A)).status_code == 200
    extra = fresh_tag()

    refused = stack.api("PUT", tag_path(device_id, extra), stack.key(A))
    outcome = bulk_tag(stack, extra, [device_id, other], [])

    assert_error(refused, 409, "too_many_tags", "tag")
    assert (outcome["added"], outcome["too_many_tags"], outcome["device_count"]) == (1, [device_id], 1)
    assert len(read_device(stack, device_id)["tags"]) == MAX_TAGS_PER_DEVICE


def test_listings_paginate(stack: RunningStack) -> None:
    tag = fresh_tag()
    ids = [new_device(stack, "apns:page-") for _ in range(7)]
    bulk_tag(stack, tag, ids, [])

    devices = all_items(stack, tag_devices_path(tag), limit=3)
    tags = all_items(stack, "/v1/tags", limit=2)

    assert sorted(device["device_id"] for device in devices) == sorted(ids)
    assert all(device == read_device(stack, device["device_id"]) for device in devices)
    assert [item["tag"] for item in tags] == sorted(item["tag"] for item in tags)
    assert {"tag": tag, "device_count": 7} in [{"tag": t["tag"], "device_count": t["device_count"]} for t in tags]


@pytest.mark.parametrize("path", ["/v1/tags", "/v1/tags/{tag}/devices"])
@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"cursor": "!!not-a-cursor!!"}, "invalid_cursor", "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'{"shard": 999}').decode()}, "invalid_cursor", "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'{"after": 5}').decode()}, "invalid_cursor", "cursor"),
        ({"limit": 0}, "invalid_input", "limit"),
        ({"limit": 201}, "invalid_input", "limit"),
        ({"limit": "many"}, "invalid_input", "limit"),
    ],
)
def test_list_rejects_bad_cursors_and_limits(
    stack: RunningStack, path: str, params: dict[str, Any], code: str, field: str
) -> None:
    device_id, tag = new_device(stack), fresh_tag()
    stack.api("PUT", tag_path(device_id, tag), stack.key(A))

    response = stack.api("GET", path.format(tag=tag), stack.key(A), params=params)

    assert_error(response, 422, code, field)


def test_logout_releases_the_tags(stack: RunningStack) -> None:
    device_id, stayer, tag = new_device(stack), new_device(stack), fresh_tag()
    bulk_tag(stack, tag, [device_id, stayer], [])

    deleted = stack.api("DELETE", device_path(device_id), stack.key(A), params={"user_id": "tag-user"})

    assert deleted.status_code == 204, deleted.text
    assert listed_count(stack, tag) == 1
    assert tagged_ids(stack, tag) == [stayer]


def test_identify_and_dissociate_keep_the_tags(stack: RunningStack) -> None:
    device_id, tag = new_device(stack), fresh_tag()
    stack.api("PUT", tag_path(device_id, tag), stack.key(A))

    moved = identify(stack, device_id, user_id="another-user")
    dissociated = stack.api("DELETE", device_path(device_id, "/user"), stack.key(A))

    assert (moved["user_id"], moved["tags"]) == ("another-user", [tag])
    assert (dissociated.json()["user_id"], dissociated.json()["tags"]) == (None, [tag])
    assert tagged_ids(stack, tag) == [device_id]


def test_scopes(stack: RunningStack) -> None:
    device_id, tag = new_device(stack), fresh_tag()
    stack.api("PUT", tag_path(device_id, tag), stack.key(A))
    reader = create_key(stack, ["read"], name="reader")["api_key"]

    assert stack.api("GET", "/v1/tags", reader).status_code == 200
    assert stack.api("GET", tag_devices_path(tag), reader).status_code == 200
    assert_error(stack.api("PUT", tag_path(device_id, fresh_tag()), reader), 403, "insufficient_scope")
    assert_error(stack.api("DELETE", tag_path(device_id, tag), reader), 403, "insufficient_scope")
    assert_error(
        stack.api("POST", tag_devices_path(tag), reader, json={"remove": [device_id]}), 403, "insufficient_scope"
    )
    assert read_device(stack, device_id)["tags"] == [tag]


def test_openapi_documents_the_routes_and_fields(stack: RunningStack) -> None:
    schema = stack.api("GET", "/openapi.json").json()
    paths = schema["paths"]

    assert set(paths["/v1/devices/{device_id}/tags/{tag}"]) >= {"put", "delete"}
    assert set(paths["/v1/tags/{tag}/devices"]) >= {"get", "post"}
    assert "get" in paths["/v1/tags"]
    for operation in (*paths["/v1/devices/{device_id}/tags/{tag}"].values(), *paths["/v1/tags/{tag}/devices"].values()):
        assert operation["summary"]
        assert all(parameter.get("description") for parameter in operation["parameters"])
    components = schema["components"]["schemas"]
    for model in ("BulkTagDevices", "BulkTagOutcome", "Tag"):
        assert all(field.get("description") for field in components[model]["properties"].values()), model
