"""bulk_update against moto's DynamoDB: the selection (sources, criteria, range, total_limit) and the actions."""

from typing import Any

import pytest

from steward.errors import InvalidInput
from steward.jobs.engine import JobContext, JobRefused, Outcome, ReportRow
from steward.jobs.kinds import _merge, bulk_update, kind_for
from steward.jobs.models import JobType
from steward.jobs.params import parse_params
from steward.segments.models import ChangeMembers, CreateSegment, SegmentKind
from steward.settings import StoreSettings
from steward.sharding import slice_point
from steward.users.models import BatchUser, UpsertUser
from tests.support.jobs import job_context, run_inline
from tests.support.reach import confirm, dry_pages, last_activity, services, static_segment, user

APP, OTHER_APP = "app-a", "app-b"
KIND = kind_for(JobType.BULK_UPDATE)
PRO = {"field": "fields.plan", "op": "eq", "value": "pro"}
SLICE_POINTS = [80.363772, 52.535934, 4.141266]  # BLAKE2b of the ids, as every process computes it


def context(params: dict[str, Any], *, dry_run: bool, app_id: str = APP) -> JobContext:
    return job_context(app_id, JobType.BULK_UPDATE, params, dry_run=dry_run)


def update(selection: dict[str, Any], **action: Any) -> dict[str, Any]:
    return {"action": "update_fields", "selection": selection, **(action or {"set": {"tier": "gold"}})}


def add_users(app_id: str, user_ids: list[str], fields: dict[str, Any] | None = None) -> None:
    users = services().users
    for start in range(0, len(user_ids), 100):
        batch = [BatchUser(user_id=user_id, fields=fields or {}) for user_id in user_ids[start : start + 100]]
        outcome = users.upsert_batch(app_id, [item.model_dump() for item in batch])
        assert not outcome.failed


def changed_ids(rows: list[ReportRow]) -> list[str]:
    return sorted(row.id for row in rows if row.is_change)


def refusal(params: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_params(JobType.BULK_UPDATE, params)
    return caught.value


# Params.


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        (
            update({"source": "all", "range": {"from_percent": 10}, "total_limit": 5}),
            "params.selection.total_limit",
            None,
        ),
        (
            update({"source": "all", "range": {"from_percent": 50, "to_percent": 50}}),
            "params.selection.range.to_percent",
            None,
        ),
        (update({"source": "all", "range": {"from_percent": -1}}), "params.selection.range.from_percent", None),
        (update({"source": "all", "range": {"to_percent": 101}}), "params.selection.range.to_percent", None),
        (update({"source": "all", "total_limit": 0}), "params.selection.total_limit", None),
        (update({"source": "segment"}), "params.selection.segment_id", None),
        (update({"source": "all", "segment_id": "seg_0123456789abcdef"}), "params.selection.segment_id", None),
        (update({"source": "audience"}), "params.selection.name", None),
        (update({"source": "all", "name": "x"}), "params.selection.name", None),
        (update({"source": "audience", "name": "a/b"}), "params.selection.name", None),
        (
            update({"source": "all", "criteria": {"field": "nope", "op": "eq", "value": 1}}),
            "params.selection.criteria.field",
            "invalid_criteria",
        ),
        (update({"source": "all"}, set={"plan": {"a": 1}}), "params.set.plan", None),
        (update({"source": "all"}, set={"plan": [1, {"a": 1}]}), "params.set.plan[1]", None),
        (update({"source": "all"}, set={"plan": None}), "params.set.plan", None),
        (update({"source": "all"}, set={"long": "x" * 1025}), "params.set.long", None),
        (update({"source": "all"}, set={f"f{n}": "x" * 1000 for n in range(40)}), "params.set", None),
        (update({"source": "all"}, set={"9bad": 1}), "params.set.9bad", None),
        (update({"source": "all"}, set={"plan": "x"}, delete=["plan"]), "params.delete", None),
        (update({"source": "all"}, delete=[]), "params.delete", None),
        ({"action": "update_fields", "selection": {"source": "all"}}, "params.set", None),
        (
            {"action": "global_unsubscribe", "selection": {"source": "all"}},
            "params.selection",
            "selection_conditions_required",
        ),
        (
            {"action": "global_unsubscribe", "selection": {"source": "all", "range": {"to_percent": 10}}},
            "params.selection",
            "selection_conditions_required",
        ),
        (
            {"action": "global_unsubscribe", "selection": {"source": "all", "criteria": PRO}, "set": {"a": 1}},
            "params.set",
            None,
        ),
        ({"action": "nope", "selection": {"source": "all"}}, "params.action", None),
    ],
)
def test_refused_params_name_the_field(params: dict[str, Any], field: str, code: str | None) -> None:
    error = refusal(params)
    assert error.field == field
    assert error.code == (code or "invalid_params")
    assert "constrained-str" not in error.message


def test_params_keep_defaults_and_normalised_values() -> None:
    params = parse_params(JobType.BULK_UPDATE, update({"source": "all"}, set={"renewal": "2026-03-01"}))
    assert params.to_json() == {
        "action": "update_fields",
        "selection": {"source": "all"},
        "suppress_triggers": False,
        "set": {"renewal": "2026-03-01T00:00:00Z"},
    }
    assert params.describe() == "set renewal on all users"


# The selection.


def test_range_takes_a_stable_even_slice_of_the_source(store: StoreSettings) -> None:
    ids = [f"user-{n:04d}" for n in range(1000)]
    add_users(APP, ids)
    params = update({"source": "all", "range": {"from_percent": 10, "to_percent": 50}})
    first = changed_ids(run_inline(context(params, dry_run=True)).rows)
    again = changed_ids(run_inline(context(params, dry_run=True)).rows)
    # 40% of 1,000: the binomial's standard deviation is about 15.5; 50 is more than 3 of them.
    assert 350 <= len(first) <= 450
    assert first == again == sorted(user_id for user_id in ids if 10 <= slice_point(user_id) < 50)


def test_the_slice_point_of_an_id_is_the_same_in_every_process() -> None:
    # Pinned values: a per-process hash (Python's hash()) would move them on every run.
    assert [round(slice_point(user_id), 6) for user_id in ("user-0001", "user-0002", "ünï")] == SLICE_POINTS


def test_range_applies_to_the_source_before_the_criteria(store: StoreSettings) -> None:
    ids = [f"user-{n:04d}" for n in range(400)]
    add_users(APP, ids[::2], {"plan": "pro"})
    add_users(APP, ids[1::2], {"plan": "free"})
    params = update({"source": "all", "criteria": PRO, "range": {"from_percent": 0, "to_percent": 50}})
    selected = changed_ids(run_inline(context(params, dry_run=True)).rows)
    # The slice of the whole source, then the criteria: not half of the pro users re-sliced.
    assert selected == sorted(user_id for user_id in ids[::2] if slice_point(user_id) < 50)


@pytest.mark.parametrize("chunk", [3, 100])
def test_total_limit_takes_the_first_users_in_byte_order(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(_merge, "MIN_MERGE_CHUNK", chunk)
    monkeypatch.setattr(bulk_update, "USER_PAGE", 7)
    ids = [f"u{n}" for n in range(60)] + ["Z-upper", "é-accent", "ü-late", "a\u00e9", "a\uffff"]
    add_users(APP, ids[::3], {"plan": "free"})
    add_users(APP, [user_id for user_id in ids if user_id not in ids[::3]], {"plan": "pro"})
    add_users(OTHER_APP, ["a-other"], {"plan": "pro"})
    params = update({"source": "all", "criteria": PRO, "total_limit": 25})
    run = run_inline(context(params, dry_run=True))
    pro = [user_id for user_id in ids if user_id not in ids[::3]]
    expected = sorted(pro, key=lambda user_id: user_id.encode())[:25]
    assert [row.id for row in run.rows] == expected  # in order, each once
    assert run.pages > 25 // 7


def test_total_limit_reads_about_what_it_takes(store: StoreSettings) -> None:
    ids = [f"user-{n:04d}" for n in range(600)]
    add_users(APP, ids)
    run = run_inline(context(update({"source": "all", "total_limit": 400}), dry_run=True))
    assert len(run.rows) == 400
    # Each shard's chunk is its share of the page and a quarter more: not 100 users from each of 16 shards.
    assert run.counts.scanned <= 2 * 400


def test_total_limit_larger_than_the_selection_takes_all(store: StoreSettings) -> None:
    add_users(APP, ["b", "a", "c"])
    run = run_inline(context(update({"source": "all", "total_limit": 10}), dry_run=True))
    assert [row.id for row in run.rows] == ["a", "b", "c"]


def test_static_segment_source_takes_its_members_and_criteria(store: StoreSettings) -> None:
    add_users(APP, ["m1", "m2", "m3"], {"plan": "pro"})
    add_users(APP, ["m4"], {"plan": "free"})
    add_users(APP, ["outsider"], {"plan": "pro"})
    segment_id = static_segment(APP, "vip", "m1", "m2", "m3", "m4")
    all_members = update({"source": "segment", "segment_id": segment_id})
    assert changed_ids(run_inline(context(all_members, dry_run=True)).rows) == ["m1", "m2", "m3", "m4"]
    pro = update({"source": "segment", "segment_id": segment_id, "criteria": PRO})
    assert changed_ids(run_inline(context(pro, dry_run=True)).rows) == ["m1", "m2", "m3"]
    limited = update({"source": "segment", "segment_id": segment_id, "criteria": PRO, "total_limit": 2})
    assert [row.id for row in run_inline(context(limited, dry_run=True)).rows] == ["m1", "m2"]


def test_criteria_segment_source_takes_its_criteria(store: StoreSettings) -> None:
    add_users(APP, ["p1", "p2"], {"plan": "pro", "country": "NO"})
    add_users(APP, ["p3"], {"plan": "pro", "country": "SE"})
    add_users(APP, ["f1"], {"plan": "free", "country": "NO"})
    segment = services().segments.create(APP, CreateSegment(name="pro", kind=SegmentKind.CRITERIA, criteria=PRO))
    norway = {"field": "fields.country", "op": "eq", "value": "NO"}
    params = update({"source": "segment", "segment_id": segment.segment_id, "criteria": norway})
    assert changed_ids(run_inline(context(params, dry_run=True)).rows) == ["p1", "p2"]


def test_a_missing_segment_refuses_the_job(store: StoreSettings) -> None:
    ctx = context(update({"source": "segment", "segment_id": "seg_0123456789abcdef"}), dry_run=True)
    with pytest.raises(JobRefused) as caught:
        KIND.plan(ctx)
    assert caught.value.code == "segment_not_found"


def test_another_apps_segment_is_not_found(store: StoreSettings) -> None:
    add_users(OTHER_APP, ["x"])
    segment_id = static_segment(OTHER_APP, "theirs", "x")
    with pytest.raises(JobRefused):
        KIND.plan(context(update({"source": "segment", "segment_id": segment_id}), dry_run=True))


# update_fields.


def test_update_fields_sets_and_deletes_and_skips_unchanged_profiles(store: StoreSettings) -> None:
    add_users(APP, ["a", "b"], {"plan": "pro", "trial_ends": "2026-01-01"})
    add_users(APP, ["done"], {"plan": "gold"})
    add_users(OTHER_APP, ["a"], {"plan": "pro", "trial_ends": "2026-01-01"})
    before = {user_id: user(APP, user_id) for user_id in ("a", "b", "done")}
    params = update({"source": "all"}, set={"plan": "gold"}, delete=["trial_ends"])
    dry = run_inline(context(params, dry_run=True))
    assert {user_id: user(APP, user_id) for user_id in before} == before  # a dry run changes nothing
    real = run_inline(context(params, dry_run=False))
    assert [(row.id, row.action, row.detail) for row in sorted(real.rows, key=lambda row: row.id)] == [
        ("a", "updated", ""),
        ("b", "updated", ""),
        ("done", Outcome.SKIPPED, "unchanged"),
    ]
    assert sorted(real.rows, key=lambda row: row.id) == sorted(dry.rows, key=lambda row: row.id)
    assert real.counts.changed == 2
    assert real.counts.skipped == 1
    assert user(APP, "a").fields == {"plan": "gold"}
    # The unchanged profile was not written; bulk changes are not activity.
    assert user(APP, "done") == before["done"]
    assert last_activity(APP, "a", "b") == {"a": before["a"].last_activity_at, "b": before["b"].last_activity_at}
    assert user(OTHER_APP, "a").fields == {"plan": "pro", "trial_ends": "2026-01-01T00:00:00Z"}


def test_update_fields_costs_no_write_for_unchanged_profiles(store: StoreSettings) -> None:
    add_users(APP, ["same"], {"plan": "gold"})
    add_users(APP, ["other"], {"plan": "free"})
    ctx = context(update({"source": "all"}, set={"plan": "gold"}), dry_run=True)
    costs = [KIND.select(ctx, item, None).cost for item in KIND.plan(ctx).items]
    assert sum(cost.write_units for cost in costs) == 1


def test_update_fields_applied_twice_reports_the_same(store: StoreSettings) -> None:
    add_users(APP, ["a", "b"])
    ctx = context(update({"source": "all"}), dry_run=False)
    rows = [row for item in KIND.plan(ctx).items for row in KIND.select(ctx, item, None).rows]
    first = KIND.apply(ctx, rows)
    written = {user_id: user(APP, user_id) for user_id in ("a", "b")}
    assert KIND.apply(ctx, rows) == first == rows
    assert {user_id: user(APP, user_id) for user_id in ("a", "b")} == written  # the second apply wrote nothing


def test_update_fields_tells_a_boolean_from_a_number(store: StoreSettings) -> None:
    add_users(APP, ["one"], {"vip": 1, "tags": [1, 0]})
    run = run_inline(context(update({"source": "all"}, set={"vip": True, "tags": [True, False]}), dry_run=False))
    assert [(row.id, row.action) for row in run.rows] == [("one", "updated")]
    assert user(APP, "one").fields == {"vip": True, "tags": [True, False]}
    again = run_inline(context(update({"source": "all"}, set={"vip": True, "tags": [True, False]}), dry_run=False))
    assert [(row.action, row.detail) for row in again.rows] == [(Outcome.SKIPPED, "unchanged")]


def test_a_write_never_moves_updated_at_back(store: StoreSettings) -> None:
    ctx = context(update({"source": "all"}), dry_run=False)  # the job's now: before the user's last change
    add_users(APP, ["late"])
    before = user(APP, "late").updated_at
    assert before > ctx.now
    run_inline(ctx)
    assert user(APP, "late").updated_at >= before


def test_a_user_that_leaves_the_selection_while_its_write_races_drifts(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_users(APP, ["racer"], {"plan": "pro"})
    ctx = context(update({"source": "all", "criteria": PRO}, set={"tier": "gold"}), dry_run=False)
    rows = [row for item in KIND.plan(ctx).items for row in KIND.select(ctx, item, None).rows]
    repository = ctx.services.user_repository
    save = repository.save_profile_if_unchanged

    def raced(app_id: str, after: Any, version: int) -> bool:
        # The API changes the user between the job's read and its conditional write.
        services().users.upsert(APP, "racer", _upsert({"plan": "free"}))
        monkeypatch.setattr(repository, "save_profile_if_unchanged", save)
        return bool(save(app_id, after, version))

    monkeypatch.setattr(repository, "save_profile_if_unchanged", raced)
    applied = KIND.apply(ctx, rows)
    assert [(row.id, row.action, row.detail) for row in applied] == [
        ("racer", Outcome.DRIFTED, "no longer matches the selection")
    ]
    assert "tier" not in user(APP, "racer").fields


def test_a_field_over_the_limit_is_skipped_with_its_reason(store: StoreSettings) -> None:
    add_users(APP, ["full"], {f"f{n}": n for n in range(100)})
    run = run_inline(context(update({"source": "all"}, set={"extra": 1}), dry_run=False))
    assert [(row.action, row.detail) for row in run.rows] == [(Outcome.SKIPPED, "too_many_fields")]


def test_a_confirmed_update_skips_what_drifted(store: StoreSettings) -> None:
    add_users(APP, ["stays", "leaves", "gone", "done", "left-segment"], {"plan": "pro"})
    params = update({"source": "all", "criteria": PRO}, set={"tier": "gold"})
    pages = dry_pages(context(params, dry_run=True))
    users = services().users
    users.upsert(APP, "leaves", _upsert({"plan": "free"}))
    users.upsert(APP, "done", _upsert({"tier": "gold"}))
    services().user_deletion.delete(APP, "gone")
    rows = confirm(context(params, dry_run=False), KIND, pages)
    assert {row.id: (row.action, row.detail) for row in rows} == {
        "stays": ("updated", ""),
        "left-segment": ("updated", ""),
        "leaves": (Outcome.DRIFTED, "no longer matches the selection"),
        "done": (Outcome.DRIFTED, "unchanged"),
        "gone": (Outcome.DRIFTED, "deleted"),
    }
    assert user(APP, "stays").fields["tier"] == "gold"
    assert "tier" not in user(APP, "leaves").fields


def test_a_confirmed_segment_update_skips_users_that_left_it(store: StoreSettings) -> None:
    add_users(APP, ["in", "out"])
    segment_id = static_segment(APP, "s", "in", "out")
    params = update({"source": "segment", "segment_id": segment_id})
    pages = dry_pages(context(params, dry_run=True))
    services().segments.change_members(APP, segment_id, ChangeMembers(add=[], remove=["out"]))
    # The engine hands a confirmed run the dry run's state (plan_confirmed).
    dry_state = KIND.plan(context(params, dry_run=True)).state
    confirmed = job_context(APP, JobType.BULK_UPDATE, params, dry_run=False, state=dry_state)
    rows = confirm(confirmed, KIND, pages)
    assert {row.id: row.detail for row in rows} == {"in": "", "out": "no longer a member of the segment"}


# global_unsubscribe.


def test_global_unsubscribe_sets_the_flag_on_the_selection(store: StoreSettings) -> None:
    add_users(APP, ["p1", "p2"], {"plan": "pro"})
    add_users(APP, ["f1"], {"plan": "free"})
    users = services().users
    users.upsert(APP, "p2", _upsert({}, global_unsubscribed=True))
    before = last_activity(APP, "p1")
    params = {"action": "global_unsubscribe", "selection": {"source": "all", "criteria": PRO}}
    run = run_inline(context(params, dry_run=False))
    assert {row.id: (row.action, row.detail) for row in run.rows} == {
        "p1": ("unsubscribed", ""),
        "p2": (Outcome.SKIPPED, "already globally unsubscribed"),
    }
    assert user(APP, "p1").global_unsubscribed
    assert not user(APP, "f1").global_unsubscribed
    assert last_activity(APP, "p1") == before
    # The criteria language tests it.
    flagged = {"field": "global_unsubscribed", "op": "eq", "value": True}
    again = update({"source": "all", "criteria": flagged})
    assert changed_ids(run_inline(context(again, dry_run=True)).rows) == ["p1", "p2"]


def _upsert(fields: dict[str, Any], global_unsubscribed: bool | None = None) -> UpsertUser:
    return UpsertUser(fields=fields, global_unsubscribed=global_unsubscribed)
