"""bulk_update: change the profiles a selection names (set or delete fields, global unsubscribe).

The selection is a source (all users, or a segment), optional criteria and
at most one limit. A criteria segment's criteria join the selection's; a
static segment's members are walked shard by shard (a member lies in the
shard of its user) and checked against the criteria in code. ``range``
keeps the users whose id falls in the slice by a stable hash
(``steward.sharding.slice_point``): the same slice on every run, applied to
the source whatever the criteria say.

Without ``total_limit`` the job walks the shards in parallel, one work item
each. With it, one work item merges the shards in byte order of the user id
(``_merge``), keeping how many it took in all. An audience's member list is
in partitions, not in id order: the job first surveys the list for each
partition's run (``members.survey_runs``), then merges the runs the same way.

Report rows are ``user`` rows: ``updated`` or ``unsubscribed``, or skipped
with the reason (``unchanged``, ``too_many_fields``...). A profile that ends
unchanged is never written. A write changes only the fields,
``global_unsubscribed`` and ``updated_at``, on condition of the version it
read: ``last_activity_at`` is never touched.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from steward.audiences.members import (
    Run,
    RunRead,
    Survey,
    members_in_version,
    read_member_ids,
    read_run,
    survey_runs,
)
from steward.audiences.models import AudienceStatus, Layout
from steward.conditions import MAX_ATTEMPTS
from steward.criteria.evaluate import matches, scopes_in, user_subject
from steward.criteria.fields import Scope
from steward.criteria.models import Combinator, Group, Node, Target
from steward.criteria.parse import parse_criteria
from steward.devices.models import Device
from steward.errors import Conflict, InvalidInput, NotFound
from steward.jobs.engine import (
    Entity,
    JobContext,
    JobKind,
    JobRefused,
    JsonObject,
    Outcome,
    Page,
    Plan,
    ReportRow,
    RetryPage,
    SinglePhase,
    WorkItem,
    shard_items,
)
from steward.jobs.kinds import _promo, _subscriptions
from steward.jobs.kinds._bulk_triggers import trigger_events
from steward.jobs.kinds._inactivity import ACTIVE_SINCE_CUTOFF, inactive_since, inactivity_cutoff, last_interaction
from steward.jobs.kinds._merge import Chunk, IdChunk, merge_ids_page, merge_page
from steward.jobs.kinds._reach import (
    NOMINAL_DEVICE_BYTES,
    NOMINAL_PROFILE_BYTES,
    SEGMENT_ITEM_BYTES,
    Meter,
    each,
    failed,
    next_of,
    sizes_of,
    start_of,
)
from steward.jobs.kinds._sizes import NOMINAL_MEMBER_BYTES
from steward.jobs.kinds._subscriptions import TOO_MANY_SUBSCRIPTIONS, changed_subscription, needs_devices
from steward.jobs.models import CUTOFF_STATE, JobType
from steward.jobs.params import BulkAction, BulkUpdateParams, SelectionSource
from steward.segments.models import SegmentKind
from steward.shard_reader import Position, read_shards
from steward.sharding import slice_point
from steward.tables import SegmentMemberRecord, segment_members_collection
from steward.users import lifecycle
from steward.users.models import MAX_FIELDS, MAX_FIELDS_BYTES, User, fields_bytes, same_fields

UPDATED = "updated"
UNSUBSCRIBED = "unsubscribed"
SUBSCRIPTION_ADDED = "subscription_added"
SUBSCRIPTION_UPDATED = "subscription_updated"
DELETED = "deleted"
_CHANGES = {
    BulkAction.UPDATE_FIELDS: UPDATED,
    BulkAction.GLOBAL_UNSUBSCRIBE: UNSUBSCRIBED,
    BulkAction.ADD_SUBSCRIPTION: SUBSCRIPTION_ADDED,
    BulkAction.UPDATE_SUBSCRIPTION: SUBSCRIPTION_UPDATED,
    BulkAction.DELETE_PROFILES: DELETED,
}
_SUBSCRIPTION_ACTIONS = (BulkAction.ADD_SUBSCRIPTION, BulkAction.UPDATE_SUBSCRIPTION)
# Users per page: one conditional write each on a real run.
USER_PAGE = 200
UNCHANGED = _subscriptions.UNCHANGED
ALREADY_UNSUBSCRIBED = "already globally unsubscribed"
TOO_MANY_FIELDS = "too_many_fields"
FIELDS_TOO_LARGE = "fields_too_large"
_GONE = "deleted"
# A merge page's users, what it scanned, and each source's cursor after it.
type _Merged = tuple[list[User], int, list[JsonObject | None]]
# BatchGetItem's keys a call: a merge of member ids fetches their profiles this many at a time.
BATCH_GET_KEYS = 100
_NO_LONGER_MATCHES = "no longer matches the selection"
_NO_LONGER_MEMBER = "no longer a member of the segment"
_AUDIENCE_REPLACED = "the audience was replaced by a newer import"
_NOT_A_MEMBER = "no longer a member of the audience"
_AUDIENCE = "audience"


def _params(ctx: JobContext) -> BulkUpdateParams:
    params = ctx.params
    assert isinstance(params, BulkUpdateParams)
    return params


@dataclass(frozen=True)
class _Rules:
    """What selects a user, as the plan fixed it: criteria (the segment's and the job's), members, slice."""

    node: Node
    static_segment: str | None
    slice: tuple[float, float] | None
    audience: Layout | None  # source audience: the version the plan fixed (None: none, or an empty one)

    @classmethod
    def of(cls, ctx: JobContext) -> "_Rules":
        params = _params(ctx)
        parts = [parse_criteria(raw) for raw in (ctx.state.get("segment_criteria"), params.selection.criteria) if raw]
        node = parts[0] if len(parts) == 1 else Group(Combinator.ALL, tuple(parts))
        window = params.selection.range
        return cls(
            node,
            ctx.state.get("static_segment"),
            None if window is None else (window.from_percent, window.to_percent),
            None if ctx.state.get(_AUDIENCE) is None else Layout.model_validate(ctx.state[_AUDIENCE]),
        )

    @property
    def needs_devices(self) -> bool:
        return Scope.DEVICE in scopes_in(self.node)

    def in_slice(self, user_id: str) -> bool:
        return self.slice is None or self.slice[0] <= slice_point(user_id) < self.slice[1]

    def selects(self, ctx: JobContext, users: Sequence[User]) -> list[User]:
        """The users (in their order) that are in the slice and match the criteria."""
        kept = [user for user in users if self.in_slice(user.user_id)]
        owned = (
            ctx.services.device_repository.devices_of_users(ctx.app_id, [user.user_id for user in kept])
            if self.needs_devices
            else {}
        )
        return [user for user in kept if matches(self.node, user_subject(user, owned.get(user.user_id, [])), ctx.now)]


@dataclass(frozen=True)
class _Chunk:
    users: list[User]  # selected, in byte order of the user id
    scanned: int
    next: Position | None


class BulkUpdate(SinglePhase):
    def plan(self, ctx: JobContext) -> Plan:
        params = _params(ctx)
        state: JsonObject = {}
        try:  # checked at submission; the resources may have changed since
            ctx.services.job_references.check(ctx.app_id, params)
        except InvalidInput as exc:
            raise JobRefused(exc.message, code=exc.code) from None
        if params.action is BulkAction.DELETE_PROFILES:
            cutoff = inactivity_cutoff(ctx.now, ctx.services.inactive_profile_months)
            state[CUTOFF_STATE] = cutoff.isoformat()
        selection = params.selection
        if selection.source is SelectionSource.SEGMENT:
            assert selection.segment_id is not None
            try:
                segment = ctx.services.segment_repository.get(ctx.app_id, selection.segment_id)
            except NotFound:
                raise JobRefused(f"Segment {selection.segment_id} does not exist.", code="segment_not_found") from None
            if segment.kind is SegmentKind.CRITERIA:
                state["segment_criteria"] = segment.criteria
            else:
                state["static_segment"] = segment.segment_id
        if selection.source is SelectionSource.AUDIENCE:
            assert selection.name is not None
            audience = ctx.services.audience_repository.get(ctx.app_id, selection.name)
            if audience is None or audience.status is AudienceStatus.DELETED:
                raise JobRefused(f"Audience {selection.name!r} does not exist.", code="audience_not_found")
            # The version at the start: a later import does not change what the job walks.
            state[_AUDIENCE] = None if audience.layout is None else audience.layout.model_dump()
        if selection.total_limit is not None or params.attaches_codes or selection.source is SelectionSource.AUDIENCE:
            return Plan([WorkItem(index=0)], state)
        return Plan(shard_items(ctx.services.shard_count), state)

    # Selection.

    def select(self, ctx: JobContext, item: WorkItem, position: JsonObject | None) -> Page:
        rules = _Rules.of(ctx)
        meter = Meter()
        params = _params(ctx)
        if params.selection.source is SelectionSource.AUDIENCE and params.selection.total_limit is not None:
            users, scanned, next_position = self._merge_members(ctx, rules, position, meter)
        elif params.selection.source is SelectionSource.AUDIENCE:
            users, scanned, next_position = self._members(ctx, rules, position, meter)
        elif item.shard is None and params.selection.total_limit is not None:
            users, scanned, next_position = self._shards(ctx, rules, position, meter)
        elif item.shard is None:
            users, scanned, next_position = self._walk(ctx, rules, position, meter)
        else:
            start = start_of(ctx, item, position)
            chunk = self._read(ctx, rules, start, USER_PAGE, meter)
            users, scanned, next_position = chunk.users, chunk.scanned, next_of(chunk.next)
        if params.attaches_codes:
            rows, codes = _promo.attach_rows(ctx, params, users, position, meter)
            if next_position is not None:
                next_position[_promo.CODES_KEY] = codes
        else:
            deleting = params.action is BulkAction.DELETE_PROFILES
            # A deletion reads the devices itself: only a dry run reads them here, to estimate it (unmetered:
            # the real run does not make this read; ``_meter_deletion`` counts the deletion's own).
            devices = _devices(
                ctx, [user.user_id for user in users], Meter() if deleting else meter, deleting=deleting and ctx.dry_run
            )
            rows = [self._row(ctx, user, devices.get(user.user_id, ()), meter) for user in users]
        meter.trigger_events(len(trigger_events(ctx, params, rows)))
        return Page(rows, scanned, next_position, cost=meter.cost())

    def _members(
        self, ctx: JobContext, rules: _Rules, position: JsonObject | None, meter: Meter
    ) -> tuple[list[User], int, JsonObject | None]:
        """The next page of the audience's members (its member list, by byte offset) that the selection keeps."""
        if rules.audience is None:
            return [], 0, None
        offset = 0 if position is None else int(position["offset"])
        read = read_member_ids(ctx.services.audience_objects, rules.audience, offset, USER_PAGE)
        meter.s3_reads(1)
        if read is None:
            raise _audience_replaced()
        ids, after = read
        return self._profiles(ctx, rules, ids, meter), len(ids), None if after is None else {"offset": after}

    def _merge_members(
        self, ctx: JobContext, rules: _Rules, position: JsonObject | None, meter: Meter
    ) -> tuple[list[User], int, JsonObject | None]:
        """total_limit over an audience: survey the member list's runs (pages of no rows), then merge the runs."""
        layout = rules.audience
        if layout is None:
            return [], 0, None
        objects = ctx.services.audience_objects
        if position is None or "survey" in position:
            survey = survey_runs(
                objects, layout, Survey() if position is None else Survey.from_json(position["survey"])
            )
            if survey is None:
                raise _audience_replaced()
            if not all(run.ordered for run in survey.runs):
                raise _audience_needs_reimport()
            meter.s3_reads(survey.requests)
            if not survey.done:
                return [], 0, {"survey": survey.as_json()}
            position = {"runs": [run.as_json() for run in survey.runs], "cursors": [{} for _ in survey.runs]}
        runs = [Run.from_json(run) for run in position["runs"]]

        def read(index: int, cursor: JsonObject, size: int) -> IdChunk:
            got: RunRead | None = read_run(objects, layout, runs[index], cursor, size)
            if got is None:
                raise _audience_replaced()
            meter.s3_reads(got.requests)
            return IdChunk(got.ids, got.next, got.resume.__getitem__)

        def fetch(ids: list[str]) -> list[User]:
            return self._profiles(ctx, rules, ids, meter)

        return self._merge(
            ctx, position, lambda cursors, room: merge_ids_page(cursors, room, read, fetch, BATCH_GET_KEYS)
        )

    def _walk(
        self, ctx: JobContext, rules: _Rules, position: JsonObject | None, meter: Meter
    ) -> tuple[list[User], int, JsonObject | None]:
        """The next page of the selection, walking the shards one after the other (one work item)."""
        shard_count = ctx.services.shard_count
        start = Position(0) if position is None else Position.from_fields(position["users"], shard_count)
        chunk = self._read(ctx, rules, start, USER_PAGE, meter)
        after = chunk.next or (Position(start.shard + 1) if start.shard + 1 < shard_count else None)
        return chunk.users, chunk.scanned, None if after is None else {"users": after.as_fields()}

    def _read(self, ctx: JobContext, rules: _Rules, start: Position, max_items: int, meter: Meter) -> _Chunk:
        """Up to ``max_items`` candidates of ``start``'s shard from ``start``: the selected ones among them."""
        if rules.static_segment is None:
            page = ctx.services.selection.page(
                ctx.app_id, Target.USERS, rules.node, ctx.now, start, shard=start.shard, max_items=max_items
            )
            users = [found for found in page.matches if isinstance(found, User)]
            selected = [user for user in users if rules.in_slice(user.user_id)]
            meter.walk(page.scanned, self._sizes(ctx, users), NOMINAL_PROFILE_BYTES)
            return _Chunk(selected, page.scanned, page.next)
        batch = read_shards(
            SegmentMemberRecord,
            segment_members_collection(ctx.app_id, rules.static_segment),
            ctx.services.shard_count,
            start,
            max_items=max_items,
            end_shard=start.shard + 1,
        )
        meter.walk(batch.scanned, [], NOMINAL_MEMBER_BYTES)
        return _Chunk(
            self._profiles(ctx, rules, [record.sk for record in batch.items], meter), batch.scanned, batch.next
        )

    def _profiles(self, ctx: JobContext, rules: _Rules, member_ids: Sequence[str], meter: Meter) -> list[User]:
        """The members (in their order) the selection keeps: in the slice, still users, matching; reads metered."""
        wanted = [user_id for user_id in member_ids if rules.in_slice(user_id)]
        found = ctx.services.user_repository.get_many(ctx.app_id, wanted)
        users = [found[user_id][0] for user_id in wanted if user_id in found]  # members deleted since are gone
        meter.gets(self._sizes(ctx, users), consistent=False)
        return rules.selects(ctx, users)

    def _shards(
        self, ctx: JobContext, rules: _Rules, position: JsonObject | None, meter: Meter
    ) -> tuple[list[User], int, JsonObject | None]:
        """total_limit over all users or a segment: merge the shards."""
        shard_count = ctx.services.shard_count
        if position is None:
            position = {"cursors": [{"shard": shard} for shard in range(shard_count)]}

        def read(shard: int, cursor: JsonObject, size: int) -> Chunk:
            chunk = self._read(ctx, rules, Position.from_fields(cursor, shard_count), size, meter)
            frontier = "" if chunk.next is None else chunk.next.after or ""
            return Chunk(chunk.users, chunk.scanned, frontier, next_of(chunk.next), _after_in(shard))

        return self._merge(ctx, position, lambda cursors, room: merge_page(cursors, room, read))

    def _merge(
        self, ctx: JobContext, position: JsonObject, merge: Callable[[list[JsonObject | None], int], _Merged]
    ) -> tuple[list[User], int, JsonObject | None]:
        """The next users of the whole selection in byte order of the id, up to the total limit."""
        limit = _params(ctx).selection.total_limit
        assert limit is not None
        taken = int(position.get("taken", 0))
        users, scanned, cursors = merge(list(position["cursors"]), min(limit - taken, USER_PAGE))
        taken += len(users)
        done = taken >= limit or all(cursor is None for cursor in cursors)
        return users, scanned, None if done else {**position, "cursors": cursors, "taken": taken}

    def _row(self, ctx: JobContext, user: User, devices: Sequence[Device], meter: Meter) -> ReportRow:
        params = _params(ctx)
        if params.action is BulkAction.PROMO_CODES:  # detach (attach hands out codes page by page)
            assert params.program_id is not None
            row = _promo.detach_row(user, params.program_id)
            if row.is_change:
                size = self._sizes(ctx, [user])[0]
                meter.gets([size], consistent=True)
                meter.transaction([_promo.CODE_ITEM_BYTES, size] * len(row.detail.split()))
            return row
        after, reason = _changed(params, user, ctx, devices)
        if after is None:
            return ReportRow(Entity.USER, user.user_id, Outcome.SKIPPED, user.user_id, reason)
        size = self._sizes(ctx, [user])[0]
        meter.gets([size], consistent=True)  # apply's read
        if params.action is BulkAction.DELETE_PROFILES:
            _meter_deletion(meter, user, size, devices)
            return ReportRow(Entity.USER, user.user_id, DELETED, user.user_id, last_interaction(user).isoformat())
        meter.writes([max(size, self._sizes(ctx, [after])[0])])
        if params.action in _SUBSCRIPTION_ACTIONS:
            reason = _subscriptions.change_detail(params, user)
        return ReportRow(Entity.USER, user.user_id, _change_of(params), user.user_id, reason)

    def _sizes(self, ctx: JobContext, users: Sequence[User]) -> list[int]:
        return sizes_of(ctx.services.user_repository.stored_item(ctx.app_id, user) for user in users)

    # Confirmation.

    def recheck(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        params = _params(ctx)
        rules = _Rules.of(ctx)
        change = _change_of(params)
        ids = [row.id for row in rows if row.action == change]
        users = {user_id: user for user_id, (user, _) in _read_many(ctx, ids).items()}
        left = _left_selection(ctx, rules, list(users.values()))
        devices = _devices(ctx, list(users), Meter())

        def now_as(row: ReportRow) -> ReportRow:
            if row.action != change:
                return row
            user = users.get(row.id)
            if user is None:
                return row.with_outcome(Outcome.DRIFTED, _GONE)
            if row.id in left:
                return row.with_outcome(Outcome.DRIFTED, left[row.id])
            if params.action is BulkAction.PROMO_CODES:
                assert params.program_id is not None
                held = _promo.program_codes(user, params.program_id)
                if params.attaches_codes and held:
                    return row.with_outcome(Outcome.DRIFTED, _promo.ALREADY_HAS_CODE)
                return row if params.attaches_codes or held else row.with_outcome(Outcome.DRIFTED, _promo.NO_CODE)
            after, reason = _changed(params, user, ctx, devices.get(row.id, ()))
            if after is None:
                return row.with_outcome(Outcome.DRIFTED, reason)
            if params.action in _SUBSCRIPTION_ACTIONS:  # what it replaces now (a new subscription, or a status)
                return row.with_outcome(row.action, _subscriptions.change_detail(params, user))
            return row

        return [now_as(row) for row in rows]

    # Changes.

    def apply(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        params = _params(ctx)
        change = _change_of(params)
        todo = [row for row in rows if row.action == change]
        read = _read_many(ctx, [row.id for row in todo])
        devices = _devices(ctx, list(read), Meter())
        results = each(todo, lambda row: self._apply_one(ctx, row, read, devices.get(row.id, ())))
        outcomes = dict(zip((row.id for row in todo), results, strict=True))
        applied = [_outcome(row, outcomes[row.id]) if row.id in outcomes else row for row in rows]
        # After the page's writes: an automation never hears of a change before it is stored.
        events = trigger_events(ctx, params, applied)
        if events:
            ctx.services.trigger_publisher.publish(events)
        return applied

    def _apply_one(
        self, ctx: JobContext, row: ReportRow, read: Mapping[str, tuple[User, int]], devices: Sequence[Device]
    ) -> ReportRow:
        """One conditional write of the profile as read; read again and retried when it changed meanwhile."""
        params = _params(ctx)
        repository = ctx.services.user_repository
        stored = read.get(row.id)
        if params.action is BulkAction.DELETE_PROFILES:
            return _delete(ctx, row, stored is not None)
        if params.action is BulkAction.PROMO_CODES:
            user = None if stored is None else stored[0]
            if params.attaches_codes:
                return _promo.apply_attach(ctx, params, row, user)
            return _promo.apply_detach(ctx, params, row, user)
        for _ in range(MAX_ATTEMPTS):
            if stored is None:
                return row.with_outcome(Outcome.NOT_FOUND, "")
            user, version = stored
            after, reason = _changed(params, user, ctx, devices)
            if after is None:
                # Already as the job leaves it: this row's own earlier attempt, or a write that did the same.
                return row if reason in (UNCHANGED, ALREADY_UNSUBSCRIBED) else row.with_outcome(Outcome.SKIPPED, reason)
            saved = (
                repository.save_subscriptions_if_unchanged(ctx.app_id, after, version)
                if params.action in _SUBSCRIPTION_ACTIONS
                else repository.save_profile_if_unchanged(ctx.app_id, after, version)
            )
            if saved:
                return row
            stored = repository.get_with_version(ctx.app_id, row.id)
            # Changed meanwhile: the rules are checked again at the moment of change, not just the outcome.
            left = None if stored is None else _left_selection(ctx, _Rules.of(ctx), [stored[0]]).get(row.id)
            if left is not None:
                return row.with_outcome(Outcome.DRIFTED, left)
        raise Conflict("The user changed concurrently too many times.", code="concurrent_update")


def _left_selection(ctx: JobContext, rules: _Rules, users: Sequence[User]) -> dict[str, str]:
    """Why each of ``users``, as it is now, has left the selection, by user id; the ones still in it are absent.

    The static segment, the audience's version, then the criteria and the slice: a confirmed run's recheck
    (a page at a time) and a write that lost a race (one user) ask the same question.
    """
    selected = {user.user_id for user in rules.selects(ctx, users)}
    members = (
        None
        if rules.audience is None
        else members_in_version(
            ctx.services.audience_repository, ctx.app_id, rules.audience, [user.user_id for user in users]
        )
    )
    left: dict[str, str] = {}
    for user in users:
        if rules.static_segment is not None and rules.static_segment not in user.segments:
            left[user.user_id] = _NO_LONGER_MEMBER
        elif rules.audience is not None and (members is None or user.user_id not in members):
            left[user.user_id] = _AUDIENCE_REPLACED if members is None else _NOT_A_MEMBER
        elif user.user_id not in selected:
            left[user.user_id] = _NO_LONGER_MATCHES
    return left


def _change_of(params: BulkUpdateParams) -> str:
    """The report action of the action's changes."""
    if params.action is BulkAction.PROMO_CODES:
        return _promo.CODE_ATTACHED if params.attaches_codes else _promo.CODE_DETACHED
    return _CHANGES[params.action]


def _delete(ctx: JobContext, row: ReportRow, exists: bool) -> ReportRow:
    """Delete the profile as DELETE /v1/users/{id} does, unless it had an interaction since the cutoff meanwhile."""
    from steward.usecases.user_deletion import DeletionUnfinished  # the other actions' pages do without it

    if not exists:
        return row  # gone: this row's own earlier attempt, or a deletion that did the same
    cutoff = _cutoff(ctx)
    rules = _Rules.of(ctx)

    def declines(user: User) -> str | None:
        """Why the user, as the deletion reads it, is kept: active since the cutoff, or out of the selection."""
        if not inactive_since(user, cutoff):
            return ACTIVE_SINCE_CUTOFF
        return _left_selection(ctx, rules, [user]).get(user.user_id)

    try:
        reason = ctx.services.user_deletion.delete_if(ctx.app_id, row.id, declines, by=ctx.job.job_id)
    except NotFound:
        return row
    except DeletionUnfinished as exc:
        # Decided and partly done: never a failed row. The page runs again, and this job finishes the user it marked.
        raise RetryPage(exc.message) from exc
    if reason is None:
        return row
    return row.with_outcome(Outcome.SKIPPED if reason == ACTIVE_SINCE_CUTOFF else Outcome.DRIFTED, reason)


def _cutoff(ctx: JobContext) -> datetime:
    return datetime.fromisoformat(str(ctx.state[CUTOFF_STATE]))


def _changed(
    params: BulkUpdateParams, user: User, ctx: JobContext, devices: Sequence[Device]
) -> tuple[User | None, str]:
    """The user as the action leaves it, or None and why it stays as it is (deleting: the user itself)."""
    if params.action is BulkAction.DELETE_PROFILES:
        return (user, "") if inactive_since(user, _cutoff(ctx)) else (None, ACTIVE_SINCE_CUTOFF)
    if params.action in _SUBSCRIPTION_ACTIONS:
        subscription, reason = changed_subscription(params, user, devices)
        if subscription is None:
            return None, reason
        try:
            return lifecycle.put_subscription(user, subscription, _written_at(ctx, user)), ""
        except InvalidInput:
            return None, TOO_MANY_SUBSCRIPTIONS
    if params.action is BulkAction.GLOBAL_UNSUBSCRIBE:
        if user.global_unsubscribed:
            return None, ALREADY_UNSUBSCRIBED
        return user.model_copy(update={"global_unsubscribed": True, "updated_at": _written_at(ctx, user)}), ""
    fields = dict(user.fields)
    fields.update(params.set or {})
    for name in params.delete or ():
        fields.pop(name, None)
    if same_fields(fields, user.fields):
        return None, UNCHANGED
    if len(fields) > MAX_FIELDS:
        return None, TOO_MANY_FIELDS
    if fields_bytes(fields) > MAX_FIELDS_BYTES:
        return None, FIELDS_TOO_LARGE
    return user.model_copy(update={"fields": fields, "updated_at": _written_at(ctx, user)}), ""


def _written_at(ctx: JobContext, user: User) -> datetime:
    """The write's own time, never before the profile's last change (``ctx.now`` is the job's start)."""
    return max(ctx.services.clock(), user.updated_at)


def _meter_deletion(meter: Meter, user: User, size: int, devices: Sequence[Device]) -> None:
    """What ``UserDeletion.delete_if`` costs beyond the job's own read of the user (items up to 1 KB: 1 unit).

    It reads the user and its devices (with their versions); a user holding devices, codes or segments is
    then marked (a mark left by another job is replaced), each device deleted (a tagged one in a transaction
    with 2 items per tag, on the version read), each code released and each segment left (a transaction
    each), and the user read again; then it is deleted.
    """
    holds = bool(devices or user.promo_codes or user.segments)
    meter.gets([size] * (2 if holds else 1), consistent=True)
    meter.index_queries(1)  # its read of the user's devices: the index, then each device (strongly consistent)
    meter.gets([NOMINAL_DEVICE_BYTES] * len(devices), consistent=True)
    if holds:
        meter.writes([size])
    for device in devices:
        if device.tags:
            meter.transaction([NOMINAL_DEVICE_BYTES] + [SEGMENT_ITEM_BYTES] * 2 * len(device.tags))
        else:
            meter.writes([NOMINAL_DEVICE_BYTES])
    for _ in user.promo_codes:
        meter.transaction([_promo.CODE_ITEM_BYTES, size])
    for _ in user.segments:
        meter.transaction([NOMINAL_MEMBER_BYTES, SEGMENT_ITEM_BYTES, size])
    meter.writes([size])


def _devices(
    ctx: JobContext, user_ids: Sequence[str], meter: Meter, *, deleting: bool = False
) -> Mapping[str, list[Device]]:
    """The users' devices when the action's rule reads them (push contacts) or a deletion deletes them; metered."""
    if not user_ids or not (deleting or needs_devices(_params(ctx))):
        return {}
    owned = ctx.services.device_repository.devices_of_users(ctx.app_id, user_ids)
    meter.index_queries(len(user_ids))
    meter.gets([NOMINAL_DEVICE_BYTES] * sum(len(found) for found in owned.values()), consistent=False)
    return owned


def _read_many(ctx: JobContext, user_ids: Sequence[str]) -> dict[str, tuple[User, int]]:
    return ctx.services.user_repository.get_many(ctx.app_id, user_ids, consistent=True)


def _outcome(row: ReportRow, result: ReportRow | Exception) -> ReportRow:
    return failed(row, result) if isinstance(result, Exception) else result


def _after_in(shard: int) -> Callable[[str], JsonObject]:
    """A shard's cursor right after one of its users."""
    return lambda user_id: Position(shard, user_id).as_fields()


def _audience_needs_reimport() -> JobRefused:
    """A list imported before runs were sorted: merging it would read and sort a whole partition on every page."""
    return JobRefused(
        "This audience's member list predates ordered imports, which total_limit needs; import the file again.",
        code="audience_needs_reimport",
    )


def _audience_replaced() -> JobRefused:
    return JobRefused(
        "The audience was replaced by a newer import while the job ran; run the job again.", code="audience_replaced"
    )


KINDS: dict[JobType, JobKind] = {JobType.BULK_UPDATE: BulkUpdate()}
