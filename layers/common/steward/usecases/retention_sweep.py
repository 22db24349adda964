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
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from steward.conversations.models import ConversationStatus, RetentionRun, RunStatus, RunSummary
from steward.conversations.reports import ReportLine, RunReports
from steward.conversations.repository import ConversationRepository
from steward.conversations.retention_repository import (
    HeldPage,
    RetentionRunRepository,
    RetentionSettingsRepository,
    RunPart,
    UserClaim,
)
from steward.conversations.selection import Decision, ShardPosition, due_page
from steward.errors import MAX_MESSAGE_CHARS, NotFound, clip
from steward.usecases.user_deletion import UserDeletion

# Due-index entries a sweep step reads (and at most as many conditional writes): well inside Lambda's time.
PAGE_ENTRIES = 500
_SKIPPED = "skipped"
_KEPT = "kept"
_DELETED = "deleted"


@dataclass(frozen=True)
class _PageContext:
    """The page being applied: its run, its id within the run (``<shard>#<seq>``), the run's now, and
    whether it is replayed from its held decisions."""

    app_id: str
    run_id: str
    page: str
    now: datetime
    replay: bool


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
        """Record the run and list its work: one item per shard of the app's conversations.

        A run that starts while entries are being re-homed notes the layout: if it completes, every entry is
        in its group as of then.
        """
        self.runs.create(app_id, run_id, now)
        layout = self.settings.layout(app_id)
        if layout.rehoming:
            self.runs.note_layout(app_id, run_id, layout.layout)
        return {"shards": list(range(self.shard_count))}

    def sweep_page(self, app_id: str, run_id: str, now: datetime, shard: int, max_entries: int = PAGE_ENTRIES) -> bool:
        """Sweep the next page of one shard; True once the shard is done.

        Write-ahead, as the jobs engine does: the page is decided, its decisions
        are stored in S3 and named on the shard's part (held), then applied, and
        the part commits the page (position, counts, page number), each write
        conditioned on the part as read. A step retried anywhere after the hold
        re-applies the held decisions, never decides again: a conversation moved
        by the first attempt is not met again in its new status, and what the
        first attempt did is counted and reported once.
        """
        part = self.runs.part(app_id, run_id, shard, self.clock())
        if part.done:
            return True
        if part.pending is not None:
            decisions = [Decision.from_json(data) for data in self.reports.read_held(part.pending.key)]
            return self._apply_page(app_id, run_id, shard, now, part, decisions, replay=True)
        found = self.settings.get_with_layout(app_id)
        if found is None:  # removed since the run started: nothing more happens
            return self._commit(app_id, run_id, shard, part, RunPart(part.summary, part.seq + 1, None, True))
        start = ShardPosition() if part.position is None else ShardPosition.from_fields(part.position)
        settings, layout = found
        page = due_page(self.conversations, app_id, settings, layout, shard, now, start, max_entries)
        position = None if page.next is None else page.next.as_fields()
        if not page.decisions:  # nothing to apply: nothing a retry could repeat
            return self._commit(
                app_id, run_id, shard, part, RunPart(part.summary, part.seq + 1, position, position is None)
            )
        key = self.reports.write_held(app_id, run_id, shard, part.seq, [d.as_json() for d in page.decisions])
        held = HeldPage(key, position)
        if not self.runs.hold_page(app_id, run_id, shard, part, held, self.clock()):
            self.reports.delete_held(key)
            return self.runs.part(app_id, run_id, shard, self.clock()).done  # another attempt holds or passed this page
        return self._apply_page(app_id, run_id, shard, now, replace(part, pending=held), page.decisions, replay=False)

    def _apply_page(
        self,
        app_id: str,
        run_id: str,
        shard: int,
        now: datetime,
        part: RunPart,
        decisions: list[Decision],
        *,
        replay: bool,
    ) -> bool:
        """Apply a held page's decisions (again, when ``replay``), write its report page and commit it."""
        held = part.pending
        assert held is not None
        summary = part.summary.model_copy(deep=True)
        lines: list[ReportLine] = []
        page = _PageContext(app_id, run_id, f"{shard:03d}#{part.seq}", now, replay)
        for decision in decisions:
            self._apply(page, decision, summary, lines)
        if lines:
            self.reports.write_page(app_id, run_id, shard, part.seq + 1, lines)
        after = RunPart(summary, part.seq + 1, held.next, held.next is None)
        if not self.runs.commit_part(app_id, run_id, shard, part, after, self.clock()):
            return self.runs.part(app_id, run_id, shard, self.clock()).done  # another attempt committed this page first
        self.reports.delete_held(held.key)
        return after.done

    def finalize(self, app_id: str, run_id: str, caught: Mapping[str, Any] | None) -> RetentionRun:
        """Add up the shards' summaries, join the report and record how the run ended.

        ``caught`` is the state machine's Catch (``{"Error", "Cause"}``) when a step failed. A run finalized
        already keeps its summary, report and status: only the idempotent rest is done again.
        """
        finished = self.runs.get(app_id, run_id)
        if finished is not None and finished.finished_at is not None:
            status = finished.status
        else:
            error = caught_error(caught)
            summary = RunSummary()
            for part in self.runs.parts(app_id, run_id, self.clock()):
                summary.merge(part)
            key = self.reports.join(app_id, run_id)
            status = RunStatus.FAILED if error else RunStatus.SUCCEEDED
            self.runs.finish(app_id, run_id, summary, status, self.clock(), key, error)
        layout = self.runs.layout(app_id, run_id)
        if status is RunStatus.SUCCEEDED and layout is not None:
            self.settings.mark_homed(app_id, layout)  # every shard was read whole where entries could be astray
        self.runs.release_lock(app_id, run_id)  # after the summary: a retried finalize releases it again
        run = self.runs.get(app_id, run_id)
        assert run is not None
        return run

    def _commit(self, app_id: str, run_id: str, shard: int, before: RunPart, after: RunPart) -> bool:
        if self.runs.commit_part(app_id, run_id, shard, before, after, self.clock()):
            return after.done
        return self.runs.part(
            app_id, run_id, shard, self.clock()
        ).done  # another attempt held or committed this page first

    def _apply(self, page: "_PageContext", decision: Decision, summary: RunSummary, lines: list[ReportLine]) -> None:
        app_id, now, replay = page.app_id, page.now, page.replay
        entry, plan = decision.entry, decision.plan
        if decision.rehome:  # not a transition: nothing to count or report, and a retry finds it done
            self.conversations.rehome(app_id, entry, decision.group)
            return
        if plan.purged:
            # Replayed, a conversation already gone was purged by the attempt that held the page.
            done = self.conversations.purge(app_id, entry) or (
                replay and self.conversations.get(app_id, entry.conversation_id, consistent=True) is None
            )
        else:
            final = ConversationStatus(plan.final)
            done = self.conversations.move(app_id, entry, final, now, decision.group) or (
                replay and self.conversations.moved_at(app_id, entry.conversation_id, final, now)
            )
        user_id = entry.user_id or ""
        if not done:
            # Activity or a change by hand since the index was read: it wins, the conversation stays.
            lines.append(ReportLine("conversation", entry.conversation_id, user_id, _SKIPPED, "changed meanwhile"))
            return
        summary.count(entry.channel, plan.steps)
        for step in plan.steps:
            lines.append(ReportLine("conversation", entry.conversation_id, user_id, step, entry.channel))
        if plan.purged and decision.delete_user_data and entry.user_id is not None:
            self._delete_user(page, entry.user_id, entry.conversation_id, summary, lines)

    def _delete_user(
        self, page: "_PageContext", user_id: str, purged_id: str, summary: RunSummary, lines: list[ReportLine]
    ) -> None:
        """Delete the user of a purged conversation, unless it has another conversation not in delete.

        Each user counts once per run, kept or deleted (deleted wins when both happen); a replayed page
        counts again what its first attempt claimed, since that attempt's counts were never committed.
        """
        app_id = page.app_id
        statuses = self.conversations.statuses_of_user(app_id, user_id)
        others = sorted(
            conversation_id
            for conversation_id, status in statuses.items()
            if conversation_id != purged_id and status != ConversationStatus.DELETE
        )
        if others:
            if self.runs.claim_user(app_id, page.run_id, user_id, _KEPT, page.page, self.clock()) is UserClaim.FIRST:
                summary.user_kept(user_id)
                lines.append(ReportLine("user", user_id, user_id, _KEPT, f"{len(others)} other conversations"))
            return
        try:
            self.user_deletion.delete(app_id, user_id)
        except NotFound:  # no profile, or deleted already (by another of its conversations, or a first attempt)
            claim = self.runs.own_claim(app_id, page.run_id, user_id, _DELETED, page.page)
        else:
            claim = self.runs.claim_user(app_id, page.run_id, user_id, _DELETED, page.page, self.clock())
        if claim is UserClaim.NONE:
            return
        if claim is UserClaim.UPGRADED:
            summary.no_longer_kept()
        summary.user_deleted(user_id)
        lines.append(ReportLine("user", user_id, user_id, _DELETED, ""))


def caught_error(caught: Mapping[str, Any] | None) -> str | None:
    """A Catch's ``{"Error", "Cause"}`` as one line; a Lambda's Cause is its JSON error."""
    if not caught:
        return None
    name, cause = str(caught.get("Error", "States.TaskFailed")), str(caught.get("Cause", ""))
    with contextlib.suppress(ValueError, AttributeError):
        cause = str(json.loads(cause).get("errorMessage", cause))
    return clip(f"{name}: {cause}" if cause else name, MAX_MESSAGE_CHARS)
