"""Segments through the local API: create, members in bulk, counts, paging, delete."""

import uuid

from tests.support.client import (
    A,
    RunningStack,
    all_items,
    assert_error,
    change_members,
    new_segment,
    new_user,
    user_path,
)


def all_members(stack: RunningStack, segment_id: str, limit: int) -> list[str]:
    return [user["user_id"] for user in all_items(stack, f"/v1/segments/{segment_id}/members", limit=limit)]


def test_static_segment_members_and_counts(stack: RunningStack) -> None:
    segment = new_segment(stack)
    user_ids = [new_user(stack) for _ in range(5)]
    segment_id = segment["segment_id"]

    added = change_members(stack, segment_id, add=[*user_ids, "nobody", 42])
    removed = change_members(stack, segment_id, remove=user_ids[:2])
    member = stack.api("GET", user_path(user_ids[4]), stack.key(A)).json()

    assert segment["kind"] == "static"
    assert (segment["member_count"], segment["active_member_count"]) == (0, 0)
    assert {key: added[key] for key in ("added", "unchanged", "not_found", "invalid", "failed")} == {
        "added": 5,
        "unchanged": 0,
        "not_found": ["nobody"],
        "invalid": ["42"],
        "failed": [],
    }
    assert removed["removed"] == 2
    assert removed["segment"]["member_count"] == 3
    assert sorted(all_members(stack, segment_id, limit=2)) == sorted(user_ids[2:])
    assert member["segments"] == [segment_id]
    fetched = stack.api("GET", f"/v1/segments/{segment_id}", stack.key(A)).json()
    assert (fetched["member_count"], fetched["inactive_member_count"], fetched["active_member_count"]) == (3, 0, 3)
    listed = stack.api("GET", "/v1/segments", stack.key(A), params={"limit": 200}).json()["items"]
    assert segment_id in {item["segment_id"] for item in listed}


def test_criteria_segment_members_are_the_matching_users(stack: RunningStack) -> None:
    plan = f"plan-{uuid.uuid4().hex}"
    matching = {new_user(stack, {"plan": plan}) for _ in range(3)}
    new_user(stack, {"plan": "other"})
    segment = new_segment(stack, "criteria", {"field": "fields.plan", "op": "eq", "value": plan})

    members = all_members(stack, segment["segment_id"], limit=200)

    assert set(members) == matching
    assert segment["member_count"] is None
    refused = stack.api("POST", f"/v1/segments/{segment['segment_id']}/members", stack.key(A), json={"add": ["x"]})
    assert_error(refused, 409, "segment_not_static", "segment_id")


def test_delete_a_segment_frees_its_members_and_name(stack: RunningStack) -> None:
    segment = new_segment(stack)
    user_id = new_user(stack)
    change_members(stack, segment["segment_id"], add=[user_id])

    deleted = stack.api("DELETE", f"/v1/segments/{segment['segment_id']}", stack.key(A))
    again = stack.api("POST", "/v1/segments", stack.key(A), json={"name": segment["name"], "kind": "static"})

    assert deleted.status_code == 204
    assert_error(stack.api("GET", f"/v1/segments/{segment['segment_id']}", stack.key(A)), 404, "segment_not_found")
    assert stack.api("GET", user_path(user_id), stack.key(A)).json()["segments"] == []
    assert again.status_code == 201


def test_deleting_a_user_leaves_its_segments(stack: RunningStack) -> None:
    segment = new_segment(stack)
    leaver, stayer = new_user(stack), new_user(stack)
    change_members(stack, segment["segment_id"], add=[leaver, stayer])

    assert stack.api("DELETE", user_path(leaver), stack.key(A)).status_code == 204

    fetched = stack.api("GET", f"/v1/segments/{segment['segment_id']}", stack.key(A)).json()
    assert fetched["member_count"] == 1
    assert all_members(stack, segment["segment_id"], limit=50) == [stayer]


def test_bad_segment_requests(stack: RunningStack) -> None:
    segment = new_segment(stack)
    members_path = f"/v1/segments/{segment['segment_id']}/members"

    cases = [
        (
            stack.api("POST", "/v1/segments", stack.key(A), json={"name": segment["name"], "kind": "static"}),
            409,
            "segment_name_taken",
            "name",
        ),
        (
            stack.api("POST", "/v1/segments", stack.key(A), json={"name": "x", "kind": "dynamic"}),
            422,
            "invalid_input",
            "kind",
        ),
        (
            stack.api("POST", "/v1/segments", stack.key(A), json={"name": "", "kind": "static"}),
            422,
            "invalid_input",
            "name",
        ),
        (
            stack.api("POST", "/v1/segments", stack.key(A), json={"name": "c", "kind": "criteria"}),
            422,
            "criteria_required",
            "criteria",
        ),
        (
            stack.api(
                "POST", "/v1/segments", stack.key(A), json={"name": "c", "kind": "criteria", "criteria": {"any": []}}
            ),
            422,
            "invalid_criteria",
            "criteria.any",
        ),
        (
            stack.api(
                "POST", "/v1/segments", stack.key(A), json={"name": "s", "kind": "static", "criteria": {"any": []}}
            ),
            422,
            "criteria_not_allowed",
            "criteria",
        ),
        (stack.api("POST", members_path, stack.key(A), json={"add": ["u"] * 1001}), 422, "batch_too_large", "add"),
        (
            stack.api("POST", members_path, stack.key(A), json={"add": ["u"], "remove": ["u"]}),
            422,
            "id_in_add_and_remove",
            "remove",
        ),
        (stack.api("POST", members_path, stack.key(A), json={"add": "u"}), 422, "invalid_input", "add"),
        (stack.api("GET", members_path, stack.key(A), params={"cursor": "nonsense"}), 422, "invalid_cursor", "cursor"),
        (stack.api("GET", members_path, stack.key(A), params={"limit": 0}), 422, "invalid_input", "limit"),
        (stack.api("GET", "/v1/segments/seg_0000000000000000", stack.key(A)), 404, "segment_not_found", "segment_id"),
        (stack.api("DELETE", f"/v1/segments/{'x' * 2000}", stack.key(A)), 404, "segment_not_found", "segment_id"),
    ]

    for response, status, code, field in cases:
        assert_error(response, status, code, field)
