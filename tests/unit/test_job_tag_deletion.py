"""delete_empty_tags and delete_tags against moto: what they select, untagging in bounded pages, retries, drift."""

from datetime import UTC, datetime
from typing import Any

import pytest

from steward.composition import Services
from steward.devices.models import IdentifyDevice, Transport
from steward.jobs.engine import Outcome, ReportRow
from steward.jobs.kinds.tag_deletion import DEVICES_UNTAGGED, DeleteEmptyTags, DeleteTags
from steward.jobs.models import JobType
from steward.settings import StoreSettings
from steward.sharding import partition_for
from steward.tables import DeviceRecord, ProfileRecord, TagMemberRecord, tag_members_collection
from tests.support.jobs import (
    InlineRun,
    confirm,
    job_context,
    listed,
    pages_of,
    run_applying_twice,
    run_inline,
    run_job,
    stored_items,
)
from tests.support.service import SHARD_COUNT, new_users, sort_keys_in_shards

A, B = "app-a", "app-b"
EMPTY = JobType.DELETE_EMPTY_TAGS
LISTED = JobType.DELETE_TAGS
LAST_ACTIVITY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def services(store: StoreSettings) -> Services:
    return Services(SHARD_COUNT)


def tagged(services: Services, tag: str, *device_ids: str, app_id: str = A, owner: str = "owner") -> None:
    """Devices (new ones are identified for ``owner``) carrying ``tag``."""
    for device_id in device_ids:
        if services.device_repository.get(app_id, device_id) is None:
            services.devices.identify(app_id, device_id, IdentifyDevice(user_id=owner, transport=Transport.FCM))
    outcome = services.tags.change_devices(app_id, tag, list(device_ids), [])
    assert outcome.added == len(device_ids)


def emptied(services: Services, tag: str, app_id: str = A) -> None:
    """A tag that is listed with no device: its only device was untagged."""
    tagged(services, tag, f"{tag}-was", app_id=app_id)
    services.tags.change_devices(app_id, tag, [], [f"{tag}-was"])


def set_active(app_id: str, device_id: str, active: bool) -> None:
    DeviceRecord(pk=partition_for(app_id, device_id, SHARD_COUNT), sk=device_id).update(
        actions=[DeviceRecord.active.set(active), DeviceRecord.version.add(1)]
    )


def count(services: Services, tag: str, app_id: str = A) -> int | None:
    stored = services.tag_repository.get(app_id, tag)
    return None if stored is None else stored.device_count


def carriers(services: Services, tag: str, *device_ids: str, app_id: str = A) -> set[str]:
    """Which of these devices carry the tag, by their own tags set; checks that the member items agree."""
    carrying = {
        device_id
        for device_id in device_ids
        if (device := services.device_repository.get(app_id, device_id)) is not None and tag in device.tags
    }
    members = set(sort_keys_in_shards(TagMemberRecord, tag_members_collection(app_id, tag)))
    assert members & set(device_ids) == carrying
    return carrying


def run(job_type: JobType, params: dict[str, Any], *, dry_run: bool, kind: Any = None) -> InlineRun:
    return run_job(A, job_type, params, dry_run=dry_run, kind=kind)


def deleted(rows: list[ReportRow]) -> set[str]:
    return {row.id for row in rows if row.action == "deleted"}


@pytest.fixture
def catalog(services: Services) -> None:
    """Tags of every shape: empty, carried by inactive devices only, mixed, active, and another app's empty one."""
    emptied(services, "empty")
    tagged(services, "dormant", "d1", "d2")
    tagged(services, "mixed", "d3", "d4")
    tagged(services, "busy", "d5")
    emptied(services, "empty", app_id=B)
    for device_id in ("d1", "d2", "d4"):
        set_active(A, device_id, False)


# What delete_empty_tags selects.


@pytest.mark.parametrize(
    ("keep", "selected"), [(True, {"empty"}), (False, {"empty", "dormant"})], ids=["keep", "no-keep"]
)
@pytest.mark.usefixtures("catalog")
def test_empty_tags_are_those_no_device_or_no_active_device_carries(
    services: Services, keep: bool, selected: set[str]
) -> None:
    params = {"keep_tags_with_inactive_devices": keep}

    dry = run(EMPTY, params, dry_run=True)
    real = run(EMPTY, params, dry_run=False)

    assert deleted(dry.rows) == selected
    assert listed(real.rows) == listed(dry.rows)
    assert {tag for tag in ("empty", "dormant", "mixed", "busy") if count(services, tag) is None} == selected
    assert count(services, "empty", B) == 0
    assert carriers(services, "mixed", "d3", "d4") == {"d3", "d4"}
    assert carriers(services, "dormant", "d1", "d2") == (set() if "dormant" in selected else {"d1", "d2"})
    assert (real.counts.matched, real.counts.changed, real.counts.failed) == (len(selected), len(selected), 0)


@pytest.mark.usefixtures("catalog")
def test_rows_tell_how_many_devices_lose_the_tag(services: Services) -> None:
    rows = run(EMPTY, {"keep_tags_with_inactive_devices": False}, dry_run=True).rows

    assert sorted((row.id, row.detail) for row in rows) == [
        ("dormant", "2 devices untagged"),
        ("empty", "0 devices untagged"),
    ]
    assert all(row.entity.value == "tag" and row.user_id == "" for row in rows)


@pytest.mark.usefixtures("catalog")
def test_the_dry_run_changes_nothing(services: Services) -> None:
    before = stored_items()

    run(EMPTY, {"keep_tags_with_inactive_devices": False}, dry_run=True)
    run(LISTED, {"tags": ["dormant", "busy", "nope"]}, dry_run=True)

    assert stored_items() == before


def test_a_tag_is_read_across_pages_until_an_active_device_decides(services: Services) -> None:
    """With a read budget of 2 devices a page, deciding a tag of 5 devices takes several pages."""
    tagged(services, "dormant", *[f"s{index}" for index in range(5)])
    tagged(services, "late", *[f"l{index}" for index in range(5)])
    for index in range(5):
        set_active(A, f"s{index}", False)
    first_of_late = services.tag_repository.first_devices(A, "late", 5)
    for device_id in first_of_late[:-1]:  # only the last device read is active
        set_active(A, device_id, False)
    kind = DeleteEmptyTags(budget=2)
    params = {"keep_tags_with_inactive_devices": False}

    dry = run(EMPTY, params, dry_run=True, kind=kind)
    real = run(EMPTY, params, dry_run=False, kind=kind)

    assert dry.pages > 4
    assert listed(real.rows) == listed(dry.rows)
    assert deleted(real.rows) == {"dormant"}
    assert count(services, "dormant") is None
    assert carriers(services, "late", *first_of_late) == set(first_of_late)


def test_untagging_is_not_user_activity(services: Services) -> None:
    new_users(A, "owner")
    tagged(services, "dormant", "d1", "d2")  # identifying a device is the user's activity; untagging is not
    profile = ProfileRecord(pk=partition_for(A, "owner", SHARD_COUNT), sk="owner")
    profile.update(actions=[ProfileRecord.last_activity_at.set(LAST_ACTIVITY)])

    run(LISTED, {"tags": ["dormant"]}, dry_run=False)

    user = services.user_repository.get_many(A, ["owner"], consistent=True)["owner"][0]
    assert user.last_activity_at == LAST_ACTIVITY
    assert count(services, "dormant") is None


# delete_tags.


def test_listed_tags_lose_their_devices_and_unknown_tags_are_reported(services: Services) -> None:
    tagged(services, "promo", "d1", "d2", "d3")
    tagged(services, "keep", "d1")
    emptied(services, "old")
    tagged(services, "promo", "x1", app_id=B)
    params = {"tags": ["promo", "old", "nope"]}

    dry = run(LISTED, params, dry_run=True)
    real = run(LISTED, params, dry_run=False)

    assert listed(real.rows) == listed(dry.rows)
    assert sorted((row.id, row.action, row.detail) for row in real.rows) == [
        ("nope", Outcome.NOT_FOUND, "no such tag"),
        ("old", "deleted", "0 devices untagged"),
        ("promo", "deleted", "3 devices untagged"),
    ]
    assert (real.counts.matched, real.counts.changed, real.counts.skipped) == (2, 2, 1)
    assert count(services, "promo") is None
    assert count(services, "old") is None
    assert carriers(services, "promo", "d1", "d2", "d3") == set()
    assert carriers(services, "keep", "d1") == {"d1"}
    assert count(services, "promo", B) == 1
    assert carriers(services, "promo", "x1", app_id=B) == {"x1"}


def test_a_tag_with_many_devices_is_untagged_over_bounded_pages(services: Services) -> None:
    device_ids = [f"d{index}" for index in range(5)]
    tagged(services, "wide", *device_ids)
    left: list[int] = []

    real = run_inline(
        job_context(A, LISTED, {"tags": ["wide"]}, dry_run=False),
        DeleteTags(budget=2),
        on_page=lambda _item, _page: left.append(len(carriers(services, "wide", *device_ids))),
    )

    assert [(row.action, row.detail, row.consequence) for row in real.rows] == [
        (DEVICES_UNTAGGED, "devices 1-2 of 5", True),
        (DEVICES_UNTAGGED, "devices 3-4 of 5", True),
        ("deleted", "5 devices untagged", False),
    ]
    assert left == [3, 1, 0]
    assert count(services, "wide") is None


def test_applying_every_page_twice_changes_nothing_more_and_reports_the_same(services: Services) -> None:
    tagged(services, "wide", *[f"d{index}" for index in range(5)])
    emptied(services, "old")
    ctx = job_context(A, LISTED, {"tags": ["wide", "old", "nope"]}, dry_run=False)

    first, second = run_applying_twice(ctx, DeleteTags(budget=2))
    after = stored_items()
    again = DeleteTags(budget=2).apply(ctx, first)

    assert second == first
    assert again == first
    assert stored_items() == after
    assert {row.action for row in first} == {DEVICES_UNTAGGED, "deleted", Outcome.NOT_FOUND}
    assert count(services, "wide") is None


# Confirmed runs: drift and failures.


def test_a_confirmed_run_drifts_tags_that_changed_since_the_dry_run(services: Services) -> None:
    emptied(services, "retagged")
    emptied(services, "kept")
    params = {"keep_tags_with_inactive_devices": True}
    pages = pages_of(job_context(A, EMPTY, params, dry_run=True))
    tagged(services, "retagged", "d1")

    rows = confirm(job_context(A, EMPTY, params, dry_run=False), pages)

    assert {(row.id, row.action, row.detail) for row in rows} == {
        ("retagged", Outcome.DRIFTED, "carried by 1 device now"),
        ("kept", "deleted", "0 devices untagged"),
    }
    assert count(services, "retagged") == 1
    assert count(services, "kept") is None


def test_a_device_that_became_active_drifts_a_tag_of_inactive_devices(services: Services) -> None:
    tagged(services, "dormant", "d1", "d2")
    set_active(A, "d1", False)
    set_active(A, "d2", False)
    params = {"keep_tags_with_inactive_devices": False}
    pages = pages_of(job_context(A, EMPTY, params, dry_run=True))
    set_active(A, "d2", True)

    rows = confirm(job_context(A, EMPTY, params, dry_run=False), pages)

    assert [(row.action, row.detail) for row in rows] == [
        (Outcome.DRIFTED, "1 of the devices carrying it is active now")
    ]
    assert carriers(services, "dormant", "d1", "d2") == {"d1", "d2"}


def test_a_tag_deleted_since_the_dry_run_is_drifted(services: Services) -> None:
    tagged(services, "promo", "d1")
    params = {"tags": ["promo"]}
    pages = pages_of(job_context(A, LISTED, params, dry_run=True))
    run(LISTED, params, dry_run=False)  # another job got there first

    rows = confirm(job_context(A, LISTED, params, dry_run=False), pages)

    assert [(row.action, row.detail) for row in rows] == [(Outcome.DRIFTED, "no longer exists")]


def test_devices_tagged_beyond_the_last_rows_budget_fail_it_and_a_new_run_finishes(services: Services) -> None:
    tagged(services, "promo", "d1")
    params = {"tags": ["promo"]}
    kind = DeleteTags(budget=2)
    pages = pages_of(job_context(A, LISTED, params, dry_run=True), kind)
    tagged(services, "promo", "d2", "d3", "d4")

    rows = confirm(job_context(A, LISTED, params, dry_run=False), pages, kind)
    again = run(LISTED, params, dry_run=False, kind=kind)

    assert [(row.action, row.detail) for row in rows] == [
        (Outcome.FAILED, "2 devices still carry it, tagged after the job counted them; run the job again")
    ]
    assert [(row.action, row.detail) for row in again.rows] == [("deleted", "2 devices untagged")]
    assert count(services, "promo") is None
    assert carriers(services, "promo", "d1", "d2", "d3", "d4") == set()


def test_the_estimate_prices_the_devices_a_real_run_untags(services: Services) -> None:
    emptied(services, "old")
    tagged(services, "promo", *[f"d{index}" for index in range(10)])
    costs = {}
    for tag in ("old", "promo"):
        run_inline(
            job_context(A, LISTED, {"tags": [tag]}, dry_run=True),
            on_page=lambda _item, page: costs.update({row.id: page.cost for row in page.rows}),
        )

    # Per device, transactional writes of the device and its member item (2 units each), and one
    # update of the tag's count per transaction of 49.
    assert costs["promo"].write_units - costs["old"].write_units == 10 * 4 + 2
    assert costs["promo"].read_units > costs["old"].read_units
