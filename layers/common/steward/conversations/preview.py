"""POST /v1/retention/preview: what a sweep started now would do, without changing anything."""

from collections.abc import Callable
from datetime import datetime

from steward.conversations.models import MAX_PREVIEW_SAMPLE, RetentionPreview
from steward.conversations.repository import ConversationRepository
from steward.conversations.retention_repository import RetentionSettingsRepository
from steward.conversations.selection import ShardPosition, due_page

_PAGE = 1000


class RetentionPreviewService:
    def __init__(
        self,
        conversations: ConversationRepository,
        settings: RetentionSettingsRepository,
        shard_count: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.conversations = conversations
        self.settings = settings
        self.shard_count = shard_count
        self.clock = clock

    def preview(self, app_id: str) -> RetentionPreview:
        """Counts every due conversation of the app (reading only due-index entries) and samples their ids."""
        preview = RetentionPreview()
        found = self.settings.get_with_layout(app_id)
        if found is None:
            return preview
        settings, layout = found
        now = self.clock()
        for shard in range(self.shard_count):
            position: ShardPosition | None = ShardPosition()
            while position is not None:
                page = due_page(self.conversations, app_id, settings, layout, shard, now, position, _PAGE)
                for decision in page.decisions:
                    if decision.rehome:
                        continue
                    preview.count(decision.entry.channel, decision.plan.steps)
                    for step in decision.plan.steps:
                        sample = preview.sample.setdefault(step, [])
                        if len(sample) < MAX_PREVIEW_SAMPLE:
                            sample.append(decision.entry.conversation_id)
                position = page.next
        return preview
