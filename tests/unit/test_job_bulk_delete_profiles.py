"""bulk_update's delete_profiles: the cutoff, the setting, and deletion through the user-deletion use case."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from steward.composition import Services
from steward.conditions import MAX_ATTEMPTS
from steward.devices.repository import DeviceRepository
from steward.errors import InvalidInput
from steward.jobs.engine import Outcome, ReportRow, RetryPage
from steward.jobs.kinds import kind_for
from steward.jobs.kinds._inactivity import inactivity_cutoff
from steward.jobs.models import JobRecord, JobStatus, JobType
from steward.jobs.params import parse_params
from steward.segments import repository as segments_repository
from steward.segments.models import ChangeMembers
from steward.settings import JobsSettings, SettingsError, StoreSettings
from steward.users.models import BatchUser
from tests.support.jobs import job_context, run_applying_twice, run_inline
from tests.support.reach import confirm, dry_pages, identify, services, static_segment
from tests.support.service import JOBS_BUS, SHARD_COUNT
from tests.support.spies import billed, spy

APP, OTHER_APP = "app-a", "app-b"
KIND = kind_for(JobType.BULK_UPDATE)
STALE = {"field": "fields.plan", "op": "eq", "value": "trial"}
# Any day in May: the cutoff is 1 January.
NOW = datetime(2026, 5, 20, 9, 30, tzinfo=UTC)
CUTOFF = datetime(2026, 1, 1, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("now", "months", "cutoff"),
    [
        (datetime(2026, 5, 1, 0, 0, tzinfo=UTC), 4, datetime(2026, 1, 1, tzinfo=UTC)),
        (datetime(2026, 5, 31, 23, 59, 59, tzinfo=UTC), 4, datetime(2026, 1, 1, tzinfo=UTC)),
        (datetime(2026, 4, 30, 23, 59, tzinfo=UTC), 4, datetime(2025, 12, 1, tzinfo=UTC)),  # across the year
        (datetime(2026, 1, 15, tzinfo=UTC), 1, datetime(2025, 12, 1, tzinfo=UTC)),
        (datetime(2026, 3, 31, tzinfo=UTC), 1, datetime(2026, 2, 1, tzinfo=UTC)),  # February's start, not 31st
        (datetime(2026, 2, 28, tzinfo=UTC), 14, datetime(2024, 12, 1, tzinfo=UTC)),  # more than a year
        (datetime(2024, 2, 29, tzinfo=UTC), 12, datetime(2023, 2, 1, tzinfo=UTC)),
        (datetime(2026, 12, 31, 23, 0, tzinfo=UTC), 12, datetime(2025, 12, 1, tzinfo=UTC)),
        # An offset is converted first: this is already 1 June in UTC.
        (datetime(2026, 5, 31, 23, 30, tzinfo=UTC) + timedelta(hours=1), 4, datetime(2026, 2, 1, tzinfo=UTC)),
        (
            datetime(2026, 6, 1, 1, 0, tzinfo=PARIS),
            4,
            datetime(2026, 1, 1, tzinfo=UTC),
        ),  # 31 May 23:00 UTC
    ],
)
def test_the_cutoff_is_the_start_of_the_month_n_months_back(now: datetime, months: int, cutoff: datetime) -> None:
    assert inactivity_cutoff(now, months) == cutoff


def test_the_cutoff_needs_a_month_at_least() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        inactivity_cutoff(NOW, 0)


@pytest.mark.parametrize("months", ["0", "-1", "x", "121"])
def test_the_months_setting_is_checked_at_cold_start(months: str) -> None:
    environ = {
        "STEWARD_APPS_TABLE": "apps",
        "STEWARD_DEVICES_TABLE": "devices",
        "STEWARD_PROFILES_TABLE": "profiles",
        "STEWARD_CATALOG_TABLE": "catalog",
        "STEWARD_SHARD_COUNT": "16",
        "STEWARD_REPORTS_BUCKET": "reports",
        "STEWARD_JOB_EVENT_BUS": "jobs",
        "STEWARD_JOB_MAX_CONCURRENCY": "4",
        "STEWARD_INACTIVE_PROFILE_MONTHS": months,
        "STEWARD_AUDIENCE_DATA_BUCKET": "audiences",
    }
    with pytest.raises(SettingsError, match="INACTIVE_PROFILE_MONTHS"):
        JobsSettings.from_env(environ)
    assert JobsSettings.from_env({**environ, "STEWARD_INACTIVE_PROFILE_MONTHS": "1"}).inactive_profile_months == 1


@pytest.mark.parametrize(
    "selection",
    [{"source": "all"}, {"source": "all", "range": {"to_percent": 50}}, {"source": "all", "total_limit": 10}],
)
def test_a_deletion_without_conditions_is_refused(selection: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_params(JobType.BULK_UPDATE, {"action": "delete_profiles", "selection": selection})
    assert (caught.value.code, caught.value.field) == ("selection_conditions_required", "params.selection")
    with pytest.raises(InvalidInput) as extra:
        parse_params(
            JobType.BULK_UPDATE,
            {"action": "delete_profiles", "selection": {"source": "all", "criteria": STALE}, "status": "Subscribed"},
        )
    assert extra.value.field == "params.status"


def _seed(app_id: str, activity: dict[str, datetime | None]) -> None:
    users = services().users
    for user_id, moment in activity.items():
        item = BatchUser(user_id=user_id, fields={"plan": "trial"}, last_activity_at=moment)
        assert not users.upsert_batch(app_id, [item.model_dump(exclude_none=True)]).failed


def _context(params: dict[str, Any], *, dry_run: bool, months: int = 4, state: dict[str, Any] | None = None) -> Any:
    svc = Services(SHARD_COUNT, inactive_profile_months=months, job_event_bus=JOBS_BUS)
    return job_context(APP, JobType.BULK_UPDATE, params, dry_run=dry_run, services=svc, now=NOW, state=state)


PARAMS = {"action": "delete_profiles", "selection": {"source": "all", "criteria": STALE}}


def test_delete_profiles_deletes_the_inactive_and_keeps_the_recent(store: StoreSettings) -> None:
    _seed(
        APP,
        {
            "old": datetime(2025, 6, 1, tzinfo=UTC),
            "just-before": CUTOFF - timedelta(microseconds=1),
            "at-cutoff": CUTOFF,
            "recent": datetime(2026, 4, 1, tzinfo=UTC),
        },
    )
    _seed(OTHER_APP, {"old": datetime(2025, 6, 1, tzinfo=UTC)})
    identify(APP, "old-phone", "old")  # activity: set back below
    old = datetime(2025, 6, 1, tzinfo=UTC)
    services().user_repository.upsert(APP, "old", lambda user: user.model_copy(update={"last_activity_at": old}))  # type: ignore[union-attr]
    segment_id = static_segment(APP, "s", "old", "recent")
    dry = run_inline(_context(PARAMS, dry_run=True))
    assert dry.state["cutoff"] == "2026-01-01T00:00:00+00:00"
    assert services().user_repository.get(APP, "old") is not None  # a dry run deletes nothing
    real = run_inline(_context(PARAMS, dry_run=False))
    expected = {
        "old": ("deleted", "2025-06-01T00:00:00+00:00"),
        "just-before": ("deleted", "2025-12-31T23:59:59.999999+00:00"),
        "at-cutoff": (Outcome.SKIPPED, "active_since_cutoff"),
        "recent": (Outcome.SKIPPED, "active_since_cutoff"),
    }
    for run in (dry, real):
        assert {row.id: (row.action, row.detail) for row in run.rows} == expected
    assert (real.counts.changed, real.counts.skipped) == (2, 2)
    repository = services().user_repository
    assert {user_id for user_id in expected if repository.get(APP, user_id)} == {"at-cutoff", "recent"}
    assert repository.get(OTHER_APP, "old") is not None
    # As DELETE /v1/users/{id}: its devices go, and it leaves its segments.
    assert services().device_repository.get(APP, "old-phone") is None
    assert services().segment_repository.get(APP, segment_id).member_count == 1


def test_the_months_setting_moves_the_cutoff(store: StoreSettings) -> None:
    _seed(APP, {"feb": datetime(2026, 2, 10, tzinfo=UTC), "apr": datetime(2026, 4, 10, tzinfo=UTC)})
    run = run_inline(_context(PARAMS, dry_run=True, months=1))
    assert run.state["cutoff"] == "2026-04-01T00:00:00+00:00"
    assert {row.id: row.action for row in run.rows} == {"feb": "deleted", "apr": Outcome.SKIPPED}


def test_a_profile_active_after_the_dry_run_drifts_and_a_retry_deletes_nothing_twice(store: StoreSettings) -> None:
    _seed(APP, {"stays-idle": CUTOFF - timedelta(days=30), "came-back": CUTOFF - timedelta(days=30)})
    pages = dry_pages(_context(PARAMS, dry_run=True))
    dry_state = KIND.plan(_context(PARAMS, dry_run=True)).state
    services().user_repository.touch_activity(APP, "came-back", datetime.now(UTC))
    rows = confirm(_context(PARAMS, dry_run=False, state=dry_state), KIND, pages)
    assert {row.id: (row.action, row.detail) for row in rows} == {
        "stays-idle": ("deleted", "2025-12-02T00:00:00+00:00"),
        "came-back": (Outcome.DRIFTED, "active_since_cutoff"),
    }
    assert services().user_repository.get(APP, "came-back") is not None
    _seed(APP, {"again": CUTOFF - timedelta(days=1)})
    first, second = run_applying_twice(_context(PARAMS, dry_run=False, state=dry_state))
    assert [(row.id, row.action) for row in first if row.id == "again"] == [("again", "deleted")]
    assert second == first


def test_the_job_shows_its_cutoff() -> None:
    job = JobRecord(
        job_id=f"job_{'0' * 32}",
        type=JobType.BULK_UPDATE,
        params=PARAMS,
        dry_run=True,
        status=JobStatus.RUNNING,
        created_at=NOW,
        app_id=APP,
        key_id="k",
        state={"cutoff": CUTOFF.isoformat()},
    )
    assert job.public().cutoff == CUTOFF
    assert job.public().model_dump(mode="json")["cutoff"] == "2026-01-01T00:00:00Z"
    assert job.model_copy(update={"state": {}}).public().cutoff is None


def test_the_dry_run_counts_what_deleting_a_profile_writes_for_its_devices_codes_and_segments(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = datetime(2025, 6, 1, tzinfo=UTC)
    _seed(APP, {"bare": old, "holder": old})
    svc = services()
    identify(APP, "fcm:1", "holder")
    identify(APP, "fcm:2", "holder")
    svc.tags.tag(APP, "fcm:2", "vip")
    program = svc.loyalty.create_program(APP, "gold").program_id
    svc.loyalty.add_codes(APP, program, ["GOLD-1"])
    svc.loyalty.attach(APP, "holder", "GOLD-1")
    static_segment(APP, "s", "holder")
    svc.user_repository.upsert(APP, "holder", lambda user: user.model_copy(update={"last_activity_at": old}))  # type: ignore[union-attr]

    dry = run_inline(_context(PARAMS, dry_run=True))

    assert sorted(row.id for row in dry.rows if row.is_change) == ["bare", "holder"]
    # Items under 1 KB. Each profile's delete (1 each); the holder's version-only write (1), untagged device (1),
    # tagged device with its tag's member and count (3 items in a transaction: 6), code (2 items: 4) and segment
    # (member, segment and profile: 6).
    assert dry.cost.write_units == 2 + 1 + 1 + 6 + 4 + 6
    usage = billed(monkeypatch)
    real = run_inline(_context(PARAMS, dry_run=False))
    assert sorted(row.id for row in real.rows if row.is_change) == ["bare", "holder"]
    # What the real run was billed, by DynamoDB's rules: the estimate exactly, with no refused write.
    assert (usage.read_units, usage.write_units, usage.refused) == (dry.cost.read_units, dry.cost.write_units, 0)


def _stale_holder(user_id: str) -> str:
    """A stale user with a device and a static segment: its deletion writes before it deletes the profile."""
    old = datetime(2025, 6, 1, tzinfo=UTC)
    _seed(APP, {user_id: old})
    identify(APP, f"fcm:{user_id}", user_id)
    segment_id = static_segment(APP, f"s-{user_id}", user_id)
    services().user_repository.upsert(APP, user_id, lambda user: user.model_copy(update={"last_activity_at": old}))  # type: ignore[union-attr]
    return segment_id


def test_a_started_deletion_is_retried_with_its_page_never_failed_and_finished_despite_later_activity(
    store: StoreSettings, conflicts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segments_repository, "time", SimpleNamespace(sleep=lambda seconds: None))
    segment_id = _stale_holder("held")
    rows = [row for page in dry_pages(_context(PARAMS, dry_run=True)) for row in page]
    real = _context(PARAMS, dry_run=False, state=KIND.plan(_context(PARAMS, dry_run=True)).state)
    conflicts[0] = 10 * MAX_ATTEMPTS * MAX_ATTEMPTS  # a bulk change holds the segment's counts all along

    with pytest.raises(RetryPage):  # as throttling: the engine runs the page again
        KIND.apply(real, rows)

    conflicts[0] = 0
    services().user_repository.touch_activity(APP, "held", datetime.now(UTC))  # after its deletion was decided
    assert [(row.id, row.action) for row in KIND.apply(real, rows)] == [("held", "deleted")]
    assert services().user_repository.get(APP, "held") is None
    assert services().segment_repository.get(APP, segment_id).member_count == 0


def test_a_deletion_that_races_a_change_out_of_the_selection_keeps_the_user_and_reports_it_drifted(
    store: StoreSettings,
) -> None:
    _stale_holder("moved")
    _seed(APP, {"stays": CUTOFF - timedelta(days=1)})
    rows = [row for page in dry_pages(_context(PARAMS, dry_run=True)) for row in page]
    real = _context(PARAMS, dry_run=False, state=KIND.plan(_context(PARAMS, dry_run=True)).state)
    # Between the confirmed run's recheck and its write, a change that is not activity moves it out.
    services().user_repository.upsert(APP, "moved", lambda user: user.model_copy(update={"fields": {"plan": "pro"}}))  # type: ignore[union-attr]

    applied = {row.id: (row.action, row.detail) for row in KIND.apply(real, rows)}

    assert applied["moved"] == (Outcome.DRIFTED, "no longer matches the selection")
    assert applied["stays"][0] == "deleted"
    kept = services().user_repository.get(APP, "moved")
    assert kept is not None
    assert kept.segments  # kept with everything it held
    assert services().device_repository.get(APP, "fcm:moved") is not None


def test_only_the_dry_run_reads_devices_while_selecting_the_real_deletion_reads_its_own(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stale_holder("holder")
    reads = spy(monkeypatch, DeviceRepository, "devices_of_users", lambda *_, consistent=False: consistent)
    versioned = spy(
        monkeypatch, DeviceRepository, "versioned_devices_of_users", lambda *_, consistent=False: consistent
    )

    dry = run_inline(_context(PARAMS, dry_run=True))
    assert [row.action for row in dry.rows] == ["deleted"]
    assert False in reads  # the dry run reads them to estimate the deletion
    assert versioned == []
    reads.clear()
    real = run_inline(_context(PARAMS, dry_run=False))
    assert [row.action for row in real.rows] == ["deleted"]
    assert reads == []  # none while selecting
    assert versioned == [True]  # the deletion's own read, strongly consistent, with the versions it deletes at
    assert services().device_repository.get(APP, "fcm:holder") is None


def _start_deletion(real: Any, rows: list[Any], conflicts: list[int], user_id: str) -> None:
    """A real run's page that marks the user, deletes its device, then finds its segment held all along.

    The run then ends there (cancelled, or out of retries): its mark stays behind, with the deletion half done.
    """
    conflicts[0] = 10 * MAX_ATTEMPTS * MAX_ATTEMPTS
    with pytest.raises(RetryPage):
        KIND.apply(real, [row for row in rows if row.id == user_id])
    conflicts[0] = 0
    started = services().user_repository.get(APP, user_id)
    assert started is not None
    assert (started.deletion_started_at is not None, started.deletion_started_by) == (True, real.job.job_id)
    assert services().device_repository.get(APP, f"fcm:{user_id}") is None


def _started_by_an_earlier_run(
    conflicts: list[int], monkeypatch: pytest.MonkeyPatch
) -> tuple[str, dict[str, Any], list[ReportRow]]:
    """A stale holder ("started") whose deletion an earlier real run started, then ended there.

    Its segment's id, and the dry run's state and rows (the user listed as deleted).
    """
    monkeypatch.setattr(segments_repository, "time", SimpleNamespace(sleep=lambda seconds: None))
    segment_id = _stale_holder("started")
    dry_state = KIND.plan(_context(PARAMS, dry_run=True)).state
    rows = [row for page in dry_pages(_context(PARAMS, dry_run=True)) for row in page]
    _start_deletion(_context(PARAMS, dry_run=False, state=dry_state), rows, conflicts, "started")
    return segment_id, dry_state, rows


def _active(user_id: str, segment_id: str) -> None:
    services().user_repository.touch_activity(APP, user_id, datetime.now(UTC))


def _out_of_criteria(user_id: str, segment_id: str) -> None:
    services().user_repository.upsert(APP, user_id, lambda user: user.model_copy(update={"fields": {"plan": "pro"}}))  # type: ignore[union-attr]


def _out_of_segment(user_id: str, segment_id: str) -> None:
    services().segments.change_members(APP, segment_id, ChangeMembers(add=[], remove=[user_id]))


@pytest.mark.parametrize(
    ("source", "change", "reason"),
    [
        pytest.param("all", _active, "active_since_cutoff", id="active_since_cutoff"),
        pytest.param("all", _out_of_criteria, "no longer matches the selection", id="no_longer_matches"),
        pytest.param("segment", _out_of_segment, "no longer a member of the segment", id="no_longer_a_member"),
    ],
)
def test_a_confirmed_run_keeps_a_user_another_job_started_deleting_once_it_no_longer_qualifies(
    store: StoreSettings,
    conflicts: list[int],
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    change: Callable[[str, str], None],
    reason: str,
) -> None:
    monkeypatch.setattr(segments_repository, "time", SimpleNamespace(sleep=lambda seconds: None))
    segment_id = _stale_holder("started")
    _seed(APP, {"idle": CUTOFF - timedelta(days=1)})
    services().segments.change_members(APP, segment_id, ChangeMembers(add=["idle"], remove=[]))
    selection = {"source": "segment", "segment_id": segment_id} if source == "segment" else PARAMS["selection"]
    params = {**PARAMS, "selection": selection}
    dry_state = KIND.plan(_context(params, dry_run=True)).state
    pages = dry_pages(_context(params, dry_run=True))
    rows = [row for page in pages for row in page]
    assert {row.id: row.action for row in rows} == {"started": "deleted", "idle": "deleted"}
    # An earlier real run decided on the user and started, then ended: marked, its device gone, still in its segment.
    _start_deletion(_context(params, dry_run=False, state=dry_state), rows, conflicts, "started")
    change("started", segment_id)  # a reason to keep it: the earlier run's mark decides nothing for this one

    confirmed = confirm(_context(params, dry_run=False, state=dry_state), KIND, pages)

    assert {row.id: (row.action, row.detail) for row in confirmed if row.id == "started"} == {
        "started": (Outcome.DRIFTED, reason)
    }
    assert [row.action for row in confirmed if row.id == "idle"] == ["deleted"]
    assert services().user_repository.get(APP, "started") is not None
    assert services().segment_repository.get(APP, segment_id).member_count == (0 if source == "segment" else 1)


def test_runs_skip_a_user_active_since_another_job_started_deleting_it(
    store: StoreSettings, conflicts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    segment_id, _, _ = _started_by_an_earlier_run(conflicts, monkeypatch)
    services().user_repository.touch_activity(APP, "started", datetime.now(UTC))  # after that run ended

    for dry_run in (True, False):
        run = run_inline(_context(PARAMS, dry_run=dry_run))
        assert [(row.id, row.action, row.detail) for row in run.rows] == [
            ("started", Outcome.SKIPPED, "active_since_cutoff")
        ]
        assert run.cost.write_units == 0
    kept = services().user_repository.get(APP, "started")
    assert kept is not None
    assert kept.segments == [segment_id]
    assert services().segment_repository.get(APP, segment_id).member_count == 1


def test_a_deletion_that_meets_another_jobs_mark_on_a_user_active_since_keeps_it_and_removes_the_mark(
    store: StoreSettings, conflicts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    segment_id, dry_state, rows = _started_by_an_earlier_run(conflicts, monkeypatch)
    later = _context(PARAMS, dry_run=False, state=dry_state)  # another run, that selected the user still inactive
    services().user_repository.touch_activity(APP, "started", datetime.now(UTC))  # between its selection and write

    applied = KIND.apply(later, rows)

    assert [(row.id, row.action, row.detail) for row in applied] == [
        ("started", Outcome.SKIPPED, "active_since_cutoff")
    ]
    kept = services().user_repository.get(APP, "started")
    assert kept is not None
    assert (kept.deletion_started_at, kept.deletion_started_by) == (None, None)
    assert kept.last_activity_at is not None
    assert kept.last_activity_at >= CUTOFF
    assert kept.segments == [segment_id]


def test_a_user_another_job_started_deleting_is_deleted_by_a_later_run_while_it_still_qualifies(
    store: StoreSettings, conflicts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    segment_id, _, _ = _started_by_an_earlier_run(conflicts, monkeypatch)

    dry = run_inline(_context(PARAMS, dry_run=True))
    assert [(row.id, row.action) for row in dry.rows] == [("started", "deleted")]
    # The run marks it as its own (1), leaves its segment (member, segment and profile in a transaction: 6) and
    # deletes it (1): what it is billed.
    assert dry.cost.write_units == 1 + 6 + 1
    usage = billed(monkeypatch)
    real = run_inline(_context(PARAMS, dry_run=False))
    assert [(row.id, row.action) for row in real.rows] == [("started", "deleted")]
    assert (usage.read_units, usage.write_units, usage.refused) == (dry.cost.read_units, dry.cost.write_units, 0)
    assert services().user_repository.get(APP, "started") is None
    assert services().segment_repository.get(APP, segment_id).member_count == 0
