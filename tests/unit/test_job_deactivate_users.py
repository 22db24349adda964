"""deactivate_users against moto's DynamoDB: what it selects, changes, re-checks and reports."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pynamodb.exceptions import UpdateError

from steward.devices.models import DeactivationReason, Transport
from steward.devices.repository import DeviceRepository
from steward.jobs.engine import Entity, JobContext, Page, PageCost, ReportRow, counts_of
from steward.jobs.kinds import deactivate_users, kind_for
from steward.jobs.models import JobType
from steward.settings import StoreSettings
from steward.usecases.user_activation import NO_ACTIVE_CONTACT, UserActivation
from steward.users.models import CONTACT_DEACTIVATED_BY_JOB, UpsertUser
from steward.users.repository import UserRepository
from tests.support.jobs import job_context, listed, run_inline
from tests.support.reach import (
    add_contact,
    add_users,
    confirm,
    device,
    dry_pages,
    fail_twice,
    far_apart,
    identify,
    ids_in_shards,
    inactive_count,
    interleaved,
    last_activity,
    services,
    snapshot,
    static_segment,
    user,
)

APP, OTHER_APP = "app-a", "app-b"
KIND = kind_for(JobType.DEACTIVATE_USERS)
FCM = {"field": "device.transport", "op": "eq", "value": "FCM"}
OLD_DOMAIN = {"field": "email.address", "op": "contains", "value": "@old.example"}
NORWAY = {"field": "phone.number", "op": "starts_with", "value": "+47"}


def context(medium: str, criteria: Any, dry_run: bool, app_id: str = APP) -> JobContext:
    return job_context(app_id, JobType.DEACTIVATE_USERS, {"medium": medium, "criteria": criteria}, dry_run=dry_run)


def outcomes(rows: list[ReportRow]) -> dict[tuple[str, str], tuple[str, str]]:
    return {(row.entity.value, row.id): (row.action, row.detail) for row in rows}


def user_row(user_id: str) -> ReportRow:
    return ReportRow(Entity.USER, user_id, "deactivated", user_id, "no_active_contact", consequence=True)


def contact(app_id: str, user_id: str, kind: str, address: str) -> Any:
    contacts = user(app_id, user_id).emails if kind == "emails" else user(app_id, user_id).phones
    return next(item for item in contacts if item.address == address)


# Push.


@pytest.fixture
def phones(store: StoreSettings) -> None:
    """Owners of FCM devices (the criteria) in every situation the user rule meets."""
    add_users(APP, "only-fcm", "two-fcm", "fcm-and-apns", "fcm-and-email", "free", "asleep")
    add_users(OTHER_APP, "only-fcm")
    identify(APP, "d-only", "only-fcm")
    for device_id in ids_in_shards("d-two", [0, 3]):  # one user's devices in two shards
        identify(APP, device_id, "two-fcm")
    identify(APP, "d-mixed-fcm", "fcm-and-apns")
    identify(APP, "d-mixed-apns", "fcm-and-apns", Transport.APNS)
    identify(APP, "d-email", "fcm-and-email")
    add_contact(APP, "fcm-and-email", "emails", "mail@example.com")
    identify(APP, "d-failed", "free")
    fail_twice(APP, "d-failed", datetime(2026, 1, 1).astimezone())  # inactive already: not selected
    identify(APP, "d-asleep", "asleep")
    services().user_activation.set_active(APP, "asleep", False, "operator", datetime(2026, 1, 1).astimezone())
    identify(OTHER_APP, "d-only", "only-fcm")


PUSH_DEVICES = {"d-only", *ids_in_shards("d-two", [0, 3]), "d-mixed-fcm", "d-email", "d-asleep"}


@pytest.mark.usefixtures("phones")
def test_push_selects_the_active_devices_the_criteria_select_and_predicts_their_owners(store: StoreSettings) -> None:
    before = snapshot(store)

    dry = run_inline(context("push", FCM, dry_run=True))

    assert {row.id for row in dry.rows if row.entity is Entity.DEVICE} == PUSH_DEVICES
    assert all(row.user_id for row in dry.rows)
    # "asleep" is inactive already; the others keep an APNS device or an email.
    users = sorted((row for row in dry.rows if row.entity is Entity.USER), key=lambda row: row.id)
    assert users == [user_row("only-fcm"), user_row("two-fcm")]
    assert (dry.counts.matched, dry.counts.changed) == (len(PUSH_DEVICES), len(PUSH_DEVICES) + 2)
    assert snapshot(store) == before


@pytest.mark.usefixtures("phones")
def test_push_deactivates_the_devices_then_the_users_nothing_reaches_once_each() -> None:
    segment_id = static_segment(APP, "vip", "only-fcm", "two-fcm", "fcm-and-apns")
    activity = last_activity(APP, "only-fcm", "two-fcm", "fcm-and-apns")
    dry = run_inline(context("push", FCM, dry_run=True))
    ctx = context("push", FCM, dry_run=False)

    real = run_inline(ctx)

    assert listed(real.rows) == listed(dry.rows)
    assert sum(1 for row in real.rows if row.entity is Entity.USER) == 2
    for device_id in PUSH_DEVICES:
        found = device(APP, device_id)
        assert (found.active, found.deactivation_reason, found.deactivated_at) == (
            False,
            DeactivationReason.JOB,
            ctx.now,
        )
    assert device(APP, "d-mixed-apns").active is True
    assert device(OTHER_APP, "d-only").active is True
    for user_id in ("only-fcm", "two-fcm"):
        owner = user(APP, user_id)
        assert (owner.active, owner.deactivation_reason, owner.deactivated_at) == (False, NO_ACTIVE_CONTACT, ctx.now)
    assert user(APP, "fcm-and-apns").active is True
    assert user(APP, "fcm-and-email").active is True
    assert user(APP, "asleep").deactivation_reason == "operator"
    assert user(OTHER_APP, "only-fcm").active is True
    assert inactive_count(APP, segment_id) == 2
    assert last_activity(APP, *activity) == activity


@pytest.mark.usefixtures("phones")
def test_push_rows_applied_again_change_nothing_more_and_report_the_same(store: StoreSettings) -> None:
    ctx = context("push", FCM, dry_run=False)
    real = run_inline(ctx)
    after = snapshot(store)

    again = KIND.apply(ctx, real.rows)

    assert again == real.rows
    assert snapshot(store) == after


@pytest.mark.usefixtures("phones")
def test_push_pages_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deactivate_users, "DEVICE_PAGE", 1)
    sizes: list[int] = []

    def count(page: Page) -> None:
        sizes.append(sum(1 for row in page.rows if row.entity is Entity.DEVICE))

    real = run_inline(context("push", FCM, dry_run=False), on_page=lambda item, page: count(page))

    assert {row.id for row in real.rows if row.entity is Entity.DEVICE} == PUSH_DEVICES
    assert max(sizes) <= 1
    assert sum(1 for row in real.rows if row.entity is Entity.USER) == 2


@pytest.mark.usefixtures("phones")
def test_a_confirmed_push_run_marks_what_changed_since_the_dry_run_drifted() -> None:
    dry = dry_pages(context("push", FCM, dry_run=True))
    identify(APP, "d-only", "only-fcm", Transport.APNS)  # no longer matches the criteria
    services().devices.logout(APP, "d-mixed-fcm", None)
    fail_twice(APP, "d-email", datetime(2026, 1, 1).astimezone())
    add_contact(APP, "two-fcm", "phones", "+4791234567")
    ctx = context("push", FCM, dry_run=False)

    done = confirm(ctx, KIND, dry)

    two = ids_in_shards("d-two", [0, 3])
    assert outcomes(done) == {
        ("device", "d-only"): ("drifted", "no longer matches the criteria"),
        ("device", "d-mixed-fcm"): ("drifted", "deleted"),
        ("device", "d-email"): ("drifted", "inactive (delivery_error)"),
        ("device", "d-asleep"): ("deactivated", ""),
        ("device", two[0]): ("deactivated", ""),
        ("device", two[1]): ("deactivated", ""),
        ("user", "only-fcm"): ("drifted", "has an active device"),
        ("user", "two-fcm"): ("drifted", "has an active phone"),
    }
    assert device(APP, "d-only").active is True
    assert (user(APP, "only-fcm").active, user(APP, "two-fcm").active) == (True, True)
    counts = counts_of(done)
    assert (counts.matched, counts.changed, counts.skipped) == (6, 3, 3)


@pytest.mark.usefixtures("phones")
def test_push_rows_whose_device_changed_before_apply_are_not_found_drifted_or_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = context("push", FCM, dry_run=False)
    rows = run_inline(context("push", FCM, dry_run=True)).rows
    services().devices.logout(APP, "d-only", None)
    fail_twice(APP, "d-email", datetime(2026, 1, 1).astimezone())
    identify(APP, "d-new", "two-fcm", Transport.APNS)  # the criteria do not select it: it keeps two-fcm reached
    real_write = DeviceRepository.deactivate_for_job

    def refuse(self: DeviceRepository, app_id: str, device_id: str, now: datetime) -> Any:
        if device_id == "d-asleep":
            error = ClientError({"Error": {"Code": "ValidationException", "Message": "too large"}}, "UpdateItem")
            raise UpdateError("Failed to update item", cause=error)
        return real_write(self, app_id, device_id, now)

    monkeypatch.setattr(DeviceRepository, "deactivate_for_job", refuse)

    done = outcomes(KIND.apply(ctx, rows))

    assert done[("device", "d-only")] == ("not_found", "")
    assert done[("device", "d-email")] == ("drifted", "inactive (delivery_error)")
    assert done[("device", "d-asleep")] == ("failed", "ValidationException: too large")
    assert done[("device", "d-mixed-fcm")] == ("deactivated", "")
    assert done[("user", "only-fcm")] == ("deactivated", "no_active_contact")  # its device is gone: nothing reaches it
    assert done[("user", "two-fcm")] == ("drifted", "has an active device")
    assert device(APP, "d-asleep").active is True
    assert user(APP, "two-fcm").active is True


def test_pages_that_run_side_by_side_report_a_user_once(store: StoreSettings) -> None:
    add_users(APP, "u1")
    greatest, other = far_apart()
    identify(APP, greatest, "u1")
    identify(APP, other, "u1")

    first, last, done = interleaved(context("push", FCM, dry_run=False), KIND)

    assert [(row.entity, row.id) for row in first] == [(Entity.DEVICE, greatest), (Entity.USER, "u1")]
    assert [(row.entity, row.id) for row in last] == [(Entity.DEVICE, other)]
    assert done == [user_row("u1"), ReportRow(Entity.DEVICE, other, "deactivated", "u1")]
    assert (device(APP, greatest).active, device(APP, other).active, user(APP, "u1").active) == (False, False, False)


def test_a_device_without_owner_is_deactivated_and_reported_without_user(store: StoreSettings) -> None:
    add_users(APP, "someone")
    identify(APP, "orphan", "someone")
    services().device_repository.dissociate(APP, "orphan", None, datetime(2026, 1, 1).astimezone())

    real = run_inline(context("push", FCM, dry_run=False))

    assert real.rows == [ReportRow(Entity.DEVICE, "orphan", "deactivated", "")]
    assert device(APP, "orphan").active is False
    assert user(APP, "someone").active is True


def test_criteria_on_the_owner_select_devices_too(store: StoreSettings) -> None:
    add_users(APP, "free", "paying")
    services().users.upsert(APP, "free", UpsertUser(fields={"plan": "free"}))
    identify(APP, "d-free", "free")
    identify(APP, "d-paying", "paying")

    dry = run_inline(context("push", {"field": "fields.plan", "op": "eq", "value": "free"}, dry_run=True))

    assert [(row.entity, row.id) for row in dry.rows] == [(Entity.DEVICE, "d-free"), (Entity.USER, "free")]


# Emails and phones.


@pytest.fixture
def mailboxes(store: StoreSettings) -> None:
    add_users(APP, "only-old", "old-and-new", "old-and-device", "old-and-phone", "old-inactive", "two-old")
    add_contact(APP, "only-old", "emails", "a@old.example")
    add_contact(APP, "old-and-new", "emails", "b@old.example")
    add_contact(APP, "old-and-new", "emails", "b@new.example")
    add_contact(APP, "old-and-device", "emails", "c@old.example")
    identify(APP, "d-c", "old-and-device")
    add_contact(APP, "old-and-phone", "emails", "d@old.example")
    add_contact(APP, "old-and-phone", "phones", "+4791234567")
    add_contact(APP, "old-inactive", "emails", "e@old.example", active=False)
    add_contact(APP, "two-old", "emails", "f1@old.example")
    add_contact(APP, "two-old", "emails", "f2@old.example")
    add_contact(APP, "two-old", "emails", "f3@new.example", active=False)


OLD_EMAILS = {"a@old.example", "b@old.example", "c@old.example", "d@old.example", "f1@old.example", "f2@old.example"}


@pytest.mark.usefixtures("mailboxes")
def test_email_selects_active_addresses_and_predicts_the_users_left_unreachable(store: StoreSettings) -> None:
    before = snapshot(store)

    dry = run_inline(context("email", OLD_DOMAIN, dry_run=True))

    assert {row.id for row in dry.rows if row.entity is Entity.EMAIL} == OLD_EMAILS
    assert {row.id for row in dry.rows if row.entity is Entity.USER} == {"only-old", "two-old"}
    assert next(row for row in dry.rows if row.id == "a@old.example").user_id == "only-old"
    assert snapshot(store) == before


@pytest.mark.usefixtures("mailboxes")
def test_email_deactivates_the_addresses_in_one_write_per_user_then_the_users(store: StoreSettings) -> None:
    segment_id = static_segment(APP, "news", "only-old", "old-and-new", "two-old")
    activity = last_activity(APP, "only-old", "two-old", "old-and-new")
    dry = run_inline(context("email", OLD_DOMAIN, dry_run=True))
    ctx = context("email", OLD_DOMAIN, dry_run=False)

    real = run_inline(ctx)

    assert listed(real.rows) == listed(dry.rows)
    for row in real.rows:
        if row.entity is Entity.EMAIL:
            found = contact(APP, row.user_id, "emails", row.id)
            assert (found.active, found.deactivated_at, found.deactivation_reason) == (
                False,
                ctx.now,
                CONTACT_DEACTIVATED_BY_JOB,
            )
    assert contact(APP, "old-and-new", "emails", "b@new.example").active is True
    assert contact(APP, "two-old", "emails", "f3@new.example").deactivation_reason is None
    assert {user_id for user_id in ("only-old", "two-old") if user(APP, user_id).active} == set()
    assert all(user(APP, user_id).active for user_id in ("old-and-new", "old-and-device", "old-and-phone"))
    assert inactive_count(APP, segment_id) == 2
    assert last_activity(APP, *activity) == activity
    counts = counts_of(real.rows)
    assert (counts.matched, counts.changed, counts.skipped) == (6, 8, 0)

    after = snapshot(store)
    assert KIND.apply(ctx, real.rows) == real.rows
    assert snapshot(store) == after


@pytest.mark.usefixtures("mailboxes")
def test_a_confirmed_email_run_marks_what_changed_since_the_dry_run_drifted() -> None:
    dry = dry_pages(context("email", OLD_DOMAIN, dry_run=True))
    add_contact(APP, "only-old", "emails", "a@old.example", active=False)  # deactivated by someone else
    services().users.remove_contact(APP, "old-and-new", "emails", "b@old.example")
    add_contact(APP, "two-old", "phones", "+4790000000")
    services().user_deletion.delete(APP, "old-and-phone")

    done = confirm(context("email", OLD_DOMAIN, dry_run=False), KIND, dry)

    assert outcomes(done) == {
        ("email", "a@old.example"): ("drifted", "inactive"),
        # Unreachable all the same: the user rule still holds.
        ("user", "only-old"): ("deactivated", "no_active_contact"),
        ("email", "b@old.example"): ("drifted", "deleted"),
        ("email", "c@old.example"): ("deactivated", ""),
        ("email", "d@old.example"): ("drifted", "deleted"),
        ("email", "f1@old.example"): ("deactivated", ""),
        ("email", "f2@old.example"): ("deactivated", ""),
        ("user", "two-old"): ("drifted", "has an active phone"),
    }
    assert user(APP, "two-old").active is True


@pytest.mark.usefixtures("mailboxes")
def test_recheck_alone_marks_the_rows_that_no_longer_qualify_and_writes_nothing(store: StoreSettings) -> None:
    dry = run_inline(context("email", OLD_DOMAIN, dry_run=True))
    add_contact(APP, "two-old", "phones", "+4790000000")
    services().users.remove_contact(APP, "only-old", "emails", "a@old.example")
    before = snapshot(store)

    checked = KIND.recheck(context("email", OLD_DOMAIN, dry_run=False), dry.rows)

    assert snapshot(store) == before
    assert {(row.id, row.action, row.detail) for row in checked if row.action != "deactivated"} == {
        ("a@old.example", "drifted", "deleted"),
        ("two-old", "drifted", "has an active phone"),
    }


@pytest.mark.usefixtures("mailboxes")
def test_email_rows_whose_user_changed_before_apply_are_not_found_drifted_or_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = run_inline(context("email", OLD_DOMAIN, dry_run=True)).rows
    services().user_deletion.delete(APP, "only-old")
    services().users.remove_contact(APP, "old-and-new", "emails", "b@old.example")
    add_contact(APP, "old-and-device", "emails", "c@old.example", active=False)
    real_save = UserRepository.save_contacts_if_unchanged

    def refuse(self: UserRepository, app_id: str, changed: Any, version: int) -> bool:
        if changed.user_id == "two-old":
            error = ClientError({"Error": {"Code": "ValidationException", "Message": "too large"}}, "UpdateItem")
            raise UpdateError("Failed to update item", cause=error)
        return real_save(self, app_id, changed, version)

    monkeypatch.setattr(UserRepository, "save_contacts_if_unchanged", refuse)

    done = outcomes(KIND.apply(context("email", OLD_DOMAIN, dry_run=False), rows))

    assert done == {
        ("email", "a@old.example"): ("not_found", ""),
        ("user", "only-old"): ("not_found", ""),
        ("email", "b@old.example"): ("not_found", ""),
        ("email", "c@old.example"): ("drifted", "inactive"),
        ("email", "d@old.example"): ("deactivated", ""),
        ("email", "f1@old.example"): ("failed", "ValidationException: too large"),
        ("email", "f2@old.example"): ("failed", "ValidationException: too large"),
        ("user", "two-old"): ("drifted", "has an active email"),
    }


@pytest.mark.usefixtures("mailboxes")
def test_a_profile_changed_between_read_and_write_is_read_again_and_keeps_the_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_save = UserRepository.save_contacts_if_unchanged
    saves: list[int] = []

    def phone_arrives_first(self: UserRepository, app_id: str, changed: Any, version: int) -> bool:
        if changed.user_id == "only-old":
            saves.append(version)
            if len(saves) == 1:
                add_contact(APP, "only-old", "phones", "+4795555555")  # lands between the job's read and its write
        return real_save(self, app_id, changed, version)

    monkeypatch.setattr(UserRepository, "save_contacts_if_unchanged", phone_arrives_first)

    real = run_inline(context("email", OLD_DOMAIN, dry_run=False))

    assert contact(APP, "only-old", "emails", "a@old.example").active is False
    assert contact(APP, "only-old", "phones", "+4795555555").active is True
    assert outcomes(real.rows)[("user", "only-old")] == ("drifted", "has an active phone")
    assert user(APP, "only-old").active is True
    # Refused at the version it read, written at the next one.
    assert [saves[0] + 1] == saves[1:]


@pytest.mark.usefixtures("mailboxes")
def test_a_user_given_an_email_just_before_its_deactivation_stays_active(monkeypatch: pytest.MonkeyPatch) -> None:
    real_set_active_when = UserActivation.set_active_when

    def email_arrives_first(self: UserActivation, app_id: str, user_id: str, *args: Any) -> Any:
        if user_id == "only-old":
            add_contact(APP, "only-old", "emails", "a@new.example")  # after the job's check, before its write
        return real_set_active_when(self, app_id, user_id, *args)

    monkeypatch.setattr(UserActivation, "set_active_when", email_arrives_first)

    real = run_inline(context("email", OLD_DOMAIN, dry_run=False))

    assert outcomes(real.rows)[("user", "only-old")] == ("drifted", "has an active email")
    assert user(APP, "only-old").active is True


def test_a_user_the_selection_did_not_list_is_left_as_it_is(store: StoreSettings) -> None:
    add_users(APP, "u1")
    add_contact(APP, "u1", "emails", "a@old.example")
    identify(APP, "d1", "u1")
    rows = run_inline(context("email", OLD_DOMAIN, dry_run=True)).rows
    fail_twice(APP, "d1", datetime(2026, 1, 1).astimezone())  # after the selection: the device no longer reaches u1

    done = KIND.apply(context("email", OLD_DOMAIN, dry_run=False), rows)

    # The rows are the job's intent, and apply answers each of them: u1 was not one.
    assert done == [ReportRow(Entity.EMAIL, "a@old.example", "deactivated", "u1")]
    assert user(APP, "u1").active is True


def test_sms_deactivates_phone_numbers(store: StoreSettings) -> None:
    add_users(APP, "norwegian", "swede")
    add_contact(APP, "norwegian", "phones", "+4791234567")
    add_contact(APP, "swede", "phones", "+46701234567")

    real = run_inline(context("sms", NORWAY, dry_run=False))

    assert real.rows == [ReportRow(Entity.PHONE, "+4791234567", "deactivated", "norwegian"), user_row("norwegian")]
    assert (user(APP, "norwegian").active, user(APP, "swede").active) == (False, True)


def test_reactivating_a_contact_through_the_api_clears_the_jobs_mark(store: StoreSettings) -> None:
    add_users(APP, "u1")
    add_contact(APP, "u1", "emails", "a@old.example")
    identify(APP, "d1", "u1")  # keeps the user active
    run_inline(context("email", OLD_DOMAIN, dry_run=False))

    add_contact(APP, "u1", "emails", "a@old.example", active=True)
    again = contact(APP, "u1", "emails", "a@old.example")
    add_contact(APP, "u1", "emails", "a@old.example", active=False)
    off = contact(APP, "u1", "emails", "a@old.example")

    assert (again.active, again.deactivated_at, again.deactivation_reason) == (True, None, None)
    assert (off.active, off.deactivation_reason) == (False, None)
    assert off.deactivated_at is not None


# Costs.


def page_costs(ctx: JobContext) -> PageCost:
    costs: list[PageCost] = []
    run_inline(ctx, on_page=lambda item, page: costs.append(page.cost))
    return sum(costs, PageCost())


def two_devices() -> None:
    add_users(APP, "u1")
    identify(APP, "d1", "u1")
    identify(APP, "d2", "u1")


def one_email() -> None:
    add_users(APP, "u1")
    add_contact(APP, "u1", "emails", "a@old.example")


@pytest.mark.parametrize(
    ("setup", "medium", "criteria", "writes"),
    [
        (two_devices, "push", FCM, 2 + 2),  # 2 device updates; the owner's transaction (its profile, doubled)
        (one_email, "email", OLD_DOMAIN, 1 + 2),  # 1 profile write; the owner's transaction
    ],
)
@pytest.mark.usefixtures("store")
def test_the_dry_run_estimates_the_real_runs_write_units(
    setup: Callable[[], None], medium: str, criteria: Any, writes: int
) -> None:
    setup()

    estimate = page_costs(context(medium, criteria, dry_run=True))

    assert estimate.write_units == writes
    assert estimate.read_units > 0
