"""App B's key can neither read nor change app A's tags and tagged devices."""

import uuid

from tests.support.client import (
    A,
    B,
    RunningStack,
    all_items,
    assert_error,
    bulk_tag,
    device_path,
    first_cursor,
    fresh_tag,
    identify,
    listed_count,
    read_device,
    tag_devices_path,
    tag_path,
    tagged_ids,
)

ROUTES_COVERED = {
    ("PUT", "/v1/devices/{device_id}/tags/{tag}"),
    ("DELETE", "/v1/devices/{device_id}/tags/{tag}"),
    ("POST", "/v1/tags/{tag}/devices"),
    ("GET", "/v1/tags"),
    ("GET", "/v1/tags/{tag}/devices"),
}


class AppATagged:
    """Two devices of app A carrying a fresh tag, with ids that hold ':' and '/'."""

    def __init__(self, stack: RunningStack) -> None:
        unique = uuid.uuid4().hex
        self.tag = fresh_tag()
        self.device_ids = [f"fcm:iso-tags-{unique}/{number}" for number in range(2)]
        for device_id in self.device_ids:
            identify(stack, device_id, f"iso-{unique}", app=A)
        assert bulk_tag(stack, self.tag, self.device_ids, [], app=A)["device_count"] == 2
        self.devices = [read_device(stack, device_id, app=A) for device_id in self.device_ids]

    def assert_untouched(self, stack: RunningStack) -> None:
        assert [read_device(stack, device_id, app=A) for device_id in self.device_ids] == self.devices
        assert listed_count(stack, self.tag, app=A) == 2
        assert tagged_ids(stack, self.tag, app=A) == sorted(self.device_ids)


def test_b_cannot_tag_or_untag_devices_of_a(stack: RunningStack) -> None:
    a = AppATagged(stack)
    device_id = a.device_ids[0]

    assert_error(stack.api("PUT", tag_path(device_id, fresh_tag()), stack.key(B)), 404, "device_not_found")
    assert_error(stack.api("PUT", tag_path(device_id, a.tag), stack.key(B)), 404, "device_not_found")
    assert_error(stack.api("DELETE", tag_path(device_id, a.tag), stack.key(B)), 404, "device_not_found")

    a.assert_untouched(stack)
    assert listed_count(stack, a.tag, app=B) is None  # B's refused calls created no tag in B either


def test_b_bulk_cannot_change_devices_of_a(stack: RunningStack) -> None:
    a = AppATagged(stack)

    outcome = bulk_tag(stack, a.tag, [a.device_ids[0]], [a.device_ids[1]], app=B)
    fresh = bulk_tag(stack, fresh_tag(), a.device_ids, [], app=B)

    assert (outcome["added"], outcome["removed"], outcome["device_count"]) == (0, 0, 0)
    assert sorted(outcome["not_found"]) == sorted(a.device_ids)
    assert (fresh["added"], sorted(fresh["not_found"])) == (0, sorted(a.device_ids))
    a.assert_untouched(stack)


def test_b_cannot_list_tags_or_devices_of_a(stack: RunningStack) -> None:
    a = AppATagged(stack)
    second = fresh_tag()
    bulk_tag(stack, second, a.device_ids, [], app=A)
    tags_cursor = first_cursor(stack, "/v1/tags", app=A)
    devices_cursor = first_cursor(stack, tag_devices_path(a.tag), app=A)

    b_tags = {item["tag"] for item in all_items(stack, "/v1/tags", app=B)}
    assert_error(stack.api("GET", tag_devices_path(a.tag), stack.key(B)), 404, "tag_not_found", "tag")
    from_a_cursor = stack.api("GET", "/v1/tags", stack.key(B), params={"cursor": tags_cursor, "limit": 200})

    assert not {a.tag, second} & b_tags
    assert from_a_cursor.status_code == 200, from_a_cursor.text
    assert not {a.tag, second} & {item["tag"] for item in from_a_cursor.json()["items"]}
    # B's own tag of the same name: A's cursor pages B's members only.
    b_device = f"fcm:iso-b-{uuid.uuid4().hex}"
    identify(stack, b_device, "b-user", app=B)
    bulk_tag(stack, a.tag, [b_device], [], app=B)
    response = stack.api("GET", tag_devices_path(a.tag), stack.key(B), params={"cursor": devices_cursor})
    assert response.status_code == 200, response.text
    assert {device["device_id"] for device in response.json()["items"]} <= {b_device}
    assert all(device["user_id"] == "b-user" for device in response.json()["items"])


def test_same_tag_and_device_id_in_b_are_separate(stack: RunningStack) -> None:
    a = AppATagged(stack)
    device_id = a.device_ids[0]
    b_device = identify(stack, device_id, "b-owner", app=B)  # B's own device, same id

    tagged = stack.api("PUT", tag_path(device_id, a.tag), stack.key(B))
    b_listing = all_items(stack, tag_devices_path(a.tag), app=B)
    untagged = stack.api("DELETE", tag_path(device_id, a.tag), stack.key(B))
    deleted = stack.api("DELETE", device_path(device_id), stack.key(B))

    assert tagged.status_code == 200, tagged.text
    assert (tagged.json()["user_id"], tagged.json()["tags"]) == ("b-owner", [a.tag])
    assert [(device["device_id"], device["user_id"]) for device in b_listing] == [(device_id, "b-owner")]
    assert untagged.status_code == 200
    assert deleted.status_code == 204
    assert listed_count(stack, a.tag, app=B) == 0
    assert b_device["tags"] == []
    a.assert_untouched(stack)
