"""App B's key can neither read, check, page, delete nor upload into app A's audiences."""

from urllib.parse import parse_qs, urlparse

from tests.support.audiences import audience_path, put_file, register_users
from tests.support.client import A, B, RunningStack, assert_error, fresh_id, tilde_encoded

ROUTES_COVERED = {
    ("GET", "/v1/audiences"),
    ("GET", "/v1/audiences/{name}"),
    ("GET", "/v1/audiences/{name}/members/{user_id}"),
    ("POST", "/v1/audiences/{name}/members/check"),
    ("GET", "/v1/audiences/{name}/members"),
    ("DELETE", "/v1/audiences/{name}"),
    ("DELETE", "/v1/audiences/{name}/tombstone"),
    ("POST", "/v1/audiences/{name}/upload-url"),
}


def test_b_cannot_reach_an_audience_of_a(stack: RunningStack) -> None:
    a_app = stack.state["apps"][A]["id"]
    user_id = fresh_id("iso-")
    register_users(stack, a_app, [user_id])
    name = fresh_id("a-only-")
    put_file(stack, f"imports/{a_app}/{name}.csv", f"{user_id}\n".encode())
    b = stack.key(B)

    for method, suffix, body in [
        ("GET", "", None),
        ("GET", f"/members/{user_id}", None),
        ("POST", "/members/check", {"user_ids": [user_id]}),
        ("GET", "/members", None),
        ("DELETE", "", None),
        ("DELETE", "/tombstone", None),
    ]:
        assert_error(stack.api(method, audience_path(name, suffix), b, json=body), 404, "audience_not_found")
    listed = stack.api("GET", "/v1/audiences", b, params={"limit": 200}).json()["items"]
    assert name not in {item["name"] for item in listed}
    assert stack.api("GET", audience_path(name, f"/members/{user_id}"), stack.key(A)).status_code == 200


def test_an_upload_link_names_only_the_callers_own_key(stack: RunningStack) -> None:
    b_app = stack.state["apps"][B]["id"]
    a_app = stack.state["apps"][A]["id"]

    # A name cannot climb out of the caller's prefix: '/' never reaches a name, encoded either way.
    slashed = stack.api("POST", audience_path(f"../{a_app}/x", "/upload-url"), stack.key(B))
    tilde = stack.api("POST", f"/v1/audiences/{tilde_encoded(f'../{a_app}/x')}/upload-url", stack.key(B))
    plain = stack.api("POST", audience_path("shared", "/upload-url"), stack.key(B)).json()

    assert_error(slashed, 404, "route_not_found")
    assert_error(tilde, 422, "invalid_audience_name")
    assert plain["key"] == f"imports/{b_app}/shared.csv"
    assert urlparse(plain["url"]).path.endswith(f"/imports/{b_app}/shared.csv")
    assert parse_qs(urlparse(plain["url"]).query)["X-Amz-Expires"] == ["900"]  # Version 4 signs the path
