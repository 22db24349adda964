"""The sweep's use case on moto's DynamoDB and S3: transitions, one step per sweep, concurrency, users, preview."""

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from steward.composition import Services
from steward.conversations import repository as conversation_repository
from steward.conversations.models import (
    ChangeStatus,
    ConversationStatus,
    CreateConversation,
    RecordActivity,
    RetentionPreview,
    RetentionSettings,
    RunStatus,
    RunSummary,
)
from steward.conversations.preview import RetentionPreviewService
from steward.conversations.retention_repository import RunPart
from steward.conversations.selection import Decision, ShardPosition, due_page
from steward.settings import StoreSettings
from steward.sharding import shard_of
from steward.tables import ConversationRecord, RetentionSettingsRecord, conversation_user_key
from tests.support.service import new_users
from tests.support.spies import FailsOnce

APP = "app-a"
OTHER_APP = "app-b"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
BUCKET = "steward-test-reports"
# A sweep's now once every write under the settings put at NOW has landed (see DueLayout.settled).
SETTLED = NOW + timedelta(minutes=1)
# An open conversation idle 40 days goes to archive, delete and purged in one sweep.
ZERO_DAY_CHAIN: dict[str, Any] = {
    "archive_after_days": {"open": 30},
    "delete_after_days": {"archive": 0},
    "purge_after_days": 0,
}


@pytest.fixture
def services(store: StoreSettings) -> Services:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return Services(store.shard_count, clock=lambda: NOW, reports_bucket=BUCKET)


def conversation(services: Services, idle_days: float, app_id: str = APP, **fields: Any) -> str:
    at = (NOW - timedelta(days=idle_days)).isoformat()
    body = {"channel": "email", "created_at": at, "last_activity_at": at, "status_changed_at": at, **fields}
    return services.conversations.create(app_id, CreateConversation.model_validate(body)).conversation_id


def sweep(
    services: Services, run_id: str = "ret_20260601000000_000000000000", page: int = 2, now: datetime = NOW
) -> Any:
    sweeper = services.retention_sweep
    for shard in sweeper.plan(APP, run_id, now)["shards"]:
        while not sweeper.sweep_page(APP, run_id, now, shard, max_entries=page):
            pass
    return sweeper.finalize(APP, run_id, None).run


def status_of(services: Services, conversation_id: str) -> str | None:
    found = services.conversation_repository.get(APP, conversation_id)
    return None if found is None else found.status.value


def purging_user_data(services: Services, *user_ids: str) -> None:
    """Settings that purge at once and delete the users, and those users."""
    document = {"purge_after_days": 0, "delete_user_data": True}
    services.retention_settings.put(APP, RetentionSettings.model_validate(document))
    new_users(APP, *user_ids)


def only_decision(services: Services, conversation_id: str) -> Decision:
    """The sweep's decision for the one conversation due in its shard, as a page reads it now."""
    settings = services.retention_settings_repository.get(APP)
    assert settings is not None
    shard = shard_of(conversation_id, services.shard_count)
    layout = services.retention_settings_repository.layout(APP)
    page = due_page(services.conversation_repository, APP, settings, layout, shard, NOW, ShardPosition(), 10)
    [decision] = page.decisions
    return decision


def test_preview_then_sweep_give_the_same_counts_and_one_step_each(services: Services) -> None:
    document = {
        "archive_after_days": {"open": 30, "sent": 0},
        "delete_after_days": {"archive": 10, "resolved": 0},
        "purge_after_days": 5,
        "channels": {"whatsapp": {"archive_after_days": {"open": 1}}},
    }
    services.retention_settings.put(APP, RetentionSettings.model_validate(document))
    idle_open = conversation(services, 40)
    fresh_open = conversation(services, 20)
    whatsapp = conversation(services, 2, channel="whatsapp")
    sent = conversation(services, 0, status="sent")
    archived = conversation(services, 11, status="archive")
    resolved = conversation(services, 0, status="resolved")
    old_delete = conversation(services, 6, status="delete")
    young_delete = conversation(services, 4, status="delete")
    other_app = conversation(services, 400, OTHER_APP)

    preview = services.retention_preview.preview(APP)
    run = sweep(services)

    expected = {
        "open->archive": 2,
        "sent->archive": 1,
        "archive->delete": 1,
        "resolved->delete": 1,
        "delete->purged": 1,
    }
    assert preview.counts == run.counts == expected
    assert preview.by_channel == run.by_channel
    assert run.by_channel["whatsapp"] == {"open->archive": 1}
    assert set(preview.sample["open->archive"]) == {idle_open, whatsapp}
    assert run.status == RunStatus.SUCCEEDED
    assert run.finished_at is not None
    # One step each: the archived conversation moved to delete, not on to purged; the open ones stop at archive.
    states = {cid: status_of(services, cid) for cid in (idle_open, fresh_open, whatsapp, sent, archived, resolved)}
    assert states == {
        idle_open: "archive",
        fresh_open: "open",
        whatsapp: "archive",
        sent: "archive",
        archived: "delete",
        resolved: "delete",
    }
    assert status_of(services, old_delete) is None
    assert status_of(services, young_delete) == "delete"
    assert services.conversation_repository.get(OTHER_APP, other_app) is not None
    # A sweep is not activity.
    moved = services.conversation_repository.get(APP, idle_open)
    assert moved is not None
    assert moved.last_activity_at == NOW - timedelta(days=40)
    assert moved.status_changed_at == NOW


def test_zero_days_chain_to_the_purge_in_one_sweep(services: Services) -> None:
    services.retention_settings.put(APP, RetentionSettings.model_validate(ZERO_DAY_CHAIN))
    idle = conversation(services, 40)
    run = sweep(services)
    assert run.counts == {"open->archive": 1, "archive->delete": 1, "delete->purged": 1}
    assert status_of(services, idle) is None


def test_activity_recorded_meanwhile_wins(services: Services) -> None:
    services.retention_settings.put(APP, RetentionSettings.model_validate({"archive_after_days": {"open": 1}}))
    idle = conversation(services, 3)
    decision = only_decision(services, idle)
    services.conversations.record_activity(APP, idle, RecordActivity(direction="inbound"))  # after the read
    repository = services.conversation_repository
    assert not repository.move(APP, decision.entry, ConversationStatus.ARCHIVE, NOW, decision.group)
    assert status_of(services, idle) == "open"


def test_delete_user_data_deletes_a_user_without_other_conversations(services: Services) -> None:
    purging_user_data(services, "gone", "kept")
    conversation(services, 1, status="delete", user_id="gone")
    conversation(services, 1, status="delete", user_id="kept")
    conversation(services, 1, status="open", user_id="kept")
    run = sweep(services)
    assert (run.users_deleted, run.users_deleted_sample) == (1, ["gone"])
    assert (run.users_kept, run.users_kept_sample) == (1, ["kept"])
    assert services.user_repository.get(APP, "gone") is None
    assert services.user_repository.get(APP, "kept") is not None


def test_an_app_without_settings_is_left_alone(services: Services) -> None:
    idle = conversation(services, 4000, status="delete")
    assert services.retention_preview.preview(APP).counts == {}
    assert sweep(services).counts == {}
    assert status_of(services, idle) == "delete"


def _fail_once(call: Any) -> FailsOnce:
    """Raises once, on the call it is put on, then calls through: an S3 error after the page's changes."""
    return FailsOnce(call, lambda *args: RuntimeError("S3 refused the page"))


def _first_attempts_die(
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    run_id: str,
    conversation_ids: list[str],
    calls: list[tuple[object, str]],
) -> None:
    """Plan the run; in the shard of each conversation, the step dies the first time it makes one of ``calls``."""
    sweeper = services.retention_sweep
    sweeper.plan(APP, run_id, NOW)
    originals = [(owner, name, getattr(owner, name)) for owner, name in calls]
    for shard in sorted({shard_of(conversation_id, services.shard_count) for conversation_id in conversation_ids}):
        for owner, name, call in originals:
            monkeypatch.setattr(owner, name, _fail_once(call))
        with pytest.raises(RuntimeError, match="S3 refused"):
            sweeper.sweep_page(APP, run_id, NOW, shard, max_entries=50)
    for owner, name, call in originals:
        monkeypatch.setattr(owner, name, call)


def _run_to_the_end(services: Services, run_id: str) -> Any:
    sweeper = services.retention_sweep
    for shard in range(services.shard_count):
        while not sweeper.sweep_page(APP, run_id, NOW, shard, max_entries=50):
            pass
    return sweeper.finalize(APP, run_id, None).run


def test_a_retried_page_applies_the_recorded_page_and_counts_the_first_attempts_changes(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = {
        "archive_after_days": {"open": 30},
        "delete_after_days": {"archive": 10},
        "purge_after_days": 0,
        "delete_user_data": True,
    }
    services.retention_settings.put(APP, RetentionSettings.model_validate(document))
    new_users(APP, "gone")
    idle = conversation(services, 40)
    purged = conversation(services, 1, status="delete", user_id="gone")
    run_id = "ret_20260601000000_000000000001"
    # In each shard, the step dies after its moves and the user's deletion, when it writes the page's report.
    reports = services.retention_sweep.reports
    _first_attempts_die(services, monkeypatch, run_id, [idle, purged], [(reports, "write_page")])
    run = _run_to_the_end(services, run_id)  # the state machine's retries, and the other shards
    # One step per sweep: archived by the first attempt, not moved on to delete by the retry.
    assert status_of(services, idle) == "archive"
    assert status_of(services, purged) is None
    assert run.counts == {"open->archive": 1, "delete->purged": 1}
    assert (run.users_deleted, run.users_deleted_sample) == (1, ["gone"])
    report = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"retention/{APP}/{run_id}/report.csv")
    lines = report["Body"].read().decode().splitlines()
    assert sorted(lines[1:]) == sorted(
        [
            f"conversation,{idle},,open->archive,email",
            f"conversation,{purged},gone,delete->purged,email",
            "user,gone,gone,deleted,",
        ]
    )


def test_activity_between_the_read_and_the_purge_stops_the_purge(services: Services) -> None:
    # In delete, activity changes neither due key: the purge must test what the sweep read.
    services.retention_settings.put(APP, RetentionSettings.model_validate({"purge_after_days": 1}))
    in_delete = conversation(services, 3, status="delete")
    decision = only_decision(services, in_delete)
    assert decision.plan.purged
    services.conversations.record_activity(APP, in_delete, RecordActivity(direction="outbound"))  # after the read
    assert not services.conversation_repository.purge(APP, decision.entry)
    assert status_of(services, in_delete) == "delete"


def _entries_read(services: Services, now: datetime = NOW) -> int:
    settings = services.retention_settings_repository.get(APP)
    assert settings is not None
    layout = services.retention_settings_repository.layout(APP)
    read = 0
    for shard in range(services.shard_count):
        position: ShardPosition | None = ShardPosition()
        while position is not None:
            page = due_page(services.conversation_repository, APP, settings, layout, shard, now, position, 100)
            read, position = read + page.read, page.next
    return read


def test_a_short_channel_cutoff_reads_only_that_channels_due_entries(services: Services) -> None:
    document = {"archive_after_days": {"open": 30}, "channels": {"whatsapp": {"archive_after_days": {"open": 1}}}}
    services.retention_settings.put(APP, RetentionSettings.model_validate(document))
    sweep(services, "ret_20260601000100_000000000001", now=SETTLED)  # homes the (no) entries written before
    for _ in range(6):
        conversation(services, 10)  # email: idle 10 days of 30, not due
    due = conversation(services, 2, channel="whatsapp")
    assert _entries_read(services) == 1
    run = sweep(services, "ret_20260601000000_000000000002")
    assert run.counts == {"open->archive": 1}
    assert status_of(services, due) == "archive"


def test_entries_written_before_their_channel_was_overridden_are_rehomed_by_the_next_sweep(services: Services) -> None:
    services.retention_settings.put(APP, RetentionSettings.model_validate({"archive_after_days": {"open": 30}}))
    idle = [conversation(services, 10, channel="whatsapp") for _ in range(3)]
    fresh = conversation(services, 0.5, channel="whatsapp")
    email = conversation(services, 10)
    document = {"archive_after_days": {"open": 30}, "channels": {"whatsapp": {"archive_after_days": {"open": 1}}}}
    services.retention_settings.put(APP, RetentionSettings.model_validate(document))
    preview = services.retention_preview.preview(APP)
    first = sweep(services, "ret_20260601000100_000000000001", now=SETTLED)
    # The whatsapp conversations written under the app's defaults are found, moved or re-homed.
    assert preview.counts == first.counts == {"open->archive": 3}
    assert {status_of(services, cid) for cid in idle} == {"archive"}
    assert (status_of(services, fresh), status_of(services, email)) == ("open", "open")
    # Re-homed: later sweeps read exactly what is due for each channel again, and nothing is lost.
    assert _entries_read(services) == 0
    assert _entries_read(services, NOW + timedelta(days=1)) == 1  # the fresh one, due for whatsapp by then
    second = sweep(services, "ret_20260601000100_000000000002", now=SETTLED)
    assert second.counts == {}


def test_a_user_is_counted_once_however_many_of_its_conversations_are_purged(services: Services) -> None:
    purging_user_data(services, "kept", "gone")
    for _ in range(3):
        conversation(services, 1, status="delete", user_id="kept")
        conversation(services, 1, status="delete", user_id="gone")
    conversation(services, 1, status="open", user_id="kept")
    run = sweep(services, page=1)  # one conversation a page: each purge checks the user again
    assert run.counts == {"delete->purged": 6}
    assert (run.users_kept, run.users_kept_sample) == (1, ["kept"])
    assert (run.users_deleted, run.users_deleted_sample) == (1, ["gone"])


def test_the_user_check_confirms_the_user_index_with_the_conversations_themselves(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    purging_user_data(services, "back")
    conversation(services, 1, status="delete", user_id="back")
    reopened = conversation(services, 1, status="delete", user_id="back")
    index = ConversationRecord.by_user
    stale = list(index.query(conversation_user_key(APP, "back")))  # the index before the change below
    services.conversations.change_status(APP, reopened, ChangeStatus(status=ConversationStatus.OPEN))
    # The user index is eventually consistent: it still shows the reopened conversation in delete.
    monkeypatch.setattr(index, "query", lambda *args, **kwargs: iter(stale))
    run = sweep(services)
    assert (run.users_kept, run.users_deleted) == (1, 0)
    assert services.user_repository.get(APP, "back") is not None


def _budgeted_preview(services: Services, max_entries: int, max_queries: int) -> RetentionPreview:
    service = RetentionPreviewService(
        services.conversation_repository,
        services.retention_settings_repository,
        services.shard_count,
        services.clock,
        max_entries=max_entries,
        max_queries=max_queries,
    )
    return service.preview(APP)


def test_the_preview_stops_at_its_read_budget_and_says_it_is_partial(services: Services) -> None:
    services.retention_settings.put(APP, RetentionSettings.model_validate({"archive_after_days": {"open": 1}}))
    sweep(services, "ret_20260601000000_000000000001")  # homes the (no) earlier entries
    for _ in range(8):
        conversation(services, 3)
    complete = services.retention_preview.preview(APP)
    assert (complete.complete, complete.read, complete.counts) == (True, 8, {"open->archive": 8})
    partial = _budgeted_preview(services, max_entries=3, max_queries=1000)
    assert partial.complete is False
    assert 3 <= partial.read < 8
    assert partial.counts == {"open->archive": partial.read}


def test_expired_run_parts_are_not_read(services: Services) -> None:
    runs = services.retention_run_repository
    long_ago = NOW - timedelta(days=30)  # its part expired (TTL) 23 days ago, but DynamoDB may not have removed it
    before = runs.part(APP, "ret_20260501000000_000000000000", 0, NOW)
    after = RunPart(RunSummary(counts={"open->archive": 5}), 1, None, True)
    assert runs.commit_part(APP, "ret_20260501000000_000000000000", 0, before, after, long_ago)
    assert runs.part(APP, "ret_20260501000000_000000000000", 0, NOW) == RunPart(RunSummary(), 0, None, False)
    assert runs.parts(APP, "ret_20260501000000_000000000000", NOW) == []
    assert runs.part(APP, "ret_20260501000000_000000000000", 0, long_ago).done  # not expired then


def _in_one_shard(services: Services, count: int, **fields: Any) -> list[str]:
    """Conversations (idle a day) until ``count`` share a shard, so that one page reads them; all those made."""
    by_shard: dict[int, list[str]] = {}
    while True:
        made = conversation(services, 1, **fields)
        same = by_shard.setdefault(shard_of(made, services.shard_count), [])
        same.append(made)
        if len(same) == count:
            return [conversation_id for ids in by_shard.values() for conversation_id in ids]


def test_a_user_with_two_purged_conversations_in_one_page_counts_once(services: Services) -> None:
    purging_user_data(services, "kept", "gone")
    purged = _in_one_shard(services, 2, status="delete", user_id="kept")
    purged += _in_one_shard(services, 2, status="delete", user_id="gone")
    kept_by = conversation(services, 1, status="open", user_id="kept")
    run = sweep(services, page=50)
    assert run.counts == {"delete->purged": len(purged)}
    assert (run.users_kept, run.users_kept_sample) == (1, ["kept"])
    assert (run.users_deleted, run.users_deleted_sample) == (1, ["gone"])
    report = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"retention/{APP}/{run.run_id}/report.csv")
    users = [line for line in report["Body"].read().decode().splitlines() if line.startswith("user,")]
    assert users == ["user,gone,gone,deleted,", f"user,kept,kept,kept,conversation {kept_by}"]


def test_the_other_conversations_check_stops_at_the_first_live_one_once_a_page(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    purging_user_data(services, "busy")
    purged = _in_one_shard(services, 3, status="delete", user_id="busy")
    for _ in range(30):
        conversation(services, 1, status="resolved", user_id="busy")  # not due: delete_after_days is null
    read: list[Any] = []
    batch_get = ConversationRecord.batch_get

    def counted(keys: Any, **kwargs: Any) -> Any:
        keys = list(keys)
        read.extend(keys)
        return batch_get(keys, **kwargs)

    monkeypatch.setattr(ConversationRecord, "batch_get", counted)
    run = sweep(services, page=50)
    assert run.counts == {"delete->purged": len(purged)}
    assert run.users_kept_sample == ["busy"]
    # One conversation read per page that purged some of the user's (once, however many it purged),
    # where reading all 30 others for each purge would read 30 times as many.
    assert len(read) == len({shard_of(conversation_id, services.shard_count) for conversation_id in purged})


def test_a_move_made_by_an_overlapping_attempt_of_the_page_is_counted(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.retention_settings.put(APP, RetentionSettings.model_validate({"archive_after_days": {"open": 1}}))
    idle = conversation(services, 3)
    sweeper = services.retention_sweep
    run_id = "ret_20260601000000_000000000003"
    sweeper.plan(APP, run_id, NOW)
    shard = shard_of(idle, services.shard_count)
    hold, write_page = sweeper.runs.hold_page, sweeper.reports.write_page

    def hold_then_overlap(*args: Any, **kwargs: Any) -> bool:
        held = hold(*args, **kwargs)
        monkeypatch.setattr(sweeper.runs, "hold_page", hold)
        # A second attempt of the step, started while this one runs: it re-applies the held page (the move),
        # then dies before its commit. This attempt's own move is then refused.
        monkeypatch.setattr(sweeper.reports, "write_page", _fail_once(write_page))
        with pytest.raises(RuntimeError, match="S3 refused"):
            sweeper.sweep_page(APP, run_id, NOW, shard, max_entries=50)
        monkeypatch.setattr(sweeper.reports, "write_page", write_page)
        return held

    monkeypatch.setattr(sweeper.runs, "hold_page", hold_then_overlap)
    assert sweeper.sweep_page(APP, run_id, NOW, shard, max_entries=50)
    run = _run_to_the_end(services, run_id)
    assert status_of(services, idle) == "archive"
    assert run.counts == {"open->archive": 1}


def test_a_page_re_applied_after_a_settings_change_applies_only_what_the_settings_still_allow(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = {"archive_after_days": {"open": 1}, "purge_after_days": 0, "delete_user_data": True}
    services.retention_settings.put(APP, RetentionSettings.model_validate(document))
    new_users(APP, "stays")
    idle = conversation(services, 3)
    purged = conversation(services, 3, status="delete", user_id="stays")
    run_id = "ret_20260601000000_000000000004"
    # In each shard, the step dies after holding its page, before applying anything.
    repository = services.retention_sweep.conversations
    _first_attempts_die(services, monkeypatch, run_id, [idle, purged], [(repository, "move"), (repository, "purge")])
    # Then open is never archived any more, and a purge no longer deletes the user.
    document = {"archive_after_days": {"open": None}, "purge_after_days": 0, "delete_user_data": False}
    services.retention_settings.put(APP, RetentionSettings.model_validate(document))
    run = _run_to_the_end(services, run_id)
    assert status_of(services, idle) == "open"
    assert status_of(services, purged) is None
    assert run.counts == {"delete->purged": 1}
    assert services.user_repository.get(APP, "stays") is not None
    assert (run.users_deleted, run.users_kept) == (0, 0)


def test_conversation_writes_choose_their_group_from_a_consistent_read_of_the_settings(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.retention_settings.put(APP, RetentionSettings.model_validate({"archive_after_days": {"open": 1}}))
    reads: list[bool] = []
    get = RetentionSettingsRecord.get

    def recorded(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs.get("consistent_read", False))
        return get(*args, **kwargs)

    monkeypatch.setattr(RetentionSettingsRecord, "get", recorded)
    made = conversation(services, 1)
    services.conversations.record_activity(APP, made, RecordActivity(direction="inbound"))
    services.conversations.change_status(APP, made, ChangeStatus(status=ConversationStatus.PENDING))
    assert reads == [True, True, True]


def test_only_a_run_started_over_30_s_after_the_overrides_changed_marks_the_entries_homed(services: Services) -> None:
    document = {"archive_after_days": {"open": 30}, "channels": {"whatsapp": {"archive_after_days": {"open": 1}}}}
    services.retention_settings.put(APP, RetentionSettings.model_validate(document))  # at NOW
    settings = services.retention_settings_repository
    # A write that chose its group before the change may still land: this run re-homes, but cannot vouch for all.
    sweep(services, "ret_20260601000010_000000000001", now=NOW + timedelta(seconds=10))
    assert settings.layout(APP).rehoming
    sweep(services, "ret_20260601000031_000000000002", now=NOW + timedelta(seconds=31))
    assert not settings.layout(APP).rehoming


def test_the_preview_keeps_to_its_query_budget_however_many_groups_it_walks(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = {"archive_after_days": dict.fromkeys(("open", "pending", "automated", "sent"), 30)}
    channels = {channel: {"purge_after_days": 5} for channel in ("sms", "chat", "push", "whatsapp")}
    services.retention_settings.put(APP, RetentionSettings.model_validate({**every, "channels": channels}))
    queries = 0
    due_entries = services.conversation_repository.due_entries

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal queries
        queries += 1
        return due_entries(*args, **kwargs)

    monkeypatch.setattr(services.conversation_repository, "due_entries", counted)
    preview = _budgeted_preview(services, max_entries=1000, max_queries=10)  # a shard alone takes 5 groups x 5 statuses
    assert preview.complete is False
    assert queries == 10


def test_a_homing_sweep_drops_the_groups_of_channels_no_longer_overridden(services: Services) -> None:
    rules = {"archive_after_days": {"open": 30}}
    document = {**rules, "channels": {"whatsapp": {"archive_after_days": {"open": 5}}, "sms": {}}}
    services.retention_settings.put(APP, RetentionSettings.model_validate(document))
    sweep(services, "ret_20260601000100_000000000001", now=SETTLED)
    written = conversation(services, 3, channel="whatsapp")  # in the whatsapp group
    services.retention_settings.put(APP, RetentionSettings.model_validate({**rules, "channels": {"sms": {}}}))
    settings = services.retention_settings_repository
    assert settings.layout(APP).channels == {"whatsapp", "sms"}
    sweep(services, "ret_20260601000100_000000000002", now=SETTLED)
    assert settings.layout(APP).channels == {"sms"}  # whatsapp's group is empty and no longer walked
    # Its conversation was re-homed to the app's group, and is due by the app's rule later.
    assert _entries_read(services, NOW + timedelta(days=27)) == 1
    assert sweep(services, "ret_20260628000000_000000000003", now=NOW + timedelta(days=27)).counts == {
        "open->archive": 1
    }
    assert status_of(services, written) == "archive"


def _same_shard(services: Services, *fields: dict[str, Any]) -> list[str]:
    """One conversation for each of ``fields`` (``idle_days`` and the body), all in the first one's shard;
    those made in other shards on the way are deleted."""
    made = [conversation(services, **fields[0])]
    shard = shard_of(made[0], services.shard_count)
    for body in fields[1:]:
        while shard_of(candidate := conversation(services, **body), services.shard_count) != shard:
            services.conversations.delete(APP, candidate)
        made.append(candidate)
    return made


@pytest.mark.parametrize("statuses", [("open", "open"), ("delete", "archive")])
def test_a_user_kept_by_a_conversation_its_page_purges_later_is_deleted(
    services: Services, statuses: tuple[str, str]
) -> None:
    # Every status here reaches the purge in one sweep: the first purge of the page finds the other
    # conversation live, which the same page purges next.
    document = {**ZERO_DAY_CHAIN, "delete_user_data": True}
    services.retention_settings.put(APP, RetentionSettings.model_validate(document))
    new_users(APP, "u")
    made = _same_shard(services, *({"idle_days": 40, "status": status, "user_id": "u"} for status in statuses))
    run = sweep(services, page=50)
    assert run.counts["delete->purged"] == 2
    assert [status_of(services, conversation_id) for conversation_id in made] == [None, None]
    assert (run.users_deleted, run.users_kept) == (1, 0)
    assert services.user_repository.get(APP, "u") is None


@pytest.mark.parametrize(
    ("now", "deleted"),
    [
        ({"purge_after_days": 5, "delete_user_data": True}, True),  # the purge is no longer due: its user still is
        ({"purge_after_days": 0, "delete_user_data": False}, False),
    ],
)
def test_a_purge_made_by_the_first_attempt_checks_its_user_under_the_settings_now(
    services: Services, monkeypatch: pytest.MonkeyPatch, now: dict[str, Any], deleted: bool
) -> None:
    purging_user_data(services, "u")
    purged = conversation(services, 3, status="delete", user_id="u")
    run_id = "ret_20260601000000_000000000005"
    # The step dies after the purge, in the user check.
    repository = services.retention_sweep.conversations
    _first_attempts_die(services, monkeypatch, run_id, [purged], [(repository, "other_live_conversation")])
    services.retention_settings.put(APP, RetentionSettings.model_validate(now))
    run = _run_to_the_end(services, run_id)
    assert status_of(services, purged) is None
    assert run.counts == {"delete->purged": 1}
    assert (run.users_deleted, run.users_kept) == (int(deleted), 0)
    assert (services.user_repository.get(APP, "u") is None) is deleted


def _report_users(run_id: str) -> list[str]:
    report = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"retention/{APP}/{run_id}/report.csv")
    return [line for line in report["Body"].read().decode().splitlines() if line.startswith("user,")]


def test_a_user_whose_deletion_failed_is_kept_by_a_conversation_created_before_the_retry(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    purging_user_data(services, "back")
    purged = conversation(services, 1, status="delete", user_id="back")
    run_id = "ret_20260601000000_000000000006"
    _first_attempts_die(services, monkeypatch, run_id, [purged], [(services.retention_sweep.user_deletion, "delete")])
    kept_by = conversation(services, 1, status="open", user_id="back")  # never due: open is never archived
    run = _run_to_the_end(services, run_id)
    assert (run.users_deleted, run.users_kept) == (0, 1)
    assert services.user_repository.get(APP, "back") is not None
    assert _report_users(run_id) == [f"user,back,back,kept,conversation {kept_by}"]


class _FailOnDeleted:
    """Records what the run did to users, but dies on recording a deletion: after the deletion itself."""

    def __init__(self, call: Any) -> None:
        self.call = call

    def __call__(self, app_id: str, run_id: str, outcome: Any, now: datetime) -> None:
        if outcome.outcome == "deleted":
            raise RuntimeError("S3 refused the page")
        self.call(app_id, run_id, outcome, now)


@pytest.mark.parametrize("dies_in", ["the deletion", "after the deletion"])
def test_a_run_that_ends_with_a_deletion_unfinished_counts_the_user_by_its_profile(
    services: Services, monkeypatch: pytest.MonkeyPatch, dies_in: str
) -> None:
    purging_user_data(services, "u")
    purged = conversation(services, 1, status="delete", user_id="u")
    run_id = "ret_20260601000000_000000000007"
    sweeper = services.retention_sweep
    sweeper.plan(APP, run_id, NOW)
    if dies_in == "the deletion":
        monkeypatch.setattr(sweeper.user_deletion, "delete", _fail_once(sweeper.user_deletion.delete))
    else:
        monkeypatch.setattr(sweeper.runs, "record_user", _FailOnDeleted(sweeper.runs.record_user))
    with pytest.raises(RuntimeError, match="S3 refused"):
        sweeper.sweep_page(APP, run_id, NOW, shard_of(purged, services.shard_count), max_entries=50)
    # The step's retries are exhausted: the run fails and is finalized.
    run = sweeper.finalize(APP, run_id, {"Error": "RuntimeError", "Cause": "S3 refused the page"}).run
    assert run.status == RunStatus.FAILED
    if dies_in == "the deletion":
        assert services.user_repository.get(APP, "u") is not None
        assert (run.users_deleted, run.users_kept) == (0, 0)
        assert _report_users(run_id) == ["user,u,u,deleting,the deletion did not complete"]
    else:
        assert services.user_repository.get(APP, "u") is None
        assert (run.users_deleted, run.users_deleted_sample, run.users_kept) == (1, ["u"], 0)


def test_a_conversation_deleted_by_hand_before_its_purge_is_not_counted(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    purging_user_data(services, "u")
    gone = conversation(services, 1, status="delete", user_id="u")
    repository = services.retention_sweep.conversations
    purge = repository.purge

    def deleted_by_hand_first(app_id: str, entry: Any) -> bool:
        services.conversations.delete(app_id, entry.conversation_id)  # DELETE /v1/conversations/{id}, after the read
        return purge(app_id, entry)

    monkeypatch.setattr(repository, "purge", deleted_by_hand_first)
    run = sweep(services, page=50)
    assert status_of(services, gone) is None
    assert run.counts == {}
    assert (run.users_deleted, run.users_kept) == (0, 0)
    assert services.user_repository.get(APP, "u") is not None  # no user check for a purge the sweep did not make


@pytest.mark.parametrize(("budget", "kept"), [(2, True), (3, False)])
def test_the_user_check_reads_a_bounded_number_of_conversations_in_delete(
    services: Services, monkeypatch: pytest.MonkeyPatch, budget: int, kept: bool
) -> None:
    services.retention_settings.put(
        APP, RetentionSettings.model_validate({"purge_after_days": 5, "delete_user_data": True})
    )
    new_users(APP, "busy")
    conversation(services, 10, status="delete", user_id="busy")
    for _ in range(3):
        conversation(services, 1, status="delete", user_id="busy")  # not due yet
    monkeypatch.setattr(conversation_repository, "USER_CHECK_BUDGET", budget)
    run = sweep(services, page=50)
    assert run.counts == {"delete->purged": 1}
    assert (services.user_repository.get(APP, "busy") is not None) is kept
    assert (run.users_kept, run.users_deleted) == (int(kept), int(not kept))
    if kept:
        assert _report_users(run.run_id) == ["user,busy,busy,kept,too_many_to_check"]
