"""App B's key can neither read nor change app A's segments, nor make A's users members."""

from tests.support.client import A, B, RunningStack, assert_error, change_members, new_segment, new_user, user_path

ROUTES_COVERED = {
    ("POST", "/v1/segments"),
    ("GET", "/v1/segments"),
    ("GET", "/v1/segments/{segment_id}"),
    ("DELETE", "/v1/segments/{segment_id}"),
    ("POST", "/v1/segments/{segment_id}/members"),
    ("GET", "/v1/segments/{segment_id}/members"),
}


def test_b_cannot_read_or_change_a_segment_of_a(stack: RunningStack) -> None:
    segment = new_segment(stack, app=A)
    segment_id = segment["segment_id"]
    user_id = new_user(stack)
    change_members(stack, segment_id, add=[user_id])
    path = f"/v1/segments/{segment_id}"

    assert_error(stack.api("GET", path, stack.key(B)), 404, "segment_not_found", "segment_id")
    assert_error(stack.api("GET", f"{path}/members", stack.key(B)), 404, "segment_not_found")
    assert_error(
        stack.api("POST", f"{path}/members", stack.key(B), json={"remove": [user_id]}), 404, "segment_not_found"
    )
    assert_error(stack.api("DELETE", path, stack.key(B)), 404, "segment_not_found")
    listed = stack.api("GET", "/v1/segments", stack.key(B), params={"limit": 200}).json()["items"]

    assert segment_id not in {item["segment_id"] for item in listed}
    assert stack.api("GET", path, stack.key(A)).json()["member_count"] == 1


def test_b_cannot_make_users_of_a_members(stack: RunningStack) -> None:
    a_user = new_user(stack)
    b_segment = new_segment(stack, app=B)

    outcome = change_members(stack, b_segment["segment_id"], app=B, add=[a_user])

    assert (outcome["added"], outcome["not_found"]) == (0, [a_user])
    assert stack.api("GET", user_path(a_user), stack.key(A)).json()["segments"] == []


def test_segment_names_are_per_app(stack: RunningStack) -> None:
    a_segment = new_segment(stack, app=A)

    b_same_name = stack.api("POST", "/v1/segments", stack.key(B), json={"name": a_segment["name"], "kind": "static"})

    assert b_same_name.status_code == 201
    assert b_same_name.json()["segment_id"] != a_segment["segment_id"]
