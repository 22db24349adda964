"""split_audience against moto: what it selects, even and stable splits, exact counts, retries, drift, cost."""

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from steward.clock import utc_now
from steward.composition import Services
from steward.devices.models import IdentifyDevice, PushResult
from steward.jobs.engine import JobContext, JobRefused, JsonObject, Outcome, Page, PageCost, ReportRow, WorkItem
from steward.jobs.kinds import split_audience
from steward.jobs.kinds.split_audience import (
    AT_SEGMENT_LIMIT,
    GONE,
    NO_LONGER_MATCHES,
    SEGMENT_GONE,
    SELECTED_AFTER_COUNT,
    SplitAudience,
    segment_id_of,
)
from steward.jobs.models import JobType
from steward.jobs.pricing import item_size, write_units
from steward.segments.models import MAX_SEGMENTS_PER_USER, ChangeMembers, CreateSegment, Segment, SegmentKind
from steward.settings import StoreSettings
from steward.sharding import partition_for
from steward.tables import ProfileRecord, ReceiptRecord, SegmentMemberRecord, receipts_pk, segment_members_collection
from steward.users.models import UpsertUser
from tests.support.jobs import job_context, listed
from tests.support.service import SHARD_COUNT, new_users, sort_keys_in_shards

A, B = "app-a", "app-b"
SPLIT = JobType.SPLIT_AUDIENCE
KIND = SplitAudience()
LAST_ACTIVITY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def services(store: StoreSettings) -> Services:
    return Services(SHARD_COUNT)


# Running the job in process, as the engine does, with the hooks the tests need.


@dataclass
class Run:
    ctx: JobContext
    rows: list[ReportRow] = field(default_factory=list)
    pages: list[list[ReportRow]] = field(default_factory=list)  # the assign phase's, as the engine stores them
    again: list[ReportRow] = field(default_factory=list)  # each page applied a second time (a retried worker)
    cost: PageCost = field(default_factory=PageCost)

    @property
    def state(self) -> JsonObject:
        return self.ctx.state


def run(
    params: dict[str, Any],
    *,
    dry_run: bool,
    app_id: str = A,
    kind: SplitAudience = KIND,
    apply_twice: bool = False,
    before_apply: Callable[[list[ReportRow]], None] | None = None,
) -> Run:
    """Plan, count, advance, assign (applying on a real run), finish: the engine's steps, in process."""
    ctx = job_context(app_id, SPLIT, params, dry_run=dry_run)
    result = Run(ctx)
    plan = kind.plan(ctx)
    for phase in range(kind.phases):
        ctx = JobContext(ctx.job, ctx.params, ctx.services, phase, plan.state, ctx.now)
        tallies: dict[int, dict[str, int]] = {}
        for item in plan.items:
            tallies[item.index] = {}
            for page in _pages(ctx, kind, item):
                result.cost += page.cost
                for name, value in page.tally.items():
                    tallies[item.index][name] = tallies[item.index].get(name, 0) + value
                rows = page.rows
                if phase == 1:
                    result.pages.append(rows)
                if rows and not dry_run:
                    if before_apply is not None:
                        before_apply(rows)
                    rows = _apply(ctx, kind, rows)
                    if apply_twice:
                        result.again += _apply(ctx, kind, page.rows)
                result.rows += rows
        if phase + 1 < kind.phases:
            plan = kind.advance(ctx, tallies)
    result.ctx = ctx
    if not dry_run:
        kind.finish(ctx, {})
    return result


def confirm(dry: Run, *, kind: SplitAudience = KIND) -> Run:
    """A confirmed run: segments prepared from the dry run's state, then its stored pages rechecked and applied."""
    ctx = job_context(dry.ctx.app_id, SPLIT, dry.ctx.job.params, dry_run=False)
    ctx = JobContext(ctx.job, ctx.params, ctx.services, 0, kind.plan_confirmed(ctx, dry.state), ctx.now)
    result = Run(ctx)
    for rows in dry.pages:
        changes = [row for row in rows if row.is_change]
        checked = iter(kind.recheck(ctx, changes))
        rechecked = [next(checked) if row.is_change else row for row in rows]
        result.rows += _apply(ctx, kind, rechecked)
    kind.finish(ctx, {})
    return result


def _pages(ctx: JobContext, kind: SplitAudience, item: WorkItem) -> list[Page]:
    pages: list[Page] = []
    position: JsonObject | None = None
    while True:
        page = kind.select(ctx, item, position)
        pages.append(page)
        if page.next is None:
            return pages
        position = page.next


def _apply(ctx: JobContext, kind: SplitAudience, rows: list[ReportRow]) -> list[ReportRow]:
    """As the engine: only the changes go to apply; the other rows are reported as they are."""
    changes = [row for row in rows if row.is_change]
    outcomes = iter(kind.apply(ctx, changes) if changes else [])
    return [next(outcomes) if row.is_change else row for row in rows]


# Data.


def users(services: Services, count: int, app_id: str = A, **fields: Any) -> list[str]:
    ids = [f"u{n:03d}" for n in range(count)]
    for user_id in ids:
        services.users.upsert(app_id, user_id, UpsertUser(fields=fields))
    return ids


def deactivate(services: Services, *user_ids: str) -> None:
    for user_id in user_ids:
        services.user_activation.set_active(A, user_id, False, "test", utc_now())


def static(services: Services, name: str, app_id: str = A) -> Segment:
    return services.segments.create(app_id, CreateSegment(name=name, kind=SegmentKind.STATIC))


def segments(services: Services, app_id: str = A) -> dict[str, Segment]:
    """Every segment of the app by name."""
    found: dict[str, Segment] = {}
    cursor: str | None = None
    while True:
        page = services.segment_repository.list_page(app_id, cursor, 100)
        found.update((segment.name, segment) for segment in page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def members(segment_id: str, app_id: str = A) -> set[str]:
    return set(sort_keys_in_shards(SegmentMemberRecord, segment_members_collection(app_id, segment_id)))


def profile(user_id: str, app_id: str = A) -> ProfileRecord:
    return ProfileRecord.get(partition_for(app_id, user_id, SHARD_COUNT), user_id, consistent_read=True)


def added(rows: Sequence[ReportRow]) -> dict[str, str]:
    """User id -> segment name, for the rows that joined a segment."""
    return {row.id: row.detail for row in rows if row.action == "added"}


def assert_exact(services: Services, prefix: str, count: int) -> dict[str, set[str]]:
    """Every segment of the split: its members are the users holding it, and its counts count them."""
    found = segments(services)
    by_name: dict[str, set[str]] = {}
    for number in range(1, count + 1):
        segment = found[f"{prefix}-{number}"]
        member_ids = members(segment.segment_id)
        assert {user_id for user_id in member_ids if segment.segment_id in (profile(user_id).segments or ())} == (
            member_ids
        )
        inactive = {user_id for user_id in member_ids if not profile(user_id).active}
        assert (segment.member_count, segment.inactive_member_count) == (len(member_ids), len(inactive)), segment
        by_name[segment.name] = member_ids
    assert f"{prefix}-{count + 1}" not in found
    return by_name


def stored_items(store: StoreSettings) -> list[str]:
    """Every item of the app data's tables, as sorted JSON: to tell that nothing changed."""
    client = boto3.client("dynamodb")
    items: list[str] = []
    for table in (store.devices_table, store.profiles_table, store.catalog_table):
        for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            items.extend(json.dumps(item, sort_keys=True) for item in page["Items"])
    return sorted(items)


# The split itself.


def test_sizes_differ_by_at_most_one_and_each_user_joins_one_segment(services: Services) -> None:
    ids = users(services, 23)

    real = run({"prefix": "wave", "num_segments": 4}, dry_run=False)

    assert sorted(added(real.rows)) == ids
    assert {row.user_id for row in real.rows} == set(ids)
    by_name = assert_exact(services, "wave", 4)
    assert sorted(len(member_ids) for member_ids in by_name.values()) == [5, 6, 6, 6]
    assert set().union(*by_name.values()) == set(ids)
    for user_id, name in added(real.rows).items():
        assert user_id in by_name[name]
        assert profile(user_id).segments == {segments(services)[name].segment_id}
    assert all(segment.kind is SegmentKind.STATIC for segment in segments(services).values())


def test_the_same_data_gives_the_same_split_on_every_run(services: Services) -> None:
    users(services, 30)
    params = {"prefix": "ab", "num_segments": 3}

    first = run(params, dry_run=True)
    second = run(params, dry_run=True)
    real = run(params, dry_run=False)

    assert added(first.rows) == added(second.rows) == added(real.rows)
    # The order is (shard, user id): each shard's users run in sort-key order, shards one after the other.
    order = sorted(added(first.rows), key=lambda user_id: (partition_for(A, user_id, SHARD_COUNT), user_id))
    names = [added(first.rows)[user_id] for user_id in order]
    assert names == sorted(names)
    assert Counter(names) == {"ab-1": 10, "ab-2": 10, "ab-3": 10}


def test_a_maximum_size_makes_ceil_selected_over_max_segments_none_larger(services: Services) -> None:
    users(services, 23)

    real = run({"prefix": "cap", "max_segment_size": 5}, dry_run=False)

    assert real.state["segments"] == math.ceil(23 / 5)
    by_name = assert_exact(services, "cap", 5)
    assert sorted(len(member_ids) for member_ids in by_name.values()) == [4, 4, 5, 5, 5]


def test_fewer_users_than_segments_leaves_the_last_ones_empty(services: Services) -> None:
    users(services, 2)

    run({"prefix": "few", "num_segments": 4}, dry_run=False)

    by_name = assert_exact(services, "few", 4)
    assert [len(by_name[f"few-{n}"]) for n in range(1, 5)] == [1, 1, 0, 0]


def test_nothing_selected_with_a_maximum_size_creates_no_segment(services: Services) -> None:
    real = run({"prefix": "none", "max_segment_size": 5}, dry_run=False)

    assert real.rows == []
    assert segments(services) == {}


# What it selects.


def test_only_the_apps_users_that_match_the_criteria_are_split(services: Services) -> None:
    users(services, 6, plan="pro")
    services.users.upsert(A, "u100", UpsertUser(fields={"plan": "free"}))
    services.users.upsert(A, "u101", UpsertUser())
    users(services, 4, app_id=B, plan="pro")
    criteria = {"field": "fields.plan", "op": "eq", "value": "pro"}

    real = run({"prefix": "pro", "num_segments": 2, "criteria": criteria}, dry_run=False)

    assert sorted(added(real.rows)) == [f"u{n:03d}" for n in range(6)]
    assert profile("u100").segments is None
    assert profile("u101").segments is None
    assert all(profile(f"u{n:03d}", B).segments is None for n in range(4))
    assert segments(services, B) == {}
    assert_exact(services, "pro", 2)


@pytest.mark.parametrize(
    ("medium", "reached"),
    [
        ("email", {"mail"}),
        ("sms", {"phone"}),
        ("push", {"device"}),
        (None, {"mail", "phone", "device", "none", "unsubscribed"}),
    ],
)
def test_a_medium_keeps_the_users_with_an_active_contact_of_its_kind(
    services: Services, medium: str | None, reached: set[str]
) -> None:
    new_users(A, "mail", "old-mail", "phone", "old-phone", "device", "old-device", "none", "unsubscribed")
    # Every contact, but globally unsubscribed: no medium reaches it.
    services.users.upsert(A, "unsubscribed", UpsertUser(global_unsubscribed=True))
    services.users.put_contact(A, "unsubscribed", "emails", "u@example.com", True)
    services.users.put_contact(A, "unsubscribed", "phones", "+33600000009", True)
    services.devices.identify(A, "d-unsubscribed", IdentifyDevice(user_id="unsubscribed", transport="FCM"))
    services.users.put_contact(A, "mail", "emails", "a@example.com", True)
    services.users.put_contact(A, "old-mail", "emails", "b@example.com", False)
    services.users.put_contact(A, "phone", "phones", "+33600000001", True)
    services.users.put_contact(A, "old-phone", "phones", "+33600000002", False)
    services.devices.identify(A, "d-active", IdentifyDevice(user_id="device", transport="FCM"))
    services.devices.identify(A, "d-gone", IdentifyDevice(user_id="old-device", transport="FCM"))
    for _ in range(2):  # two failures in a row deactivate a device
        services.devices.record_push_result(A, "d-gone", PushResult(accepted=False, error_code="UNREGISTERED"))
    params = {"prefix": "m", "num_segments": 2} | ({} if medium is None else {"medium": medium})

    dry = run(params, dry_run=True)
    real = run(params, dry_run=False)

    expected = reached if medium is not None else reached | {"old-mail", "old-phone", "old-device"}
    assert set(added(dry.rows)) == set(added(real.rows)) == expected


# Exact counts, dry runs, retries.


def test_counts_are_exact_with_inactive_users_and_other_memberships(services: Services) -> None:
    ids = users(services, 12)
    deactivate(services, "u001", "u002", "u007")
    other = static(services, "other")
    services.segments.change_members(A, other.segment_id, ChangeMembers(add=["u001", "u003"]))

    run({"prefix": "part", "num_segments": 3}, dry_run=False)

    by_name = assert_exact(services, "part", 3)
    assert set().union(*by_name.values()) == set(ids)
    split = [segment for name, segment in segments(services).items() if name != "other"]
    assert sum(segment.inactive_member_count or 0 for segment in split) == 3
    kept = segments(services)["other"]
    assert (kept.member_count, kept.inactive_member_count) == (2, 1)
    assert other.segment_id in (profile("u001").segments or ())


def test_a_dry_run_lists_what_the_real_run_does_and_changes_nothing(services: Services, store: StoreSettings) -> None:
    users(services, 15)
    deactivate(services, "u004")
    params = {"prefix": "dry", "num_segments": 3}
    before = stored_items(store)

    dry = run(params, dry_run=True)
    unchanged = stored_items(store)
    real = run(params, dry_run=False)

    assert unchanged == before
    assert listed(dry.rows) == listed(real.rows)
    assert len(dry.rows) == 15
    assert dry.state == real.state == {"counts": real.state["counts"], "segments": 3}


def test_applying_every_page_twice_changes_nothing_more_and_reports_the_same(services: Services) -> None:
    users(services, 20)
    deactivate(services, "u003", "u011")

    real = run({"prefix": "twice", "num_segments": 3}, dry_run=False, apply_twice=True)

    assert real.again == real.rows
    by_name = assert_exact(services, "twice", 3)
    assert sum(len(member_ids) for member_ids in by_name.values()) == 20
    assert all(len(profile(user_id).segments or ()) == 1 for user_id in added(real.rows))


def test_bulk_changes_leave_last_activity_alone(services: Services) -> None:
    ids = users(services, 5)
    for user_id in ids:
        record = ProfileRecord(pk=partition_for(A, user_id, SHARD_COUNT), sk=user_id)
        record.update(actions=[ProfileRecord.last_activity_at.set(LAST_ACTIVITY)])

    run({"prefix": "quiet", "num_segments": 2}, dry_run=False)

    assert all(profile(user_id).last_activity_at == LAST_ACTIVITY for user_id in ids)


def test_the_receipts_that_keep_counts_once_are_gone_when_the_job_ends(services: Services) -> None:
    users(services, 6)

    real = run({"prefix": "tidy", "num_segments": 2}, dry_run=False)

    assert list(ReceiptRecord.query(receipts_pk(A, real.ctx.job.job_id), consistent_read=True)) == []


# Names.


def test_a_taken_name_refuses_the_job_before_any_change(services: Services, store: StoreSettings) -> None:
    users(services, 8)
    static(services, "wave-2")
    before = stored_items(store)

    for dry_run in (True, False):
        with pytest.raises(JobRefused) as refused:
            run({"prefix": "wave", "num_segments": 3}, dry_run=dry_run)
        assert refused.value.code == "segment_name_taken"
        assert "'wave-2'" in refused.value.message

    assert stored_items(store) == before


def test_by_size_a_taken_name_is_found_once_the_users_are_counted(services: Services, store: StoreSettings) -> None:
    users(services, 8)
    static(services, "cap-3")
    before = stored_items(store)

    with pytest.raises(JobRefused) as refused:
        run({"prefix": "cap", "max_segment_size": 3}, dry_run=False)

    assert refused.value.code == "segment_name_taken"
    assert stored_items(store) == before  # not cap-1 nor cap-2 either


def test_a_name_taken_while_segments_are_created_removes_those_created(services: Services) -> None:
    users(services, 4)

    class Racing(SplitAudience):
        def _refuse_taken(self, ctx: JobContext, names: list[str], *, owner: str | None) -> None:
            super()._refuse_taken(ctx, names, owner=owner)
            if "race-3" in names and owner is not None:
                static(services, "race-3")  # claimed between the check and the creation

    with pytest.raises(JobRefused) as refused:
        run({"prefix": "race", "num_segments": 3}, dry_run=False, kind=Racing())

    assert refused.value.code == "segment_name_taken"
    assert set(segments(services)) == {"race-3"}


def test_more_than_1000_segments_by_size_is_refused(services: Services) -> None:
    ctx = job_context(A, SPLIT, {"prefix": "tiny", "max_segment_size": 2}, dry_run=False)

    with pytest.raises(JobRefused) as refused:
        KIND.advance(ctx, {0: {"selected": 1500}, 1: {"selected": 501}})

    assert refused.value.code == "too_many_segments"
    assert segments(services) == {}


def test_a_retried_advance_keeps_the_segments_it_created(services: Services) -> None:
    ctx = job_context(A, SPLIT, {"prefix": "again", "num_segments": 2}, dry_run=False)
    tallies = {0: {"selected": 3}}

    first = KIND.advance(ctx, tallies)
    second = KIND.advance(ctx, tallies)

    assert first == second
    assert {name: segment.segment_id for name, segment in segments(services).items()} == {
        "again-1": segment_id_of(ctx.job.job_id, 1),
        "again-2": segment_id_of(ctx.job.job_id, 2),
    }


# Limits, drift, confirmation.


def test_a_user_in_as_many_segments_as_a_user_can_be_is_skipped(services: Services) -> None:
    users(services, 6)
    full = {f"seg_{n:016x}" for n in range(MAX_SEGMENTS_PER_USER)}
    ProfileRecord(pk=partition_for(A, "u002", SHARD_COUNT), sk="u002").update(
        actions=[ProfileRecord.segments.set(full)]
    )
    params = {"prefix": "lim", "num_segments": 2}

    dry = run(params, dry_run=True)
    real = run(params, dry_run=False)

    skipped = [row for row in real.rows if row.action == Outcome.SKIPPED]
    assert [(row.id, row.detail) for row in skipped] == [("u002", AT_SEGMENT_LIMIT)]
    assert listed(dry.rows) == listed(real.rows)
    assert profile("u002").segments == full
    by_name = assert_exact(services, "lim", 2)
    assert sum(len(member_ids) for member_ids in by_name.values()) == 5


def test_a_user_that_reaches_the_limit_after_it_was_listed_is_skipped_by_apply(services: Services) -> None:
    users(services, 4)
    full = {f"seg_{n:016x}" for n in range(MAX_SEGMENTS_PER_USER)}

    def fill(rows: list[ReportRow]) -> None:
        if any(row.id == "u001" for row in rows):
            ProfileRecord(pk=partition_for(A, "u001", SHARD_COUNT), sk="u001").update(
                actions=[ProfileRecord.segments.set(full)]
            )

    real = run({"prefix": "late", "num_segments": 2}, dry_run=False, before_apply=fill)

    row = next(row for row in real.rows if row.id == "u001")
    assert (row.action, row.detail) == (Outcome.SKIPPED, AT_SEGMENT_LIMIT)
    assert profile("u001").segments == full
    assert sum(len(member_ids) for member_ids in assert_exact(services, "late", 2).values()) == 3


def test_a_user_deleted_between_listing_and_applying_is_drifted(services: Services) -> None:
    users(services, 6)

    def delete(rows: list[ReportRow]) -> None:
        if any(row.id == "u004" for row in rows):
            services.user_deletion.delete(A, "u004")

    real = run({"prefix": "gone", "num_segments": 2}, dry_run=False, before_apply=delete)

    row = next(row for row in real.rows if row.id == "u004")
    assert (row.action, row.detail) == (Outcome.DRIFTED, GONE)
    by_name = assert_exact(services, "gone", 2)
    assert "u004" not in set().union(*by_name.values())


def test_a_user_added_after_the_count_joins_no_segment_and_no_segment_grows(services: Services) -> None:
    users(services, 9)

    class Late(SplitAudience):
        def advance(self, ctx: JobContext, tallies: Mapping[int, Mapping[str, int]]) -> Any:
            new_users(A, "u050", "u051")  # after the count, before the assignment
            return super().advance(ctx, tallies)

    real = run({"prefix": "late", "num_segments": 3}, dry_run=False, kind=Late())

    drifted = [row for row in real.rows if row.action == Outcome.DRIFTED]
    assert [row.detail for row in drifted] == [SELECTED_AFTER_COUNT] * 2
    by_name = assert_exact(services, "late", 3)
    assert sorted(len(member_ids) for member_ids in by_name.values()) == [3, 3, 3]  # as counted
    assert sum(len(profile(row.id).segments or ()) for row in drifted) == 0


def test_a_confirmed_run_creates_the_segments_and_adds_the_listed_users(services: Services) -> None:
    ids = users(services, 10)
    deactivate(services, "u005")
    dry = run({"prefix": "ok", "num_segments": 2}, dry_run=True)
    assert segments(services) == {}

    confirmed = confirm(dry)

    assert added(confirmed.rows) == added(dry.rows)
    by_name = assert_exact(services, "ok", 2)
    assert set().union(*by_name.values()) == set(ids)
    assert {segment.segment_id for segment in segments(services).values()} == {
        segment_id_of(confirmed.ctx.job.job_id, n) for n in (1, 2)
    }


def test_a_confirmed_run_reports_as_drifted_the_users_that_no_longer_qualify(services: Services) -> None:
    users(services, 8, plan="pro")
    for user_id in ("u001", "u002", "u003"):
        services.users.put_contact(A, user_id, "emails", f"{user_id}@example.com", True)
    for user_id in ("u004", "u005", "u006", "u007"):
        services.users.put_contact(A, user_id, "emails", f"{user_id}@example.com", True)
    criteria = {"field": "fields.plan", "op": "eq", "value": "pro"}
    dry = run({"prefix": "mail", "num_segments": 2, "medium": "email", "criteria": criteria}, dry_run=True)
    assert len(added(dry.rows)) == 7  # u000 has no email
    services.user_deletion.delete(A, "u001")
    services.users.upsert(A, "u002", UpsertUser(fields={"plan": "free"}))
    services.users.put_contact(A, "u003", "emails", "u003@example.com", False)
    services.users.upsert(A, "u004", UpsertUser(global_unsubscribed=True))
    new_users(A, "u009")  # not listed: never added

    confirmed = confirm(dry)

    drifted = {row.id: row.detail for row in confirmed.rows if row.action == Outcome.DRIFTED}
    assert drifted == {
        "u001": GONE,
        "u002": NO_LONGER_MATCHES,
        "u003": "no active email address",
        "u004": "globally unsubscribed",
    }
    assert sorted(added(confirmed.rows)) == ["u005", "u006", "u007"]
    by_name = assert_exact(services, "mail", 2)
    assert set().union(*by_name.values()) == {"u005", "u006", "u007"}
    assert profile("u009").segments is None


def test_a_confirmation_refuses_a_name_taken_since_the_dry_run(services: Services, store: StoreSettings) -> None:
    users(services, 4)
    dry = run({"prefix": "late", "num_segments": 2}, dry_run=True)
    static(services, "late-1")
    before = stored_items(store)

    with pytest.raises(JobRefused) as refused:
        confirm(dry)

    assert refused.value.code == "segment_name_taken"
    assert stored_items(store) == before


# Changes made by others while the job runs.


def test_a_member_deactivated_while_the_job_runs_is_counted_inactive(services: Services) -> None:
    users(services, 12)
    pages_done: list[str] = []

    def flip(rows: list[ReportRow]) -> None:
        # Before each page, deactivate a user that an earlier page made a member.
        if pages_done:
            deactivate(services, pages_done.pop())
        pages_done.extend(row.id for row in rows if row.is_change)

    run({"prefix": "live", "num_segments": 2}, dry_run=False, before_apply=flip)

    by_name = assert_exact(services, "live", 2)
    assert sum(len(member_ids) for member_ids in by_name.values()) == 12
    assert sum(segment.inactive_member_count or 0 for segment in segments(services).values()) >= 1


def test_a_segment_deleted_while_the_job_runs_fails_its_rows(services: Services) -> None:
    ids = users(services, 8)
    deleted: list[str] = []

    def remove_second(rows: list[ReportRow]) -> None:
        found = segments(services)
        if "del-2" in found:
            deleted.append(found["del-2"].segment_id)
            services.segments.delete(A, found["del-2"].segment_id)

    real = run({"prefix": "del", "num_segments": 2}, dry_run=False, before_apply=remove_second)

    failed = {row.id for row in real.rows if row.action == Outcome.FAILED}
    assert failed
    assert {row.detail for row in real.rows if row.id in failed} == {SEGMENT_GONE}
    assert set(segments(services)) == {"del-1"}
    assert all(row.detail == "del-1" for row in real.rows if row.action == "added")
    assert not any(deleted[0] in (profile(user_id).segments or ()) for user_id in ids)
    assert members(deleted[0]) == set()
    assert_exact(services, "del", 1)


# Cost.


def test_a_selected_user_costs_at_most_2_5_write_units_and_1_read_unit(
    services: Services, store: StoreSettings
) -> None:
    users(services, 200, plan="pro", country="FR", city="Lyon", note="x" * 400)

    dry = run({"prefix": "cost", "num_segments": 4}, dry_run=True)
    real = run({"prefix": "cost", "num_segments": 4}, dry_run=False)

    selected = len(added(dry.rows))
    assert selected == 200
    assert dry.cost.write_units <= 2.5 * selected
    assert dry.cost.read_units <= 1 * selected
    # The per-user writes priced from what was really stored: the user's set and the member item.
    client = boto3.client("dynamodb")
    stored = [
        item
        for page in client.get_paginator("scan").paginate(TableName=store.profiles_table)
        for item in page["Items"]
        if item["pk"]["S"].startswith(f"{A}#")
    ]
    member_items = [
        item
        for page in client.get_paginator("scan").paginate(TableName=store.catalog_table)
        for item in page["Items"]
        if item["pk"]["S"].startswith(f"{A}#segment#seg_")
    ]
    per_user = sum(write_units(item_size(item)) for item in stored + member_items)
    assert len(member_items) == 200
    assert per_user <= dry.cost.write_units <= per_user + 60  # plus the segments, receipts and counts
    assert real.cost == dry.cost


def test_pages_of_a_few_users_split_as_one_page_does(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    users(services, 17)
    deactivate(services, "u003")
    params = {"prefix": "paged", "num_segments": 3}
    whole = run(params, dry_run=True)
    monkeypatch.setattr(split_audience, "PAGE_USERS", 2)

    paged = run(params, dry_run=False)

    assert len(paged.pages) > SHARD_COUNT
    assert all(len(rows) <= 2 for rows in paged.pages)
    assert added(paged.rows) == added(whole.rows)
    assert sorted(len(member_ids) for member_ids in assert_exact(services, "paged", 3).values()) == [5, 6, 6]


def test_counts_of_many_segments_are_added_once_per_key(services: Services) -> None:
    repository = services.segment_repository
    now = utc_now()
    ids = [repository.create_static_as(A, f"seg_{n:016x}", f"many-{n}", now).segment_id for n in range(150)]
    counts = {segment_id: (n + 1, n % 2) for n, segment_id in enumerate(ids)}
    gone = "seg_ffffffffffffffff"

    refused = repository.add_counts_once(A, "job_x", "page-1", {**counts, gone: (1, 0)}, now)
    again = repository.add_counts_once(A, "job_x", "page-1", counts, now)
    other = repository.add_counts_once(A, "job_x", "page-2", {ids[0]: (10, 1)}, now)

    assert (refused, again, other) == ({gone}, set(), set())
    stored = {
        segment.segment_id: (segment.member_count, segment.inactive_member_count)
        for segment in segments(services).values()
    }
    assert stored == {**counts, ids[0]: (11, 1)}
    repository.forget_receipts(A, "job_x")
    assert list(ReceiptRecord.query(receipts_pk(A, "job_x"), consistent_read=True)) == []


def test_a_user_added_through_the_api_before_the_job_reached_it_is_counted_once(services: Services) -> None:
    users(services, 8)
    deactivate(services, "u000", "u001", "u002", "u003", "u004", "u005", "u006", "u007")
    by_api: list[str] = []

    def add_first(rows: list[ReportRow]) -> None:
        if not by_api:
            row = next(row for row in rows if row.is_change)
            segment_id = segments(services)[row.detail].segment_id
            services.segments.change_members(A, segment_id, ChangeMembers(add=[row.id]))
            by_api.append(row.id)

    real = run({"prefix": "api", "num_segments": 2}, dry_run=False, before_apply=add_first)

    assert next(row for row in real.rows if row.id == by_api[0]).action == "added"
    by_name = assert_exact(services, "api", 2)
    assert sum(len(member_ids) for member_ids in by_name.values()) == 8
    assert sum(segment.inactive_member_count or 0 for segment in segments(services).values()) == 8


def test_a_join_whose_member_write_was_lost_is_completed_and_counted(services: Services) -> None:
    users(services, 6)
    deactivate(services, "u002")
    half_done: list[str] = []

    def crash_after_the_users_set(rows: list[ReportRow]) -> None:
        for row in rows:
            if row.is_change and not half_done:  # an earlier attempt wrote the user's set, then died
                segment_id = segments(services)[row.detail].segment_id
                ProfileRecord(pk=partition_for(A, row.id, SHARD_COUNT), sk=row.id).update(
                    actions=[ProfileRecord.segments.add({segment_id}), ProfileRecord.version.add(1)]
                )
                half_done.append(row.id)

    real = run({"prefix": "half", "num_segments": 2}, dry_run=False, before_apply=crash_after_the_users_set)

    assert next(row for row in real.rows if row.id == half_done[0]).action == "added"
    by_name = assert_exact(services, "half", 2)
    assert half_done[0] in set().union(*by_name.values())
    assert sum(len(member_ids) for member_ids in by_name.values()) == 6


def test_a_user_whose_write_dynamodb_refuses_is_failed_and_the_others_are_added(services: Services) -> None:
    users(services, 5)
    # As large as an item can be: adding a segment id passes DynamoDB's 400 KB, which it refuses whatever the retries.
    record = ProfileRecord(pk=partition_for(A, "u003", SHARD_COUNT), sk="u003")
    for n in range(4):
        record.update(actions=[ProfileRecord.fields[f"notes{n}"].set(["x" * 1000] * 100)])
    record.update(actions=[ProfileRecord.fields["tail"].set(["x" * 1000] * 9 + ["x" * 300])])

    real = run({"prefix": "big", "num_segments": 2}, dry_run=False)

    row = next(row for row in real.rows if row.id == "u003")
    assert row.action == Outcome.FAILED
    assert "size" in row.detail
    assert profile("u003").segments is None
    by_name = assert_exact(services, "big", 2)
    assert set().union(*by_name.values()) == {"u000", "u001", "u002", "u004"}
