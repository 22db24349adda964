"""delete_empty_segments and delete_segments against moto: what they select, bounded pages, retries, drift."""

from datetime import UTC, datetime
from typing import Any

import pytest

from steward.clock import utc_now
from steward.composition import Services
from steward.errors import NotFound
from steward.jobs.engine import Outcome, ReportRow
from steward.jobs.kinds.segment_deletion import MEMBERS_REMOVED, DeleteEmptySegments, DeleteSegments
from steward.jobs.models import JobType
from steward.segments.models import ChangeMembers, CreateSegment, SegmentKind
from steward.settings import StoreSettings
from steward.sharding import partition_for
from steward.tables import ProfileRecord, SegmentMemberRecord, segment_members_collection
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
EMPTY = JobType.DELETE_EMPTY_SEGMENTS
LISTED = JobType.DELETE_SEGMENTS
LAST_ACTIVITY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UNKNOWN_ID = "seg_0000000000000000"


@pytest.fixture
def services(store: StoreSettings) -> Services:
    return Services(SHARD_COUNT)


def static(services: Services, name: str, *members: str, app_id: str = A) -> str:
    segment = services.segments.create(app_id, CreateSegment(name=name, kind=SegmentKind.STATIC))
    if members:
        new_users(app_id, *members)
        services.segments.change_members(app_id, segment.segment_id, ChangeMembers(add=list(members)))
    return segment.segment_id


def by_criteria(services: Services, name: str) -> str:
    criteria = {"all": [{"field": "active", "op": "eq", "value": True}]}
    request = CreateSegment(name=name, kind=SegmentKind.CRITERIA, criteria=criteria)
    return services.segments.create(A, request).segment_id


def deactivate(services: Services, *user_ids: str) -> None:
    for user_id in user_ids:
        services.user_activation.set_active(A, user_id, False, "test", utc_now())


def exists(services: Services, segment_id: str, app_id: str = A) -> bool:
    try:
        services.segment_repository.get(app_id, segment_id)
    except NotFound:
        return False
    return True


def members(segment_id: str, app_id: str = A) -> set[str]:
    return set(sort_keys_in_shards(SegmentMemberRecord, segment_members_collection(app_id, segment_id)))


def segments_of(services: Services, *user_ids: str) -> dict[str, set[str]]:
    found = services.user_repository.get_many(A, user_ids, consistent=True)
    return {user_id: set(user.segments) for user_id, (user, _) in found.items()}


def run(job_type: JobType, params: dict[str, Any], *, dry_run: bool, kind: Any = None) -> InlineRun:
    return run_job(A, job_type, params, dry_run=dry_run, kind=kind)


def ids(rows: list[ReportRow], action: str = "deleted") -> set[str]:
    return {row.id for row in rows if row.action == action}


@pytest.fixture
def catalog(services: Services) -> dict[str, str]:
    """Segments of every shape: empty, inactive members only, mixed, active, criteria, and another app's."""
    segments = {
        "empty": static(services, "empty"),
        "inactive": static(services, "inactive", "u1", "u2"),
        "mixed": static(services, "mixed", "u3", "u4"),
        "active": static(services, "active", "u5"),
        "rules": by_criteria(services, "rules"),
        "other": static(services, "other", app_id=B),
    }
    deactivate(services, "u1", "u2", "u4")
    return segments


# What delete_empty_segments selects.


@pytest.mark.parametrize(
    ("keep", "selected"), [(True, {"empty"}), (False, {"empty", "inactive"})], ids=["keep", "no-keep"]
)
def test_empty_segments_are_the_static_ones_without_members_or_active_members(
    services: Services, catalog: dict[str, str], keep: bool, selected: set[str]
) -> None:
    params = {"keep_segments_with_inactive_users": keep}

    dry = run(EMPTY, params, dry_run=True)
    real = run(EMPTY, params, dry_run=False)

    assert ids(dry.rows) == {catalog[name] for name in selected}
    assert listed(real.rows) == listed(dry.rows)
    assert {name for name, segment_id in catalog.items() if name != "other" and not exists(services, segment_id)} == (
        selected
    )
    assert exists(services, catalog["other"], B)
    assert (real.counts.matched, real.counts.changed, real.counts.failed) == (len(selected), len(selected), 0)


def test_details_name_the_segment_and_its_members(services: Services, catalog: dict[str, str]) -> None:
    rows = run(EMPTY, {"keep_segments_with_inactive_users": False}, dry_run=True).rows

    assert sorted(row.detail for row in rows) == ["empty (no inactive members)", "inactive (2 inactive members)"]
    assert all(row.user_id == "" and row.entity.value == "segment" for row in rows)


def test_deleting_a_segment_of_inactive_users_takes_them_out_of_it(services: Services, catalog: dict[str, str]) -> None:
    segment_id = catalog["inactive"]

    run(EMPTY, {"keep_segments_with_inactive_users": False}, dry_run=False)

    assert members(segment_id) == set()
    assert segments_of(services, "u1", "u2") == {"u1": set(), "u2": set()}
    assert segments_of(services, "u4") == {"u4": {catalog["mixed"]}}
    assert static(services, "inactive")  # the name is free again


def test_the_dry_run_changes_nothing(services: Services, catalog: dict[str, str]) -> None:
    before = stored_items()

    run(EMPTY, {"keep_segments_with_inactive_users": False}, dry_run=True)
    run(LISTED, {"segment_ids": list(catalog.values())}, dry_run=True)

    assert stored_items() == before


def test_bulk_deletion_is_not_user_activity(services: Services) -> None:
    segment_id = static(services, "sleepers", "u1", "u2")
    deactivate(services, "u1", "u2")
    for user_id in ("u1", "u2"):
        ProfileRecord(pk=partition_for(A, user_id, SHARD_COUNT), sk=user_id).update(
            actions=[ProfileRecord.last_activity_at.set(LAST_ACTIVITY)]
        )

    run(EMPTY, {"keep_segments_with_inactive_users": False}, dry_run=False)

    assert not exists(services, segment_id)
    for user_id in ("u1", "u2"):
        user = services.user_repository.get_many(A, [user_id], consistent=True)[user_id][0]
        assert user.last_activity_at == LAST_ACTIVITY


# Bounded pages.


def test_a_large_segment_is_drained_over_bounded_pages(services: Services) -> None:
    user_ids = [f"u{index}" for index in range(5)]
    big = static(services, "big", *user_ids)
    deactivate(services, *user_ids)
    small = [static(services, f"small-{index}") for index in range(3)]
    kind = DeleteEmptySegments(budget=2)
    params = {"keep_segments_with_inactive_users": False}
    left: list[int] = []

    dry = run(EMPTY, params, dry_run=True, kind=kind)
    real = run_inline(
        job_context(A, EMPTY, params, dry_run=False), kind, on_page=lambda _item, _page: left.append(len(members(big)))
    )

    assert listed(real.rows) == listed(dry.rows)
    big_rows = [(row.action, row.detail, row.consequence) for row in real.rows if row.id == big]
    assert big_rows == [
        (MEMBERS_REMOVED, "big: members 1-2 of 5", True),
        (MEMBERS_REMOVED, "big: members 3-4 of 5", True),
        ("deleted", "big (5 inactive members)", False),
    ]
    drops = [before - after for before, after in zip([5, *left], left, strict=False)]
    assert all(drop <= 2 for drop in drops)
    assert not exists(services, big)
    assert not any(exists(services, segment_id) for segment_id in small)
    assert segments_of(services, *user_ids) == {user_id: set() for user_id in user_ids}
    assert (real.counts.matched, real.counts.changed) == (4, 6)  # the steps are changes, not selections


def test_small_segments_share_a_page_within_the_member_budget(services: Services) -> None:
    first = static(services, "first", "u1", "u2")
    second = static(services, "second", "u3")
    third = static(services, "third", "u4", "u5")
    pages: list[list[str]] = []

    run_inline(
        job_context(A, LISTED, {"segment_ids": [first, second, third]}, dry_run=False),
        DeleteSegments(budget=3),
        on_page=lambda _item, page: pages.append([row.id for row in page.rows]),
    )

    assert pages == [[first, second], [third]]
    assert not any(exists(services, segment_id) for segment_id in (first, second, third))


# Retries.


def test_applying_every_page_twice_changes_nothing_more_and_reports_the_same(services: Services) -> None:
    user_ids = [f"u{index}" for index in range(5)]
    big = static(services, "big", *user_ids)
    small = static(services, "small", "u9")
    ctx = job_context(A, LISTED, {"segment_ids": [big, small, UNKNOWN_ID]}, dry_run=False)

    first, second = run_applying_twice(ctx, DeleteSegments(budget=2))
    after = stored_items()
    again = DeleteSegments(budget=2).apply(ctx, first)

    assert second == first
    assert again == first
    assert stored_items() == after
    assert {row.action for row in first} == {MEMBERS_REMOVED, "deleted", Outcome.NOT_FOUND}
    assert not exists(services, big)
    assert not exists(services, small)
    assert members(big) == set()
    assert segments_of(services, *user_ids, "u9") == {user_id: set() for user_id in [*user_ids, "u9"]}


# delete_segments.


def test_listed_segments_are_deleted_with_their_members_and_unknown_ids_reported(services: Services) -> None:
    vip = static(services, "vip", "u1", "u2")
    rules = by_criteria(services, "rules")
    others = static(services, "others", "u1", app_id=B)
    params = {"segment_ids": [vip, rules, UNKNOWN_ID, others]}

    dry = run(LISTED, params, dry_run=True)
    real = run(LISTED, params, dry_run=False)

    assert listed(real.rows) == listed(dry.rows)
    assert sorted((row.id, row.action, row.detail) for row in real.rows) == sorted(
        [
            (vip, "deleted", "vip (2 members)"),
            (rules, "deleted", "rules (criteria segment)"),
            (UNKNOWN_ID, Outcome.NOT_FOUND, "no such segment"),
            (others, Outcome.NOT_FOUND, "no such segment"),  # another app's segment is not this app's
        ]
    )
    assert (real.counts.matched, real.counts.changed, real.counts.skipped) == (2, 2, 2)
    assert not exists(services, vip)
    assert not exists(services, rules)
    assert members(vip) == set()
    assert segments_of(services, "u1", "u2") == {"u1": set(), "u2": set()}
    assert exists(services, others, B)
    assert members(others, B) == {"u1"}


# Confirmed runs: drift and failures.


def test_a_confirmed_run_drifts_segments_that_changed_since_the_dry_run(services: Services) -> None:
    joined = static(services, "joined")
    gone = static(services, "gone")
    kept = static(services, "kept")
    params = {"keep_segments_with_inactive_users": True}
    pages = pages_of(job_context(A, EMPTY, params, dry_run=True))
    new_users(A, "u1")
    services.segments.change_members(A, joined, ChangeMembers(add=["u1"]))
    services.segments.delete(A, gone)

    rows = confirm(job_context(A, EMPTY, params, dry_run=False), pages)

    assert {(row.id, row.action, row.detail) for row in rows} == {
        (joined, Outcome.DRIFTED, "has 1 member now"),
        (gone, Outcome.DRIFTED, "no longer exists"),
        (kept, "deleted", "kept (no members)"),
    }
    assert exists(services, joined)
    assert members(joined) == {"u1"}
    assert not exists(services, kept)


def test_a_user_that_became_active_drifts_a_segment_of_inactive_users(services: Services) -> None:
    segment_id = static(services, "sleepers", "u1", "u2")
    deactivate(services, "u1", "u2")
    params = {"keep_segments_with_inactive_users": False}
    pages = pages_of(job_context(A, EMPTY, params, dry_run=True))
    services.user_activation.set_active(A, "u2", True, None, utc_now())

    rows = confirm(job_context(A, EMPTY, params, dry_run=False), pages)

    assert [(row.action, row.detail) for row in rows] == [(Outcome.DRIFTED, "has 1 active member now")]
    assert members(segment_id) == {"u1", "u2"}
    assert not services.segment_repository.get(A, segment_id).deleting


def test_members_beyond_the_last_rows_budget_fail_it_and_a_new_run_finishes(services: Services) -> None:
    segment_id = static(services, "growing", "u1", "u2", "u3")
    params = {"segment_ids": [segment_id]}
    kind = DeleteSegments(budget=2)
    pages = pages_of(job_context(A, LISTED, params, dry_run=True), kind)
    new_users(A, "u4", "u5", "u6")
    services.segments.change_members(A, segment_id, ChangeMembers(add=["u4", "u5", "u6"]))

    rows = confirm(job_context(A, LISTED, params, dry_run=False), pages, kind)
    again = run(LISTED, params, dry_run=False, kind=kind)

    assert [row.action for row in rows] == [MEMBERS_REMOVED, Outcome.FAILED]
    assert "run the job again" in rows[-1].detail
    assert [row.action for row in again.rows] == [MEMBERS_REMOVED, MEMBERS_REMOVED, "deleted"]
    assert not exists(services, segment_id)
    assert members(segment_id) == set()


def test_the_estimate_prices_the_members_a_real_run_removes(services: Services) -> None:
    empty = static(services, "empty")
    full = static(services, "full", *[f"u{index}" for index in range(10)])
    ctx = job_context(A, LISTED, {"segment_ids": [empty, full]}, dry_run=True)
    costs = {}

    run_inline(ctx, on_page=lambda _item, page: costs.update({row.id: page.cost for row in page.rows}))
    alone = {}
    for segment_id in (empty, full):
        run_inline(
            job_context(A, LISTED, {"segment_ids": [segment_id]}, dry_run=True),
            on_page=lambda _item, page: alone.update({row.id: page.cost for row in page.rows}),
        )

    # Two writes per member (the user's set, the member item) on top of the segment's own writes.
    assert alone[full].write_units - alone[empty].write_units == 20
    assert alone[full].read_units > alone[empty].read_units
    assert costs[empty] == alone[empty] + alone[full]
