"""A bounded load on the local gateway: many clients at once, loopback only, and it stops by itself.

It checks behaviour, never timings: no connection is dropped, and the
outcomes that concurrency could break (a device's failure streak, a
duplicated push_id, tag and segment counts) come out exact.
"""

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from tests.support.client import RunningStack, device_path

A = 0
CLIENTS = 50
REQUESTS_PER_CLIENT = 6  # 300 requests in all
WRITERS = 25
TIMEOUT_SECONDS = 120  # per request; the whole module stays bounded by the counts above


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def all_at_once[T](count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(0..count-1)`` on ``count`` threads released together; exceptions propagate."""
    barrier = threading.Barrier(count)

    def released(index: int) -> T:
        barrier.wait(timeout=TIMEOUT_SECONDS)
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(released, range(count)))


def call(stack: RunningStack, method: str, path: str, **kwargs: Any) -> requests.Response:
    """One request on a connection of its own (no session), as independent clients make them."""
    headers = {"Authorization": f"Bearer {stack.key(A)}", **kwargs.pop("headers", {})}
    return requests.request(method, stack.api_url + path, headers=headers, timeout=TIMEOUT_SECONDS, **kwargs)


def identify(stack: RunningStack, device_id: str, user_id: str = "load-user") -> None:
    response = call(stack, "PUT", device_path(device_id), json={"user_id": user_id, "transport": "FCM"})
    assert response.status_code == 200, response.text


def read_device(stack: RunningStack, device_id: str) -> dict[str, Any]:
    response = call(stack, "GET", device_path(device_id))
    assert response.status_code == 200, response.text
    device: dict[str, Any] = response.json()
    return device


def test_fifty_clients_at_once_lose_no_connection(stack: RunningStack) -> None:
    run = unique("load")

    def client(index: int) -> list[str]:
        device_id = f"fcm:{run}-{index}"
        problems: list[str] = []
        steps: list[tuple[str, str, dict[str, Any]]] = [
            ("PUT", device_path(device_id), {"json": {"user_id": f"{run}-u{index}", "transport": "FCM"}}),
            ("GET", device_path(device_id), {}),
            ("POST", device_path(device_id, "/push-results"), {"json": {"accepted": True}}),
            ("GET", "/v1/devices", {"params": {"limit": 5}}),
            ("PUT", f"/v1/users/{run}-u{index}", {"json": {"fields": {"n": index}}}),
            ("GET", "/health", {}),
        ]
        for method, path, extra in steps[:REQUESTS_PER_CLIENT]:
            try:
                response = call(stack, method, path, **extra)
            except requests.RequestException as exc:  # a reset or refused connection
                problems.append(f"{method} {path}: {type(exc).__name__}")
                continue
            if not 200 <= response.status_code < 300:
                problems.append(f"{method} {path}: {response.status_code} {response.text[:120]}")
        return problems

    problems = [problem for found in all_at_once(CLIENTS, client) for problem in found]

    assert problems == []


def test_two_concurrent_failures_always_leave_the_device_suppressed(stack: RunningStack) -> None:
    devices = [f"fcm:{unique('pair')}" for _ in range(10)]
    for device_id in devices:
        identify(stack, device_id)
    failure = {"accepted": False, "error_code": "UNREGISTERED"}

    responses = all_at_once(
        2 * len(devices),
        lambda index: call(stack, "POST", device_path(devices[index // 2], "/push-results"), json=failure),
    )

    assert [response.status_code for response in responses] == [200] * len(responses)
    for device_id in devices:
        device = read_device(stack, device_id)
        assert (device["last_status"], device["active"], device["failure_streak"]) == ("suppressed", False, 2)


def test_a_push_id_sent_concurrently_counts_once(stack: RunningStack) -> None:
    devices = [f"fcm:{unique('dup')}" for _ in range(5)]
    for device_id in devices:
        identify(stack, device_id)
    copies = 8
    push_ids = {device_id: unique("push") for device_id in devices}

    def send(index: int) -> requests.Response:
        device_id = devices[index // copies]
        result = {"accepted": False, "error_code": "UNREGISTERED", "push_id": push_ids[device_id]}
        return call(stack, "POST", device_path(device_id, "/push-results"), json=result)

    responses = all_at_once(copies * len(devices), send)

    assert all(response.status_code < 500 for response in responses), [
        r.text for r in responses if r.status_code >= 500
    ]
    for device_id in devices:
        device = read_device(stack, device_id)
        assert (device["last_status"], device["active"], device["failure_streak"]) == ("bounced", True, 1)
        assert device["last_push_id"] == push_ids[device_id]


def tag_count(stack: RunningStack, tag: str) -> int | None:
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = call(stack, "GET", "/v1/tags", params=params).json()
        for item in page["items"]:
            if item["tag"] == tag:
                return int(item["device_count"])
        cursor = page["next_cursor"]
        if cursor is None:
            return None


def listed(stack: RunningStack, path: str, key: str) -> set[str]:
    found: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        response = call(stack, "GET", path, params=params)
        assert response.status_code == 200, response.text
        found |= {item[key] for item in response.json()["items"]}
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return found


def test_tag_counts_stay_exact_under_concurrent_writers(stack: RunningStack) -> None:
    tag = unique("load-tag")
    # Each writer owns three devices and shares a fourth with its neighbour, so two
    # writers tag the same device at the same moment.
    own = [[f"fcm:{tag}-{writer}-{n}" for n in range(3)] for writer in range(WRITERS)]
    shared = [f"fcm:{tag}-shared-{writer}" for writer in range(WRITERS)]
    for device_id in [*(device for devices in own for device in devices), *shared]:
        identify(stack, device_id)

    def writer(index: int) -> list[int]:
        statuses = []
        mine = [*own[index], shared[index], shared[(index + 1) % WRITERS]]
        for device_id in mine[:2]:
            statuses.append(call(stack, "PUT", device_path(device_id, f"/tags/{tag}")).status_code)
        bulk = call(stack, "POST", f"/v1/tags/{tag}/devices", json={"add": mine[2:], "remove": []})
        statuses.append(bulk.status_code)
        for _ in range(3):  # "failed" items are worth sending again
            failed = bulk.json().get("failed", []) if bulk.status_code == 200 else []
            if not failed:
                break
            bulk = call(stack, "POST", f"/v1/tags/{tag}/devices", json={"add": failed, "remove": []})
        statuses.append(call(stack, "DELETE", device_path(own[index][0], f"/tags/{tag}")).status_code)
        return statuses

    statuses = [status for found in all_at_once(WRITERS, writer) for status in found]

    assert all(status == 200 for status in statuses), statuses
    tagged = listed(stack, f"/v1/tags/{tag}/devices", "device_id")
    expected = {device for devices in own for device in devices[1:]} | set(shared)
    assert tagged == expected
    assert tag_count(stack, tag) == len(expected)


def test_segment_counts_stay_exact_under_concurrent_writers(stack: RunningStack) -> None:
    run = unique("load-seg")
    users = [[f"{run}-{writer}-{n}" for n in range(4)] for writer in range(WRITERS)]
    batch = [{"user_id": user_id, "fields": {"w": 1}} for group in users for user_id in group]
    for start in range(0, len(batch), 100):
        assert call(stack, "POST", "/v1/users/batch", json={"users": batch[start : start + 100]}).status_code == 200
    created = call(stack, "POST", "/v1/segments", json={"name": run, "kind": "static"})
    assert created.status_code == 201, created.text
    segment_id = created.json()["segment_id"]
    members_path = f"/v1/segments/{segment_id}/members"

    def change(body: dict[str, list[str]]) -> int:
        response = call(stack, "POST", members_path, json=body)
        for _ in range(5):  # "failed" items are worth sending again
            if response.status_code != 200 or not response.json()["failed"]:
                break
            failed = set(response.json()["failed"])
            retry = {name: [user for user in ids if user in failed] for name, ids in body.items()}
            response = call(stack, "POST", members_path, json=retry)
        return response.status_code

    def writer(index: int) -> list[int]:
        # Writers add their own users plus one of their neighbour's, then remove one of their own.
        mine = [*users[index], users[(index + 1) % WRITERS][0]]
        return [change({"add": mine}), change({"remove": [users[index][3]]})]

    statuses = [status for found in all_at_once(WRITERS, writer) for status in found]

    assert all(status == 200 for status in statuses), statuses
    members = listed(stack, members_path, "user_id")
    assert members == {user for group in users for user in group[:3]}
    segment = call(stack, "GET", f"/v1/segments/{segment_id}").json()
    assert (segment["member_count"], segment["inactive_member_count"]) == (len(members), 0)
