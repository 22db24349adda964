"""The retention sweep of one app: plan, sweep each shard a page at a time, finalize.

The steps of statemachines/retention.asl.json call it through functions/retention.

Crosses domains: it moves and purges conversations, and with
``delete_user_data`` deletes their users through the same use case as
``DELETE /v1/users/{id}``. A sweep is not activity: it never sets
``last_activity_at`` of a conversation or a user.
"""

import contextlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from steward.conversations.models import ConversationStatus, RetentionRun, RunStatus, RunSummary
from steward.conversations.reports import ReportLine, RunReports
from steward.conversations.repository import ConversationRepository
from steward.conversations.retention_repository import RetentionRunRepository, RetentionSettingsRepository, RunPart
from steward.conversations.selection import Decision, ShardPosition, due_page
from steward.errors import MAX_MESSAGE_CHARS, NotFound, clip
from steward.usecases.user_deletion import UserDeletion

# Due-index entries a sweep step reads (and at most as many conditional writes): well inside Lambda's time.
PAGE_ENTRIES = 500
_SKIPPED = "skipped"


class RetentionSweep:
    def __init__(
        self,
        conversations: ConversationRepository,
        settings: RetentionSettingsRepository,
        runs: RetentionRunRepository,
        user_deletion: UserDeletion,
        reports: RunReports,
        shard_count: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.conversations = conversations
        self.settings = settings
        self.runs = runs
        self.user_deletion = user_deletion
        self.reports = reports
        self.shard_count = shard_count
        self.clock = clock

    def plan(self, app_id: str, run_id: str, now: datetime) -> dict[str, Any]:
        """Record the run and list its work: one item per shard of the app's conversations."""
        self.runs.create(app_id, run_id, now)
        return {"shards": list(range(self.shard_count))}

    def sweep_page(self, app_id: str, run_id: str, now: datetime, shard: int, max_entries: int = PAGE_ENTRIES) -> bool:
        """Sweep the next page of one shard; True once the shard is done.

        The shard's progress (position, counts, page number) is committed after
        the page, on the condition that the page number has not moved, so a
        retried step resumes from the last committed page.
        """
        part = self.runs.part(app_id, run_id, shard)
        if part.done:
            return True
        settings = self.settings.get(app_id)
        if settings is None:  # removed since the run started: nothing more happens
            return self._commit(app_id, run_id, shard, part, RunPart(part.summary, part.seq + 1, None, True))
        start = ShardPosition() if part.position is None else ShardPosition.from_fields(part.position)
        page = due_page(self.conversations, app_id, settings, shard, now, start, max_entries)
        summary = part.summary.model_copy(deep=True)
        lines: list[ReportLine] = []
        for decision in page.decisions:
            self._apply(app_id, decision, now, summary, lines)
        if lines:
            self.reports.write_page(app_id, run_id, shard, part.seq + 1, lines)
        position = None if page.next is None else page.next.as_fields()
        return self._commit(app_id, run_id, shard, part, RunPart(summary, part.seq + 1, position, page.next is None))

    def finalize(self, app_id: str, run_id: str, caught: Mapping[str, Any] | None) -> RetentionRun:
        """Add up the shards' summaries, join the report and record how the run ended.

        ``caught`` is the state machine's Catch (``{"Error", "Cause"}``) when a step failed.
        """
        error = caught_error(caught)
        summary = RunSummary()
        for part in self.runs.parts(app_id, run_id):
            summary.merge(part)
        key = self.reports.join(app_id, run_id)
        status = RunStatus.FAILED if error else RunStatus.SUCCEEDED
        self.runs.finish(app_id, run_id, summary, status, self.clock(), key, error)
        run = self.runs.get(app_id, run_id)
        assert run is not None
        return run

    def _commit(self, app_id: str, run_id: str, shard: int, before: RunPart, after: RunPart) -> bool:
        if self.runs.commit_part(app_id, run_id, shard, before, after, self.clock()):
            return after.done
        return self.runs.part(app_id, run_id, shard).done  # another attempt committed this page first

    def _apply(
        self, app_id: str, decision: Decision, now: datetime, summary: RunSummary, lines: list[ReportLine]
    ) -> None:
        entry, plan = decision.entry, decision.plan
        if plan.purged:
            done = self.conversations.purge(app_id, entry)
        else:
            done = self.conversations.move(app_id, entry, ConversationStatus(plan.final), now)
        user_id = entry.user_id or ""
        if not done:
            # Activity or a change by hand since the index was read: it wins, the conversation stays.
            lines.append(ReportLine("conversation", entry.conversation_id, user_id, _SKIPPED, "changed meanwhile"))
            return
        summary.count(entry.channel, plan.steps)
        for step in plan.steps:
            lines.append(ReportLine("conversation", entry.conversation_id, user_id, step, entry.channel))
        if plan.purged and decision.settings.delete_user_data and entry.user_id is not None:
            self._delete_user(app_id, entry.user_id, entry.conversation_id, summary, lines)

    def _delete_user(
        self, app_id: str, user_id: str, purged_id: str, summary: RunSummary, lines: list[ReportLine]
    ) -> None:
        """Delete the user of a purged conversation, unless it has another conversation not in delete."""
        statuses = self.conversations.statuses_of_user(app_id, user_id)
        others = sorted(
            conversation_id
            for conversation_id, status in statuses.items()
            if conversation_id != purged_id and status != ConversationStatus.DELETE
        )
        if others:
            summary.user_kept(user_id)
            lines.append(ReportLine("user", user_id, user_id, "kept", f"{len(others)} other conversations"))
            return
        with contextlib.suppress(NotFound):  # no profile, or deleted already (another of its conversations)
            self.user_deletion.delete(app_id, user_id)
            summary.user_deleted(user_id)
            lines.append(ReportLine("user", user_id, user_id, "deleted", ""))


def caught_error(caught: Mapping[str, Any] | None) -> str | None:
    """A Catch's ``{"Error", "Cause"}`` as one line; a Lambda's Cause is its JSON error."""
    if not caught:
        return None
    name, cause = str(caught.get("Error", "States.TaskFailed")), str(caught.get("Cause", ""))
    with contextlib.suppress(ValueError, AttributeError):
        cause = str(json.loads(cause).get("errorMessage", cause))
    return clip(f"{name}: {cause}" if cause else name, MAX_MESSAGE_CHARS)
