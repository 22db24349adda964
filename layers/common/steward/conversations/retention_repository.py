"""Data access for retention: each app's settings, the index of apps that have settings, and sweep runs."""

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DeleteError, PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from steward.conditions import MAX_ATTEMPTS, condition_failed
from steward.conversations.models import RetentionRun, RetentionSettings, RunStatus, RunSummary
from steward.errors import Conflict
from steward.pagination import Page, cursor_str, decode_cursor, fit_page
from steward.sharded_query import partition_cursor_after
from steward.sharding import shard_key, shard_of
from steward.tables import (
    RETENTION_APPS_COLLECTION,
    RETENTION_LOCK_SK,
    RETENTION_SETTINGS_SK,
    RetentionAppRecord,
    RetentionLockRecord,
    RetentionRunPartRecord,
    RetentionRunRecord,
    RetentionSettingsRecord,
    RetentionUserRecord,
    retention_lock_pk,
    retention_parts_pk,
    retention_runs_pk,
    retention_settings_pk,
    retention_users_pk,
)
from steward.transactions import Transaction

# A conversation write reads the overridden channels, then writes within the API's 30 s at most: a write
# that chose its group before a change of the set lands no later than this after it.
LONGEST_WRITE = timedelta(seconds=30)


@dataclass(frozen=True)
class DueLayout:
    """An app's due-index groups: every channel ever overridden, and whether each entry is in its group yet.

    ``layout`` counts the changes of the set of overridden channels; ``homed`` is the layout that a
    complete sweep has moved every entry to the group of. While ``homed < layout``, entries written
    under an older set may sit in another group than their channel's, and the sweep reads the groups
    they can be in whole (see steward/conversations/selection.py).
    """

    channels: frozenset[str] = frozenset()
    layout: int = 0
    homed: int = 0
    changed_at: datetime | None = None

    @property
    def rehoming(self) -> bool:
        return self.homed < self.layout

    def settled(self, at: datetime) -> bool:
        """Whether every write that chose its group under an older set has landed by ``at``."""
        return self.changed_at is None or at - self.changed_at > LONGEST_WRITE


class RetentionSettingsRepository:
    def __init__(self, shard_count: int) -> None:
        # The index of apps is sharded like any collection, so that millions of apps never make a hot partition.
        self.shard_count = shard_count

    def get(self, app_id: str) -> RetentionSettings | None:
        record = self._record(app_id, consistent=True)
        return None if record is None else _settings(record)

    def layout(self, app_id: str) -> DueLayout:
        record = self._record(app_id, consistent=True)
        return DueLayout() if record is None else _layout(record)

    def get_with_layout(self, app_id: str) -> tuple[RetentionSettings, DueLayout] | None:
        """The settings and the due-index layout, in one read."""
        record = self._record(app_id, consistent=True)
        return None if record is None else (_settings(record), _layout(record))

    def overridden(self, app_id: str) -> frozenset[str]:
        """The channels with overrides now, which choose a conversation's due-index group when it is written.

        A consistent read (1 read unit): an eventually consistent one could return the set from before a
        change for longer than the 30 s a sweep waits after it (see ``DueLayout.settled``).
        """
        record = self._record(app_id, consistent=True)
        return frozenset() if record is None else frozenset(_settings(record).channels)

    def put(self, app_id: str, settings: RetentionSettings, now: datetime) -> None:
        """Store the settings and list the app in the index of apps with settings, in one transaction.

        A change of the set of overridden channels adds a layout: the next sweep re-homes the entries.
        """
        for _ in range(MAX_ATTEMPTS):
            current = self._record(app_id, consistent=True)
            before = DueLayout() if current is None else _layout(current)
            overridden = frozenset(settings.channels)
            previous = frozenset() if current is None else frozenset(_settings(current).channels)
            transaction = Transaction()
            record = RetentionSettingsRecord(
                pk=retention_settings_pk(app_id),
                sk=RETENTION_SETTINGS_SK,
                document=json.dumps(settings.stored(), separators=(",", ":"), sort_keys=True),
                groups=set(before.channels | overridden) or None,
                layout=before.layout + int(overridden != previous),
                homed=before.homed,
                layout_changed_at=now if overridden != previous else before.changed_at,
                version=1 if current is None else int(current.version) + 1,
                created_at=now if current is None else current.created_at,
                updated_at=now,
            )
            unchanged = (
                RetentionSettingsRecord.sk.does_not_exist()
                if current is None
                else RetentionSettingsRecord.version == current.version
            )
            transaction.put("settings", record, unchanged)
            listed = RetentionAppRecord(pk=self._index_pk(app_id), sk=app_id, created_at=now, updated_at=now)
            transaction.put("app", listed)
            if not transaction.commit():
                return
        raise Conflict("The settings changed concurrently too many times; retry the request.", code="concurrent_update")

    def mark_homed(self, app_id: str, layout: int) -> None:
        """Every entry is in its group as of ``layout`` (a complete sweep re-homed them).

        The groups of channels no longer overridden are then empty (that sweep read them whole and moved
        every entry out), and are dropped, so that sweeps and previews stop querying them; only while the
        layout is still ``layout``, since a change of the overrides since may have put entries there.
        """
        current = self._record(app_id, consistent=True)
        if current is None:
            return
        key = RetentionSettingsRecord(pk=retention_settings_pk(app_id), sk=RETENTION_SETTINGS_SK)
        empty = (current.groups or set()) - frozenset(_settings(current).channels)
        homed = RetentionSettingsRecord.sk.exists() & (RetentionSettingsRecord.homed < layout)
        actions: list[Action] = [RetentionSettingsRecord.homed.set(layout)]
        if empty and int(current.layout) == layout:
            pruned = [*actions, RetentionSettingsRecord.groups.delete(empty)]
            if _updated(key, pruned, homed & (RetentionSettingsRecord.layout == layout)):
                return
        _updated(key, actions, homed)

    def _record(self, app_id: str, consistent: bool) -> RetentionSettingsRecord | None:
        try:
            return RetentionSettingsRecord.get(
                retention_settings_pk(app_id), RETENTION_SETTINGS_SK, consistent_read=consistent
            )
        except RetentionSettingsRecord.DoesNotExist:
            return None

    def apps_page(self, shard: int, after: str | None, limit: int) -> tuple[list[str], str | None]:
        """Up to ``limit`` apps of one index shard, after the app id ``after``; and the cursor of the next page."""
        pk = shard_key(RETENTION_APPS_COLLECTION, shard)
        start = None if after is None else {"pk": {"S": pk}, "sk": {"S": after}}
        results = RetentionAppRecord.query(pk, limit=limit, last_evaluated_key=start)
        app_ids = [record.sk for record in results]
        more = results.last_evaluated_key is not None and len(app_ids) == limit
        return app_ids, (app_ids[-1] if more else None)

    def _index_pk(self, app_id: str) -> str:
        return shard_key(RETENTION_APPS_COLLECTION, shard_of(app_id, self.shard_count))


@dataclass(frozen=True)
class HeldPage:
    """A page decided but not yet committed: its decisions' S3 key, and where the shard resumes after it."""

    key: str
    next: dict[str, Any] | None

    def as_json(self) -> str:
        return json.dumps({"key": self.key, "next": self.next}, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "HeldPage":
        data = json.loads(text)
        return cls(data["key"], data["next"])


@dataclass(frozen=True)
class RunPart:
    """One shard's progress in a run: what its committed pages did, where it resumes, and its held page."""

    summary: RunSummary
    seq: int
    position: dict[str, Any] | None
    done: bool
    pending: HeldPage | None = None


# A run's per-shard parts are only needed until its summary is written: TTL removes them for free. Each
# execution's Plan renews them, so they outlive the run's last execution by this.
PART_TTL = timedelta(days=7)
# The longest a run may sweep: an execution planned later stops it (RetentionRunStopped), and it is finalized
# with what it did (the app's next run goes on). A week holds hundreds of executions of up to 400,000 moves.
RUN_MAX_AGE = timedelta(days=7)
# A user's outcome, written once (one write per user: never renewed), must outlive the run's parts: a run's
# last execution is planned at most RUN_MAX_AGE after it started (and after any outcome), and its parts
# last PART_TTL after that.
USER_OUTCOME_TTL = RUN_MAX_AGE + PART_TTL


USER_KEPT = "kept"
USER_DELETED = "deleted"
# Recorded before the deletion and replaced by deleted after it (or by kept, when a retry finds the user
# kept): a run that ends with it left had its deletion fail or stop half-way.
USER_DELETING = "deleting"
# Users' outcomes read per page at finalize: a page of items this size stays well under 1 MB.
OUTCOMES_PAGE = 1000


@dataclass(frozen=True)
class UserOutcome:
    """What a run did to one user: kept (``detail`` says why) or deleted."""

    user_id: str
    outcome: str
    detail: str


@dataclass(frozen=True)
class FinalizeProgress:
    """How far a run's finalize has got, saved on the run item when an invocation's budget runs out, so that
    the next invocation (the state machine's loop, or the scheduler's next pass) goes on from there.

    ``seq`` counts the saves: each save, and the run's end, is conditioned on the one read, so two attempts
    that overlap never both count a page of users. ``error`` is the first error a finalize was given (the run
    ends failed with it); ``users`` holds the users counted so far and their samples.
    """

    seq: int = 0
    error: str | None = None
    users: RunSummary = field(default_factory=RunSummary)
    users_after: str | None = None  # the last user id counted
    users_page: int = 0  # the number of the next page of the report's user rows
    users_done: bool = False
    upload: str | None = None  # the report's multipart upload
    part: int = 1  # its next part
    joined_after: str | None = None  # the last report page in the parts uploaded

    def as_json(self) -> str:
        data = {**asdict(self), "users": self.users.model_dump(mode="json")}
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FinalizeProgress":
        data = json.loads(text)
        return cls(**{**data, "users": RunSummary.model_validate(data["users"])})


@dataclass(frozen=True)
class RunState:
    """Where a run stands for its executions: finished, and which generation (execution) carries it on."""

    finished: bool
    generation: int
    # Ending: its execution timed out or was stopped; finalized once this has passed (``error`` says why).
    finalize_after: datetime | None = None
    error: str | None = None
    # When the run was created or last handed on to a generation: that generation's execution starts just after.
    updated_at: datetime | None = None
    # A finalize left unfinished by its last invocation.
    finalizing: FinalizeProgress | None = None
    # The finalize-only executions it was handed to (the last is ``<run>_f<handoff>``; 0: none).
    handoff: int = 0

    def carried_by(self, generation: int) -> bool:
        """Whether an execution of ``generation`` may still work on the run (and finalize it)."""
        return not self.finished and self.finalize_after is None and self.generation == generation

    def due_to_finalize(self, now: datetime) -> bool:
        return not self.finished and self.finalize_after is not None and self.finalize_after <= now


class RetentionRunRepository:
    def create(self, app_id: str, run_id: str, started_at: datetime, now: datetime | None = None) -> RetentionRun:
        """Record a run as running (at ``now``, the sweep's ``started_at`` by default); a retried start finds the
        run it created."""
        record = RetentionRunRecord(
            pk=retention_runs_pk(app_id),
            sk=run_id,
            status=RunStatus.RUNNING.value,
            started_at=started_at,
            summary=RunSummary().model_dump_json(),
            generation=0,
            created_at=now or started_at,
            updated_at=now or started_at,
        )
        try:
            record.save(condition=RetentionRunRecord.sk.does_not_exist())
        except PutError as exc:
            if not condition_failed(exc):
                raise
            existing = self.get(app_id, run_id)
            assert existing is not None
            return existing
        return _run(record)

    def acquire_lock(self, app_id: str, run_id: str, now: datetime, ttl: timedelta) -> str | None:
        """Hold the app's sweep lock for ``run_id`` (again, on a retry); None when held, else the holder's run id.

        Free means absent, or held past its expiry by a run that crashed without finalizing.
        """
        record = _lock_record(app_id, run_id, now, ttl)
        free = (
            RetentionLockRecord.sk.does_not_exist()
            | (RetentionLockRecord.run_id == run_id)
            | (RetentionLockRecord.expires_at <= int(now.timestamp()))
        )
        try:
            record.save(condition=free)
        except PutError as exc:
            if not condition_failed(exc):
                raise
            try:
                holder = RetentionLockRecord.get(retention_lock_pk(app_id), RETENTION_LOCK_SK, consistent_read=True)
            except RetentionLockRecord.DoesNotExist:
                return self.acquire_lock(app_id, run_id, now, ttl)  # released meanwhile
            return holder.run_id
        return None

    def lock_holder(self, app_id: str) -> str | None:
        """The run that holds (or last held, if it expired) the app's lock; None when it is free."""
        try:
            return str(
                RetentionLockRecord.get(retention_lock_pk(app_id), RETENTION_LOCK_SK, consistent_read=True).run_id
            )
        except RetentionLockRecord.DoesNotExist:
            return None

    def lock_taken_at(self, app_id: str, run_id: str) -> datetime | None:
        """When ``run_id`` last took (or renewed) the app's lock; None when another run holds it, or nobody."""
        try:
            record = RetentionLockRecord.get(retention_lock_pk(app_id), RETENTION_LOCK_SK, consistent_read=True)
        except RetentionLockRecord.DoesNotExist:
            return None
        return record.created_at if record.run_id == run_id else None

    def pass_lock(self, app_id: str, holder: str, run_id: str, now: datetime, ttl: timedelta) -> bool:
        """Hand the app's lock from ``holder`` to ``run_id`` in one write; False when ``holder`` no longer holds it."""
        record = _lock_record(app_id, run_id, now, ttl)
        try:
            record.save(condition=RetentionLockRecord.run_id == holder)
        except PutError as exc:
            if not condition_failed(exc):
                raise
            return False
        return True

    def release_lock(self, app_id: str, run_id: str) -> None:
        """Free the app's lock if ``run_id`` holds it (idempotent: a retried finalize calls it again)."""
        try:
            RetentionLockRecord(pk=retention_lock_pk(app_id), sk=RETENTION_LOCK_SK).delete(
                condition=RetentionLockRecord.run_id == run_id
            )
        except DeleteError as exc:
            if not condition_failed(exc):
                raise

    def note_layout(self, app_id: str, run_id: str, layout: int) -> None:
        RetentionRunRecord(pk=retention_runs_pk(app_id), sk=run_id).update(
            actions=[RetentionRunRecord.layout.set(layout)], condition=RetentionRunRecord.sk.exists()
        )

    def layout(self, app_id: str, run_id: str) -> int | None:
        """The due-index layout the run started at (see ``DueLayout``)."""
        try:
            record = RetentionRunRecord.get(retention_runs_pk(app_id), run_id, consistent_read=True)
        except RetentionRunRecord.DoesNotExist:
            return None
        return None if record.layout is None else int(record.layout)

    def state(self, app_id: str, run_id: str) -> RunState | None:
        try:
            record = RetentionRunRecord.get(retention_runs_pk(app_id), run_id, consistent_read=True)
        except RetentionRunRecord.DoesNotExist:
            return None
        return RunState(
            record.finished_at is not None,
            int(record.generation or 0),
            record.finalize_after,
            record.error,
            record.updated_at,
            None if record.finalizing is None else FinalizeProgress.from_json(record.finalizing),
            int(record.finalize_handoff or 0),
        )

    def advance_handoff(self, app_id: str, run_id: str, handoff: int) -> bool:
        """Count one more finalize-only execution for the unfinished run, if it was handed to ``handoff`` so far;
        False when another pass or handler counted it first, or the run is finished."""
        last = RetentionRunRecord.finalize_handoff
        counted = last.does_not_exist() | (last == 0) if handoff == 0 else last == handoff
        condition = RetentionRunRecord.sk.exists() & RetentionRunRecord.finished_at.does_not_exist() & counted
        actions: list[Action] = [last.set(handoff + 1)]
        return _updated(RetentionRunRecord(pk=retention_runs_pk(app_id), sk=run_id), actions, condition)

    def save_finalizing(self, app_id: str, run_id: str, before: int, progress: FinalizeProgress) -> bool:
        """Save how far the run's finalize got, only if its last save is still ``before`` (``progress.seq`` is
        the next) and the run has not ended; False when another attempt saved or ended it first."""
        actions: list[Action] = [
            RetentionRunRecord.finalizing.set(progress.as_json()),
            RetentionRunRecord.finalize_seq.set(progress.seq),
        ]
        condition = (
            RetentionRunRecord.sk.exists() & RetentionRunRecord.finished_at.does_not_exist() & _finalize_seq_is(before)
        )
        return _updated(RetentionRunRecord(pk=retention_runs_pk(app_id), sk=run_id), actions, condition)

    def advance_generation(self, app_id: str, run_id: str, generation: int, now: datetime) -> bool:
        """Hand the run on from ``generation`` to the next one, before the next execution starts; True also when
        a retry finds it handed on already, False when the run is finished or carried on further."""
        following = generation + 1
        condition = _going_on() & (_generation_is(generation) | _generation_is(following))
        key = RetentionRunRecord(pk=retention_runs_pk(app_id), sk=run_id)
        actions: list[Action] = [RetentionRunRecord.generation.set(following), RetentionRunRecord.updated_at.set(now)]
        return _updated(key, actions, condition)

    def mark_ending(
        self, app_id: str, run_id: str, generation: int, finalize_after: datetime, error: str | None
    ) -> bool:
        """Record that the run's current execution ended without finalizing it: no generation goes on, and the
        run is to be finalized after ``finalize_after``, failed with ``error`` (None: as its counts say). False
        when the run is finished, ending, or carried on by another generation."""
        condition = _going_on() & _generation_is(generation)
        actions: list[Action] = [RetentionRunRecord.finalize_after.set(finalize_after)]
        if error is not None:
            actions.append(RetentionRunRecord.error.set(error))
        return _updated(RetentionRunRecord(pk=retention_runs_pk(app_id), sk=run_id), actions, condition)

    def get(self, app_id: str, run_id: str) -> RetentionRun | None:
        try:
            return _run(RetentionRunRecord.get(retention_runs_pk(app_id), run_id, consistent_read=True))
        except RetentionRunRecord.DoesNotExist:
            return None

    def report_key(self, app_id: str, run_id: str) -> str | None:
        try:
            record = RetentionRunRecord.get(retention_runs_pk(app_id), run_id)
        except RetentionRunRecord.DoesNotExist:
            return None
        return record.report_key

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[RetentionRun]:
        """The app's runs, newest first (run ids start with their start time)."""
        position = decode_cursor(cursor)
        start = None
        if position is not None:
            start = {"pk": {"S": retention_runs_pk(app_id)}, "sk": {"S": cursor_str(position, "after")}}
        results = RetentionRunRecord.query(
            retention_runs_pk(app_id), scan_index_forward=False, limit=limit, last_evaluated_key=start
        )
        records = list(results)
        next_cursor = None
        if results.last_evaluated_key is not None and records:
            next_cursor = partition_cursor_after(records[-1].sk)
        return fit_page(((_run(record), partition_cursor_after(record.sk)) for record in records), next_cursor)

    def record_user(self, app_id: str, run_id: str, outcome: UserOutcome, now: datetime) -> None:
        """Record what the run did to a user: one item per user, whatever the pages, attempts and shards.

        Deleted replaces anything; deleting replaces kept (a user kept by one purge and deleted by a
        later one is deleted); kept replaces only deleting (a retry found the user kept after a deletion
        that failed). Writing the same outcome again changes nothing, so replays and overlapping attempts
        never count a user twice.
        """
        record = RetentionUserRecord(
            pk=retention_users_pk(app_id, run_id),
            sk=outcome.user_id,
            outcome=outcome.outcome,
            detail=outcome.detail or None,
            expires_at=int((now + USER_OUTCOME_TTL).timestamp()),
            created_at=now,
            updated_at=now,
        )
        if outcome.outcome == USER_DELETED:
            record.save()
            return
        replaces = USER_KEPT if outcome.outcome == USER_DELETING else USER_DELETING
        try:
            record.save(condition=RetentionUserRecord.sk.does_not_exist() | (RetentionUserRecord.outcome == replaces))
        except PutError as exc:
            if not condition_failed(exc):
                raise

    def user_outcomes_page(
        self, app_id: str, run_id: str, after: str | None, limit: int, now: datetime
    ) -> tuple[list[UserOutcome], str | None]:
        """The run's next user outcomes after the user id ``after``, by user id, with one Query of at most
        ``limit`` (1,000 at most: some 220 KB); and the last user id read, None once none is left.

        Consistent reads, since finalize follows the last write; items past their TTL are left out.
        """
        pk = retention_users_pk(app_id, run_id)
        start = None if after is None else {"pk": {"S": pk}, "sk": {"S": after}}
        records = RetentionUserRecord.query(
            pk, consistent_read=True, limit=min(limit, OUTCOMES_PAGE), last_evaluated_key=start
        )
        page = [
            UserOutcome(record.sk, record.outcome, record.detail or "")
            for record in records
            if not _expired(record.expires_at, now)
        ]
        more = records.last_evaluated_key
        return page, None if more is None else str(more["sk"]["S"])

    def part(self, app_id: str, run_id: str, shard: int, now: datetime) -> RunPart:
        """A shard's progress; one past its TTL counts as absent (DynamoDB removes expired items only eventually)."""
        try:
            record = RetentionRunPartRecord.get(
                retention_parts_pk(app_id, run_id), _part_sk(shard), consistent_read=True
            )
        except RetentionRunPartRecord.DoesNotExist:
            return RunPart(RunSummary(), 0, None, False)
        if _expired(record.expires_at, now):
            return RunPart(RunSummary(), 0, None, False)
        position = None if record.position is None else json.loads(record.position)
        pending = None if record.pending is None else HeldPage.from_json(record.pending)
        summary = RunSummary.model_validate_json(record.summary)
        return RunPart(summary, int(record.seq), position, record.done, pending)

    def hold_page(self, app_id: str, run_id: str, shard: int, before: RunPart, held: HeldPage, now: datetime) -> bool:
        """Record the page about to be applied, only if the part is still as ``before`` (no page held or passed)."""
        return self._write_part(app_id, run_id, shard, before, replace(before, pending=held), now)

    def commit_part(self, app_id: str, run_id: str, shard: int, before: RunPart, after: RunPart, now: datetime) -> bool:
        """Write a shard's progress, only if no other attempt held or committed a page since ``before`` was read."""
        return self._write_part(app_id, run_id, shard, before, after, now)

    def _write_part(self, app_id: str, run_id: str, shard: int, before: RunPart, after: RunPart, now: datetime) -> bool:
        record = RetentionRunPartRecord(
            pk=retention_parts_pk(app_id, run_id),
            sk=_part_sk(shard),
            summary=after.summary.model_dump_json(),
            seq=after.seq,
            position=None if after.position is None else json.dumps(after.position),
            done=after.done,
            pending=None if after.pending is None else after.pending.as_json(),
            expires_at=int((now + PART_TTL).timestamp()),
            created_at=now,
            updated_at=now,
        )
        condition: Condition
        if before.seq == 0 and before.pending is None:
            condition = RetentionRunPartRecord.sk.does_not_exist()  # a part is first written by a hold or a commit
        else:
            same_pending = (
                RetentionRunPartRecord.pending.does_not_exist()
                if before.pending is None
                else RetentionRunPartRecord.pending == before.pending.as_json()
            )
            condition = (RetentionRunPartRecord.seq == before.seq) & same_pending
        try:
            record.save(condition=condition)
        except PutError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def keep_parts(self, app_id: str, run_id: str, now: datetime) -> set[int]:
        """Give the run's parts ``PART_TTL`` from ``now`` again (a part is otherwise kept only from its last
        write, and a run of many executions may leave a done shard's part unwritten for days), and return the
        shards done: one query and one small update per part, at most ``ShardCount`` each."""
        records = RetentionRunPartRecord.query(retention_parts_pk(app_id, run_id), consistent_read=True)
        done = set()
        for record in records:
            if _expired(record.expires_at, now):
                continue
            if record.done:
                done.add(int(record.sk))
            # Conditioned on the part as read: a page committed meanwhile wrote a fresh expiry itself.
            key = RetentionRunPartRecord(pk=record.pk, sk=record.sk)
            renewed: list[Action] = [RetentionRunPartRecord.expires_at.set(int((now + PART_TTL).timestamp()))]
            _updated(key, renewed, RetentionRunPartRecord.seq == record.seq)
        return done

    def done_shards(self, app_id: str, run_id: str, now: datetime) -> set[int]:
        """The shards the run has swept whole (one query of at most ``ShardCount`` small items)."""
        records = RetentionRunPartRecord.query(retention_parts_pk(app_id, run_id), consistent_read=True)
        return {int(record.sk) for record in records if record.done and not _expired(record.expires_at, now)}

    def parts(self, app_id: str, run_id: str, now: datetime) -> list[RunSummary]:
        """Every shard's summary (a partition of at most ``ShardCount`` small items), expired ones left out."""
        records = RetentionRunPartRecord.query(retention_parts_pk(app_id, run_id), consistent_read=True)
        return [
            RunSummary.model_validate_json(record.summary) for record in records if not _expired(record.expires_at, now)
        ]

    def finish(
        self,
        app_id: str,
        run_id: str,
        summary: RunSummary,
        status: RunStatus,
        now: datetime,
        report_key: str | None,
        error: str | None,
        generation: int | None = None,
        finalize_seq: int | None = None,
    ) -> bool:
        """Record how the run ended, unless it has ended already, (given ``generation``) another generation
        carries it on, or (given ``finalize_seq``) its finalize was saved since that save was read; False when
        it was not recorded."""
        actions: list[Action] = [
            RetentionRunRecord.status.set(status.value),
            RetentionRunRecord.summary.set(summary.model_dump_json()),
            RetentionRunRecord.finished_at.set(now),
            RetentionRunRecord.updated_at.set(now),
            RetentionRunRecord.finalizing.remove(),
            RetentionRunRecord.finalize_seq.remove(),
            RetentionRunRecord.finalize_after.remove(),
        ]
        if report_key is not None:
            actions.append(RetentionRunRecord.report_key.set(report_key))
        # An ending run's note of why (mark_ending) gives way to how it ended.
        actions.append(RetentionRunRecord.error.set(error) if error is not None else RetentionRunRecord.error.remove())
        condition = RetentionRunRecord.sk.exists() & RetentionRunRecord.finished_at.does_not_exist()
        if generation is not None:
            condition = condition & _generation_is(generation)
        if finalize_seq is not None:
            condition = condition & _finalize_seq_is(finalize_seq)
        # Refused when finished already (by the execution, or by its status change heard later: the first end
        # stands), when a later generation carries the run on (and finalizes it), or when another attempt of
        # the finalize saved meanwhile (it goes on from there).
        return _updated(RetentionRunRecord(pk=retention_runs_pk(app_id), sk=run_id), actions, condition)


def _going_on() -> Condition:
    """The run exists, is not finished and is not ending."""
    going_on: Condition = (
        RetentionRunRecord.sk.exists()
        & RetentionRunRecord.finished_at.does_not_exist()
        & RetentionRunRecord.finalize_after.does_not_exist()
    )
    return going_on


def _finalize_seq_is(seq: int) -> Condition:
    """The run's finalize was last saved as ``seq`` (0: never)."""
    if seq == 0:
        never: Condition = RetentionRunRecord.finalize_seq.does_not_exist()
        return never
    return RetentionRunRecord.finalize_seq == seq


def _generation_is(generation: int) -> Condition:
    """The run is carried on by ``generation`` (a run recorded before generations were stored: by the first)."""
    current = RetentionRunRecord.generation == generation
    return current | RetentionRunRecord.generation.does_not_exist() if generation == 0 else current


def _updated(
    record: RetentionSettingsRecord | RetentionRunRecord | RetentionRunPartRecord,
    actions: list[Action],
    condition: Condition,
) -> bool:
    """Apply ``actions`` if ``condition`` holds; False when it does not."""
    try:
        record.update(actions=actions, condition=condition)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        return False
    return True


def _settings(record: RetentionSettingsRecord) -> RetentionSettings:
    return RetentionSettings.model_validate(json.loads(record.document))


def _layout(record: RetentionSettingsRecord) -> DueLayout:
    return DueLayout(frozenset(record.groups or ()), int(record.layout), int(record.homed), record.layout_changed_at)


def _lock_record(app_id: str, run_id: str, now: datetime, ttl: timedelta) -> RetentionLockRecord:
    """The app's lock, held by ``run_id`` from ``now`` for ``ttl``."""
    return RetentionLockRecord(
        pk=retention_lock_pk(app_id),
        sk=RETENTION_LOCK_SK,
        run_id=run_id,
        expires_at=int((now + ttl).timestamp()),
        created_at=now,
        updated_at=now,
    )


def _expired(expires_at: float | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now.timestamp()


def _part_sk(shard: int) -> str:
    return f"{shard:03d}"


def _run(record: RetentionRunRecord) -> RetentionRun:
    summary = RunSummary.model_validate_json(record.summary)
    return RetentionRun(
        **summary.model_dump(),
        run_id=record.sk,
        status=RunStatus(record.status),
        started_at=record.started_at,
        finished_at=record.finished_at,
        error=record.error,
    )
