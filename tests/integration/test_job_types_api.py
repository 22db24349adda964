"""Every job type through the HTTP API of the local stack, with Step Functions really executing.

For each type: what it selects and changes, a dry run and a real run with the
same params listing the same entities, a confirmed dry run acting on exactly
what the dry run listed (and reporting `drifted` what changed in between), a
worker refused mid-page by a throttled DynamoDB and retried without applying
anything twice, re-authentication, and the one-real-job lock. Each test has
an app of its own: jobs act on a whole app's data.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import pytest

from steward.jobs.models import JobRecord, JobStatus, JobType
from steward.jobs.repository import _record as job_item
from steward.tables import JOB_LOCK_SK, JobLockRecord, audience_members_key, job_lock_pk, jobs_pk
from tests.support.audiences import put_file
from tests.support.client import (
    JOBS,
    JobApp,
    RunningStack,
    all_items,
    assert_error,
    confirm_job,
    events_of_job,
    job_app,
    listed_entities,
    listen_to_job_events,
    ok,
    report_rows,
    run_job,
    submit_job,
    subscription_job,
    tag_devices_path,
    throttled,
)

NOW = datetime.now(UTC)


# Data of an app, through its own API


def put_user(stack: RunningStack, app: JobApp, user_id: str, fields: dict[str, Any] | None = None) -> None:
    ok(stack.api("PUT", f"/v1/users/{user_id}", app.key, json={"fields": fields or {}}))


def add_email(stack: RunningStack, app: JobApp, user_id: str, email: str) -> None:
    ok(stack.api("PUT", f"/v1/users/{user_id}/emails/{email}", app.key, json={}))


def identify(stack: RunningStack, app: JobApp, device_id: str, user_id: str, transport: str = "FCM") -> None:
    ok(stack.api("PUT", f"/v1/devices/{device_id}", app.key, json={"user_id": user_id, "transport": transport}))


def fail_twice(stack: RunningStack, app: JobApp, device_id: str) -> None:
    """Two delivery failures in a row: the device ends suppressed, deactivated with reason delivery_error."""
    for _ in range(2):
        body = {"accepted": False, "error_code": "UNREGISTERED", "error_message": "gone"}
        ok(stack.api("POST", f"/v1/devices/{device_id}/push-results", app.key, json=body))


def device(stack: RunningStack, app: JobApp, device_id: str) -> dict[str, Any]:
    return ok(stack.api("GET", f"/v1/devices/{device_id}", app.key))


def user(stack: RunningStack, app: JobApp, user_id: str) -> dict[str, Any]:
    return ok(stack.api("GET", f"/v1/users/{user_id}", app.key))


def segment(stack: RunningStack, app: JobApp, name: str) -> dict[str, Any]:
    return ok(stack.api("POST", "/v1/segments", app.key, json={"name": name, "kind": "static"}), 201)


def segments_by_name(stack: RunningStack, app: JobApp) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in all_items(stack, "/v1/segments", key=app.key)}


def tag(stack: RunningStack, app: JobApp, name: str, add: list[str], remove: list[str] | None = None) -> None:
    ok(stack.api("POST", tag_devices_path(name), app.key, json={"add": add, "remove": remove or []}))


def tag_counts(stack: RunningStack, app: JobApp) -> dict[str, int]:
    return {item["tag"]: item["device_count"] for item in all_items(stack, "/v1/tags", key=app.key)}


def region(stack: RunningStack, app: JobApp, name: str, country: str, lat: float, lng: float, **extra: Any) -> str:
    body = {"type": "city", "name": name, "country": country, "lat": lat, "lng": lng, **extra}
    return str(ok(stack.api("POST", "/v1/regions", app.key, json=body), 201)["region_id"])


def region_ids(stack: RunningStack, app: JobApp) -> set[str]:
    return {item["region_id"] for item in all_items(stack, "/v1/regions", key=app.key, limit=50)}


def actions(rows: list[dict[str, str]]) -> dict[str, str]:
    return {row["id"]: row["action"] for row in rows}


# One scenario per type: its data, its params, what the real run must leave, and a change that makes
# one listed entity drift.


class Scenario:
    type: str
    name = ""  # several scenarios of one type (bulk_update's actions) each have a name
    # The write its apply makes for each entity (operation, table): the retry test refuses the second one.
    write: tuple[str, str]
    skip = 1  # let the first such write through

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        """After the real run: the data is as its report says."""
        raise NotImplementedError

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        """Change the data so that one listed entity no longer qualifies; return its id."""
        raise NotImplementedError


class SplitAudience(Scenario):
    type, write = "split_audience", ("BatchWriteItem", "CatalogTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        for n in range(9):
            put_user(stack, app, f"u{n}")
            if n % 3:
                add_email(stack, app, f"u{n}", f"u{n}@example.com")
        return {"prefix": "wave", "num_segments": 2, "medium": "email"}

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        added = {row["id"]: row["detail"] for row in rows if row["action"] == "added"}
        assert sorted(added) == ["u1", "u2", "u4", "u5", "u7", "u8"]  # only users with an active email
        segments = segments_by_name(stack, app)
        sizes = sorted(segments[name]["member_count"] for name in ("wave-1", "wave-2"))
        assert sizes == [3, 3]
        for user_id, name in added.items():
            assert segments[name]["segment_id"] in user(stack, app, user_id)["segments"]

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        assert stack.api("DELETE", "/v1/users/u4", app.key).status_code == 204
        return "u4"


class ReactivateDevices(Scenario):
    type, write = "reactivate_devices", ("UpdateItem", "DevicesTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        for n in range(4):
            identify(stack, app, f"d{n}", f"u{n}", transport="APNS" if n == 3 else "FCM")
            fail_twice(stack, app, f"d{n}")
        identify(stack, app, "healthy", "u9")
        start = (NOW - timedelta(days=1)).date().isoformat()
        end = (NOW + timedelta(days=1)).date().isoformat()
        return {"transport": "FCM", "start": start, "end": end}

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert {row["id"] for row in rows} == {"d0", "d1", "d2"}
        for device_id in ("d0", "d1", "d2"):
            reactivated = device(stack, app, device_id)
            assert reactivated["active"] is True
            assert reactivated["last_status"] == ""
            assert reactivated["failure_streak"] == 0
        assert device(stack, app, "d3")["active"] is False  # another transport

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        identify(stack, app, "d1", "u1")  # the app holds the token again: reactivated already
        return "d1"


class DeactivateUsers(Scenario):
    type, write = "deactivate_users", ("UpdateItem", "ProfilesTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        for n in range(6):
            put_user(stack, app, f"u{n}", {"plan": "free" if n < 4 else "pro"})
            add_email(stack, app, f"u{n}", f"u{n}@example.com")
        identify(stack, app, "d0", "u0")  # u0 keeps a device: it stays active
        criteria = {"field": "fields.plan", "op": "eq", "value": "free"}
        return {"medium": "email", "criteria": criteria}

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        emails = {row["id"] for row in rows if row["entity"] == "email"}
        users = {row["id"] for row in rows if row["entity"] == "user"}
        assert emails == {f"u{n}@example.com" for n in range(4)}
        assert users == {"u1", "u2", "u3"}
        for n in range(6):
            profile = user(stack, app, f"u{n}")
            assert [email["active"] for email in profile["emails"]] == [n >= 4]
            assert profile["active"] is (n == 0 or n >= 4)

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        put_user(stack, app, "u2", {"plan": "pro"})
        return "u2@example.com"


class DeleteEmptySegments(Scenario):
    type, write = "delete_empty_segments", ("TransactWriteItems", "CatalogTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        put_user(stack, app, "member")
        for name in ("empty-1", "empty-2", "full"):
            created = segment(stack, app, name)
            if name == "full":
                path = f"/v1/segments/{created['segment_id']}/members"
                ok(stack.api("POST", path, app.key, json={"add": ["member"], "remove": []}))
        return {}

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert sorted(row["detail"].split(" ")[0] for row in rows if row["action"] == "deleted") == [
            "empty-1",
            "empty-2",
        ]
        assert set(segments_by_name(stack, app)) == {"full"}

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        target = segments_by_name(stack, app)["empty-2"]
        path = f"/v1/segments/{target['segment_id']}/members"
        ok(stack.api("POST", path, app.key, json={"add": ["member"], "remove": []}))
        return str(target["segment_id"])


class DeleteSegments(Scenario):
    type, write = "delete_segments", ("TransactWriteItems", "CatalogTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        put_user(stack, app, "member")
        ids = []
        for name in ("old-1", "old-2", "keep"):
            created = segment(stack, app, name)
            path = f"/v1/segments/{created['segment_id']}/members"
            ok(stack.api("POST", path, app.key, json={"add": ["member"], "remove": []}))
            ids.append(created["segment_id"])
        self.unknown = "seg_" + "0" * 16
        return {"segment_ids": [ids[0], ids[1], self.unknown]}

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert actions(rows)[self.unknown] == "not_found"
        assert set(segments_by_name(stack, app)) == {"keep"}
        assert len(user(stack, app, "member")["segments"]) == 1

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        target = segments_by_name(stack, app)["old-2"]
        assert stack.api("DELETE", f"/v1/segments/{target['segment_id']}", app.key).status_code == 204
        return str(target["segment_id"])


class DeleteEmptyTags(Scenario):
    type, write = "delete_empty_tags", ("DeleteItem", "CatalogTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        identify(stack, app, "d0", "u0")
        tag(stack, app, "kept", ["d0"])
        for name in ("stale-1", "stale-2"):
            tag(stack, app, name, ["d0"])
            tag(stack, app, name, [], ["d0"])
        return {}

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert {row["id"] for row in rows if row["action"] == "deleted"} == {"stale-1", "stale-2"}
        assert tag_counts(stack, app) == {"kept": 1}

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        tag(stack, app, "stale-2", ["d0"])
        return "stale-2"


class DeleteTags(Scenario):
    type, write = "delete_tags", ("TransactWriteItems", "CatalogTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        for n in range(3):
            identify(stack, app, f"d{n}", f"u{n}")
        tag(stack, app, "promo", ["d0", "d1", "d2"])
        tag(stack, app, "beta", ["d0"])
        tag(stack, app, "kept", ["d1"])
        return {"tags": ["promo", "beta", "never"]}

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert actions(rows) == {"promo": "deleted", "beta": "deleted", "never": "not_found"}
        assert {row["id"]: row["detail"] for row in rows if row["action"] == "deleted"} == {
            "promo": "3 devices untagged",
            "beta": "1 device untagged",
        }
        assert tag_counts(stack, app) == {"kept": 1}
        assert device(stack, app, "d0")["tags"] == []

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        # Only a job deletes a tag: another one gets there before the confirmation.
        assert run_job(stack, app, "delete_tags", {"tags": ["beta"]}, dry_run=False)["status"] == "succeeded"
        return "beta"


class DeleteRegions(Scenario):
    type, write = "delete_regions", ("BatchWriteItem", "CatalogTable")
    skip = 0  # one batch a page, and the two regions may share a shard

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        self.paris = region(stack, app, "Paris", "FR", 48.8566, 2.3522)
        self.lyon = region(stack, app, "Lyon", "FR", 45.764, 4.8357)
        self.berlin = region(stack, app, "Berlin", "DE", 52.52, 13.405)
        return {"region_type": "city", "country": "FR"}

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert {row["id"] for row in rows} == {self.paris, self.lyon}
        assert region_ids(stack, app) == {self.berlin}

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        assert stack.api("DELETE", f"/v1/regions/{self.lyon}", app.key).status_code == 204
        return self.lyon


PRO = {"field": "fields.plan", "op": "eq", "value": "pro"}


class BulkUpdateFields(Scenario):
    type, name, write = "bulk_update", "bulk_update.update_fields", ("UpdateItem", "ProfilesTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        for n in range(4):
            put_user(stack, app, f"u{n}", {"plan": "pro" if n < 3 else "free", "trial": "2026-01-01"})
        put_user(stack, app, "done", {"plan": "pro", "tier": "gold"})  # already as the job leaves it
        self.activity = {n: user(stack, app, f"u{n}")["last_activity_at"] for n in range(4)}
        selection = {"source": "all", "criteria": PRO}
        return {"action": "update_fields", "selection": selection, "set": {"tier": "gold"}, "delete": ["trial"]}

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert actions(rows) == {"u0": "updated", "u1": "updated", "u2": "updated", "done": "skipped"}
        assert {row["id"]: row["detail"] for row in rows}["done"] == "unchanged"
        for n in range(3):
            assert user(stack, app, f"u{n}")["fields"] == {"plan": "pro", "tier": "gold"}
        assert user(stack, app, "u3")["fields"] == {"plan": "free", "trial": "2026-01-01T00:00:00Z"}
        # A bulk change is not activity of the user.
        assert {n: user(stack, app, f"u{n}")["last_activity_at"] for n in range(4)} == self.activity

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        put_user(stack, app, "u1", {"plan": "free"})
        return "u1"


class BulkGlobalUnsubscribe(Scenario):
    type, name, write = "bulk_update", "bulk_update.global_unsubscribe", ("UpdateItem", "ProfilesTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        for n in range(4):
            put_user(stack, app, f"u{n}")
        self.segment_id = segment(stack, app, "complaints")["segment_id"]
        path = f"/v1/segments/{self.segment_id}/members"
        ok(stack.api("POST", path, app.key, json={"add": ["u0", "u1", "u2"], "remove": []}))
        return {"action": "global_unsubscribe", "selection": {"source": "segment", "segment_id": self.segment_id}}

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert actions(rows) == {"u0": "unsubscribed", "u1": "unsubscribed", "u2": "unsubscribed"}
        assert [user(stack, app, f"u{n}")["global_unsubscribed"] for n in range(4)] == [True, True, True, False]

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        path = f"/v1/segments/{self.segment_id}/members"
        ok(stack.api("POST", path, app.key, json={"add": [], "remove": ["u2"]}))
        return "u2"


def resource(stack: RunningStack, app: JobApp, name: str, channels: list[str]) -> str:
    body = {"name": name, "channels": channels}
    return str(ok(stack.api("POST", "/v1/resources", app.key, json=body), 201)["resource_id"])


def subscribe(stack: RunningStack, app: JobApp, user_id: str, resource_id: str, channel: str, status: str) -> None:
    path = f"/v1/users/{user_id}/subscriptions/{resource_id}/{channel}"
    ok(stack.api("PUT", path, app.key, json={"status": status}))


def statuses(stack: RunningStack, app: JobApp, resource_id: str, *user_ids: str) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for user_id in user_ids:
        held = ok(stack.api("GET", f"/v1/users/{user_id}/subscriptions", app.key))
        found[user_id] = next((item["status"] for item in held if item["resource_id"] == resource_id), None)
    return found


class BulkAddSubscription(Scenario):
    """From the profile's sms subscription to a brand: never from an unsafe one, never over an unsafe one."""

    type, name, write = "bulk_update", "bulk_update.add_subscription", ("UpdateItem", "ProfilesTable")
    users = ("fresh", "again", "complained", "bounced-source", "no-source", "done")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        self.brand = resource(stack, app, "Brand", ["sms", "email"])
        self.news = resource(stack, app, "News", ["sms"])
        for user_id in self.users:
            put_user(stack, app, user_id)
            if user_id != "no-source":
                source = "Hardbounced" if user_id == "bounced-source" else "Subscribed"
                subscribe(stack, app, user_id, self.brand, "sms", source)
        subscribe(stack, app, "complained", self.news, "sms", "Complainer")
        subscribe(stack, app, "done", self.news, "sms", "Subscribed")
        self.activity = {user_id: user(stack, app, user_id)["last_activity_at"] for user_id in self.users}
        return {
            "action": "add_subscription",
            "selection": {"source": "all"},
            "resource_id": self.news,
            "channel": "sms",
            "status": "Subscribed",
            "contact_source": "resource",
            "source_resource_id": self.brand,
        }

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert {row["id"]: (row["action"], row["detail"]) for row in rows} == {
            "fresh": ("subscription_added", "new"),
            "again": ("subscription_added", "new"),
            "complained": ("skipped", "unsafe_status: Complainer"),
            "bounced-source": ("skipped", "source_unsafe_status: Hardbounced"),
            "no-source": ("skipped", "no_source_subscription"),
            "done": ("skipped", "unchanged"),
        }
        assert statuses(stack, app, self.news, *self.users) == {
            "fresh": "Subscribed",
            "again": "Subscribed",
            "complained": "Complainer",
            "bounced-source": None,
            "no-source": None,
            "done": "Subscribed",
        }
        assert {user_id: user(stack, app, user_id)["last_activity_at"] for user_id in self.users} == self.activity

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        subscribe(stack, app, "again", self.brand, "sms", "Invalid")
        return "again"


class BulkUpdateSubscription(Scenario):
    type, name, write = "bulk_update", "bulk_update.update_subscription", ("UpdateItem", "ProfilesTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        self.news = resource(stack, app, "News", ["email"])
        for user_id, status in (("a", "Subscribed"), ("b", "Subscribed"), ("c", "Hardbounced"), ("none", None)):
            put_user(stack, app, user_id, {"plan": "pro"})
            if status is not None:
                subscribe(stack, app, user_id, self.news, "email", status)
        return {
            "action": "update_subscription",
            "selection": {"source": "all", "criteria": PRO},
            "resource_id": self.news,
            "channel": "email",
            "status": "Unsubscribed",
        }

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert {row["id"]: (row["action"], row["detail"]) for row in rows} == {
            "a": ("subscription_updated", "was Subscribed"),
            "b": ("subscription_updated", "was Subscribed"),
            "c": ("subscription_updated", "was Hardbounced"),
            "none": ("skipped", "no_subscription"),
        }
        assert statuses(stack, app, self.news, "a", "b", "c", "none") == {
            "a": "Unsubscribed",
            "b": "Unsubscribed",
            "c": "Unsubscribed",
            "none": None,
        }

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        subscribe(stack, app, "b", self.news, "email", "Unsubscribed")
        return "b"


LONG_AGO = "2025-01-15T10:00:00Z"
TRIAL = {"field": "fields.plan", "op": "eq", "value": "trial"}


class BulkDeleteProfiles(Scenario):
    type, name, write = "bulk_update", "bulk_update.delete_profiles", ("DeleteItem", "ProfilesTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        for user_id in ("idle1", "idle2", "idle-pro"):
            plan = "pro" if user_id == "idle-pro" else "trial"
            body = {"fields": {"plan": plan}, "last_activity_at": LONG_AGO}
            ok(stack.api("PUT", f"/v1/users/{user_id}", app.key, json=body))
        put_user(stack, app, "active", {"plan": "trial"})  # an upsert without history is activity: now
        return {"action": "delete_profiles", "selection": {"source": "all", "criteria": TRIAL}}

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert {row["id"]: (row["action"], row["detail"]) for row in rows} == {
            "idle1": ("deleted", "2025-01-15T10:00:00+00:00"),
            "idle2": ("deleted", "2025-01-15T10:00:00+00:00"),
            "active": ("skipped", "active_since_cutoff"),
        }
        for user_id, status in (("idle1", 404), ("idle2", 404), ("active", 200), ("idle-pro", 200)):
            assert stack.api("GET", f"/v1/users/{user_id}", app.key).status_code == status

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        put_user(stack, app, "idle2", {"plan": "trial"})  # back: activity now
        return "idle2"


def loyalty_program(stack: RunningStack, app: JobApp, *codes: str) -> str:
    program_id = str(ok(stack.api("POST", "/v1/loyalty-programs", app.key, json={"name": "Gold"}), 201)["program_id"])
    ok(stack.api("POST", f"/v1/loyalty-programs/{program_id}/codes", app.key, json={"codes": list(codes)}))
    return program_id


def attach_code(stack: RunningStack, app: JobApp, user_id: str, code: str) -> None:
    ok(stack.api("PUT", f"/v1/users/{user_id}/promo-codes/{code}", app.key))


def promo_codes(stack: RunningStack, app: JobApp, user_id: str) -> list[str]:
    return sorted(item["code"] for item in user(stack, app, user_id)["promo_codes"])


class BulkAttachPromoCodes(Scenario):
    type, name, write = "bulk_update", "bulk_update.promo_codes.attach", ("TransactWriteItems", "CatalogTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        self.program = loyalty_program(stack, app, "GOLD-1", "GOLD-2", "GOLD-3", "GOLD-4")
        for n in range(5):
            put_user(stack, app, f"u{n}", {"plan": "pro"})
        attach_code(stack, app, "u4", "GOLD-4")  # holds one already
        put_user(stack, app, "free", {"plan": "free"})
        return {
            "action": "promo_codes",
            "selection": {"source": "all", "criteria": PRO},
            "operation": "attach",
            "program_id": self.program,
        }

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        outcome = {row["id"]: (row["action"], row["detail"]) for row in rows}
        assert outcome["u4"] == ("skipped", "already_has_code")
        handed = sorted(detail for action, detail in outcome.values() if action == "code_attached")
        assert handed == ["GOLD-1", "GOLD-2", "GOLD-3"]
        assert [detail for action, detail in outcome.values() if action == "skipped"].count("no_code_left") == 1
        held = [code for n in range(5) for code in promo_codes(stack, app, f"u{n}")]
        assert sorted(held) == ["GOLD-1", "GOLD-2", "GOLD-3", "GOLD-4"]  # each code once
        assert promo_codes(stack, app, "free") == []

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        put_user(stack, app, "u0", {"plan": "free"})
        return "u0"


class BulkDetachPromoCodes(Scenario):
    type, name, write = "bulk_update", "bulk_update.promo_codes.detach", ("TransactWriteItems", "CatalogTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        self.program = loyalty_program(stack, app, "GOLD-1", "GOLD-2", "GOLD-3")
        other = loyalty_program(stack, app, "SILVER-1")
        for n in range(4):
            put_user(stack, app, f"u{n}", {"plan": "pro"})
        for n in range(3):
            attach_code(stack, app, f"u{n}", f"GOLD-{n + 1}")
        attach_code(stack, app, "u0", "SILVER-1")
        assert other
        return {
            "action": "promo_codes",
            "selection": {"source": "all", "criteria": PRO},
            "operation": "detach",
            "program_id": self.program,
        }

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert {row["id"]: (row["action"], row["detail"]) for row in rows} == {
            "u0": ("code_detached", "GOLD-1"),
            "u1": ("code_detached", "GOLD-2"),
            "u2": ("code_detached", "GOLD-3"),
            "u3": ("skipped", "no_code"),
        }
        assert [promo_codes(stack, app, f"u{n}") for n in range(4)] == [["SILVER-1"], [], [], []]

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        ok(stack.api("DELETE", "/v1/users/u1/promo-codes/GOLD-2", app.key))
        return "u1"


class BulkUpdateAudience(Scenario):
    """update_fields on the members of an imported audience (dropped in the imports bucket, imported by S3's event)."""

    type, name, write = "bulk_update", "bulk_update.audience", ("UpdateItem", "ProfilesTable")

    def setup(self, stack: RunningStack, app: JobApp) -> dict[str, Any]:
        for user_id in ("m1", "m2", "m3", "outsider"):
            put_user(stack, app, user_id, {"plan": "pro"})
        self.name = f"spring {uuid4().hex[:8]}"
        self.drop(stack, app, ["m1", "m2", "m3", "unknown"])
        return {
            "action": "update_fields",
            "selection": {"source": "audience", "name": self.name},
            "set": {"tier": "gold"},
        }

    def drop(self, stack: RunningStack, app: JobApp, user_ids: list[str]) -> None:
        body = ("user_id\n" + "".join(f"{user_id}\n" for user_id in user_ids)).encode()
        put_file(stack, f"imports/{app.app_id}/{self.name}.csv", body)
        found = ok(stack.api("GET", f"/v1/audiences/{quote(self.name, safe='')}", app.key))
        assert found["status"] == "ready", found

    def check(self, stack: RunningStack, app: JobApp, rows: list[dict[str, str]]) -> None:
        assert actions(rows) == {"m1": "updated", "m2": "updated", "m3": "updated"}
        assert user(stack, app, "m2")["fields"] == {"plan": "pro", "tier": "gold"}
        assert user(stack, app, "outsider")["fields"] == {"plan": "pro"}

    def drift(self, stack: RunningStack, app: JobApp) -> str:
        put_user(stack, app, "m3", {"tier": "gold"})  # already as the job leaves it
        return "m3"


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    scenario.name or scenario.type: scenario
    for scenario in (
        SplitAudience,
        ReactivateDevices,
        DeactivateUsers,
        DeleteEmptySegments,
        DeleteSegments,
        DeleteEmptyTags,
        DeleteTags,
        DeleteRegions,
        BulkUpdateFields,
        BulkGlobalUnsubscribe,
        BulkAddSubscription,
        BulkUpdateSubscription,
        BulkDeleteProfiles,
        BulkAttachPromoCodes,
        BulkDetachPromoCodes,
        BulkUpdateAudience,
    )
}
TYPES = sorted(SCENARIOS)


def test_every_type_has_a_scenario() -> None:
    assert {scenario.type for scenario in SCENARIOS.values()} == {job_type.value for job_type in JobType}


@pytest.mark.parametrize("job_type", TYPES)
def test_dry_and_real_runs_list_the_same_entities(stack: RunningStack, job_type: str) -> None:
    scenario = SCENARIOS[job_type]()
    app = job_app(stack, job_type.replace("_", "-").replace(".", "-"))
    params = scenario.setup(stack, app)
    job_type = scenario.type

    dry = run_job(stack, app, job_type, params, dry_run=True)
    dry_rows = report_rows(stack, app.key, dry["job_id"])
    real = run_job(stack, app, job_type, params, dry_run=False)
    real_rows = report_rows(stack, app.key, real["job_id"])

    assert (dry["status"], real["status"]) == ("succeeded", "succeeded"), (dry, real)
    assert dry_rows
    assert listed_entities(dry_rows) == listed_entities(real_rows)
    assert dry["counts"]["matched"] == real["counts"]["matched"]
    scenario.check(stack, app, real_rows)
    # The report goes with the job; the audit entry stays.
    assert stack.api("DELETE", f"{JOBS}/{dry['job_id']}", app.key).status_code == 204
    assert_error(stack.api("GET", f"{JOBS}/{dry['job_id']}/report", app.key), 404, "job_not_found", "job_id")


@pytest.mark.parametrize("job_type", TYPES)
def test_a_confirmed_run_acts_on_what_the_dry_run_listed_and_reports_drift(stack: RunningStack, job_type: str) -> None:
    scenario = SCENARIOS[job_type]()
    app = job_app(stack, job_type.replace("_", "-").replace(".", "-"))
    params = scenario.setup(stack, app)
    job_type = scenario.type
    dry = run_job(stack, app, job_type, params, dry_run=True)
    dry_rows = report_rows(stack, app.key, dry["job_id"])

    drifted = scenario.drift(stack, app)
    confirmed = confirm_job(stack, app, dry["job_id"])

    rows = report_rows(stack, app.key, confirmed["job_id"])
    assert confirmed["status"] == "succeeded", confirmed
    assert sorted((row["entity"], row["id"]) for row in rows) == sorted((row["entity"], row["id"]) for row in dry_rows)
    assert actions(rows)[drifted] == "drifted"
    # Everything else as the dry run said (a drifted contact may take its user's row with it).
    dry_actions = {_key(row): row["action"] for row in dry_rows}
    changed = [row for row in rows if row["action"] != dry_actions[_key(row)]]
    assert {row["action"] for row in changed} == {"drifted"}
    assert len(changed) <= 2
    assert confirmed["counts"]["skipped"] >= 1


@pytest.mark.parametrize("job_type", TYPES)
def test_a_worker_throttled_mid_page_is_retried_without_applying_twice(stack: RunningStack, job_type: str) -> None:
    scenario = SCENARIOS[job_type]()
    app = job_app(stack, job_type.replace("_", "-").replace(".", "-"))
    params = scenario.setup(stack, app)
    job_type = scenario.type

    with throttled(stack, *scenario.write, skip=scenario.skip) as fired:
        real = run_job(stack, app, job_type, params, dry_run=False)

    assert fired == [1]
    assert real["status"] == "succeeded", real
    rows = report_rows(stack, app.key, real["job_id"])
    assert len(rows) == len({(row["entity"], row["id"]) for row in rows})  # each entity once
    scenario.check(stack, app, rows)


@pytest.mark.parametrize("job_type", TYPES)
def test_a_real_run_asks_for_the_password_and_refuses_a_wrong_one(stack: RunningStack, job_type: str) -> None:
    app = job_app(stack, "reauth")
    scenario = SCENARIOS[job_type]()
    params = scenario.setup(stack, app)
    job_type = scenario.type

    missing = submit_job(stack, app.key, job_type, params, dry_run=False)
    wrong = submit_job(stack, app.key, job_type, params, dry_run=False, admin_password="not the password")

    assert_error(missing, 428, "reauthentication_required", "admin_password")
    assert_error(wrong, 401, "reauthentication_failed")
    assert all_items(stack, JOBS, key=app.key) == []


@pytest.mark.parametrize("job_type", TYPES)
def test_a_real_run_waits_for_the_apps_running_job(stack: RunningStack, job_type: str) -> None:
    app = job_app(stack, "locked")
    scenario = SCENARIOS[job_type]()
    params = scenario.setup(stack, app)
    job_type = scenario.type
    running = _hold_the_lock(stack, app)

    refused = submit_job(stack, app.key, job_type, params, dry_run=False, admin_password=app.password)

    assert running in assert_error(refused, 409, "job_running")["message"]
    assert ok(submit_job(stack, app.key, job_type, params), 201)["dry_run"] is True  # dry runs never wait


def test_a_bulk_update_names_the_apps_own_resources_and_programs(stack: RunningStack) -> None:
    app = job_app(stack, "bulk-resources")
    email_only = resource(stack, app, "Letters", ["email"])
    params = subscription_job(email_only, "sms")
    assert_error(submit_job(stack, app.key, "bulk_update", params), 422, "channel_not_offered", "params.channel")
    unknown = {**params, "resource_id": "res_0000000000000000", "channel": "email"}
    assert_error(submit_job(stack, app.key, "bulk_update", unknown), 422, "unknown_resource", "params.resource_id")
    elsewhere = loyalty_program(stack, job_app(stack, "bulk-other-program"))
    codes = {"action": "promo_codes", "selection": {"source": "all"}, "operation": "attach", "program_id": elsewhere}
    refused = submit_job(stack, app.key, "bulk_update", codes)
    assert_error(refused, 422, "unknown_loyalty_program", "params.program_id")
    audience = {"action": "global_unsubscribe", "selection": {"source": "audience", "name": "never imported"}}
    refused = submit_job(stack, app.key, "bulk_update", audience)
    assert_error(refused, 422, "unknown_audience", "params.selection.name")
    assert all_items(stack, JOBS, key=app.key) == []


def test_a_total_limit_over_an_audience_takes_its_first_members_in_byte_order(stack: RunningStack) -> None:
    # The stack runs in its own process, so this list has one partition; test_job_bulk_audience.py takes the
    # first members of lists of many partitions.
    app = job_app(stack, "bulk-audience-limit")
    ids = [f"m{n:02d}" for n in range(40)] + ["Z-upper", "é-accent"]
    for n, user_id in enumerate(ids):
        put_user(stack, app, user_id, {"plan": "free" if n % 4 == 0 else "pro"})
    put_user(stack, app, "a-outsider", {"plan": "pro"})
    name = f"limit {uuid4().hex[:8]}"
    body = ("user_id\n" + "".join(f"{user_id}\n" for user_id in [*reversed(ids), "unknown"])).encode()
    put_file(stack, f"imports/{app.app_id}/{name}.csv", body)
    assert ok(stack.api("GET", f"/v1/audiences/{quote(name, safe='')}", app.key))["status"] == "ready"
    selection = {"source": "audience", "name": name, "criteria": PRO, "total_limit": 12}
    params = {"action": "update_fields", "selection": selection, "set": {"tier": "gold"}}
    pro = [user_id for n, user_id in enumerate(ids) if n % 4]
    expected = sorted(pro, key=lambda user_id: user_id.encode())[:12]

    dry = run_job(stack, app, "bulk_update", params, dry_run=True)
    real = run_job(stack, app, "bulk_update", params, dry_run=False)

    assert dry["status"] == real["status"] == "succeeded"
    assert [row["id"] for row in report_rows(stack, app.key, dry["job_id"])] == expected
    rows = report_rows(stack, app.key, real["job_id"])
    assert [(row["id"], row["action"]) for row in rows] == [(user_id, "updated") for user_id in expected]
    assert user(stack, app, expected[-1])["fields"] == {"plan": "pro", "tier": "gold"}
    following = sorted(pro, key=lambda user_id: user_id.encode())[12]
    assert user(stack, app, following)["fields"] == {"plan": "pro"}


def test_a_total_limit_over_a_list_imported_before_ordered_runs_fails_the_job_with_its_code(
    stack: RunningStack,
) -> None:
    app = job_app(stack, "bulk-audience-reimport")
    ids = [f"m{n:02d}" for n in range(6)]
    for user_id in ids:
        put_user(stack, app, user_id, {"plan": "pro"})
    name = f"legacy {uuid4().hex[:8]}"
    put_file(stack, f"imports/{app.app_id}/{name}.csv", ("user_id\n" + "".join(f"{i}\n" for i in ids)).encode())
    audience = ok(stack.api("GET", f"/v1/audiences/{quote(name, safe='')}", app.key))
    assert audience["status"] == "ready"
    # The version's member list as an import wrote it before runs were sorted: its one run out of byte order.
    s3, bucket = stack.client("s3"), stack.state["buckets"]["AudienceDataBucket"]
    key = audience_members_key(app.app_id, audience["version"])
    lines = s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()
    assert lines == sorted(lines) == [user_id.encode() for user_id in ids]
    s3.put_object(Bucket=bucket, Key=key, Body=b"".join(line + b"\n" for line in reversed(lines)))
    selection = {"source": "audience", "name": name, "total_limit": 3}
    params = {"action": "update_fields", "selection": selection, "set": {"tier": "gold"}}

    for dry_run in (True, False):
        job = run_job(stack, app, "bulk_update", params, dry_run=dry_run)

        assert (job["status"], job["error"]["code"]) == ("failed", "audience_needs_reimport"), job
        assert "import the file again" in job["error"]["message"]
        stored = stack.client("dynamodb").get_item(
            TableName=stack.state["tables"]["CatalogTable"],
            Key={"pk": {"S": jobs_pk(app.app_id)}, "sk": {"S": job["job_id"]}},
            ConsistentRead=True,
        )["Item"]
        assert (stored["status"]["S"], json.loads(stored["error"]["S"])) == ("failed", job["error"])
        assert job["counts"]["changed"] == 0
        assert _work_steps(stack, job["job_id"]) == 1  # refused: caught at once, never retried
    assert {user(stack, app, user_id)["fields"].get("tier") for user_id in ids} == {None}


def test_bulk_changes_publish_their_triggers_unless_suppressed(stack: RunningStack) -> None:
    app = job_app(stack, "bulk-triggers")
    queue_url = listen_to_job_events(stack)
    for n in range(12):  # two PutEvents batches
        put_user(stack, app, f"u{n:02d}", {"plan": "pro"})
    put_user(stack, app, "same", {"plan": "pro", "tier": "gold"})  # unchanged: no event
    params = {"action": "update_fields", "selection": {"source": "all", "criteria": PRO}, "set": {"tier": "gold"}}

    job = run_job(stack, app, "bulk_update", params, dry_run=False)
    heard = events_of_job(stack, queue_url, job["job_id"])
    triggers = [event for event in heard if event["detail-type"] != "Job Finished"]
    assert sorted(event["detail"]["user_id"] for event in triggers) == [f"u{n:02d}" for n in range(12)]
    assert {event["detail-type"] for event in triggers} == {"Field Updated"}
    assert {(event["source"], event["detail"]["app_id"]) for event in triggers} == {("steward", app.app_id)}

    quiet = {**params, "set": {"tier": "platinum"}, "suppress_triggers": True}
    job = run_job(stack, app, "bulk_update", quiet, dry_run=False)
    assert job["counts"]["changed"] == 13
    assert [event["detail-type"] for event in events_of_job(stack, queue_url, job["job_id"])] == ["Job Finished"]


def test_a_profile_deletion_shows_its_cutoff_and_needs_conditions(stack: RunningStack) -> None:
    app = job_app(stack, "bulk-cutoff")
    unconditioned = {"action": "delete_profiles", "selection": {"source": "all", "range": {"to_percent": 50}}}
    refused = submit_job(stack, app.key, "bulk_update", unconditioned)
    assert_error(refused, 422, "selection_conditions_required", "params.selection")
    params = {"action": "delete_profiles", "selection": {"source": "all", "criteria": TRIAL}}
    job = run_job(stack, app, "bulk_update", params, dry_run=True)
    created = datetime.fromisoformat(job["created_at"])
    # The default of 4 months: the start of the month four months before the job's.
    month = created.year * 12 + created.month - 1 - 4
    assert job["cutoff"] == f"{month // 12:04d}-{month % 12 + 1:02d}-01T00:00:00Z"


def _work_steps(stack: RunningStack, job_id: str) -> int:
    """How many times the job's execution invoked its worker for a page (first attempts and retries)."""
    stepfunctions = stack.client("stepfunctions")
    machine = stack.state["state_machines"]["JobStateMachine"]
    listed = stepfunctions.list_executions(stateMachineArn=machine, maxResults=1000)["executions"]
    (execution,) = [execution for execution in listed if execution["name"] == job_id]
    events = stepfunctions.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    scheduled = [
        json.loads(event["taskScheduledEventDetails"]["parameters"])
        for event in events
        if event["type"] == "TaskScheduled"
    ]
    return sum(1 for parameters in scheduled if parameters["Payload"]["step"] == "work")


def _key(row: dict[str, str]) -> tuple[str, str]:
    return row["entity"], row["id"]


def _hold_the_lock(stack: RunningStack, app: JobApp) -> str:
    """A real job that is running, as the engine records one (its record and the app's lock)."""
    job_id = f"job_{uuid4().hex}"
    record = JobRecord(
        job_id=job_id,
        app_id=app.app_id,
        key_id=app.key_id,
        type=JobType.DELETE_TAGS,
        params={"tags": ["x"]},
        dry_run=False,
        status=JobStatus.RUNNING,
        created_at=datetime.now(UTC),
    )
    lock = JobLockRecord(pk=job_lock_pk(app.app_id), sk=JOB_LOCK_SK, job_id=job_id, created_at=NOW, updated_at=NOW)
    client, table = stack.client("dynamodb"), stack.state["tables"]["CatalogTable"]
    for item in (job_item(record), lock):
        client.put_item(TableName=table, Item=item.serialize())
    return job_id
