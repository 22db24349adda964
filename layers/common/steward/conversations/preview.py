"""POST /v1/retention/preview: what a sweep started now would do, without changing anything."""

from collections.abc import Callable
from datetime import datetime

from steward.conversations.models import MAX_PREVIEW_SAMPLE, RetentionPreview
from steward.conversations.repository import ConversationRepository
from steward.conversations.retention_repository import RetentionSettingsRepository
from steward.conversations.selection import ShardPosition, due_page

_PAGE = 1000
# What one preview reads at most, well inside the API function's 15 s: due-index entries, and queries
# (one per status, settings group and shard at least, so many overridden channels cost many).
PREVIEW_MAX_ENTRIES = 10_000
PREVIEW_MAX_QUERIES = 400


class RetentionPreviewService:
    def __init__(
        self,
        conversations: ConversationRepository,
        settings: RetentionSettingsRepository,
        shard_count: int,
        clock: Callable[[], datetime],
        max_entries: int,
        max_queries: int,
    ) -> None:
        self.conversations = conversations
        self.settings = settings
        self.shard_count = shard_count
        self.clock = clock
        self.max_entries = max_entries
        self.max_queries = max_queries

    def preview(self, app_id: str) -> RetentionPreview:
        """Counts every due conversation of the app (reading only due-index entries) and samples their ids.

        Stops at its read budget, shard by shard, with ``complete`` false: the counts are then of the shards
        (and the part of the last one) it read.
        """
        preview = RetentionPreview()
        found = self.settings.get_with_layout(app_id)
        if found is None:
            return preview
        settings, layout = found
        now = self.clock()
        queries = 0
        for shard in range(self.shard_count):
            position: ShardPosition | None = ShardPosition()
            while position is not None:
                if preview.read >= self.max_entries or queries >= self.max_queries:
                    preview.complete = False
                    return preview
                room = min(_PAGE, self.max_entries - preview.read)
                page = due_page(
                    self.conversations, app_id, settings, layout, shard, now, position, room, self.max_queries - queries
                )
                preview.read, queries = preview.read + page.read, queries + page.queries
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
