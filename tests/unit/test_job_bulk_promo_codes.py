"""bulk_update's promo_codes: free codes handed out one per profile, never one code to two profiles."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from steward.errors import InvalidInput
from steward.jobs.engine import JobRefused, Outcome
from steward.jobs.kinds import kind_for
from steward.jobs.models import JobType
from steward.jobs.params import parse_params
from steward.settings import StoreSettings
from steward.shard_reader import Position
from tests.support.jobs import job_context, run_applying_twice, run_inline
from tests.support.reach import confirm, dry_pages, last_activity, services, user

APP, OTHER_APP = "app-a", "app-b"
KIND = kind_for(JobType.BULK_UPDATE)
ALL = {"source": "all"}


def promo(program_id: str, operation: str = "attach", **selection: Any) -> dict[str, Any]:
    return {
        "action": "promo_codes",
        "selection": {**ALL, **selection},
        "operation": operation,
        "program_id": program_id,
    }


def program(app_id: str, *codes: str) -> str:
    loyalty = services().loyalty
    program_id = loyalty.create_program(app_id, "Gold").program_id
    if codes:
        assert loyalty.add_codes(app_id, program_id, list(codes)).added == len(codes)
    return program_id


def add_users(app_id: str, *user_ids: str) -> None:
    assert not services().users.upsert_batch(app_id, [{"user_id": user_id} for user_id in user_ids]).failed


def codes_of(app_id: str, program_id: str, *user_ids: str) -> dict[str, list[str]]:
    return {
        user_id: [item.code for item in user(app_id, user_id).promo_codes if item.program_id == program_id]
        for user_id in user_ids
    }


def run(params: dict[str, Any], *, dry_run: bool, app_id: str = APP) -> Any:
    return run_inline(job_context(app_id, JobType.BULK_UPDATE, params, dry_run=dry_run))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"action": "promo_codes", "selection": ALL, "program_id": "lp_1"}, "params.operation"),
        ({"action": "promo_codes", "selection": ALL, "operation": "attach"}, "params.program_id"),
        ({"action": "promo_codes", "selection": ALL, "operation": "swap", "program_id": "lp_1"}, "params.operation"),
        ({"action": "update_fields", "selection": ALL, "set": {"a": 1}, "program_id": "lp_1"}, "params.program_id"),
    ],
)
def test_refused_promo_params_name_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_params(JobType.BULK_UPDATE, raw)
    assert (caught.value.field, caught.value.code) == (field, "invalid_params")


def test_the_program_must_be_the_apps(store: StoreSettings) -> None:
    theirs = program(OTHER_APP)
    check = services().job_references.check
    with pytest.raises(InvalidInput) as caught:
        check(APP, parse_params(JobType.BULK_UPDATE, promo(theirs)))
    assert (caught.value.code, caught.value.field) == ("unknown_loyalty_program", "params.program_id")
    with pytest.raises(JobRefused):
        KIND.plan(job_context(APP, JobType.BULK_UPDATE, promo(theirs), dry_run=True))


def test_attach_hands_out_one_free_code_per_profile_until_none_is_left(store: StoreSettings) -> None:
    gold = program(APP, "G1", "G2", "G3")
    other = program(APP, "S1", "S2", "S3", "S4")  # another program's codes are never handed out
    theirs = program(OTHER_APP, "T1", "T2", "T3", "T4")
    add_users(APP, "a", "b", "c", "d", "e")
    add_users(OTHER_APP, "a")
    services().loyalty.attach(APP, "e", "G3")  # e already holds one: skipped, and G3 is not free
    activity = last_activity(APP, "a", "b")
    dry = run(promo(gold), dry_run=True)
    assert codes_of(APP, gold, "a", "b") == {"a": [], "b": []}
    real = run(promo(gold), dry_run=False)
    for job in (dry, real):
        assert sorted(row.action for row in job.rows) == [
            "code_attached",
            "code_attached",
            Outcome.SKIPPED,
            Outcome.SKIPPED,
            Outcome.SKIPPED,
        ]
    assert [(row.id, row.detail) for row in real.rows] == [(row.id, row.detail) for row in dry.rows]
    details = {row.id: (row.action, row.detail) for row in real.rows}
    assert details["e"] == (Outcome.SKIPPED, "already_has_code")
    attached = {row.detail for row in real.rows if row.action == "code_attached"}
    assert attached == {"G1", "G2"}
    assert sum(1 for row in real.rows if row.detail == "no_code_left") == 2
    held = codes_of(APP, gold, "a", "b", "c", "d", "e")
    assert sorted(code for codes in held.values() for code in codes) == ["G1", "G2", "G3"]
    assert all(len(codes) <= 1 for codes in held.values())
    assert codes_of(APP, other, "a", "b", "c", "d") == {"a": [], "b": [], "c": [], "d": []}
    assert user(OTHER_APP, "a").promo_codes == []
    assert last_activity(APP, "a", "b") == activity
    free = services().loyalty_repository.free_codes(OTHER_APP, theirs, Position(0), 10).codes
    assert sorted(free) == ["T1", "T2", "T3", "T4"]  # in shard order, then code order


def test_attach_over_many_pages_and_a_retry_never_gives_a_code_twice(store: StoreSettings) -> None:
    codes = [f"C{n:03d}" for n in range(250)]
    gold = program(APP, *codes)
    user_ids = [f"u{n:03d}" for n in range(300)]
    for start in range(0, 300, 100):
        add_users(APP, *user_ids[start : start + 100])
    ctx = job_context(APP, JobType.BULK_UPDATE, promo(gold), dry_run=False)
    ctx = job_context(APP, JobType.BULK_UPDATE, promo(gold), dry_run=False, state=KIND.plan(ctx).state)
    first, second = run_applying_twice(ctx)
    assert second == first
    handed = [row.detail for row in first if row.action == "code_attached"]
    assert sorted(handed) == codes
    assert sum(1 for row in first if row.detail == "no_code_left") == 50
    held = codes_of(APP, gold, *user_ids)
    assert sorted(code for owned in held.values() for code in owned) == codes


def test_concurrent_attach_jobs_never_share_a_code(store: StoreSettings) -> None:
    codes = [f"K{n:02d}" for n in range(30)]
    gold = program(APP, *codes)
    user_ids = [f"u{n:02d}" for n in range(40)]
    add_users(APP, *user_ids)
    halves = [{"to_percent": 50}, {"from_percent": 50}]

    def attach(window: dict[str, Any]) -> list[str]:
        job = run(promo(gold, range=window), dry_run=False)
        return [row.detail for row in job.rows if row.action == "code_attached"]

    with ThreadPoolExecutor(max_workers=2) as pool:
        handed = [code for result in pool.map(attach, halves) for code in result]
    held = codes_of(APP, gold, *user_ids)
    owned = [code for owned in held.values() for code in owned]
    assert len(owned) == len(set(owned)) == len(handed) == 30  # every code once; none twice
    assert all(len(mine) <= 1 for mine in held.values())


def test_a_confirmed_attach_replaces_a_code_taken_meanwhile(store: StoreSettings) -> None:
    gold = program(APP, "A1", "A2", "A3")
    add_users(APP, "x", "y", "z")
    params = promo(gold)
    pages = dry_pages(job_context(APP, JobType.BULK_UPDATE, params, dry_run=True))
    listed = {row.id: row.detail for page in pages for row in page}
    # Someone takes x's code through the API, and y gets a code on its own.
    add_users(APP, "outsider")
    services().loyalty.attach(APP, "outsider", listed["x"])
    services().loyalty.attach(APP, "y", listed["z"])
    state = KIND.plan(job_context(APP, JobType.BULK_UPDATE, params, dry_run=True)).state
    rows = confirm(job_context(APP, JobType.BULK_UPDATE, params, dry_run=False, state=state), KIND, pages)
    outcome = {row.id: (row.action, row.detail) for row in rows}
    assert outcome["y"] == (Outcome.DRIFTED, "already_has_code")
    # x's and z's codes were taken: the first of them applied gets the one code left free (y's), the other none.
    assert sorted([outcome["x"], outcome["z"]]) == sorted(
        [("code_attached", listed["y"]), (Outcome.SKIPPED, "no_code_left")]
    )
    held = codes_of(APP, gold, "x", "y", "z", "outsider")
    owned = [code for codes in held.values() for code in codes]
    assert sorted(owned) == ["A1", "A2", "A3"]


def test_detach_removes_the_programs_codes_only(store: StoreSettings) -> None:
    gold = program(APP, "G1", "G2")
    silver = program(APP, "S1")
    add_users(APP, "a", "b", "c")
    loyalty = services().loyalty
    loyalty.attach(APP, "a", "G1")
    loyalty.attach(APP, "a", "S1")
    loyalty.attach(APP, "b", "G2")
    params = promo(gold, "detach")
    dry = run(params, dry_run=True)
    real = run(params, dry_run=False)
    expected = {"a": ("code_detached", "G1"), "b": ("code_detached", "G2"), "c": (Outcome.SKIPPED, "no_code")}
    for job in (dry, real):
        assert {row.id: (row.action, row.detail) for row in job.rows} == expected
    assert codes_of(APP, gold, "a", "b") == {"a": [], "b": []}
    assert codes_of(APP, silver, "a") == {"a": ["S1"]}
    # The codes are free again: an attach hands them out.
    again = run(promo(gold), dry_run=True)
    assert sorted(row.detail for row in again.rows if row.action == "code_attached") == ["G1", "G2"]
