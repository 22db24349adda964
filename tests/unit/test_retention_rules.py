"""The retention rules (steward.conversations.retention): effective settings and what a sweep does, row by row."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from steward.composition import Services
from steward.conversations import retention
from steward.conversations.models import ARCHIVABLE, DELETABLE, ConversationStatus, RetentionSettings
from steward.settings import StoreSettings
from tests.support.retention import EXAMPLE_SETTINGS as EXAMPLE

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def settings(**document: Any) -> RetentionSettings:
    return RetentionSettings.model_validate(document)


def plan(status: ConversationStatus, idle_days: float, document: dict[str, Any], channel: str = "email") -> Any:
    effective = retention.effective(settings(**document), channel)
    return retention.due(status, NOW - timedelta(days=idle_days), effective, NOW)


def key_of(status: ConversationStatus) -> str:
    return "archive_after_days" if status in ARCHIVABLE else "delete_after_days"


@pytest.mark.parametrize("status", [*ARCHIVABLE, *DELETABLE])
def test_null_means_the_conversation_stays(status: ConversationStatus) -> None:
    assert plan(status, 36_500, {key_of(status): {status.value: None}}) is None
    assert plan(status, 36_500, {}) is None  # left out of the app's map: null


@pytest.mark.parametrize("status", [*ARCHIVABLE, *DELETABLE])
def test_zero_means_at_once(status: ConversationStatus) -> None:
    due = plan(status, 0, {key_of(status): {status.value: 0}})
    assert due is not None
    assert due.steps[0] == f"{status.value}->{retention.next_step(status)}"


@pytest.mark.parametrize("status", [*ARCHIVABLE, *DELETABLE])
def test_n_days_without_activity(status: ConversationStatus) -> None:
    document = {key_of(status): {status.value: 10}}
    assert plan(status, 9.99, document) is None
    due = plan(status, 10, document)
    assert due is not None
    assert due.steps == (f"{status.value}->{retention.next_step(status)}",)


def test_purge_defaults_to_30_days() -> None:
    assert plan(ConversationStatus.DELETE, 29.9, {}) is None
    assert plan(ConversationStatus.DELETE, 30, {}) == retention.Plan(("delete->purged",), "purged")
    assert plan(ConversationStatus.DELETE, 0, {"purge_after_days": 0}) == retention.Plan(("delete->purged",), "purged")
    assert plan(ConversationStatus.DELETE, 6, {"purge_after_days": 7}) is None
    assert plan(ConversationStatus.DELETE, 7, {"purge_after_days": 7}) is not None


def test_one_step_per_sweep_unless_the_next_setting_is_zero() -> None:
    document = {"archive_after_days": {"open": 30}, "delete_after_days": {"archive": 0}, "purge_after_days": 0}
    due = plan(ConversationStatus.OPEN, 40, document)
    assert due == retention.Plan(("open->archive", "archive->delete", "delete->purged"), "purged")
    one_step = {"archive_after_days": {"open": 30}, "delete_after_days": {"archive": 1}, "purge_after_days": 0}
    assert plan(ConversationStatus.OPEN, 400, one_step) == retention.Plan(("open->archive",), "archive")
    two_steps = {"archive_after_days": {"open": 30}, "delete_after_days": {"archive": 0}}
    assert plan(ConversationStatus.OPEN, 400, two_steps) == retention.Plan(
        ("open->archive", "archive->delete"), "delete"
    )


def test_channel_overrides_key_by_key() -> None:
    whatsapp = retention.effective(settings(**EXAMPLE), "whatsapp")
    assert whatsapp.archive_after_days == {"open": 5, "pending": 30, "automated": 7, "sent": 14}
    assert whatsapp.delete_after_days == {"archive": 90, "irrelevant": 0, "resolved": None}
    assert whatsapp.purge_after_days == 0
    email = retention.effective(settings(**EXAMPLE), "email")
    assert email.archive_after_days["open"] == 30
    assert email.purge_after_days == 30
    assert plan(ConversationStatus.OPEN, 6, EXAMPLE, "whatsapp") is not None
    assert plan(ConversationStatus.OPEN, 6, EXAMPLE, "email") is None


def test_an_explicit_null_in_a_channel_overrides_the_app() -> None:
    document = {
        "archive_after_days": {"open": 1},
        "purge_after_days": 3,
        "delete_user_data": True,
        "channels": {
            "sms": {"archive_after_days": {"open": None}, "purge_after_days": None, "delete_user_data": False}
        },
    }
    sms = retention.effective(settings(**document), "sms")
    assert sms.archive_after_days["open"] is None
    assert sms.purge_after_days == 30  # an explicit null is null, which means 30
    assert sms.delete_user_data is False
    assert plan(ConversationStatus.OPEN, 100, document, "sms") is None
    assert retention.effective(settings(**document), "push").purge_after_days == 3


def test_each_group_has_its_own_cutoff() -> None:
    example = settings(**EXAMPLE)
    defaults, whatsapp = retention.effective(example), retention.effective(example, "whatsapp")
    assert retention.cutoff(defaults, ConversationStatus.OPEN, NOW) == NOW - timedelta(days=30)
    assert retention.cutoff(whatsapp, ConversationStatus.OPEN, NOW) == NOW - timedelta(days=5)
    assert retention.cutoff(defaults, ConversationStatus.RESOLVED, NOW) is None
    assert retention.cutoff(whatsapp, ConversationStatus.DELETE, NOW) == NOW
    assert retention.cutoff(retention.effective(settings()), ConversationStatus.DELETE, NOW) == NOW - timedelta(days=30)


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"archive_after_days": {"open": -1}}, "archive_after_days.open"),
        ({"archive_after_days": {"open": 1.5}}, "archive_after_days.open"),
        ({"archive_after_days": {"open": 36_501}}, "archive_after_days.open"),
        ({"archive_after_days": {"open": True}}, "archive_after_days.open"),
        ({"archive_after_days": {"closed": 1}}, "archive_after_days.closed"),
        ({"delete_after_days": {"open": 1}}, "delete_after_days.open"),
        ({"purge_after_days": 2.0}, "purge_after_days"),
        ({"bogus": 1}, "bogus"),
        ({"channels": {"sms": {"purge_after_days": -3}}}, "channels.sms.purge_after_days"),
        ({"channels": {"sms": {"channels": {}}}}, "channels.sms.channels"),
        ({"channels": {"x" * 65: {}}}, "channels"),
    ],
)
def test_bad_settings_name_the_path(document: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**document)
    location = ".".join(str(part) for part in caught.value.errors()[0]["loc"])
    assert location.startswith(field)


def test_settings_are_stored_as_sent_with_effective_values(store: StoreSettings) -> None:
    service = Services(store.shard_count, clock=lambda: NOW).retention_settings
    assert service.get("app-a").settings is None
    answer = service.put("app-a", settings(**EXAMPLE))
    assert service.get("app-a") == answer
    stored = answer.settings
    assert stored is not None
    assert stored.stored()["channels"] == {"whatsapp": {"archive_after_days": {"open": 5}, "purge_after_days": 0}}
    assert set(answer.channels) == {"whatsapp"}
    assert answer.effective is not None
    assert answer.effective.purge_after_days == 30
    assert service.get("app-b").settings is None
    index = Services(store.shard_count).retention_settings_repository
    listed = [index.apps_page(shard, None, 10) for shard in range(store.shard_count)]
    assert [app_id for app_ids, _ in listed for app_id in app_ids] == ["app-a"]


def test_a_plan_cut_to_what_other_settings_allow_and_to_where_a_step_landed() -> None:
    chained = {"archive_after_days": {"open": 30}, "delete_after_days": {"archive": 0}, "purge_after_days": 0}
    held = plan(ConversationStatus.OPEN, 40, chained)
    assert held.steps == ("open->archive", "archive->delete", "delete->purged")
    # The settings now stop at archive (delete after 5 days), or never archive open.
    shorter = plan(ConversationStatus.OPEN, 40, {**chained, "delete_after_days": {"archive": 5}})
    assert held.within(shorter) == retention.Plan(("open->archive",), "archive")
    assert held.within(plan(ConversationStatus.OPEN, 40, {**chained, "archive_after_days": {}})) is None
    assert held.within(held) == held
    # Where another attempt left the conversation: the steps up to there.
    assert held.until("delete") == retention.Plan(("open->archive", "archive->delete"), "delete")
    assert held.until("purged") == held
    assert held.until("open") is None
