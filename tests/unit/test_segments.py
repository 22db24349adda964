"""Segments against moto: exact counts, membership on both sides, deletion, isolation."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from steward.composition import Services
from steward.errors import Conflict, InvalidInput, NotFound
from steward.segments.models import MAX_SEGMENTS_PER_USER, ChangeMembers, CreateSegment, Segment, SegmentKind
from steward.segments.service import SegmentService
from steward.settings import StoreSettings
from steward.sharding import partition_for
from steward.tables import ProfileRecord, SegmentMemberRecord, segment_members_collection
from steward.users.models import UpsertUser
from tests.support.service import SHARD_COUNT, collect_pages, new_users, refusal, sort_keys_in_shards

A, B = "app-a", "app-b"


def _segments_with_drain_budget(budget: int) -> SegmentService:
    services = Services(SHARD_COUNT)
    return SegmentService(services.segment_repository, services.user_repository, services.criteria, budget)


@pytest.fixture
def segments(store: StoreSettings) -> SegmentService:
    return Services(SHARD_COUNT).segments


def static(segments: SegmentService, app_id: str = A, name: str = "vip") -> Segment:
    return segments.create(app_id, CreateSegment(name=name, kind=SegmentKind.STATIC))


def change(segments: SegmentService, segment_id: str, add: list[Any] = [], remove: list[Any] = []) -> Any:  # noqa: B006
    return segments.change_members(A, segment_id, ChangeMembers(add=add, remove=remove))


def stored_members(app_id: str, segment_id: str) -> set[str]:
    """The member items, read directly from every shard."""
    return set(sort_keys_in_shards(SegmentMemberRecord, segment_members_collection(app_id, segment_id)))


def users_in(app_id: str, segment_id: str, *user_ids: str) -> set[str]:
    found = Services(SHARD_COUNT).user_repository.get_many(app_id, user_ids, consistent=True)
    return {user_id for user_id, (user, _) in found.items() if segment_id in user.segments}


def deactivate_directly(app_id: str, user_id: str) -> None:
    """Flip a user's flag alone, as a writer that does not know about segments would."""
    profile(app_id, user_id).update(actions=[ProfileRecord.active.set(False)])


def profile(app_id: str, user_id: str) -> ProfileRecord:
    return ProfileRecord(pk=partition_for(app_id, user_id, SHARD_COUNT), sk=user_id)


def test_create_get_list(segments: SegmentService) -> None:
    vip = static(segments)
    recent = segments.create(
        A,
        CreateSegment(
            name="recent", kind=SegmentKind.CRITERIA, criteria={"field": "fields.plan", "op": "eq", "value": "pro"}
        ),
    )

    assert vip.segment_id.startswith("seg_")
    assert (vip.member_count, vip.inactive_member_count, vip.active_member_count) == (0, 0, 0)
    assert (recent.member_count, recent.inactive_member_count) == (None, None)
    assert segments.get(A, vip.segment_id) == vip
    assert {segment.segment_id for segment in segments.list_page(A, None, 50).items} == {
        vip.segment_id,
        recent.segment_id,
    }
    assert segments.list_page(B, None, 50).items == []


def test_names_are_unique_per_app(segments: SegmentService) -> None:
    static(segments)

    with pytest.raises(Conflict) as taken:
        static(segments)

    assert taken.value.code == "segment_name_taken"
    assert static(segments, B).name == "vip"  # another app may use the name


def test_create_checks_criteria_by_kind(segments: SegmentService) -> None:
    with pytest.raises(InvalidInput) as missing:
        segments.create(A, CreateSegment(name="c", kind=SegmentKind.CRITERIA))
    with pytest.raises(InvalidInput) as refused:
        segments.create(A, CreateSegment(name="s", kind=SegmentKind.STATIC, criteria={"all": []}))
    with pytest.raises(InvalidInput) as bad:
        segments.create(A, CreateSegment(name="c", kind=SegmentKind.CRITERIA, criteria={"all": [{"field": "nope"}]}))

    assert missing.value.code == "criteria_required"
    assert refused.value.code == "criteria_not_allowed"
    assert (bad.value.code, bad.value.field) == ("invalid_criteria", "criteria.all[0].field")


def test_add_and_remove_keep_both_sides_and_counts_exact(segments: SegmentService) -> None:
    user_ids = [f"u{index}" for index in range(120)]  # more than two transactions of 49
    new_users(A, *user_ids)
    segment_id = static(segments).segment_id

    added = change(segments, segment_id, add=[*user_ids, "ghost", 7, "", user_ids[0]])
    removed = change(segments, segment_id, remove=[*user_ids[:30], "ghost"])
    again = change(segments, segment_id, add=user_ids[25:40], remove=user_ids[:5])

    assert (added.added, added.unchanged, added.not_found, added.invalid, added.failed) == (
        120,
        1,  # the repeated id
        ["ghost"],
        ["7", ""],
        [],
    )
    assert (removed.removed, removed.not_found) == (30, ["ghost"])
    assert (again.added, again.removed, again.unchanged) == (5, 0, 15)
    members = set(user_ids[25:])
    assert stored_members(A, segment_id) == members
    assert users_in(A, segment_id, *user_ids) == members
    assert again.segment.member_count == len(members) == 95
    assert again.segment.inactive_member_count == 0


def test_inactive_members_are_counted_when_they_join_leave_or_change(segments: SegmentService) -> None:
    new_users(A, "active", "sleeper", "later")
    segment_id = static(segments).segment_id
    deactivate_directly(A, "sleeper")

    joined = change(segments, segment_id, add=["active", "sleeper", "later"]).segment
    Services(SHARD_COUNT).user_activation.set_active(A, "later", False, "cleanup", joined.updated_at)
    after_deactivation = segments.get(A, segment_id)
    Services(SHARD_COUNT).user_activation.set_active(A, "sleeper", True, None, joined.updated_at)
    after_reactivation = segments.get(A, segment_id)
    left = change(segments, segment_id, remove=["later"]).segment

    assert (joined.member_count, joined.inactive_member_count, joined.active_member_count) == (3, 1, 2)
    assert (after_deactivation.inactive_member_count, after_deactivation.active_member_count) == (2, 1)
    assert (after_reactivation.inactive_member_count, after_reactivation.active_member_count) == (1, 2)
    assert (left.member_count, left.inactive_member_count, left.active_member_count) == (2, 0, 2)
    later = Services(SHARD_COUNT).user_repository.get(A, "later")
    assert later is not None
    assert (later.active, later.deactivation_reason) == (False, "cleanup")


def test_a_user_that_changed_since_it_was_read_is_read_again(
    segments: SegmentService, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_users(A, "racer", "calm-1", "calm-2")
    segment_id = static(segments).segment_id
    real_plan = segments._plan
    calls = []

    def plan_then_deactivate(*args: Any, **kwargs: Any) -> Any:
        planned = real_plan(*args, **kwargs)
        if not calls:
            deactivate_directly(A, "racer")  # after the read, before the write
        calls.append(planned)
        return planned

    monkeypatch.setattr(segments, "_plan", plan_then_deactivate)

    outcome = change(segments, segment_id, add=["calm-1", "racer", "calm-2"])

    assert len(calls) == 2  # the refused transaction wrote nothing: its whole chunk was read and sent again
    assert (outcome.added, outcome.failed) == (3, [])
    assert (outcome.segment.inactive_member_count, outcome.segment.active_member_count) == (1, 2)
    assert stored_members(A, segment_id) == {"racer", "calm-1", "calm-2"}


def test_concurrent_adds_of_the_same_users_count_once(segments: SegmentService, atomic_moto: None) -> None:
    user_ids = [f"u{index}" for index in range(60)]
    new_users(A, *user_ids)
    segment_id = static(segments).segment_id

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda _: change(segments, segment_id, add=user_ids), range(4)))

    assert sum(outcome.added for outcome in outcomes) + sum(len(outcome.failed) for outcome in outcomes) >= 60
    final = segments.get(A, segment_id)
    assert final.member_count == len(stored_members(A, segment_id)) == len(users_in(A, segment_id, *user_ids))
    assert sum(outcome.added for outcome in outcomes) == final.member_count


def test_member_changes_are_validated(segments: SegmentService) -> None:
    segment_id = static(segments).segment_id
    criteria_id = segments.create(
        A,
        CreateSegment(name="c", kind=SegmentKind.CRITERIA, criteria={"field": "active", "op": "eq", "value": True}),
    ).segment_id

    too_many = refusal(InvalidInput, change, segments, segment_id, add=["u"] * 600, remove=["v"] * 401)
    both = refusal(InvalidInput, change, segments, segment_id, add=["u"], remove=["u"])
    not_static = refusal(Conflict, change, segments, criteria_id, add=["u"])
    unknown = refusal(NotFound, change, segments, "seg_0000000000000000", add=["u"])
    malformed = refusal(NotFound, change, segments, "x" * 2000, add=["u"])

    assert too_many.code == "batch_too_large"
    assert both.code == "id_in_add_and_remove"
    assert not_static.code == "segment_not_static"
    assert unknown.code == malformed.code == "segment_not_found"


def test_a_user_is_in_a_bounded_number_of_segments(segments: SegmentService) -> None:
    new_users(A, "busy")
    profile(A, "busy").update(
        actions=[ProfileRecord.segments.add({f"seg_{index:016x}" for index in range(MAX_SEGMENTS_PER_USER)})]
    )
    segment_id = static(segments).segment_id

    outcome = change(segments, segment_id, add=["busy"])

    assert (outcome.added, outcome.at_segment_limit, outcome.segment.member_count) == (0, ["busy"], 0)


def test_static_members_are_paged_as_users(segments: SegmentService) -> None:
    user_ids = [f"u{index:02d}" for index in range(25)]
    new_users(A, *user_ids)
    segment_id = static(segments).segment_id
    change(segments, segment_id, add=user_ids)

    members = collect_pages(lambda cursor: segments.members(A, segment_id, cursor, 7), limit=7)

    assert sorted(user.user_id for user in members) == user_ids


def test_criteria_members_are_the_matching_users(segments: SegmentService) -> None:
    service = Services(SHARD_COUNT).users
    for index in range(12):
        service.upsert(A, f"u{index}", UpsertUser(fields={"plan": "pro" if index % 3 == 0 else "free"}))
    service.upsert(B, "u0", UpsertUser(fields={"plan": "pro"}))
    segment_id = segments.create(
        A,
        CreateSegment(
            name="pro", kind=SegmentKind.CRITERIA, criteria={"field": "fields.plan", "op": "eq", "value": "pro"}
        ),
    ).segment_id

    members = collect_pages(lambda cursor: segments.members(A, segment_id, cursor, 2))

    assert sorted(user.user_id for user in members) == ["u0", "u3", "u6", "u9"]


def test_delete_drains_members_over_several_calls(store: StoreSettings) -> None:
    segments = _segments_with_drain_budget(100)
    user_ids = [f"u{index}" for index in range(250)]
    new_users(A, *user_ids)
    segment = static(segments)
    change(segments, segment.segment_id, add=user_ids)

    first = segments.delete(A, segment.segment_id)
    with pytest.raises(Conflict) as refused:
        change(segments, segment.segment_id, add=["u1"])
    results = [segments.delete(A, segment.segment_id) for _ in range(2)]  # 100 members per call, 250 in all

    assert first is not None
    assert first.deleting
    assert refused.value.code == "segment_deleting"
    assert results[0] is not None
    assert results[1] is None
    assert stored_members(A, segment.segment_id) == set()
    assert users_in(A, segment.segment_id, *user_ids) == set()
    with pytest.raises(NotFound):
        segments.get(A, segment.segment_id)
    assert static(segments).name == "vip"  # the name is free again


def test_a_repeated_delete_never_frees_the_name_of_a_newer_segment(segments: SegmentService) -> None:
    old = static(segments)
    assert segments.delete(A, old.segment_id) is None
    newer = static(segments)  # same name, claimed again

    segments.repository.remove(A, old)  # a DELETE of the old segment that was still running

    with pytest.raises(Conflict) as taken:
        static(segments)
    assert taken.value.code == "segment_name_taken"
    assert segments.get(A, newer.segment_id).name == old.name


def test_deleting_a_user_leaves_its_segments(segments: SegmentService) -> None:
    new_users(A, "leaver", "stayer")
    first, second = static(segments, name="one").segment_id, static(segments, name="two").segment_id
    change(segments, first, add=["leaver", "stayer"])
    change(segments, second, add=["leaver"])

    Services(SHARD_COUNT).user_deletion.delete(A, "leaver")

    assert stored_members(A, first) == {"stayer"}
    assert stored_members(A, second) == set()
    assert (segments.get(A, first).member_count, segments.get(A, second).member_count) == (1, 0)


def test_upserting_a_user_keeps_its_segments(segments: SegmentService) -> None:
    new_users(A, "member")
    segment_id = static(segments).segment_id
    change(segments, segment_id, add=["member"])

    user = Services(SHARD_COUNT).users.upsert(A, "member", UpsertUser(fields={"plan": "pro"}))

    assert user.segments == [segment_id]


def test_another_apps_segment_is_out_of_reach(segments: SegmentService) -> None:
    new_users(A, "u1")
    new_users(B, "u1")
    a_segment = static(segments).segment_id

    for call in (
        lambda: segments.get(B, a_segment),
        lambda: segments.members(B, a_segment, None, 10),
        lambda: segments.change_members(B, a_segment, ChangeMembers(add=["u1"])),
        lambda: segments.delete(B, a_segment),
    ):
        with pytest.raises(NotFound):
            call()

    assert segments.get(A, a_segment).member_count == 0
    assert users_in(B, a_segment, "u1") == set()
