"""bulk_update's audience source: the members of an imported audience's current version, as the job started."""

import itertools
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from steward.audiences import buckets as audience_buckets
from steward.audiences import members
from steward.audiences.models import Layout
from steward.composition import Services
from steward.errors import InvalidInput
from steward.jobs.engine import JobRefused, Outcome
from steward.jobs.kinds import _merge, bulk_update, kind_for
from steward.jobs.models import JobType
from steward.jobs.params import parse_params
from steward.settings import StoreSettings
from steward.users.repository import UserRepository
from tests.support.jobs import job_context, run_inline
from tests.support.reach import confirm, dry_pages, services, user
from tests.support.service import JOBS_BUS, SHARD_COUNT
from tests.support.spies import spy

APP, OTHER_APP = "app-a", "app-b"
KIND = kind_for(JobType.BULK_UPDATE)
DATA, IMPORTS = "steward-test-audiences", "steward-test-imports"
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
_sequence = [0]


def audience_services() -> Services:
    return Services(
        SHARD_COUNT,
        job_event_bus=JOBS_BUS,
        audience_data_bucket=DATA,
        audience_topic="arn:aws:sns:us-east-1:123456789012:audience-failures",
        audience_event_bus=JOBS_BUS,
    )


@pytest.fixture
def buckets(store: StoreSettings) -> None:
    s3 = boto3.client("s3")
    for bucket in (DATA, IMPORTS):
        s3.create_bucket(Bucket=bucket)
    boto3.client("sns").create_topic(Name="audience-failures")
    for app_id in (APP, OTHER_APP):
        services().app_repository.create(app_id, app_id, "hash", None, NOW)


def import_audience(app_id: str, name: str, user_ids: list[str]) -> None:
    """A CSV of ids dropped in the imports bucket, through the real importer (registered users become members)."""
    from steward.audiences.importer import Invocation, ObjectCreated

    body = ("user_id\n" + "".join(f"{user_id}\n" for user_id in user_ids)).encode()
    key = f"imports/{app_id}/{name}.csv"
    etag = boto3.client("s3").put_object(Bucket=IMPORTS, Key=key, Body=body)["ETag"]
    _sequence[0] += 1
    outcome = audience_services().audience_importer_service.handle(
        ObjectCreated(IMPORTS, key, len(body), f"{_sequence[0]:016X}", etag.strip('"')),
        Invocation(f"request-{_sequence[0]}", lambda: 900.0),
    )
    assert outcome.outcome == "imported", outcome


def add_users(app_id: str, *user_ids: str, plan: str = "pro") -> None:
    items = [{"user_id": user_id, "fields": {"plan": plan}} for user_id in user_ids]
    for start in range(0, len(items), 100):
        assert not services().users.upsert_batch(app_id, items[start : start + 100]).failed


def update(selection: dict[str, Any], *, dry_run: bool, state: dict[str, Any] | None = None, tier: str = "gold") -> Any:
    params = {"action": "update_fields", "selection": selection, "set": {"tier": tier}}
    return job_context(APP, JobType.BULK_UPDATE, params, dry_run=dry_run, services=audience_services(), state=state)


def test_the_members_of_the_audience_are_selected_with_criteria_and_range(buckets: None) -> None:
    members = [f"m{n:03d}" for n in range(250)]  # more than a page
    add_users(APP, *members)
    add_users(APP, "m000x", "outsider")
    add_users(APP, "m001", plan="free")  # a member the criteria leave out
    add_users(OTHER_APP, "m002")
    import_audience(APP, "spring", [*members, "not-registered"])
    selection = {
        "source": "audience",
        "name": "spring",
        "criteria": {"field": "fields.plan", "op": "eq", "value": "pro"},
    }

    dry = run_inline(update(selection, dry_run=True))
    real = run_inline(update(selection, dry_run=False))

    expected = sorted(set(members) - {"m001"})
    assert sorted(row.id for row in dry.rows) == sorted(row.id for row in real.rows) == expected
    assert {row.action for row in real.rows} == {"updated"}
    assert user(APP, "outsider").fields == {"plan": "pro"}
    assert user(OTHER_APP, "m002").fields == {"plan": "pro"}
    assert user(APP, "m100").fields == {"plan": "pro", "tier": "gold"}
    half = run_inline(update({"source": "audience", "name": "spring", "range": {"to_percent": 50}}, dry_run=True))
    again = run_inline(update({"source": "audience", "name": "spring", "range": {"to_percent": 50}}, dry_run=True))
    assert [row.id for row in half.rows] == [row.id for row in again.rows]
    assert 90 <= len(half.rows) <= 160


def test_a_confirmed_run_drifts_who_left_the_audience(buckets: None) -> None:
    add_users(APP, "a", "b", "c")
    import_audience(APP, "vip", ["a", "b"])
    selection = {"source": "audience", "name": "vip"}
    pages = dry_pages(update(selection, dry_run=True))
    state = KIND.plan(update(selection, dry_run=True)).state
    rows = confirm(update(selection, dry_run=False, state=state), KIND, pages)
    assert {row.id: row.action for row in rows} == {"a": "updated", "b": "updated"}
    # A newer import replaces the version the dry run listed: its rows drift rather than apply.
    pages = dry_pages(update(selection, dry_run=True, tier="platinum"))
    state = KIND.plan(update(selection, dry_run=True)).state
    import_audience(APP, "vip", ["a", "c"])
    rows = confirm(update(selection, dry_run=False, state=state, tier="platinum"), KIND, pages)
    assert {(row.action, row.detail) for row in rows} == {
        (Outcome.DRIFTED, "the audience was replaced by a newer import")
    }
    assert user(APP, "a").fields["tier"] == "gold"


def test_an_unknown_or_deleted_audience_is_refused(buckets: None) -> None:
    add_users(OTHER_APP, "x")
    import_audience(OTHER_APP, "theirs", ["x"])
    check = audience_services().job_references.check
    params = parse_params(
        JobType.BULK_UPDATE,
        {"action": "global_unsubscribe", "selection": {"source": "audience", "name": "theirs"}},
    )
    with pytest.raises(InvalidInput) as caught:
        check(APP, params)
    assert (caught.value.code, caught.value.field) == ("unknown_audience", "params.selection.name")
    with pytest.raises(JobRefused):
        KIND.plan(update({"source": "audience", "name": "theirs"}, dry_run=True))
    check(OTHER_APP, params)  # its own app's: fine, and a source is a condition for global_unsubscribe


def layout_of(app_id: str, name: str) -> Layout:
    audience = audience_services().audience_repository.get(app_id, name)
    assert audience is not None
    assert audience.layout is not None
    return audience.layout


def member_list(app_id: str, name: str) -> tuple[str, bytes]:
    key = layout_of(app_id, name).members_key
    return key, boto3.client("s3").get_object(Bucket=DATA, Key=key)["Body"].read()


@pytest.fixture
def small_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of a few hundred bytes spill into several partitions; the survey reads the list in small pieces."""
    monkeypatch.setattr(audience_buckets, "PARTITION_BYTES", 64)
    monkeypatch.setattr(members, "SURVEY_READ_BYTES", 64)
    monkeypatch.setattr(members, "SURVEY_PAGE_BYTES", 200)
    monkeypatch.setattr(_merge, "MIN_MERGE_CHUNK", 2)
    monkeypatch.setattr(bulk_update, "USER_PAGE", 7)


def surveyed(layout: Layout, calls: list[members.Survey] | None = None) -> list[members.Run]:
    """The member list's runs, surveyed call after call (each call's result added to ``calls``)."""
    survey = members.Survey()
    while not survey.done:
        found = members.survey_runs(audience_services().audience_objects, layout, survey)
        assert found is not None
        survey = found
        if calls is not None:
            calls.append(found)
    return list(survey.runs)


def first_in_byte_order(ids: list[str], count: int) -> list[str]:
    return sorted(ids, key=lambda user_id: user_id.encode())[:count]


@pytest.mark.parametrize("legacy", [False, True])
def test_total_limit_takes_the_first_members_in_byte_order(buckets: None, small_partitions: None, legacy: bool) -> None:
    members_ids = [f"m{n}" for n in range(90)] + ["Z-upper", "é-accent", "a\u00e9", "a\uffff"]
    add_users(APP, *members_ids[::4], plan="free")
    add_users(APP, *[user_id for user_id in members_ids if user_id not in members_ids[::4]])
    add_users(APP, "a-outsider", "0-outsider")
    add_users(OTHER_APP, "a-other")
    import_audience(APP, "spring", [*reversed(members_ids), "not-registered", "a-other"])
    key, listed = member_list(APP, "spring")
    layout = layout_of(APP, "spring")
    assert layout.partitions > 3
    if legacy:  # a list written before runs were sorted: each partition's ids out of order
        runs = [line for line in listed.split(b"\n") if line]
        partition = [audience_buckets.partition_of(line, layout.partitions) for line in runs]
        shuffled = b"".join(
            b"".join(
                line + b"\n" for line in reversed([line for line, p in zip(runs, partition, strict=True) if p == n])
            )
            for n in sorted(set(partition))
        )
        boto3.client("s3").put_object(Bucket=DATA, Key=key, Body=shuffled)
    assert any(not run.ordered for run in surveyed(layout)) is legacy
    selection = {
        "source": "audience",
        "name": "spring",
        "criteria": {"field": "fields.plan", "op": "eq", "value": "pro"},
    }
    pro = [user_id for user_id in members_ids if user_id not in members_ids[::4]]
    if legacy:  # merging it would read and sort a whole partition on every page: import the file again
        with pytest.raises(JobRefused) as refused:
            run_inline(update({**selection, "total_limit": 30}, dry_run=True))
        assert refused.value.code == "audience_needs_reimport"
        assert "import the file again" in refused.value.message
        return

    dry = run_inline(update({**selection, "total_limit": 30}, dry_run=True))
    assert [row.id for row in dry.rows] == first_in_byte_order(pro, 30)  # in order, each once
    assert dry.pages > 30 // 7
    everyone = run_inline(update({**selection, "total_limit": 1000}, dry_run=True))
    assert [row.id for row in everyone.rows] == first_in_byte_order(pro, 1000)
    real = run_inline(update({**selection, "total_limit": 30}, dry_run=False))
    assert [row.id for row in real.rows] == first_in_byte_order(pro, 30)
    assert {row.action for row in real.rows} == {"updated"}
    assert user(APP, first_in_byte_order(pro, 30)[-1]).fields == {"plan": "pro", "tier": "gold"}
    assert user(APP, first_in_byte_order(pro, 31)[-1]).fields == {"plan": "pro"}


def test_total_limit_over_many_runs_reads_the_profiles_it_takes_not_every_runs_share(
    buckets: None, small_partitions: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    members_ids = [f"m{n:03d}" for n in range(120)]
    add_users(APP, *members_ids)
    import_audience(APP, "wide", members_ids)
    runs = len(surveyed(layout_of(APP, "wide")))
    assert runs > 7  # more runs than a page takes: each run's least share alone would fill the page
    monkeypatch.setattr(bulk_update, "BATCH_GET_KEYS", 3)
    calls = spy(monkeypatch, UserRepository, "get_many", lambda app_id, user_ids, **_: list(user_ids))

    dry = run_inline(update({"source": "audience", "name": "wide", "total_limit": 30}, dry_run=True))

    assert [row.id for row in dry.rows] == members_ids[:30]
    fetched = [user_id for call in calls for user_id in call]
    # Each page fetches in order until it is full: at most one batch past what it takes.
    assert len(fetched) <= 30 + dry.pages * (3 - 1)
    assert len(fetched) == len(set(fetched))  # no profile read twice


def test_the_survey_finds_each_partitions_run(buckets: None, small_partitions: None) -> None:
    ids = [f"user-{n:03d}" for n in range(120)]
    add_users(APP, *ids)
    import_audience(APP, "runs", ids)
    _, listed = member_list(APP, "runs")
    layout = layout_of(APP, "runs")
    calls: list[members.Survey] = []
    runs = surveyed(layout, calls)
    assert len(calls) > 1  # the survey goes on where the last call stopped
    assert runs[0].start == 0
    assert runs[-1].end == len(listed)
    for run, following in itertools.pairwise(runs):
        assert run.end == following.start
    for run in runs:
        lines = listed[run.start : run.end].split(b"\n")[:-1]
        assert run.ordered
        assert lines == sorted(lines)
        assert len({audience_buckets.partition_of(line, layout.partitions) for line in lines}) == 1


def test_a_member_whose_audience_is_replaced_while_its_write_races_drifts(
    buckets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_users(APP, "racer", "stayer")
    import_audience(APP, "vip", ["racer", "stayer"])
    selection = {"source": "audience", "name": "vip"}
    plan = KIND.plan(update(selection, dry_run=False))
    ctx = update(selection, dry_run=False, state=plan.state)
    rows = KIND.select(ctx, plan.items[0], None).rows
    repository = ctx.services.user_repository
    save = repository.save_profile_if_unchanged

    def raced(app_id: str, after: Any, version: int) -> bool:
        # Between the job's read and its write: the user changes, and a newer import leaves it out.
        add_users(APP, "racer", plan="pro-plus")
        import_audience(APP, "vip", ["stayer"])
        monkeypatch.setattr(repository, "save_profile_if_unchanged", save)
        return bool(save(app_id, after, version))

    monkeypatch.setattr(repository, "save_profile_if_unchanged", raced)
    applied = KIND.apply(ctx, [row for row in rows if row.id == "racer"])
    assert [(row.id, row.action, row.detail) for row in applied] == [
        ("racer", Outcome.DRIFTED, "the audience was replaced by a newer import")
    ]
    assert "tier" not in user(APP, "racer").fields


@pytest.mark.parametrize("limit", [None, 30])
def test_the_dry_run_counts_the_member_list_reads(
    buckets: None, small_partitions: None, monkeypatch: pytest.MonkeyPatch, limit: int | None
) -> None:
    from steward.audiences.storage import S3Objects

    ids = [f"m{n:03d}" for n in range(80)]
    add_users(APP, *ids)
    import_audience(APP, "spring", ids)
    reads: list[str] = []
    read = S3Objects.read

    def counted(objects: S3Objects, key: str, start: int, length: int) -> bytes | None:
        reads.append(key)
        return read(objects, key, start, length)

    monkeypatch.setattr(S3Objects, "read", counted)
    selection = {"source": "audience", "name": "spring", **({} if limit is None else {"total_limit": limit})}
    dry = run_inline(update(selection, dry_run=True))
    assert len(dry.rows) == (80 if limit is None else 30)
    assert dry.cost.s3_gets == len(reads) > 1
