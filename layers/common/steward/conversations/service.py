"""Conversation use cases of the API: create, read, list, record activity, change status, delete."""

from collections.abc import Callable
from datetime import datetime

from steward.conversations import lifecycle
from steward.conversations.models import (
    ChangeStatus,
    Conversation,
    ConversationFilter,
    CreateConversation,
    RecordActivity,
)
from steward.conversations.repository import ConversationRepository, conversation_not_found
from steward.conversations.retention_repository import RetentionSettingsRepository
from steward.pagination import Page


class ConversationService:
    def __init__(
        self,
        repository: ConversationRepository,
        settings: RetentionSettingsRepository,
        clock: Callable[[], datetime],
    ) -> None:
        self.repository = repository
        # A write puts the conversation in the due-index group of its channel under the app's overrides.
        self.settings = settings
        self.clock = clock

    def create(self, app_id: str, request: CreateConversation) -> Conversation:
        now = self.clock()
        conversation = lifecycle.create(request, lifecycle.new_conversation_id(), now)
        self.repository.create(app_id, conversation, now, self.settings.overridden(app_id))
        return conversation

    def get(self, app_id: str, conversation_id: str) -> Conversation:
        conversation = self.repository.get(app_id, conversation_id)
        if conversation is None:
            raise conversation_not_found(conversation_id)
        return conversation

    def record_activity(self, app_id: str, conversation_id: str, request: RecordActivity) -> Conversation:
        now = self.clock()
        return self.repository.update(
            app_id,
            conversation_id,
            lambda current: lifecycle.record_activity(current, now),
            now,
            self.settings.overridden(app_id),
        )

    def change_status(self, app_id: str, conversation_id: str, request: ChangeStatus) -> Conversation:
        now = self.clock()
        return self.repository.update(
            app_id,
            conversation_id,
            lambda current: lifecycle.change_status(current, request, now),
            now,
            self.settings.overridden(app_id),
        )

    def delete(self, app_id: str, conversation_id: str) -> None:
        if not self.repository.delete(app_id, conversation_id):
            raise conversation_not_found(conversation_id)

    def list_page(
        self, app_id: str, conversation_filter: ConversationFilter, cursor: str | None, limit: int
    ) -> Page[Conversation]:
        return self.repository.list_page(app_id, conversation_filter, cursor, limit)
