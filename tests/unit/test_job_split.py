"""The split planner: sizes within one of each other, every rank in a segment, the same split on every run."""

import math
from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from steward.errors import InvalidInput
from steward.jobs.split import Drift, SplitPlan, segment_name

# Derandomized: the same examples on every run, so a failure always comes back.
PINNED = settings(database=None, deadline=None, derandomize=True, max_examples=300)

TOTALS = st.integers(min_value=0, max_value=5_000)
COUNTS = st.integers(min_value=1, max_value=200)


def _members(plan: SplitPlan) -> Counter[int]:
    return Counter(plan.segment_of(rank) for rank in range(plan.total))


@PINNED
@given(total=TOTALS, num_segments=COUNTS)
@example(total=0, num_segments=1)
@example(total=1, num_segments=1)
@example(total=3, num_segments=7)
@example(total=7, num_segments=3)
@example(total=1_000, num_segments=1_000)
def test_sizes_differ_by_at_most_one_and_ranks_fill_them_exactly(total: int, num_segments: int) -> None:
    plan = SplitPlan(total, num_segments=num_segments)

    assert plan.num_segments == num_segments
    assert sum(plan.sizes) == total
    assert max(plan.sizes) - min(plan.sizes) <= 1
    assert list(plan.sizes) == sorted(plan.sizes, reverse=True)  # the larger ones first
    members = _members(plan)
    assert set(members) <= set(range(1, num_segments + 1))
    assert [members[segment] for segment in range(1, num_segments + 1)] == list(plan.sizes)


@PINNED
@given(total=TOTALS, num_segments=COUNTS)
def test_ranks_go_to_segments_in_order(total: int, num_segments: int) -> None:
    plan = SplitPlan(total, num_segments=num_segments)

    segments = [plan.segment_of(rank) for rank in range(total)]

    assert segments == sorted(segments)  # contiguous runs: segment 1 first


@PINNED
@given(total=TOTALS, max_size=st.integers(min_value=1, max_value=3_000))
@example(total=0, max_size=10)
@example(total=10, max_size=10)
@example(total=11, max_size=10)
@example(total=1, max_size=1)
def test_a_maximum_size_gives_ceil_total_over_max_segments_none_larger(total: int, max_size: int) -> None:
    plan = SplitPlan(total, max_segment_size=max_size)

    assert plan.num_segments == math.ceil(total / max_size)
    assert all(size <= max_size for size in plan.sizes)
    assert sum(plan.sizes) == total
    if plan.num_segments:
        assert max(plan.sizes) - min(plan.sizes) <= 1
        assert min(plan.sizes) >= 1  # no empty segment when the number comes from the size


def test_the_worked_example() -> None:
    plan = SplitPlan(10, num_segments=3)

    assert plan.sizes == (4, 3, 3)
    assert [plan.segment_of(rank) for rank in range(10)] == [1, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert SplitPlan(25, max_segment_size=10).sizes == (9, 8, 8)  # 3 segments, evened out, not 10 + 10 + 5
    assert segment_name("spring-test", 2) == "spring-test-2"


def test_fewer_users_than_segments_leaves_the_last_segments_empty() -> None:
    plan = SplitPlan(3, num_segments=5)

    assert plan.num_segments == 5
    assert plan.sizes == (1, 1, 1, 0, 0)
    assert plan.empty_segments == 2
    assert SplitPlan(0, num_segments=2).sizes == (0, 0)
    assert SplitPlan(9, num_segments=2).empty_segments == 0


def test_nothing_selected_with_a_maximum_size_gives_no_segment() -> None:
    plan = SplitPlan(0, max_segment_size=100)

    assert plan.num_segments == 0
    assert plan.sizes == ()
    assert plan.shard_offsets([0, 0, 0]) == (0, 0, 0)
    with pytest.raises(ValueError, match="outside"):
        plan.segment_of(0)


def test_the_same_data_gives_the_same_split() -> None:
    counts = [5, 0, 17, 3, 0, 9]
    first = SplitPlan(sum(counts), num_segments=4)
    second = SplitPlan(sum(counts), num_segments=4)

    def assignment(plan: SplitPlan) -> list[int | None]:
        return [plan.shard(counts, s).segment_at(k) for s, count in enumerate(counts) for k in range(count)]

    assert first == second
    assert assignment(first) == assignment(second)
    assert assignment(first) == [first.segment_of(rank) for rank in range(first.total)]


@pytest.mark.parametrize(
    "arguments",
    [
        {"num_segments": 0},
        {"num_segments": -1},
        {"max_segment_size": 0},
        {},
        {"num_segments": 2, "max_segment_size": 10},
    ],
)
def test_a_plan_needs_one_positive_number_or_size(arguments: dict[str, int]) -> None:
    with pytest.raises(InvalidInput) as refused:
        SplitPlan(10, **arguments)

    assert refused.value.field in {"num_segments", "max_segment_size"}


def test_a_negative_total_and_out_of_range_ranks_are_refused() -> None:
    with pytest.raises(InvalidInput):
        SplitPlan(-1, num_segments=1)
    plan = SplitPlan(10, num_segments=3)
    with pytest.raises(ValueError, match="outside"):
        plan.segment_of(10)
    with pytest.raises(ValueError, match="outside"):
        plan.segment_of(-1)


# Shards.


def test_shard_offsets_are_the_counts_before_each_shard() -> None:
    plan = SplitPlan(20, num_segments=3)

    assert plan.shard_offsets([4, 0, 10, 0, 6]) == (0, 4, 4, 14, 14)
    assert plan.shard([4, 0, 10, 0, 6], 3).offset == 14


def test_shard_counts_must_add_up_to_the_total() -> None:
    plan = SplitPlan(20, num_segments=3)

    with pytest.raises(ValueError, match="add up to 19"):
        plan.shard_offsets([4, 15])
    with pytest.raises(ValueError, match="negative"):
        plan.shard_offsets([21, -1])
    with pytest.raises(ValueError, match="outside"):
        plan.shard([20], 1)


@PINNED
@given(counts=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=16), num_segments=COUNTS)
@example(counts=[0] * 16, num_segments=4)
@example(counts=[0, 0, 7, 0], num_segments=2)
def test_workers_that_see_only_their_shard_build_the_planned_segments(counts: list[int], num_segments: int) -> None:
    plan = SplitPlan(sum(counts), num_segments=num_segments)

    members: Counter[int | None] = Counter()
    for shard in range(len(counts)):  # each as if in its own worker
        part = plan.shard(counts, shard)
        members.update(part.segment_at(index) for index in range(counts[shard]))

    assert None not in members
    assert [members[segment] for segment in range(1, num_segments + 1)] == list(plan.sizes)


# Drift between the counting pass and the assigning pass.


def test_users_past_a_shards_count_are_skipped_and_reported() -> None:
    counts = [3, 3]
    plan = SplitPlan(6, num_segments=2)
    part = plan.shard(counts, 0)

    assigned = [part.segment_at(index) for index in range(5)]  # two users were added to shard 0 meanwhile

    assert assigned == [1, 1, 1, None, None]
    assert part.drift(read=5) == Drift(drifted=2, missing=0)
    assert part.drift(read=5).changed


def test_users_removed_after_the_count_leave_ranks_empty_and_no_segment_grows() -> None:
    counts = [3, 3]
    plan = SplitPlan(6, num_segments=2)
    read = [2, 4]  # shard 0 lost a user, shard 1 gained one

    members: Counter[int] = Counter()
    for shard, how_many in enumerate(read):
        part = plan.shard(counts, shard)
        members.update(segment for index in range(how_many) if (segment := part.segment_at(index)) is not None)

    assert members == Counter({1: 2, 2: 3})  # segment 1 is one short; segment 2 is as planned, not larger
    assert plan.shard(counts, 0).drift(read=2) == Drift(drifted=0, missing=1)
    assert plan.shard(counts, 1).drift(read=4) == Drift(drifted=1, missing=0)
    assert not plan.shard(counts, 1).drift(read=3).changed


@PINNED
@given(
    counts=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=8),
    changes=st.lists(st.integers(min_value=-40, max_value=40), min_size=8, max_size=8),
    num_segments=st.integers(min_value=1, max_value=20),
)
def test_drift_never_makes_a_segment_larger_than_planned(
    counts: list[int], changes: list[int], num_segments: int
) -> None:
    plan = SplitPlan(sum(counts), num_segments=num_segments)

    members: Counter[int] = Counter()
    for shard, count in enumerate(counts):
        part = plan.shard(counts, shard)
        read = max(0, count + changes[shard])
        members.update(segment for index in range(read) if (segment := part.segment_at(index)) is not None)

    assert all(members[segment] <= size for segment, size in enumerate(plan.sizes, start=1))
