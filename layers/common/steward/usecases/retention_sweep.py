"""The retention sweep of one app: plan, sweep each shard a page at a time, finalize.

The steps of statemachines/retention.asl.json call it through functions/retention.

Crosses domains: it moves and purges conversations, and with
``delete_user_data`` deletes their users through the same use case as
``DELETE /v1/users/{id}``. A sweep is not activity: it never sets
``last_activity_at`` of a conversation or a user.
"""

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from steward.conversations.models import ConversationStatus, RetentionRun, RunStatus, RunSummary
from steward.conversations.reports import ReportLine, RunReports, UploadGone, report_key
from steward.conversations.repository import ConversationRepository
from steward.conversations.retention_repository import (
    USER_DELETED,
    USER_DELETING,
    USER_KEPT,
    FinalizeProgress,
    HeldPage,
    RetentionRunRepository,
    RetentionSettingsRepository,
    RunPart,
    UserOutcome,
)
from steward.conversations.scheduler import caught_error
from steward.conversations.selection import Decision, ShardPosition, deletes_user_data, due_page, recheck
from steward.errors import NotFound
from steward.usecases.user_deletion import UserDeletion
from steward.users.repository import UserRepository

# Due-index entries a sweep step reads (and at most as many conditional writes): well inside Lambda's time.
PAGE_ENTRIES = 500
# A finalize counts the run's users a page of this many at a time (one consistent Query, about 55 read units,
# and one report object): the same pages whatever the time each invocation has.
USERS_PAGE = 1000
# A finalize invocation starts no other unit of work (a page of users, or a part of the report: 8 MiB from some
# 900 page objects) with less than this left of its time; each unit's progress is saved as soon as it is done.
FINALIZE_MARGIN_SECONDS = 60.0
_SKIPPED = "skipped"

# Seconds left in the Lambda invocation.
Remaining = Callable[[], float]


@dataclass(frozen=True)
class Finalized:
    """The run after a finalize invocation; ``done`` is False while the caller is to call again."""

    run: RetentionRun
    done: bool


@dataclass(frozen=True)
class _Held:
    """A held decision, what the settings allow of it, and whether its purge deletes the user's data."""

    decision: Decision
    allowed: Decision | None
    delete_user_data: bool


@dataclass(frozen=True)
class _PageContext:
    """The page being applied: its run, the run's now, whether it is re-applied (``replay``), the
    conversations it purged, and the users it has checked: each with the conversation that kept it, or
    None when settled for the page (deleted, gone, too many to check)."""

    app_id: str
    run_id: str
    now: datetime
    replay: bool
    purged: set[str] = field(default_factory=set)
    users: dict[str, str | None] = field(default_factory=dict)


class RetentionSweep:
    def __init__(
        self,
        conversations: ConversationRepository,
        settings: RetentionSettingsRepository,
        runs: RetentionRunRepository,
        user_deletion: UserDeletion,
        users: UserRepository,
        reports: RunReports,
        shard_count: int,
        clock: Callable[[], datetime],
        finalize_margin: float = FINALIZE_MARGIN_SECONDS,
    ) -> None:
        self.conversations = conversations
        self.settings = settings
        self.runs = runs
        self.user_deletion = user_deletion
        self.users = users
        self.reports = reports
        self.shard_count = shard_count
        self.clock = clock
        self.finalize_margin = finalize_margin

    def plan(self, app_id: str, run_id: str, now: datetime) -> dict[str, Any]:
        """Record the run and list its work: one item per shard of the app's conversations.

        A run that starts while entries are being re-homed notes the layout: if it completes, every entry is
        in its group as of then. Only a run that starts more than 30 s after the layout changed, once every
        write that chose its group under the older set has landed; an earlier one re-homes what it finds,
        and the next run reads the same groups whole again.
        """
        self.runs.create(app_id, run_id, now)
        layout = self.settings.layout(app_id)
        if layout.rehoming and layout.settled(now):
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
            # Re-applied, a held decision keeps only what the settings now also allow.
            current = self.settings.get(app_id)
            decisions = [Decision.from_json(data) for data in self.reports.read_held(part.pending.key)]
            rechecked = [_Held(d, recheck(d, current, now), deletes_user_data(d, current)) for d in decisions]
            return self._apply_page(app_id, run_id, shard, now, part, rechecked, replay=True)
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
        decided = [_Held(decision, decision, decision.delete_user_data) for decision in page.decisions]
        return self._apply_page(app_id, run_id, shard, now, replace(part, pending=held), decided, replay=False)

    def _apply_page(
        self,
        app_id: str,
        run_id: str,
        shard: int,
        now: datetime,
        part: RunPart,
        decisions: Sequence[_Held],
        *,
        replay: bool,
    ) -> bool:
        """Apply a held page's decisions (each with what the settings allow of it), write its report page and
        commit it."""
        held = part.pending
        assert held is not None
        summary = part.summary.model_copy(deep=True)
        lines: list[ReportLine] = []
        page = _PageContext(app_id, run_id, now, replay)
        for held_decision in decisions:
            self._apply(page, held_decision, summary, lines)
        if lines:
            self.reports.write_page(app_id, run_id, shard, part.seq + 1, lines)
        after = RunPart(summary, part.seq + 1, held.next, held.next is None)
        if not self.runs.commit_part(app_id, run_id, shard, part, after, self.clock()):
            return self.runs.part(app_id, run_id, shard, self.clock()).done  # another attempt committed this page first
        self.reports.delete_held(held.key)
        return after.done

    def finalize(
        self,
        app_id: str,
        run_id: str,
        caught: Mapping[str, Any] | None,
        generation: int | None = None,
        remaining: Remaining | None = None,
    ) -> "Finalized":
        """Add up the shards' summaries, count the run's users, join the report and record how the run ended:
        as much as the invocation's time allows; ``done`` is False when the caller is to call again.

        ``caught`` is the state machine's Catch (``{"Error", "Cause"}``) when a step failed. A run finalized
        already keeps its summary, report and status: only the idempotent rest is done again. Given the
        ``generation`` of the execution that finalizes, a run handed on to a later generation is left to it
        (done, for this caller). The work goes a unit at a time (a page of users, a part of the report), and
        after each unit how far it got is saved on the run item (``FinalizeProgress``): an invocation that
        times out loses one unit at most. A unit is started only while more than ``finalize_margin`` seconds
        are ``remaining`` (the first always is). Every save, and the run's end, is conditioned on the save it
        went on from, so a retried or overlapping call never counts a user twice.
        """
        run = self.runs.get(app_id, run_id)
        if run is None:
            raise NotFound(f"Retention run {run_id} not found.", code="retention_run_not_found")
        if run.finished_at is None:
            state = self.runs.state(app_id, run_id)
            assert state is not None
            if generation is not None and not state.carried_by(generation):
                return Finalized(run, done=True)
            saved = state.finalizing or FinalizeProgress()
            progress = replace(saved, error=saved.error or caught_error(caught))
            key: str | None = None
            first = True
            while key is None:
                if not first and remaining is not None and remaining() <= self.finalize_margin:
                    return Finalized(self.runs.get(app_id, run_id) or run, done=False)  # the next call goes on
                first = False
                progress, key = self._finalize_unit(app_id, run_id, progress)
                if key is not None:
                    break
                following = replace(progress, seq=saved.seq + 1)
                if not self.runs.save_finalizing(app_id, run_id, saved.seq, following):
                    # Another attempt saved first: the next call goes on from its save, with its own upload.
                    if progress.upload is not None and progress.upload != saved.upload:
                        self.reports.abort_join(app_id, run_id, progress.upload)
                    return Finalized(self.runs.get(app_id, run_id) or run, done=False)
                saved = progress = following
            summary = progress.users.model_copy(deep=True)
            for part in self.runs.parts(app_id, run_id, self.clock()):
                summary.add(part)
            status = RunStatus.FAILED if progress.error else RunStatus.SUCCEEDED
            if not self.runs.finish(
                app_id, run_id, summary, status, self.clock(), key, progress.error, generation, saved.seq
            ):
                state = self.runs.state(app_id, run_id)
                assert state is not None
                if not state.finished:
                    # Handed on to a later generation meanwhile (it finalizes), or another attempt saved first.
                    handed_on = generation is not None and not state.carried_by(generation)
                    return Finalized(self.runs.get(app_id, run_id) or run, done=handed_on)
            ended = self.runs.get(app_id, run_id)
            assert ended is not None
            run = ended
        layout = self.runs.layout(app_id, run_id)
        if run.status is RunStatus.SUCCEEDED and layout is not None:
            self.settings.mark_homed(app_id, layout)  # every shard was read whole where entries could be astray
        self.runs.release_lock(app_id, run_id)  # after the summary: a retried finalize releases it again
        return Finalized(run, done=True)

    def _finalize_unit(
        self, app_id: str, run_id: str, progress: FinalizeProgress
    ) -> tuple[FinalizeProgress, str | None]:
        """One unit of the finalize: count the next page of the run's users, or, once all are counted, upload the
        next part of the report: how far that got, and the report's key once joined (None: not yet)."""
        if not progress.users_done:
            return self._count_users_page(app_id, run_id, progress), None
        upload = progress.upload
        if upload is None:
            upload = self.reports.start_join(app_id, run_id)
            progress = replace(progress, upload=upload, part=1, joined_after=None)
        try:
            joined = self.reports.join_part(app_id, run_id, upload, progress.part, progress.joined_after)
            if joined.last:
                return progress, self.reports.complete_join(app_id, run_id, upload)
        except UploadGone:
            if self.reports.joined(app_id, run_id):
                return progress, report_key(app_id, run_id)  # completed by another attempt
            # Aborted by the bucket's lifecycle (a finalize left for more than a day): joined again.
            return replace(progress, upload=None, part=1, joined_after=None), None
        return replace(progress, part=progress.part + 1, joined_after=joined.after), None

    def _count_users_page(self, app_id: str, run_id: str, progress: FinalizeProgress) -> FinalizeProgress:
        """Count the next page of the run's users (from their outcome items, one per user) and write its page of
        the report's user rows; how far that got.

        One consistent Query of at most 1,000 users (about 55 read units: the items are some 220 bytes) and one
        report object per page, so memory holds one page whatever the number of users.
        """
        outcomes, after = self.runs.user_outcomes_page(app_id, run_id, progress.users_after, USERS_PAGE, self.clock())
        users = progress.users.model_copy(deep=True)
        lines: list[ReportLine] = []
        for recorded in outcomes:
            outcome = self._settled(app_id, recorded)
            if outcome.outcome == USER_DELETED:
                users.user_deleted(outcome.user_id)
            elif outcome.outcome == USER_KEPT:
                users.user_kept(outcome.user_id)
            lines.append(ReportLine("user", outcome.user_id, outcome.user_id, outcome.outcome, outcome.detail))
        if lines:
            self.reports.write_users_page(app_id, run_id, progress.users_page, lines)
        return replace(
            progress, users=users, users_after=after, users_page=progress.users_page + 1, users_done=after is None
        )

    def _settled(self, app_id: str, outcome: UserOutcome) -> UserOutcome:
        """A user left ``deleting`` (its deletion failed, or its attempt stopped before recording it) is
        deleted if its profile is gone (the profile goes last), else neither deleted nor kept: one read
        each, for what is rare."""
        if outcome.outcome != USER_DELETING:
            return outcome
        if self.users.get(app_id, outcome.user_id) is None:
            return UserOutcome(outcome.user_id, USER_DELETED, "")
        return UserOutcome(outcome.user_id, USER_DELETING, "the deletion did not complete")

    def _commit(self, app_id: str, run_id: str, shard: int, before: RunPart, after: RunPart) -> bool:
        if self.runs.commit_part(app_id, run_id, shard, before, after, self.clock()):
            return after.done
        return self.runs.part(
            app_id, run_id, shard, self.clock()
        ).done  # another attempt held or committed this page first

    def _apply(self, page: "_PageContext", held: _Held, summary: RunSummary, lines: list[ReportLine]) -> None:
        """Apply what is allowed of a held decision (all of it, unless the page is re-applied after a
        change of the settings) with one conditional write.

        A refused write, or a decision no longer allowed, may have been applied already by another
        attempt of this page (one that overlapped, or failed before its commit): what the conversation
        shows of this run is counted, once, by the attempt that commits the page.
        """
        decision, allowed = held.decision, held.allowed
        entry = decision.entry
        if decision.rehome:  # not a transition: nothing to count or report, and a retry finds it done
            if allowed is not None:
                self.conversations.rehome(page.app_id, entry, allowed.group)
            return
        done = allowed.plan if allowed is not None and self._write(page, allowed) else None
        if done is None:
            left = self.conversations.left_by_sweep(page.app_id, entry, page.now, page.replay)
            done = None if left is None else decision.plan.until(left)
        user_id = entry.user_id or ""
        if done is None:
            # Activity or a change by hand since the index was read (it wins: the conversation stays), or
            # settings that no longer allow the move.
            why = "changed meanwhile" if allowed is not None else "settings changed"
            lines.append(ReportLine("conversation", entry.conversation_id, user_id, _SKIPPED, why))
            return
        summary.count(entry.channel, done.steps)
        for step in done.steps:
            lines.append(ReportLine("conversation", entry.conversation_id, user_id, step, entry.channel))
        if done.purged:
            page.purged.add(entry.conversation_id)
            # Made now or by the first attempt: either way the user is checked, if the settings still say so.
            if held.delete_user_data and entry.user_id is not None:
                self._delete_user(page, entry.user_id)

    def _write(self, page: "_PageContext", decision: Decision) -> bool:
        """The decision's one conditional write: False when refused (the conversation changed since read)."""
        if decision.plan.purged:
            return self.conversations.purge(page.app_id, decision.entry)
        final = ConversationStatus(decision.plan.final)
        return self.conversations.move(page.app_id, decision.entry, final, page.now, decision.group)

    def _delete_user(self, page: "_PageContext", user_id: str) -> None:
        """Delete the user of a purged conversation, unless it has another conversation not in delete.

        The conversations this page purged do not count as the user's. Once a page per user, unless the
        conversation that kept it is purged later in the page (through 0-day steps); and not at all for
        a user already gone (deleted by an earlier page of the run, or never had a profile: neither
        deleted nor kept). The outcome goes to the run's item for that user, which finalize counts:
        each user once per run, deleted when it was both kept and deleted. ``deleting`` is recorded
        before the deletion and ``deleted`` after it, so a retry that finds the user kept after a failed
        deletion can record kept, and one that finds it gone leaves ``deleting`` for finalize to settle.
        """
        if user_id in page.users:
            keeper = page.users[user_id]
            if keeper is None or keeper not in page.purged:
                return
        page.users[user_id] = None
        app_id, run_id = page.app_id, page.run_id
        if self.users.get(app_id, user_id) is None:
            return
        kept = self.conversations.other_live_conversation(app_id, user_id, page.purged)
        if kept is not None:
            page.users[user_id] = kept.conversation_id
            self.runs.record_user(app_id, run_id, UserOutcome(user_id, USER_KEPT, kept.detail), self.clock())
            return
        self.runs.record_user(app_id, run_id, UserOutcome(user_id, USER_DELETING, ""), self.clock())
        with contextlib.suppress(NotFound):  # deleted meanwhile
            self.user_deletion.delete(app_id, user_id)
        self.runs.record_user(app_id, run_id, UserOutcome(user_id, USER_DELETED, ""), self.clock())
