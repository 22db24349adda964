"""Audiences over their life: replace, failures, tombstones, limits, strays, notifications, uploads and reads."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.support.audiences import (
    AudienceApp,
    audience_app,
    audience_path,
    get_audience,
    imports_bucket,
    invoke_importer,
    listen_to_bus,
    listen_to_topic,
    members,
    put_file,
    register_users,
    s3_event,
)
from tests.support.client import RunningStack, assert_error, operator

USERS = [f"u{n:03d}" for n in range(300)]


@pytest.fixture(scope="module")
def app(stack: RunningStack) -> AudienceApp:
    created = audience_app(stack, "audlife")
    register_users(stack, created.app_id, USERS)
    return created


def lines(*ids: str) -> bytes:
    return "".join(f"{user_id}\n" for user_id in ids).encode()


def catalog_items(stack: RunningStack, partition: str) -> list[dict[str, Any]]:
    table = stack.state["tables"]["CatalogTable"]
    answer = stack.client("dynamodb").query(
        TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": partition}}
    )
    items: list[dict[str, Any]] = answer["Items"]
    return items


def test_replacing_swaps_the_members_and_removes_the_old_version(stack: RunningStack, app: AudienceApp) -> None:
    key = f"imports/{app.app_id}/replaced.csv"
    put_file(stack, key, lines(*USERS[:200]))
    old = get_audience(stack, app, "replaced")

    put_file(stack, key, lines(*USERS[150:300]))

    new = get_audience(stack, app, "replaced")
    assert new["version"] != old["version"]
    assert new["counts"]["members"] == 150
    assert sorted(members(stack, app, "replaced", limit=7)) == USERS[150:300]
    assert_error(stack.api("GET", audience_path("replaced", "/members/u000"), app.key), 404, "not_a_member")
    # The old version's buckets are gone: nothing of it is left to read or pay for.
    assert catalog_items(stack, f"{app.app_id}#audience-bucket#{old['version']}#0") == []


@pytest.mark.parametrize(
    ("size", "code", "object_exists"),
    [(524_288_001, "file_too_large", True), (10, "unreadable", False)],
)
def test_a_failed_replace_keeps_the_old_version(
    stack: RunningStack, app: AudienceApp, size: int, code: str, object_exists: bool
) -> None:
    name = f"kept-{code}"
    key = f"imports/{app.app_id}/{name}.csv"
    put_file(stack, key, lines("u001", "u002"))
    before = get_audience(stack, app, name)
    if not object_exists:
        stack.client("s3").delete_object(Bucket=imports_bucket(stack), Key=key)
    topic = listen_to_topic(stack)

    # A later event for the same key: a file over 500 MiB, or one deleted before it could be read.
    later = format(int(before["sequencer"].rstrip("0") or "0", 16) + 1, "X")
    outcome = invoke_importer(stack, s3_event(stack, key, size, later))["outcomes"][0]

    assert (outcome["outcome"], outcome["reason"]) == ("failed", code)
    after = get_audience(stack, app, name)
    assert after["version"] == before["version"]
    assert after["status"] == "ready"
    assert after["last_failure"]["code"] == code
    assert after["last_failure"]["key"] == key
    assert sorted(members(stack, app, name)) == ["u001", "u002"]
    notice = json.loads(next(topic.messages())["Message"])
    assert (notice["app_id"], notice["name"], notice["code"], notice["key"]) == (app.app_id, name, code, key)


def test_success_and_failure_are_published_on_the_bus_and_the_topic(stack: RunningStack, app: AudienceApp) -> None:
    bus = listen_to_bus(stack)
    topic = listen_to_topic(stack)
    key = f"imports/{app.app_id}/notified.csv"

    put_file(stack, key, lines("u001", "u002", "u002", "stranger"))
    stack.api("DELETE", audience_path("notified"), app.key).raise_for_status()
    put_file(stack, key, lines("u003"))

    imported, failed = list(bus.messages(2))
    assert (imported["source"], imported["detail-type"]) == ("steward", "Audience Imported")
    assert imported["detail"]["counts"] == {
        "rows": 4, "invalid": 0, "valid": 4, "duplicates": 1, "unknown": 1, "members": 2,
    }  # fmt: skip
    assert (imported["detail"]["app_id"], imported["detail"]["key"]) == (app.app_id, key)
    assert failed["detail-type"] == "Audience Import Failed"
    assert (failed["detail"]["code"], failed["detail"]["key"]) == ("audience_deleted", key)
    message = next(topic.messages())
    assert message["MessageAttributes"]["app_id"]["Value"] == app.app_id
    assert json.loads(message["Message"])["code"] == "audience_deleted"


def test_a_tombstone_refuses_files_until_it_is_lifted(stack: RunningStack, app: AudienceApp) -> None:
    key = f"imports/{app.app_id}/gone.csv"
    put_file(stack, key, lines("u001"))
    imported = get_audience(stack, app, "gone")
    version = imported["version"]

    deleted = stack.api("DELETE", audience_path("gone"), app.key)

    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["status"] == "deleted"
    # The importer removed the members in the background (the emulator runs it before DELETE answers), and the
    # tombstone no longer names the version (a repeated DELETE would ask for its removal again).
    assert catalog_items(stack, f"{app.app_id}#audience-bucket#{version}#0") == []
    [record] = [item for item in catalog_items(stack, f"{app.app_id}#audience") if item["sk"]["S"] == "gone"]
    assert record["status"]["S"] == "deleted"
    assert "removing_version" not in record
    assert_error(stack.api("GET", audience_path("gone", "/members/u001"), app.key), 404, "audience_not_found")
    assert_error(stack.api("GET", audience_path("gone", "/members"), app.key), 404, "audience_not_found")
    check = stack.api("POST", audience_path("gone", "/members/check"), app.key, json={"user_ids": ["u001"]})
    assert_error(check, 404, "audience_not_found")
    # S3 delivers the imported file's event again: it came before the deletion, so it is not refused.
    again = invoke_importer(stack, s3_event(stack, key, len(lines("u001")), imported["sequencer"].rstrip("0") or "0"))
    assert [(item["outcome"], item["reason"]) for item in again["outcomes"]] == [("skipped", "superseded")]
    assert get_audience(stack, app, "gone")["refused_key"] is None
    put_file(stack, key, lines("u002"))
    tombstone = get_audience(stack, app, "gone")
    assert tombstone["status"] == "deleted"
    assert tombstone["deleted_at"]
    assert tombstone["refused_key"] == key
    assert tombstone["refused_at"]
    assert tombstone["counts"] is not None  # the last import's numbers stay for the record
    assert_error(stack.api("POST", audience_path("gone", "/upload-url"), app.key), 409, "audience_deleted")

    lifted = stack.api("DELETE", audience_path("gone", "/tombstone"), app.key)

    assert lifted.status_code == 204, lifted.text
    assert_error(stack.api("GET", audience_path("gone"), app.key), 404, "audience_not_found")
    put_file(stack, key, lines("u003"))
    assert members(stack, app, "gone") == ["u003"]
    assert_error(stack.api("DELETE", audience_path("gone", "/tombstone"), app.key), 409, "audience_not_deleted")


def test_deleting_the_file_keeps_the_members(stack: RunningStack, app: AudienceApp) -> None:
    key = f"imports/{app.app_id}/kept-file.csv"
    put_file(stack, key, lines("u004"))

    stack.client("s3").delete_object(Bucket=imports_bucket(stack), Key=key)

    assert members(stack, app, "kept-file") == ["u004"]


def test_the_audience_limit_refuses_new_names_with_a_record_that_does_not_count(stack: RunningStack) -> None:
    small = audience_app(stack, "audlim")
    register_users(stack, small.app_id, ["u001"])
    operator(stack, "set-max-audiences", "--app-id", small.app_id, "--max", "2")
    for name in ("one", "two"):
        put_file(stack, f"imports/{small.app_id}/{name}.csv", lines("u001"))

    put_file(stack, f"imports/{small.app_id}/three.csv", lines("u001"))

    refused = get_audience(stack, small, "three")
    assert refused["status"] == "failed"
    assert refused["last_failure"]["code"] == "audience_limit"
    assert refused["version"] is None
    # Replacing an existing audience is not a new one.
    put_file(stack, f"imports/{small.app_id}/two.csv", lines("u001"))
    assert get_audience(stack, small, "two")["status"] == "ready"
    # A deleted audience stops counting; the refused name imports on its next file.
    stack.api("DELETE", audience_path("one"), small.key).raise_for_status()
    put_file(stack, f"imports/{small.app_id}/three.csv", lines("u001"))
    assert get_audience(stack, small, "three")["status"] == "ready"
    put_file(stack, f"imports/{small.app_id}/four.csv", lines("u001"))
    assert get_audience(stack, small, "four")["status"] == "failed"


def test_an_unknown_app_and_a_stray_key_create_nothing(stack: RunningStack, app: AudienceApp) -> None:
    put_file(stack, "imports/no-such-app/list.csv", lines("u001"))
    put_file(stack, f"{app.app_id}/stray.csv", lines("u001"))  # the old README's key: no imports/ prefix
    put_file(stack, f"imports/{app.app_id}/notes.txt", lines("u001"))

    unknown = invoke_importer(stack, s3_event(stack, "imports/no-such-app/list.csv", 5, "1"))["outcomes"][0]
    stray = invoke_importer(stack, s3_event(stack, f"{app.app_id}/stray.csv", 5, "1"))["outcomes"][0]

    assert (unknown["outcome"], stray["outcome"]) == ("unknown_app", "stray")
    assert catalog_items(stack, "no-such-app#audience") == []
    listed = stack.api("GET", "/v1/audiences", app.key, params={"limit": 200}).json()["items"]
    assert not {item["name"] for item in listed} & {"stray", "notes", "list"}


def test_an_upload_through_the_presigned_url(stack: RunningStack, app: AudienceApp) -> None:
    before = datetime.now(UTC)
    answer = stack.api("POST", audience_path("by link é", "/upload-url"), app.key)
    after = datetime.now(UTC)
    assert answer.status_code == 200, answer.text
    link = answer.json()
    assert link["method"] == "PUT"
    assert link["key"] == f"imports/{app.app_id}/by link é.csv"
    # Valid for 15 minutes: the answer says until when, and the signature itself expires then.
    expires_at = datetime.fromisoformat(link["expires_at"])
    assert before + timedelta(minutes=15) - timedelta(seconds=2) <= expires_at <= after + timedelta(minutes=15)
    assert parse_qs(urlsplit(link["url"]).query)["X-Amz-Expires"] == ["900"]

    uploaded = requests.put(link["url"], data=lines("u001", "u002"), timeout=30)

    assert uploaded.status_code == 200, uploaded.text
    assert sorted(members(stack, app, "by link é")) == ["u001", "u002"]


def test_members_check_and_point_lookups(stack: RunningStack, app: AudienceApp) -> None:
    put_file(stack, f"imports/{app.app_id}/checked.csv", lines(*USERS[:250]))
    asked = [*USERS[240:260], "nobody", "u001"]

    answer = stack.api("POST", audience_path("checked", "/members/check"), app.key, json={"user_ids": asked})

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "members": [*USERS[240:250], "u001"],
        "not_members": [*USERS[250:260], "nobody"],
    }
    too_many = {"user_ids": [f"x{n}" for n in range(1001)]}
    too_big = stack.api("POST", audience_path("checked", "/members/check"), app.key, json=too_many)
    assert too_big.status_code == 422
    member = stack.api("GET", audience_path("checked", "/members/u249"), app.key)
    assert member.json() == {"audience": "checked", "user_id": "u249", "member": True}


def test_a_cursor_of_a_replaced_version_is_refused(stack: RunningStack, app: AudienceApp) -> None:
    key = f"imports/{app.app_id}/paged.csv"
    put_file(stack, key, lines(*USERS[:20]))
    first = stack.api("GET", audience_path("paged", "/members"), app.key, params={"limit": 5}).json()
    assert len(first["items"]) == 5
    put_file(stack, key, lines(*USERS[20:40]))

    stale = stack.api("GET", audience_path("paged", "/members"), app.key, params={"cursor": first["next_cursor"]})

    assert_error(stale, 409, "audience_replaced")
