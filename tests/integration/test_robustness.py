"""Whatever the body, headers, path or cursor: a 2xx, or a 4xx in Steward's error shape; never a 5xx.

Each class of input here used to end in a 500 (or in a stored value that
broke later reads). Large data goes to an app of its own, created with the
operator CLI, so that the pages and previews of other tests stay small.
"""

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.audiences import AudienceApp, audience_app, audience_path, put_file, register_users
from tests.support.client import RunningStack, assert_error, bootstrap_app, device_path

A = 0
# Lambda's answer is at most 6,291,556 bytes; as JSON inside Lambda's answer a body grows.
LAMBDA_ANSWER_BYTES = 6_291_556
JSON = {"content-type": "application/json"}
# Every route that reads a body, with a body that holds a non-ASCII character.
BODY_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "PUT",
        "/v1/devices/robust-dev",
        {"user_id": "robust-user", "transport": "FCM", "attributes": {"city": "Orléans"}},
    ),
    ("POST", "/v1/devices/robust-dev/push-results", {"accepted": False, "error_message": "é"}),
    ("POST", "/v1/push-results", {"results": [{"device_id": "é", "accepted": True}]}),
    ("PUT", "/v1/users/robust-user", {"fields": {"a": "é"}}),
    ("POST", "/v1/users/batch", {"users": [{"user_id": "é"}]}),
    ("PUT", "/v1/users/robust-user/emails/a%40example.com", {"é": True}),
    ("POST", "/v1/resources", {"name": "é", "channels": ["email"]}),
    ("POST", "/v1/regions", {"type": "poi", "name": "é", "country": "FR", "lat": 1, "lng": 2}),
    ("POST", "/v1/regions/batch", {"regions": [{"name": "é"}]}),
    ("POST", "/v1/criteria/preview", {"target": "users", "criteria": {"field": "fields.c", "op": "eq", "value": "é"}}),
    ("POST", "/v1/segments", {"name": "é", "kind": "static"}),
    ("POST", "/v1/tags/robust/devices", {"add": ["é"]}),
    ("POST", "/v1/loyalty-programs", {"name": "é"}),
    ("POST", "/v1/audiences/robust/members/check", {"user_ids": ["é"]}),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in BODY_ROUTES]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def latin1(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("latin-1")


def cursor_of(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def answer_bytes(response: requests.Response) -> int:
    """What the body took inside Lambda's answer (a JSON string there: quotes and backslashes doubled)."""
    return len(json.dumps(response.text))


@pytest.fixture(scope="module")
def big_app(stack: RunningStack) -> str:
    """The API key of an app of its own (operator CLI), for tests that store large users."""
    return str(bootstrap_app(stack, "big", "Big users")["api_key"]["api_key"])


# --- bodies: encoding and content type -----------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=ROUTE_IDS)
def test_a_body_that_is_not_utf8_is_malformed_json(
    stack: RunningStack, method: str, path: str, body: dict[str, Any]
) -> None:
    response = stack.api(method, path, stack.key(A), data=latin1(body), headers=dict(JSON))

    assert_error(response, 422, "malformed_json", None)


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=ROUTE_IDS)
def test_a_body_declaring_another_charset_is_malformed_json(
    stack: RunningStack, method: str, path: str, body: dict[str, Any]
) -> None:
    headers = {"content-type": "application/json; charset=latin-1"}

    response = stack.api(method, path, stack.key(A), data=latin1(body), headers=headers)

    assert_error(response, 422, "malformed_json", None)


def test_json_declared_in_any_spelling_is_read(stack: RunningStack) -> None:
    user_id = unique("charset")
    for content_type in (
        "application/json; charset=utf-8",
        "APPLICATION/JSON; charset=UTF-8",
        'application/json ;charset="utf8"',
    ):
        body = json.dumps({"fields": {"name": "Zoë"}}, ensure_ascii=False).encode()
        headers = {"content-type": content_type}

        response = stack.api("PUT", f"/v1/users/{user_id}", stack.key(A), data=body, headers=headers)

        assert response.status_code == 200, response.text
        assert response.json()["fields"] == {"name": "Zoë"}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/octet-stream", "application/merge-patch+json", "application/x-www-form-urlencoded"],
)
@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES[:5], ids=ROUTE_IDS[:5])
def test_a_body_that_is_not_json_is_unsupported(
    stack: RunningStack, method: str, path: str, body: dict[str, Any], content_type: str
) -> None:
    response = stack.api(
        method, path, stack.key(A), data=json.dumps(body).encode(), headers={"content-type": content_type}
    )

    error = assert_error(response, 415, "unsupported_media_type", None)
    assert content_type in error["message"]


def test_a_body_without_content_type_is_read_as_json(stack: RunningStack) -> None:
    user_id = unique("no-type")
    good = stack.api("PUT", f"/v1/users/{user_id}", stack.key(A), data=b'{"fields": {"a": 1}}')
    bad = stack.api("PUT", f"/v1/users/{user_id}", stack.key(A), data=b'{"fieldz": {"a": 1}}')

    assert "content-type" not in good.request.headers
    assert good.status_code == 200, good.text
    assert_error(bad, 422, "invalid_input", "fieldz")  # the field, not the whole body


# --- numbers DynamoDB cannot store ------------------------------------------------

UNSTORABLE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-200", "1" * 39, "-" + "9" * 40]


@pytest.mark.parametrize("literal", UNSTORABLE)
def test_unstorable_numbers_in_user_fields_are_refused_and_name_the_field(stack: RunningStack, literal: str) -> None:
    user_id = unique("numbers")
    for value in (literal, f"[1, {literal}]"):
        body = f'{{"fields": {{"n": {value}, "ok": 1}}}}'.encode()

        response = stack.api("PUT", f"/v1/users/{user_id}", stack.key(A), data=body, headers=dict(JSON))

        assert_error(response, 422, "invalid_input", "fields.n")
    assert_error(stack.api("GET", f"/v1/users/{user_id}", stack.key(A)), 404, "user_not_found", "user_id")


def test_storable_extremes_are_kept(stack: RunningStack) -> None:
    user_id = unique("extremes")
    body = b'{"fields": {"small": 1e-130, "large": 9.9e125, "digits": 12345678901234567890123456789012345678}}'

    response = stack.api("PUT", f"/v1/users/{user_id}", stack.key(A), data=body, headers=dict(JSON))

    assert response.status_code == 200, response.text
    assert stack.api("GET", f"/v1/users/{user_id}", stack.key(A)).json()["fields"]["digits"] == int(
        "1234567890" * 3 + "12345678"
    )


def test_an_unstorable_number_fails_only_its_own_batch_item(stack: RunningStack) -> None:
    good, bad = unique("batch-good"), unique("batch-bad")
    items = f'{{"user_id": "{good}", "fields": {{"n": 1}}}}, {{"user_id": "{bad}", "fields": {{"n": [NaN]}}}}'
    body = f'{{"users": [{items}]}}'

    response = stack.api("POST", "/v1/users/batch", stack.key(A), data=body.encode(), headers=dict(JSON))

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [item["ok"] for item in results] == [True, False]
    assert results[1]["error"]["code"] == "invalid_input"
    assert results[1]["error"]["field"] == "users[1].fields.n"


@pytest.mark.parametrize("literal", ["1e-200", "NaN", "1e400", "1" * 39])
@pytest.mark.parametrize("field", ["lat", "lng", "geometry.radius_m"])
def test_unstorable_region_numbers_are_refused_and_name_the_field(
    stack: RunningStack, field: str, literal: str
) -> None:
    region = {"type": "geozone", "name": "robust", "country": "FR", "lat": "LAT", "lng": "LNG",
              "geometry": {"kind": "circle", "radius_m": "RADIUS"}}  # fmt: skip
    text = json.dumps(region)
    for name, placeholder in (("lat", '"LAT"'), ("lng", '"LNG"'), ("geometry.radius_m", '"RADIUS"')):
        text = text.replace(placeholder, literal if name == field else "10")

    response = stack.api("POST", "/v1/regions", stack.key(A), data=text.encode(), headers=dict(JSON))

    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_an_unstorable_coordinate_fails_only_its_own_region(stack: RunningStack) -> None:
    name = unique("region")
    body = (
        f'{{"regions": [{{"type": "poi", "name": "{name}", "country": "FR", "lat": 1, "lng": 2}},'
        ' {"type": "poi", "name": "bad", "country": "FR", "lat": 1e-200, "lng": 2}]}'
    )

    response = stack.api("POST", "/v1/regions/batch", stack.key(A), data=body.encode(), headers=dict(JSON))

    assert response.status_code == 200, response.text
    outcome = response.json()
    assert (outcome["succeeded"], outcome["failed"]) == (1, 1)
    assert outcome["results"][1]["error"]["field"] == "regions[1].lat"
    region_id = outcome["results"][0]["region_id"]
    assert stack.api("GET", f"/v1/regions/{region_id}", stack.key(A)).json()["name"] == name


# --- JSON the parser cannot take ----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"fields": {"n": ' + b"7" * 5000 + b"}}", id="5000-digit-integer"),
        pytest.param(b"[" * 100_000, id="100000-brackets"),
        pytest.param(b'{"fields": {"n": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}", id="10000-levels"),
        pytest.param(b'{"fields": {"n": ' + b"[" * 40 + b"]" * 40 + b"}}", id="40-levels"),
    ],
)
def test_json_the_parser_cannot_take_is_malformed(stack: RunningStack, raw: bytes) -> None:
    response = stack.api("PUT", f"/v1/users/{unique('parser')}", stack.key(A), data=raw, headers=dict(JSON))

    assert_error(response, 422, "malformed_json", None)


def nested_criteria(depth: int) -> bytes:
    rule = '{"field": "active", "op": "eq", "value": true}'
    return ('{"target": "users", "criteria": ' + '{"all": [' * depth + rule + "]}" * depth + "}").encode()


def test_criteria_nested_5000_deep_fail_cleanly(stack: RunningStack) -> None:
    response = stack.api("POST", "/v1/criteria/preview", stack.key(A), data=nested_criteria(5000), headers=dict(JSON))

    assert_error(response, 422, "malformed_json", None)


@pytest.mark.parametrize("depth", [11, 14])
def test_criteria_past_the_nesting_maximum_are_invalid_criteria(stack: RunningStack, depth: int) -> None:
    response = stack.api("POST", "/v1/criteria/preview", stack.key(A), data=nested_criteria(depth), headers=dict(JSON))

    error = assert_error(response, 422, "invalid_criteria")
    assert "nested at most 10 deep" in error["message"]


def test_criteria_at_the_nesting_maximum_are_read(stack: RunningStack) -> None:
    response = stack.api("POST", "/v1/criteria/preview", stack.key(A), data=nested_criteria(10), headers=dict(JSON))

    assert response.status_code == 200, response.text


# --- items over DynamoDB's 400 KB -----------------------------------------------------


def test_a_user_over_dynamodbs_item_limit_is_refused_up_front(stack: RunningStack) -> None:
    user_id = unique("huge")
    too_long = stack.api("PUT", f"/v1/users/{user_id}", stack.key(A), json={"fields": {"l": ["x" * 1024] * 450}})
    too_large = stack.api(
        "PUT", f"/v1/users/{user_id}", stack.key(A), json={"fields": {f"f{i}": "x" * 1000 for i in range(40)}}
    )

    assert_error(too_long, 422, "invalid_input", "fields.l")
    assert_error(too_large, 422, "fields_too_large", "fields")
    assert_error(stack.api("GET", f"/v1/users/{user_id}", stack.key(A)), 404, "user_not_found", "user_id")


def test_fields_grow_only_up_to_the_cap_across_upserts(stack: RunningStack) -> None:
    user_id = unique("grow")
    first = stack.api(
        "PUT", f"/v1/users/{user_id}", stack.key(A), json={"fields": {f"a{i}": "x" * 1000 for i in range(20)}}
    )
    second = stack.api(
        "PUT", f"/v1/users/{user_id}", stack.key(A), json={"fields": {f"b{i}": "x" * 1000 for i in range(20)}}
    )

    assert first.status_code == 200, first.text
    assert_error(second, 422, "fields_too_large", "fields")
    assert set(stack.api("GET", f"/v1/users/{user_id}", stack.key(A)).json()["fields"]) == {f"a{i}" for i in range(20)}


def test_an_oversized_user_fails_alone_in_a_batch_and_is_not_worth_resending(stack: RunningStack) -> None:
    good, big = unique("good"), unique("big")
    batch = [{"user_id": big, "fields": {"l": ["x" * 1024] * 450}}, {"user_id": good, "fields": {"n": 1}}]

    response = stack.api("POST", "/v1/users/batch", stack.key(A), json={"users": batch})

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [item["ok"] for item in results] == [False, True]
    assert results[0]["error"]["code"] != "internal_error"  # a resend cannot fix it
    assert results[0]["error"]["field"] == "users[0].fields.l"


# --- answers over Lambda's 6 MB -----------------------------------------------------

# Astral characters are the worst case of Lambda's answer: 4 bytes stored, 14 in the answer
# (\ud83d\ude00 in the body, every backslash escaped again). Each user stays under the cap.
WIDE_CHAR = "\U0001f600"
WIDE_FIELDS = {**{f"f{i}": WIDE_CHAR * 1024 for i in range(7)}, "g": WIDE_CHAR * 900}
WIDE_USERS = 200


def wide_body(users: list[dict[str, Any]]) -> bytes:
    return json.dumps({"users": users}, ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def wide_users(stack: RunningStack, big_app: str) -> list[str]:
    """WIDE_USERS users of about 32 KB each (about 114 KB each in Lambda's answer)."""
    user_ids = [f"wide-{index:03d}" for index in range(WIDE_USERS)]
    for start in range(0, WIDE_USERS, 20):  # small batches keep each request far below 6 MB
        users = [{"user_id": user_id, "fields": WIDE_FIELDS} for user_id in user_ids[start : start + 20]]
        response = stack.api("POST", "/v1/users/batch", big_app, data=wide_body(users), headers=dict(JSON))
        assert response.status_code == 200, response.text
        assert response.json()["failed"] == 0, response.text
    return user_ids


def pages(stack: RunningStack, key: str, path: str, limit: int, **extra: Any) -> Iterator[dict[str, Any]]:
    cursor = None
    while True:
        params = {"limit": limit, **extra, **({"cursor": cursor} if cursor else {})}
        response = stack.api("GET", path, key, params=params)
        assert response.status_code == 200, response.text[:300]
        assert answer_bytes(response) < LAMBDA_ANSWER_BYTES
        page: dict[str, Any] = response.json()
        yield page
        cursor = page["next_cursor"]
        if cursor is None:
            return


def test_a_page_of_large_users_is_cut_by_size_and_loses_no_one(
    stack: RunningStack, big_app: str, wide_users: list[str]
) -> None:
    listed = list(pages(stack, big_app, "/v1/users", 200))

    seen = [user["user_id"] for page in listed for user in page["items"]]
    assert sorted(seen) == wide_users  # each exactly once
    assert len(listed) > 1
    assert all(0 < len(page["items"]) < 200 for page in listed)


def test_a_batch_answer_stays_small_and_reports_what_was_written(
    stack: RunningStack, big_app: str, wide_users: list[str]
) -> None:
    touch = uuid.uuid4().hex
    batch = [{"user_id": user_id, "fields": {"touch": touch}} for user_id in wide_users[:100]]

    response = stack.api("POST", "/v1/users/batch", big_app, json={"users": batch})

    assert response.status_code == 200, response.text[:300]
    outcome = response.json()
    assert (outcome["succeeded"], outcome["failed"]) == (100, 0)
    assert all("user" not in item for item in outcome["results"])
    sample = stack.api("GET", f"/v1/users/{wide_users[99]}", big_app).json()
    assert sample["fields"]["touch"] == touch


def test_segment_members_pages_are_cut_by_size(stack: RunningStack, big_app: str, wide_users: list[str]) -> None:
    static = stack.api("POST", "/v1/segments", big_app, json={"name": unique("wide"), "kind": "static"}).json()
    added = stack.api("POST", f"/v1/segments/{static['segment_id']}/members", big_app, json={"add": wide_users})
    criteria = stack.api(
        "POST",
        "/v1/segments",
        big_app,
        json={"name": unique("wide-c"), "kind": "criteria", "criteria": {"field": "fields.g", "op": "exists"}},
    ).json()
    assert added.status_code == 200, added.text
    assert added.json()["added"] == WIDE_USERS

    for segment in (static, criteria):
        listed = list(pages(stack, big_app, f"/v1/segments/{segment['segment_id']}/members", 200))
        seen = [user["user_id"] for page in listed for user in page["items"]]
        assert sorted(seen) == wide_users, segment["kind"]


def test_a_preview_sample_of_large_users_stays_under_the_limit(
    stack: RunningStack, big_app: str, wide_users: list[str]
) -> None:
    body = {"target": "users", "criteria": {"field": "fields.g", "op": "exists"}, "sample_size": 50}

    response = stack.api("POST", "/v1/criteria/preview", big_app, json=body)

    assert response.status_code == 200, response.text[:300]
    assert answer_bytes(response) < LAMBDA_ANSWER_BYTES
    assert 0 < len(response.json()["sample"]) <= 50


@pytest.fixture(scope="module")
def audience(stack: RunningStack) -> AudienceApp:
    """An app of its own with an imported audience ``checked`` of one member."""
    created = audience_app(stack, "robaud")
    register_users(stack, created.app_id, ["member"])
    put_file(stack, f"imports/{created.app_id}/checked.csv", b"member\n")
    return created


def test_a_members_check_of_ids_past_the_user_id_limit_is_refused_not_answered_past_6_mb(
    stack: RunningStack, audience: AudienceApp
) -> None:
    # 2,200 bytes each as sent; 6,600 each in the answer, where Powertools escapes every "é" as \u00e9.
    body = {"user_ids": [f"{index:03d}" + "é" * 1100 for index in range(1000)]}

    response = stack.api("POST", audience_path("checked", "/members/check"), audience.key, json=body)

    assert response.status_code == 422, (response.status_code, len(response.content), response.text[:300])
    error = assert_error(response, 422, "invalid_input", "user_ids[0]")
    assert "256" in error["message"]
    assert len(response.content) < 4096


def test_a_members_check_of_the_longest_ids_stays_under_the_limit(stack: RunningStack, audience: AudienceApp) -> None:
    ids = [f"{index:03d}" + WIDE_CHAR * 253 for index in range(1000)]  # 256 characters, astral: the worst case

    response = stack.api(
        "POST", audience_path("checked", "/members/check"), audience.key, json={"user_ids": [*ids[:999], "member"]}
    )

    assert response.status_code == 200, response.text[:300]
    assert answer_bytes(response) < LAMBDA_ANSWER_BYTES
    assert response.json() == {"members": ["member"], "not_members": ids[:999]}


def test_a_huge_field_name_is_not_echoed_whole(stack: RunningStack) -> None:
    body = ('{"' + "a" * 3_200_000 + '": 1}').encode()

    response = stack.api("PUT", f"/v1/users/{unique('echo')}", stack.key(A), data=body, headers=dict(JSON))

    error = assert_error(response, 422, "invalid_input")
    assert len(response.content) < 4096
    assert error["field"].endswith("…")


def test_invalid_bulk_items_are_quoted_clipped(stack: RunningStack) -> None:
    response = stack.api("POST", "/v1/tags/robust/devices", stack.key(A), json={"add": ['"' * 1_200_000]})

    assert response.status_code == 200, response.text[:300]
    assert response.json()["invalid"] == ['"' * 255 + "…"]


# --- forged cursors ---------------------------------------------------------------------


def preview_cursor(criteria: Any, target: str = "users", **position: Any) -> str:
    canonical = json.dumps({"target": target, "criteria": criteria}, sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return cursor_of({"shard": 0, "q": fingerprint, **position})


WITHIN = {"field": "last_activity_at", "op": "within_last_days", "value": 30}


@pytest.mark.parametrize(
    "position",
    [
        pytest.param({"now": "0001-01-01T00:00:00+00:00"}, id="year-1"),
        pytest.param({"now": "9999-12-31T23:59:59+00:00"}, id="year-9999"),
        pytest.param({"now": "2026-01-01T00:00:00"}, id="naive"),
        pytest.param({"now": 20260101}, id="number"),
        pytest.param({"now": "2026-01-01T00:00:00+00:00", "after": "\ud800"}, id="lone-surrogate"),
        pytest.param({"now": "2026-01-01T00:00:00+00:00", "after": "k" * 1025}, id="sort-key-too-long"),
        pytest.param({"now": "2026-01-01T00:00:00+00:00", "shard": True}, id="shard-bool"),
    ],
)
def test_a_forged_preview_cursor_is_invalid(stack: RunningStack, position: dict[str, Any]) -> None:
    body = {"target": "users", "criteria": WITHIN, "cursor": preview_cursor(WITHIN, **position)}

    response = stack.api("POST", "/v1/criteria/preview", stack.key(A), json=body)

    assert_error(response, 422, "invalid_cursor", "cursor")


def test_a_forged_cursor_on_criteria_segment_members_is_invalid(stack: RunningStack) -> None:
    segment = stack.api(
        "POST", "/v1/segments", stack.key(A), json={"name": unique("forged"), "kind": "criteria", "criteria": WITHIN}
    ).json()
    cursor = preview_cursor(WITHIN, now="0001-01-01T00:00:00+00:00")

    response = stack.api(
        "GET", f"/v1/segments/{segment['segment_id']}/members", stack.key(A), params={"cursor": cursor}
    )

    assert_error(response, 422, "invalid_cursor", "cursor")


LIST_ROUTES = [
    "/v1/users",
    "/v1/devices",
    "/v1/users/alice/devices",
    "/v1/regions",
    "/v1/segments",
    "/v1/tags",
    "/v1/resources",
    "/v1/api-keys",
    "/v1/audiences",
    "/v1/audiences/robust/members",
]


@pytest.mark.parametrize("path", LIST_ROUTES)
@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param(cursor_of({"shard": 0, "after": "\ud800"}), id="lone-surrogate"),
        pytest.param(cursor_of({"after": "\ud800"}), id="lone-surrogate-unsharded"),
        pytest.param(cursor_of({"shard": 10**30}), id="huge-shard"),
        pytest.param(cursor_of({"shard": -1}), id="negative-shard"),
        pytest.param(cursor_of({"after": ""}), id="empty-key"),
        pytest.param(cursor_of([]), id="not-an-object"),
        pytest.param(base64.urlsafe_b64encode(b"[" * 40_000).decode(), id="deep"),
        pytest.param("A" * 9000, id="long"),
        pytest.param("%%%", id="not-base64"),
    ],
)
def test_a_forged_list_cursor_is_invalid(stack: RunningStack, path: str, cursor: str) -> None:
    # api-keys needs the admin scope; the demo keys have it.
    response = stack.api("GET", path, stack.key(A), params={"cursor": cursor})

    assert_error(response, 422, "invalid_cursor", "cursor")


def test_a_deeply_nested_cursor_in_a_body_is_invalid(stack: RunningStack) -> None:
    cursor = base64.urlsafe_b64encode(b"[" * 200_000).decode()
    body = {"target": "users", "criteria": WITHIN, "cursor": cursor}

    response = stack.api("POST", "/v1/criteria/preview", stack.key(A), json=body)

    assert_error(response, 422, "invalid_cursor", "cursor")


# --- paths, queries, headers ------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/v1/users/" + "u" * 5000,
        "/v1/users/a%00b",
        "/v1/users/%FF%FE",
        "/v1/devices/%C3",
        "/v1/devices/" + "d" * 2000,
        "/v1/regions/" + "r" * 5000,
        "/v1/segments/%01",
        "/v1/tags/" + "t" * 5000 + "/devices",
        "/v1/users/~!!!",
        "/v1/devices?limit=-1",
        "/v1/devices?limit=1e9",
        "/v1/devices?limit=" + "9" * 5000,
        "/v1/devices?limit=abc",
        "/v1/devices?active=maybe",
        "/v1/regions?limit=51",
        "/v1/users?cursor=%ED%A0%80",
        "/v1/audiences/" + "n" * 5000,
        "/v1/audiences/~!!!",
        "/v1/audiences/a%00b/members",
        "/v1/audiences/%FF%FE/members/u",
        "/v1/audiences/robust/members?limit=1001",
        "/v1/audiences/robust/members/" + "u" * 5000,
    ],
)
def test_bad_paths_and_queries_get_a_4xx(stack: RunningStack, target: str) -> None:
    for method in ("GET", "DELETE", "PUT"):
        response = stack.api(method, target, stack.key(A), json={})
        assert 400 <= response.status_code < 500, (method, target[:80], response.status_code, response.text[:200])


def test_a_request_line_over_64_kb_is_refused_not_dropped(stack: RunningStack) -> None:
    for target in ("/v1/users/" + "u" * 100_000, "/v1/users?cursor=" + "A" * 100_000):
        response = stack.api("PUT", target, stack.key(A), json={"fields": {}})

        assert response.status_code == 414, response.text[:200]
        assert "message" in response.json()


def test_odd_headers_get_no_5xx(stack: RunningStack) -> None:
    device_id = unique("fcm:headers")
    cases: list[dict[str, str]] = [
        {"Authorization": "Bearer " + "x" * 10_000},
        {"Authorization": "Bearer stw_\u00e9.\u00e9.\u00e9"},
        {"Authorization": f"Basic {stack.key(A)}"},
        {"Authorization": f"Bearer {stack.key(A)}", "content-type": ";;;"},
        {"Authorization": f"Bearer {stack.key(A)}", "content-type": "json"},
        {"Authorization": f"Bearer {stack.key(A)}", "content-type": "application/json; charset"},
        {"Authorization": f"Bearer {stack.key(A)}", "X-Extra": "y" * 30_000},
    ]
    for headers in cases:
        response = requests.put(
            stack.api_url + device_path(device_id),
            data=b'{"user_id": "u", "transport": "FCM"}',
            headers=headers,
            timeout=30,
        )
        assert response.status_code < 500, (headers.keys(), response.text[:200])
