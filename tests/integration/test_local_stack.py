"""How the local stack behaves under load and odd requests, where it stands in for AWS."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.client import RunningStack


def test_concurrent_requests_keep_their_own_route_and_app(stack: RunningStack) -> None:
    """One function module serves every request; concurrent ones must not see each other's state.

    Powertools keeps the current event and route on the resolver: two requests
    running in it at once used to get each other's status codes (a create
    answered 200, a list 201).
    """
    own_users = {app: {user["user_id"] for user in _users(stack, app)} for app in (0, 1)}

    def call(index: int) -> tuple[str, int, int, frozenset[str]]:
        app = index % 2
        if index % 3 == 0:
            body = {"name": f"concurrent-{index}", "channels": ["email"]}
            created = stack.api("POST", "/v1/resources", stack.key(app), json=body)
            return "create", app, created.status_code, frozenset()
        listed = stack.api("GET", "/v1/users", stack.key(app))
        return "list", app, listed.status_code, frozenset(user["user_id"] for user in listed.json()["items"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(60)))

    assert {(kind, status) for kind, _, status, _ in results} == {("create", 201), ("list", 200)}
    assert all(users == own_users[app] for kind, app, _, users in results if kind == "list")


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND"])
def test_a_method_http_apis_do_not_route_is_404(stack: RunningStack, method: str) -> None:
    for path in ("/health", "/v1/users"):
        response = requests.request(method, stack.api_url + path, timeout=30)

        assert response.status_code == 404, (method, path)
        assert response.json() == {"message": "Not Found"}


def test_a_decoded_newline_in_the_path_still_reaches_the_function(stack: RunningStack) -> None:
    """A greedy path variable takes any character: the API answers, not the gateway's own 404."""
    device = stack.api("PUT", "/v1/devices/%0Anl/tags/beta", stack.key(0))
    segment = stack.api("POST", "/v1/segments/%0Anl/members", stack.key(0), json={})

    assert (device.status_code, device.json()["error"]["code"]) == (422, "invalid_path_parameter")
    assert (segment.status_code, segment.json()["error"]["code"]) == (404, "route_not_found")


def _users(stack: RunningStack, app: int) -> list[dict[str, str]]:
    items: list[dict[str, str]] = stack.api("GET", "/v1/users", stack.key(app)).json()["items"]
    return items
