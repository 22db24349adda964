"""Conversations through ConversationService and its repository against moto's DynamoDB."""

from datetime import UTC, datetime, timedelta

import pytest

from steward.composition import Services
from steward.conversations import lifecycle
from steward.conversations.models import (
    ChangeStatus,
    ConversationFilter,
    ConversationStatus,
    CreateConversation,
    RecordActivity,
)
from steward.conversations.service import ConversationService
from steward.errors import InvalidInput, NotFound
from steward.settings import StoreSettings
from tests.support.service import collect_pages, refusal

APP = "app-a"
OTHER_APP = "app-b"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def service(store: StoreSettings) -> ConversationService:
    return Services(store.shard_count, clock=lambda: NOW).conversations


def create(service: ConversationService, app_id: str = APP, **fields: object) -> str:
    body = CreateConversation.model_validate({"channel": "email", **fields})
    return service.create(app_id, body).conversation_id


def test_create_defaults_to_open_now(service: ConversationService) -> None:
    conversation = service.create(APP, CreateConversation(channel="sms", user_id="u1", subject="Hi"))
    assert conversation.status == ConversationStatus.OPEN
    assert conversation.created_at == conversation.last_activity_at == conversation.status_changed_at == NOW
    assert service.get(APP, conversation.conversation_id) == conversation


def test_import_keeps_history_and_defaults_to_created_at(service: ConversationService) -> None:
    created = NOW - timedelta(days=40)
    conversation_id = create(
        service, created_at=created.isoformat(), last_activity_at=(created + timedelta(days=1)).isoformat()
    )
    conversation = service.get(APP, conversation_id)
    assert conversation.created_at == created
    assert conversation.last_activity_at == created + timedelta(days=1)
    assert conversation.status_changed_at == created


@pytest.mark.parametrize("field", ["created_at", "last_activity_at", "status_changed_at"])
def test_timestamps_in_the_future_are_refused(service: ConversationService, field: str) -> None:
    error = refusal(InvalidInput, create, service, **{field: (NOW + timedelta(seconds=1)).isoformat()})
    assert (error.code, error.field) == ("timestamp_in_future", field)


@pytest.mark.parametrize("field", ["last_activity_at", "status_changed_at"])
def test_timestamps_before_created_at_are_refused(service: ConversationService, field: str) -> None:
    created = NOW - timedelta(days=2)
    error = refusal(
        InvalidInput,
        create,
        service,
        created_at=created.isoformat(),
        **{field: (created - timedelta(seconds=1)).isoformat()},
    )
    assert (error.code, error.field) == ("timestamp_before_created_at", field)


def test_activity_keeps_the_status_and_restarts_idle_time(store: StoreSettings) -> None:
    clock = [NOW - timedelta(days=10)]
    service = Services(store.shard_count, clock=lambda: clock[0]).conversations
    conversation_id = create(service, status="archive")
    clock[0] = NOW
    after = service.record_activity(APP, conversation_id, RecordActivity(direction="inbound"))
    assert after.status == ConversationStatus.ARCHIVE
    assert after.last_activity_at == NOW
    assert after.status_changed_at == NOW - timedelta(days=10)


def test_status_by_hand_counts_as_activity_and_brings_back(store: StoreSettings) -> None:
    clock = [NOW - timedelta(days=10)]
    service = Services(store.shard_count, clock=lambda: clock[0]).conversations
    conversation_id = create(service, status="delete")
    clock[0] = NOW
    after = service.change_status(APP, conversation_id, ChangeStatus(status=ConversationStatus.OPEN))
    assert (after.status, after.last_activity_at, after.status_changed_at) == (ConversationStatus.OPEN, NOW, NOW)
    assert service.get(APP, conversation_id) == after


def test_same_status_by_hand_is_activity_only() -> None:
    conversation = lifecycle.create(
        CreateConversation(channel="chat", created_at=NOW - timedelta(days=3)), "cnv_1", NOW
    )
    after = lifecycle.change_status(conversation, ChangeStatus(status=ConversationStatus.OPEN), NOW)
    assert (after.last_activity_at, after.status_changed_at) == (NOW, NOW - timedelta(days=3))


def test_delete_and_missing(service: ConversationService) -> None:
    conversation_id = create(service)
    service.delete(APP, conversation_id)
    for action in (service.get, service.delete):
        assert refusal(NotFound, action, APP, conversation_id).code == "conversation_not_found"
    error = refusal(NotFound, service.record_activity, APP, conversation_id, RecordActivity(direction="outbound"))
    assert error.code == "conversation_not_found"


def test_list_filters_and_pages(service: ConversationService) -> None:
    expected = set()
    for number in range(9):
        conversation_id = create(
            service,
            channel="whatsapp" if number % 3 == 0 else "email",
            status="pending" if number % 2 == 0 else "open",
            user_id=f"user-{number % 2}",
        )
        if number % 3 == 0 and number % 2 == 0:
            expected.add(conversation_id)
    create(service, OTHER_APP, channel="whatsapp", status="pending")

    def listed(conversation_filter: ConversationFilter) -> set[str]:
        found = collect_pages(lambda cursor: service.list_page(APP, conversation_filter, cursor, 2))
        return {conversation.conversation_id for conversation in found}

    assert len(listed(ConversationFilter())) == 9
    both = ConversationFilter(status=ConversationStatus.PENDING, channel="whatsapp")
    assert listed(both) == expected
    by_user = listed(ConversationFilter(user_id="user-0", status=ConversationStatus.PENDING, channel="whatsapp"))
    assert by_user == expected
    assert len(listed(ConversationFilter(user_id="user-1"))) == 4
    assert listed(ConversationFilter(user_id="nobody")) == set()
