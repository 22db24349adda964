"""reactivate_devices against moto's DynamoDB: what it selects, changes, re-checks and reports."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pynamodb.exceptions import UpdateError

from steward.devices import lifecycle
from steward.devices.models import DeactivationReason, LastStatus, Transport
from steward.devices.repository import DeviceRepository
from steward.jobs.engine import Entity, JobContext, PageCost, ReportRow, counts_of
from steward.jobs.kinds import kind_for, reactivate_devices
from steward.jobs.models import JobType
from steward.settings import StoreSettings
from steward.sharding import partition_for
from steward.tables import DeviceRecord
from steward.usecases.user_activation import NO_ACTIVE_CONTACT
from tests.support.jobs import job_context, listed, run_inline
from tests.support.reach import (
    ERROR,
    add_contact,
    add_users,
    confirm,
    device,
    dry_pages,
    fail_twice,
    far_apart,
    identify,
    inactive_count,
    interleaved,
    last_activity,
    services,
    snapshot,
    static_segment,
    user,
)
from tests.support.service import SHARD_COUNT

pytestmark = pytest.mark.usefixtures("store")

APP, OTHER_APP = "app-a", "app-b"
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)
IN_WINDOW = datetime(2026, 1, 15, 12, tzinfo=UTC)
PARAMS = {"transport": "FCM", "start": "2026-01-01", "end": "2026-02-01"}
KIND = kind_for(JobType.REACTIVATE_DEVICES)


def context(dry_run: bool, app_id: str = APP) -> JobContext:
    return job_context(app_id, JobType.REACTIVATE_DEVICES, PARAMS, dry_run=dry_run)


def deactivated(device_id: str, user_id: str, at: datetime = IN_WINDOW, **options: Any) -> None:
    identify(options.get("app_id", APP), device_id, user_id, options.get("transport", Transport.FCM))
    fail_twice(options.get("app_id", APP), device_id, at)


def rows_of(rows: list[ReportRow], entity: Entity) -> dict[str, ReportRow]:
    return {row.id: row for row in rows if row.entity is entity}


@pytest.fixture
def mixed(store: StoreSettings) -> None:
    """Devices the job selects (sel-*) and devices it must leave alone."""
    add_users(APP, "u1", "u2")
    deactivated("sel-in", "u1")
    deactivated("sel-at-start", "u1", START)
    deactivated("sel-orphan", "u2")
    services().device_repository.dissociate(APP, "sel-orphan", None, IN_WINDOW)
    deactivated("at-end", "u1", END)
    deactivated("before-start", "u1", START - timedelta(microseconds=1))
    deactivated("apns", "u1", transport=Transport.APNS)
    identify(APP, "active", "u1")
    identify(APP, "bounced", "u1")
    services().device_repository.record_first_failure(APP, "bounced", ERROR, IN_WINDOW)
    identify(APP, "by-job", "u2")
    services().device_repository.deactivate_for_job(APP, "by-job", IN_WINDOW)
    deactivated("sel-in", "u1", app_id=OTHER_APP)  # same id, other app


SELECTED = {"sel-in", "sel-at-start", "sel-orphan"}


@pytest.mark.usefixtures("mixed")
def test_a_dry_run_lists_the_transports_devices_deactivated_by_delivery_errors_in_the_window(
    store: StoreSettings,
) -> None:
    before = snapshot(store)

    dry = run_inline(context(dry_run=True))

    assert {row.id: (row.action, row.user_id) for row in dry.rows} == {
        "sel-in": ("reactivated", "u1"),
        "sel-at-start": ("reactivated", "u1"),
        "sel-orphan": ("reactivated", ""),
    }
    assert all(row.entity is Entity.DEVICE and not row.consequence for row in dry.rows)
    assert (dry.counts.matched, dry.counts.changed, dry.counts.skipped) == (3, 3, 0)
    assert snapshot(store) == before


@pytest.mark.usefixtures("mixed")
def test_a_real_run_reactivates_them_as_the_dry_run_listed_and_leaves_the_rest(store: StoreSettings) -> None:
    dry = run_inline(context(dry_run=True))
    before = unselected(store)
    ctx = context(dry_run=False)

    real = run_inline(ctx)

    assert listed(real.rows) == listed(dry.rows)
    assert {row.action for row in real.rows} == {"reactivated"}
    for device_id in SELECTED:
        now = device(APP, device_id)
        assert (now.active, now.last_status, now.failure_streak) == (True, LastStatus.UNUSED, 0)
        assert (now.deactivated_at, now.deactivation_reason, now.last_error_code, now.last_error_message) == (
            None,
            None,
            None,
            None,
        )
        assert now.has_succeeded is False
        assert now.updated_at == ctx.now
    assert device(APP, "at-end").active is False
    assert device(APP, "before-start").active is False
    assert device(APP, "apns").active is False
    assert device(APP, "by-job").deactivation_reason is DeactivationReason.JOB
    assert device(APP, "bounced").last_status is LastStatus.BOUNCED
    assert device(OTHER_APP, "sel-in").active is False
    assert unselected(store) == before


def unselected(store: StoreSettings) -> list[dict[str, Any]]:
    """The stored devices but those the job selects."""
    return [
        item
        for item in snapshot(store)[store.devices_table]
        if not (item["pk"]["S"].startswith(f"{APP}#") and item["sk"]["S"] in SELECTED)
    ]


def test_the_write_is_the_pure_rule_and_bumps_the_version() -> None:
    add_users(APP, "u1")
    deactivated("d1", "u1")
    before = device(APP, "d1")
    version = DeviceRecord.get(partition_for(APP, "d1", SHARD_COUNT), "d1").version
    now = datetime(2026, 3, 1, tzinfo=UTC)

    write = services().device_repository.reactivate_for_job(APP, "d1", Transport.FCM, START, END, "job_x", now)

    assert write.device == lifecycle.reactivate(before, now) == device(APP, "d1")
    assert DeviceRecord.get(partition_for(APP, "d1", SHARD_COUNT), "d1").version == version + 1
    assert lifecycle.reactivate(write.device, now) is write.device  # active: nothing to change


def test_the_pure_rule_says_why_a_device_is_left_alone() -> None:
    add_users(APP, "u1")
    deactivated("d1", "u1")
    found = device(APP, "d1")

    assert lifecycle.reactivation_drift(found, Transport.FCM, START, END) is None
    assert lifecycle.reactivation_drift(found, Transport.APNS, START, END) == "transport FCM"
    assert lifecycle.reactivation_drift(found, Transport.FCM, START, IN_WINDOW) == "deactivated outside the window"
    assert (
        lifecycle.reactivation_drift(found.model_copy(update={"active": True}), Transport.FCM, START, END) == "active"
    )
    by_job = found.model_copy(update={"deactivation_reason": DeactivationReason.JOB})
    assert lifecycle.reactivation_drift(by_job, Transport.FCM, START, END) == "deactivation_reason deactivated_by_job"


def test_pages_stay_bounded_and_resume_where_they_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    add_users(APP, "u1")
    device_ids = [f"d{index:02d}" for index in range(13)]
    for device_id in device_ids:
        deactivated(device_id, "u1")
    monkeypatch.setattr(reactivate_devices, "DEVICE_PAGE", 2)
    sizes: list[int] = []

    real = run_inline(context(dry_run=False), on_page=lambda item, page: sizes.append(len(page.rows)))

    assert sorted(row.id for row in real.rows if row.entity is Entity.DEVICE) == device_ids
    assert max(sizes) <= 2
    assert all(device(APP, device_id).active for device_id in device_ids)


@pytest.mark.usefixtures("mixed")
def test_applying_the_same_rows_again_changes_nothing_more_and_reports_the_same(store: StoreSettings) -> None:
    ctx = context(dry_run=False)
    real = run_inline(ctx)
    after = snapshot(store)

    again = KIND.apply(ctx, real.rows)

    assert again == real.rows
    assert snapshot(store) == after


def test_the_owner_deactivated_for_want_of_a_contact_comes_back_with_its_device(store: StoreSettings) -> None:
    add_users(APP, "gone", "cleaned", "other-transport", "two")
    segment_id = static_segment(APP, "vip", "gone", "cleaned", "two")
    deactivated("d-gone", "gone")
    deactivated("d-cleaned", "cleaned")
    deactivated("d-apns", "other-transport", transport=Transport.APNS)
    deactivated("d-two-a", "two")
    deactivated("d-two-b", "two")
    activation = services().user_activation
    for user_id in ("gone", "other-transport", "two"):
        activation.set_active(APP, user_id, False, NO_ACTIVE_CONTACT, IN_WINDOW)
    activation.set_active(APP, "cleaned", False, "operator", IN_WINDOW)
    activity = last_activity(APP, "gone", "cleaned", "two")
    assert inactive_count(APP, segment_id) == 3
    dry = run_inline(context(dry_run=True))
    ctx = context(dry_run=False)

    real = run_inline(ctx)

    assert listed(real.rows) == listed(dry.rows)
    assert rows_of(real.rows, Entity.USER) == {
        user_id: ReportRow(Entity.USER, user_id, "reactivated", user_id, "active_device", consequence=True)
        for user_id in ("gone", "two")
    }
    assert (user(APP, "gone").active, user(APP, "two").active) == (True, True)
    assert (user(APP, "gone").deactivated_at, user(APP, "gone").deactivation_reason) == (None, None)
    assert (user(APP, "cleaned").active, user(APP, "cleaned").deactivation_reason) == (False, "operator")
    assert user(APP, "other-transport").active is False
    assert device(APP, "d-cleaned").active is True  # the device itself qualifies
    assert inactive_count(APP, segment_id) == 1  # "cleaned" alone
    assert last_activity(APP, *activity) == activity
    counts = counts_of(real.rows)
    assert (counts.matched, counts.changed, counts.skipped) == (4, 6, 0)  # users are consequences, not matches

    after = snapshot(store)
    assert KIND.apply(ctx, real.rows) == real.rows
    assert snapshot(store) == after


@pytest.mark.usefixtures("mixed")
def test_a_confirmed_run_marks_what_changed_since_the_dry_run_drifted() -> None:
    add_users(APP, "owner")
    deactivated("d-owner", "owner")
    services().user_activation.set_active(APP, "owner", False, NO_ACTIVE_CONTACT, IN_WINDOW)
    dry = dry_pages(context(dry_run=True))
    identify(APP, "sel-in", "u1")  # identify brings a delivery_error device back itself
    services().devices.logout(APP, "sel-at-start", None)
    services().user_activation.set_active(APP, "owner", True, None, IN_WINDOW)
    ctx = context(dry_run=False)

    done = confirm(ctx, KIND, dry)

    assert {row.id: (row.action, row.detail) for row in done} == {
        "sel-in": ("drifted", "active"),
        "sel-at-start": ("drifted", "deleted"),
        "sel-orphan": ("reactivated", ""),
        "d-owner": ("reactivated", ""),
        "owner": ("drifted", "active"),
    }
    assert device(APP, "sel-in").updated_at != ctx.now
    assert device(APP, "sel-orphan").active is True
    counts = counts_of(done)
    assert (counts.matched, counts.changed, counts.skipped) == (4, 2, 2)


@pytest.mark.usefixtures("mixed")
def test_recheck_alone_marks_the_rows_that_no_longer_qualify_and_writes_nothing(store: StoreSettings) -> None:
    add_users(APP, "owner", "moved-on")
    for user_id in ("owner", "moved-on"):
        deactivated(f"d-{user_id}", user_id)
        services().user_activation.set_active(APP, user_id, False, NO_ACTIVE_CONTACT, IN_WINDOW)
    dry = run_inline(context(dry_run=True))
    identify(APP, "sel-in", "u1")
    services().user_activation.set_active(APP, "moved-on", True, None, IN_WINDOW)
    before = snapshot(store)

    checked = KIND.recheck(context(dry_run=False), dry.rows)

    assert snapshot(store) == before
    assert {row.id: (row.action, row.detail) for row in checked if row.action != "reactivated"} == {
        "sel-in": ("drifted", "active"),
        "moved-on": ("drifted", "active"),
    }


def test_pages_that_run_side_by_side_report_an_owner_once() -> None:
    add_users(APP, "u1")
    greatest, other = far_apart()
    deactivated(greatest, "u1")
    deactivated(other, "u1")
    services().user_activation.set_active(APP, "u1", False, NO_ACTIVE_CONTACT, IN_WINDOW)

    first, last, done = interleaved(context(dry_run=False), KIND)

    assert [(row.entity, row.id) for row in first] == [(Entity.DEVICE, greatest), (Entity.USER, "u1")]
    assert [(row.entity, row.id) for row in last] == [(Entity.DEVICE, other)]
    assert [row.action for row in done] == ["reactivated", "reactivated"]
    assert (device(APP, other).active, user(APP, "u1").active) == (True, True)


def test_a_confirmed_run_brings_back_the_owners_the_dry_run_listed() -> None:
    add_users(APP, "owner")
    deactivated("d-owner", "owner")
    services().user_activation.set_active(APP, "owner", False, NO_ACTIVE_CONTACT, IN_WINDOW)
    dry = dry_pages(context(dry_run=True))

    done = confirm(context(dry_run=False), KIND, dry)

    assert listed(done) == listed([row for page in dry for row in page])
    assert user(APP, "owner").active is True


@pytest.mark.usefixtures("mixed")
def test_rows_whose_device_changed_before_apply_are_not_found_drifted_or_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deactivated("poisoned", "u1")
    ctx = context(dry_run=False)
    rows = run_inline(context(dry_run=True)).rows
    services().devices.logout(APP, "sel-in", None)
    identify(APP, "sel-at-start", "u1")
    identify(APP, "sel-orphan", "u2")
    fail_twice(APP, "sel-orphan", END + timedelta(days=1))  # failing again, after the window
    real_write = DeviceRepository.reactivate_for_job

    def refuse_poisoned(self: DeviceRepository, app_id: str, device_id: str, *args: Any) -> Any:
        if device_id == "poisoned":
            error = ClientError({"Error": {"Code": "ValidationException", "Message": "too large"}}, "UpdateItem")
            raise UpdateError("Failed to update item", cause=error)
        return real_write(self, app_id, device_id, *args)

    monkeypatch.setattr(DeviceRepository, "reactivate_for_job", refuse_poisoned)

    done = KIND.apply(ctx, rows)

    assert {row.id: (row.action, row.detail) for row in done} == {
        "sel-in": ("not_found", ""),
        "sel-at-start": ("drifted", "active"),
        "sel-orphan": ("drifted", "deactivated outside the window"),
        "poisoned": ("failed", "ValidationException: too large"),
    }
    counts = counts_of(done)
    assert (counts.matched, counts.changed, counts.skipped, counts.failed) == (3, 0, 3, 1)
    assert device(APP, "poisoned").active is False
    assert device(APP, "sel-orphan").active is False


def test_a_store_error_that_a_retry_may_cure_fails_the_page_instead_of_its_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_users(APP, "u1")
    deactivated("d1", "u1")
    rows = run_inline(context(dry_run=True)).rows

    def throttled(*args: Any) -> Any:
        error = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "x")
        raise UpdateError("Failed to update item", cause=error)

    monkeypatch.setattr(DeviceRepository, "reactivate_for_job", throttled)

    with pytest.raises(UpdateError):
        KIND.apply(context(dry_run=False), rows)


def test_the_dry_run_estimates_the_real_runs_units() -> None:
    add_users(APP, "u1", "owner")
    for index in range(5):
        deactivated(f"d{index}", "u1")
    identify(APP, "active", "u1")
    deactivated("d-owner", "owner")
    services().user_activation.set_active(APP, "owner", False, NO_ACTIVE_CONTACT, IN_WINDOW)
    costs: list[PageCost] = []

    run_inline(context(dry_run=True), on_page=lambda item, page: costs.append(page.cost))

    total = sum(costs, PageCost())
    # 6 device updates of under 1 KB, and the owner's transaction: its profile and one segment-free write, doubled.
    assert total.write_units == 6 + 2
    # Every shard is walked, each walk at least half a unit; the owner and its devices are read.
    assert total.read_units >= SHARD_COUNT * 0.5 + 1


def test_a_user_that_deactivate_users_left_unreachable_comes_back_with_its_device() -> None:
    add_users(APP, "u1")
    add_contact(APP, "u1", "emails", "a@old.example")
    deactivated("d1", "u1")
    old_domain = {"field": "email.address", "op": "contains", "value": "@old.example"}
    cleanup = job_context(APP, JobType.DEACTIVATE_USERS, {"medium": "email", "criteria": old_domain}, dry_run=False)
    run_inline(cleanup)
    assert (user(APP, "u1").active, user(APP, "u1").deactivation_reason) == (False, NO_ACTIVE_CONTACT)

    real = run_inline(context(dry_run=False))

    assert [(row.entity, row.id, row.action) for row in real.rows] == [
        (Entity.DEVICE, "d1", "reactivated"),
        (Entity.USER, "u1", "reactivated"),
    ]
    assert user(APP, "u1").active is True


def test_a_deactivate_users_job_is_undone_with_reason_deactivated_by_job() -> None:
    """identify never brings back a device a job deactivated; reactivate_devices with that reason does."""
    add_users(APP, "u1", "u2")
    identify(APP, "d1", "u1")
    identify(APP, "d2", "u2")
    deactivated("errored", "u2")
    fcm = {"field": "device.transport", "op": "eq", "value": "FCM"}
    cleanup = job_context(APP, JobType.DEACTIVATE_USERS, {"medium": "push", "criteria": fcm}, dry_run=False)
    cleanup_rows = run_inline(cleanup).rows
    assert {row.id for row in cleanup_rows if row.entity is Entity.DEVICE} == {"d1", "d2"}
    identify(APP, "d1", "u1")
    assert device(APP, "d1").active is False  # the app's identify does not undo a job
    window = {"start": "2000-01-01", "end": "2000-06-01"}
    by_job = {"transport": "FCM", "reason": "deactivated_by_job", "start": cleanup.now.date().isoformat()}
    by_job["end"] = (cleanup.now + timedelta(days=1)).date().isoformat()

    default = run_inline(context(dry_run=False))
    undo = run_inline(job_context(APP, JobType.REACTIVATE_DEVICES, by_job, dry_run=False))
    outside = run_inline(job_context(APP, JobType.REACTIVATE_DEVICES, {**by_job, **window}, dry_run=False))

    # u2 came back with its errored device already; u1 only with the device the cleanup took.
    assert [(row.entity, row.id) for row in default.rows] == [(Entity.DEVICE, "errored"), (Entity.USER, "u2")]
    assert sorted(row.id for row in undo.rows if row.entity is Entity.DEVICE) == ["d1", "d2"]
    assert [row.id for row in undo.rows if row.entity is Entity.USER] == ["u1"]
    assert outside.rows == []
    assert (device(APP, "d1").active, device(APP, "d1").deactivation_reason) == (True, None)
    assert user(APP, "u1").active is True
