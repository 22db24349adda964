"""Audience import through the local stack: a real PutObject, the emulator's S3 notification, the real importer."""

import base64

import pytest
import requests

from tests.support.audiences import (
    AudienceApp,
    audience_app,
    audience_path,
    get_audience,
    invoke_importer,
    members,
    put_file,
    register_users,
    s3_event,
)
from tests.support.client import RunningStack, assert_error


@pytest.fixture(scope="module")
def app(stack: RunningStack) -> AudienceApp:
    created = audience_app(stack)
    register_users(stack, created.app_id, [f"user-{n}" for n in range(10)] + ["ünï cødé", "a/b"])
    return created


def counts(audience: dict[str, object]) -> dict[str, int]:
    value = audience["counts"]
    assert isinstance(value, dict)
    return value


def test_a_put_through_the_notification_imports_the_audience(stack: RunningStack, app: AudienceApp) -> None:
    put_file(stack, f"imports/{app.app_id}/first.csv", b"user-1\nuser-2\nuser-3\n")

    audience = get_audience(stack, app, "first")

    assert audience["status"] == "ready"
    assert counts(audience) == {"rows": 3, "invalid": 0, "valid": 3, "duplicates": 0, "unknown": 0, "members": 3}
    assert audience["source_key"] == f"imports/{app.app_id}/first.csv"
    assert audience["version"]
    assert audience["sequencer"]
    assert audience["imported_at"]
    assert sorted(members(stack, app, "first")) == ["user-1", "user-2", "user-3"]


def test_bom_crlf_blank_lines_whitespace_and_the_header(stack: RunningStack, app: AudienceApp) -> None:
    body = b"\xef\xbb\xbfuser_id\r\n\r\n  user-1 \r\n\tuser-2\r\n\r\nuser-3"

    put_file(stack, f"imports/{app.app_id}/format.csv", body)

    audience = get_audience(stack, app, "format")
    assert counts(audience) == {"rows": 3, "invalid": 0, "valid": 3, "duplicates": 0, "unknown": 0, "members": 3}
    assert sorted(members(stack, app, "format")) == ["user-1", "user-2", "user-3"]


def test_invalid_lines_unknown_users_and_duplicates_are_counted(stack: RunningStack, app: AudienceApp) -> None:
    long_line = b"x" * 257
    body = b"\n".join(
        [b"user-1", b"user-1", b"a,b", b'"quoted"', long_line, b"\xff\xfe", b"nobody", b"nobody", b"user-2", b"user_id"]
    )

    put_file(stack, f"imports/{app.app_id}/mixed.csv", body)

    audience = get_audience(stack, app, "mixed")
    # user_id after the first row is an id like any other (and nobody registered it).
    assert counts(audience) == {"rows": 10, "invalid": 4, "valid": 6, "duplicates": 2, "unknown": 2, "members": 2}
    reasons = [(sample["line"], sample["reason"]) for sample in audience["invalid_samples"]]
    assert reasons == [(3, "comma"), (4, "quote"), (5, "too_long"), (6, "not_utf8")]
    assert sorted(members(stack, app, "mixed")) == ["user-1", "user-2"]


def test_the_256_byte_line_rule_counts_bytes_not_characters(stack: RunningStack, app: AudienceApp) -> None:
    fits, too_long = "é" * 128, "é" * 129  # 256 and 258 bytes of UTF-8
    register_users(stack, app.app_id, [fits, too_long])

    put_file(stack, f"imports/{app.app_id}/bytes.csv", f"{too_long}\n{fits}\n".encode())

    audience = get_audience(stack, app, "bytes")
    assert counts(audience) == {"rows": 2, "invalid": 1, "valid": 1, "duplicates": 0, "unknown": 0, "members": 1}
    assert [(sample["line"], sample["reason"]) for sample in audience["invalid_samples"]] == [(1, "too_long")]
    assert members(stack, app, "bytes") == [fits]


def test_a_name_starting_with_a_tilde_travels_encoded_as_ids_do(stack: RunningStack, app: AudienceApp) -> None:
    put_file(stack, f"imports/{app.app_id}/~YQ.csv", b"user-4\n")
    put_file(stack, f"imports/{app.app_id}/a.csv", b"user-5\n")
    encoded = "/v1/audiences/~" + base64.urlsafe_b64encode(b"~YQ").decode().rstrip("=")  # ~fllR

    tilde = stack.api("GET", encoded, app.key)
    member = stack.api("GET", f"{encoded}/members/user-4", app.key)
    checked = stack.api("POST", f"{encoded}/members/check", app.key, json={"user_ids": ["user-4", "user-5"]})
    page = stack.api("GET", f"{encoded}/members", app.key)

    assert tilde.status_code == 200, tilde.text
    assert (tilde.json()["name"], tilde.json()["source_key"]) == ("~YQ", f"imports/{app.app_id}/~YQ.csv")
    assert member.json() == {"audience": "~YQ", "user_id": "user-4", "member": True}
    assert checked.json() == {"members": ["user-4"], "not_members": ["user-5"]}
    assert page.json()["items"] == ["user-4"]
    # Sent as it is, `~YQ` is the encoded form of the name `a`.
    assert stack.api("GET", "/v1/audiences/~YQ", app.key).json()["name"] == "a"
    assert stack.api("GET", "/v1/audiences/~YQ/members", app.key).json()["items"] == ["user-5"]


def test_url_encoded_names_with_spaces_and_non_ascii(stack: RunningStack, app: AudienceApp) -> None:
    name = "spring sale été"

    put_file(stack, f"imports/{app.app_id}/{name}.csv", "user-1\nünï cødé\na/b\n".encode())

    assert get_audience(stack, app, name)["counts"]["members"] == 3
    member = stack.api("GET", audience_path(name, "/members/" + requests.utils.quote("ünï cødé", safe="")), app.key)
    assert member.status_code == 200, member.text
    slash = stack.api("GET", audience_path(name, "/members/a%2Fb"), app.key)
    assert slash.status_code == 200, slash.text
    assert_error(stack.api("GET", audience_path(name, "/members/user-2"), app.key), 404, "not_a_member")


def test_a_duplicate_event_and_an_older_event_never_replace_newer_members(
    stack: RunningStack, app: AudienceApp
) -> None:
    key = f"imports/{app.app_id}/ordered.csv"
    put_file(stack, key, b"user-1\n")
    first = get_audience(stack, app, "ordered")
    put_file(stack, key, b"user-2\nuser-3\n")
    second = get_audience(stack, app, "ordered")
    assert second["version"] != first["version"]

    # S3 delivers the newer event again, and the older one late: both leave the newest members.
    again = invoke_importer(stack, s3_event(stack, key, 14, second["sequencer"].rstrip("0") or "0"))
    older = invoke_importer(stack, s3_event(stack, key, 7, first["sequencer"].rstrip("0") or "0"))

    assert [outcome["outcome"] for outcome in again["outcomes"] + older["outcomes"]] == ["skipped", "skipped"]
    assert get_audience(stack, app, "ordered")["version"] == second["version"]
    assert sorted(members(stack, app, "ordered")) == ["user-2", "user-3"]
