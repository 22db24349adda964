"""split_audience: the selected users, cut into the static segments ``<prefix>-1`` .. ``<prefix>-N``.

Two phases over the app's shards, in the order ``steward.jobs.split`` defines:

0. *Count.* Each shard's worker counts the users it selects (the criteria,
   and the medium as a rule of its own); it lists nothing.
1. *Assign.* ``advance`` plans the split from the counts and refuses the job
   when a segment name exists (``segment_name_taken``) or a size would make
   more than 1,000 segments (``too_many_segments``), before it creates
   anything; a real run then creates the segments. Each worker reads its
   shard again, in the same order and with the same selection, and lists
   each user with its segment: ``user,<id>,<id>,added,<segment name>``. A
   user read past its shard's count (it appeared after the count) is
   ``drifted`` and joins no segment; a user already in 90 static segments
   is ``skipped`` (``at_segment_limit``) and keeps its rank, so the other
   users' segments do not move.

A segment's id is derived from the id of the job that creates it and its
number, so a retried step recognises the segments it created, and the
state stays a few numbers whatever N is.

**Counts.** A page adds its joins to its segments' ``member_count`` and
``inactive_member_count`` once, in a transaction with a receipt
(``SegmentRepository.add_counts_once``), rather than setting them in
``finish``: the engine keeps no tally for a confirmed run (it replays the
dry run's rows), a failed or cancelled job never reaches ``finish`` but
keeps the members it added, and a member that changes its active flag (or
is removed, or deleted) while the job runs moves the counts by one in its
own transaction, which a count set at the end would overwrite. Whether a
user joined inactive is the state its join wrote (the update returns it),
so a later change of that flag moves the counts from the right side; a
user someone else added to the segment meanwhile is left to their count.
The counts are exact after every page, and so when the job ends.
``finish`` deletes the receipts (a failed job leaves its few, one per page).

**Cost per selected user** (``Page.cost``, from item sizes; profiles of at
most 1 KB, read eventually consistent):
- reads: the shard is queried twice (count, assign): 2 x 1 KB / 8 KB =
  0.25 read units; the joins read nothing (UpdateItem returns the user).
  ``medium: push`` adds, per user and per pass, a keys-only index query
  (0.5) and about one device read (0.5): 2 more units.
- writes: the user's ``segments`` set (1 unit up to 1 KB, 1 more per
  started KB) and the member item (1): 2 units.
- per page (up to 1,000 users): its segments read (1 each), then one
  transaction of a receipt and their counts (2 units per item): ~6 units.
- per segment: the name check (1 read) and its creation (segment and name
  claim in a transaction: 4 units).
The test measures 2.2 write and 0.2 read units per user for 200 users of
700 bytes in 4 segments.
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar, cast

from steward.criteria.evaluate import matches, scopes_in, user_subject
from steward.criteria.fields import Scope
from steward.criteria.models import NOT_GLOBALLY_UNSUBSCRIBED, Combinator, Group, Node, Target
from steward.criteria.parse import parse_criteria
from steward.errors import Conflict, clip
from steward.jobs.engine import (
    Entity,
    JobContext,
    JobKind,
    JobRefused,
    JsonObject,
    Outcome,
    Page,
    PageCost,
    Plan,
    ReportRow,
    WorkItem,
    shard_items,
)
from steward.jobs.models import JobType
from steward.jobs.params import MAX_SEGMENTS, Medium, SplitAudienceParams
from steward.jobs.pricing import batch_get_units, item_size, query_read_units, write_units
from steward.jobs.split import SplitPlan, segment_name
from steward.segments.models import MAX_SEGMENTS_PER_USER, SEGMENT_ID_PREFIX, Segment
from steward.segments.repository import SEGMENT_NAME_TAKEN, Join, JoinOutcome, JoinResult, MemberCounts
from steward.shard_reader import Position
from steward.users.models import User

ADDED = "added"
AT_SEGMENT_LIMIT = "at_segment_limit"
SELECTED_AFTER_COUNT = "selected after the count"
GONE = "deleted"
NO_LONGER_MATCHES = "no longer matches the criteria"
SEGMENT_GONE = "the segment was deleted while the job ran"
TOO_MANY_SEGMENTS = "too_many_segments"
# Users per page: their joins are one conditional write each, run side by side.
PAGE_USERS = 1000
_SELECTED = "selected"
_CLOSED = JoinResult(JoinOutcome.FAILED, error=SEGMENT_GONE)  # its segment takes no member: nothing was written
_NAMES_SHOWN = 3

_MEDIUM_FIELDS = {Medium.PUSH: "device.active", Medium.EMAIL: "email.active", Medium.SMS: "phone.active"}
GLOBALLY_UNSUBSCRIBED = "globally unsubscribed"
_UNREACHED = {
    Medium.PUSH: "no active push device",
    Medium.EMAIL: "no active email address",
    Medium.SMS: "no active phone number",
}
# What the billed sizes of the items a filter dropped are assumed to be, when a page kept none to measure.
NOMINAL_PROFILE_BYTES = 1024


def segment_id_of(job_id: str, segment: int) -> str:
    """The id of segment ``segment`` (from 1) of the split that ``job_id`` creates: the same on every attempt."""
    digest = hashlib.blake2b(f"{job_id}#{segment}".encode(), digest_size=8).hexdigest()
    return f"{SEGMENT_ID_PREFIX}{digest}"


@dataclass(frozen=True)
class _Rules:
    """What selects a user: the criteria (all users when None) and the medium's rule."""

    criteria: Node | None
    medium: Medium | None
    reach: Node | None

    @classmethod
    def of(cls, params: SplitAudienceParams) -> "_Rules":
        criteria = None if params.criteria is None else parse_criteria(params.criteria)
        medium = params.medium
        # A globally unsubscribed user is reached by no medium: it counts among no deliverable users.
        reach = (
            None
            if medium is None
            else parse_criteria(
                {"all": [{"field": _MEDIUM_FIELDS[medium], "op": "eq", "value": True}, NOT_GLOBALLY_UNSUBSCRIBED]}
            )
        )
        return cls(criteria, medium, reach)

    @property
    def node(self) -> Node:
        """One tree for the selection: both passes and the recheck select with it."""
        parts = tuple(node for node in (self.criteria, self.reach) if node is not None)
        return parts[0] if len(parts) == 1 else Group(Combinator.ALL, parts)

    @property
    def needs_devices(self) -> bool:
        return Scope.DEVICE in scopes_in(self.node)


@dataclass
class _Meter:
    """The DynamoDB units a page costs a real run, from item sizes (``steward.jobs.pricing``)."""

    read_units: Decimal = Decimal(0)
    write_units: int = 0

    def walk(self, scanned: int, kept: Sequence[int], device_lookups: int) -> None:
        """A filtered read of a shard: billed on every item scanned; dropped items weigh what kept ones do."""
        mean = sum(kept) / len(kept) if kept else NOMINAL_PROFILE_BYTES
        total = sum(kept) + max(0, scanned - len(kept)) * mean
        self.read_units += query_read_units(round(total), consistent=False)
        # A keys-only index query per user (the minimum read), then about one device read each.
        self.read_units += batch_get_units([0] * (2 * device_lookups), consistent=False)

    def writes(self, sizes: Sequence[int], *, transactional: bool = False) -> None:
        self.write_units += sum(write_units(size, transactional=transactional) for size in sizes)

    def consistent_gets(self, count: int) -> None:
        self.read_units += batch_get_units([0] * count, consistent=True)

    def cost(self) -> PageCost:
        return PageCost(read_units=self.read_units, write_units=self.write_units)


@dataclass
class _Assignment:
    """What a page of the assign phase lists, and the writes its joins will make."""

    rows: list[ReportRow] = field(default_factory=list)
    write_sizes: list[int] = field(default_factory=list)
    segments: set[int] = field(default_factory=set)


class SplitAudience:
    phases: ClassVar[int] = 2

    # Phase 0 and the plan.

    def plan(self, ctx: JobContext) -> Plan:
        params = _params(ctx)
        if params.num_segments is not None:
            self._refuse_taken(ctx, _names(params, params.num_segments), owner=None)
        return Plan(shard_items(ctx.services.shard_count))

    def select(self, ctx: JobContext, item: WorkItem, position: JsonObject | None) -> Page:
        params = _params(ctx)
        rules = _Rules.of(params)
        shard, start = _start(ctx, item, position)
        page = ctx.services.selection.page(
            ctx.app_id, Target.USERS, rules.node, ctx.now, start, shard=shard, max_items=PAGE_USERS
        )
        users = [cast(User, user) for user in page.matches]
        sizes = {user.user_id: item_size(ctx.services.user_repository.stored_item(ctx.app_id, user)) for user in users}
        meter = _Meter()
        # Users whose residual needs their devices are all those the pushed-down filter kept: at most the scanned.
        meter.walk(page.scanned, list(sizes.values()), page.scanned if rules.needs_devices else 0)
        if ctx.phase == 0:
            next_position = None if page.next is None else page.next.as_fields()
            return Page([], page.scanned, next_position, tally={_SELECTED: len(users)}, cost=meter.cost())
        read = 0 if position is None else int(position.get("read", 0))
        assignment = self._assign(ctx, params, shard, read, users, sizes)
        meter.writes(assignment.write_sizes)
        if assignment.segments:  # the segments read, then the page's receipt and their counts in one transaction
            segments = [self._segment_sizes(ctx, params, number)[0] for number in sorted(assignment.segments)]
            meter.consistent_gets(len(segments))
            meter.writes([self._receipt_size(ctx), *segments], transactional=True)
        if position is None and shard == 0:
            self._creation_cost(ctx, params, meter)
        next_position = None if page.next is None else {**page.next.as_fields(), "read": read + len(users)}
        return Page(assignment.rows, page.scanned, next_position, cost=meter.cost())

    def advance(self, ctx: JobContext, tallies: Mapping[int, Mapping[str, int]]) -> Plan:
        params = _params(ctx)
        counts = [int(tallies.get(shard, {}).get(_SELECTED, 0)) for shard in range(ctx.services.shard_count)]
        plan = _split_plan(params, sum(counts))
        if plan.num_segments > MAX_SEGMENTS:
            raise JobRefused(
                f"{plan.total:,} users in segments of at most {params.max_segment_size:,} make "
                f"{plan.num_segments:,} segments; a split makes at most {MAX_SEGMENTS:,}.",
                code=TOO_MANY_SEGMENTS,
            )
        state: JsonObject = {"counts": counts, "segments": plan.num_segments}
        if not ctx.dry_run:
            self._create(ctx, params, plan.num_segments)
        else:
            self._refuse_taken(ctx, _names(params, plan.num_segments), owner=None)
        return Plan(shard_items(ctx.services.shard_count), state)

    def plan_confirmed(self, ctx: JobContext, dry_state: JsonObject) -> JsonObject:
        """The dry run's plan stands (its rows name the segments); the segments are created now, before any row."""
        count = int(dry_state["segments"])
        self._create(ctx, _params(ctx), count)
        return {"counts": [int(shard_count) for shard_count in dry_state["counts"]], "segments": count}

    # Phase 1: rows, their recheck and their changes.

    def recheck(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        rules = _Rules.of(_params(ctx))
        found = ctx.services.user_repository.get_many(ctx.app_id, [row.id for row in rows], consistent=True)
        devices = ctx.services.device_repository.devices_of_users(ctx.app_id, found) if rules.needs_devices else {}

        def checked(row: ReportRow) -> ReportRow:
            if row.id not in found:
                return row.with_outcome(Outcome.DRIFTED, GONE)
            subject = user_subject(found[row.id][0], devices.get(row.id, []))
            if rules.criteria is not None and not matches(rules.criteria, subject, ctx.now):
                return row.with_outcome(Outcome.DRIFTED, NO_LONGER_MATCHES)
            if rules.reach is not None and rules.medium is not None and not matches(rules.reach, subject, ctx.now):
                unreached = GLOBALLY_UNSUBSCRIBED if found[row.id][0].global_unsubscribed else _UNREACHED[rules.medium]
                return row.with_outcome(Outcome.DRIFTED, unreached)
            return row

        return [checked(row) for row in rows]

    def apply(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        params = _params(ctx)
        joins = [Join(row.id, segment_id_of(ctx.job.job_id, _number_of(params, row.detail))) for row in rows]
        repository = ctx.services.segment_repository
        # A segment deleted while the job runs takes no member (the counts' condition catches a later delete).
        open_ids = repository.open_to_members(ctx.app_id, [join.segment_id for join in joins])
        joining = [join for join in joins if join.segment_id in open_ids]
        joined = dict(zip(joining, repository.join_many(ctx.app_id, joining, ctx.now), strict=True))
        results = [joined.get(join, _CLOSED) for join in joins]
        counts: dict[str, MemberCounts] = {}
        for join, result in zip(joins, results, strict=True):
            if result.joined:
                members, inactive = counts.get(join.segment_id, (0, 0))
                counts[join.segment_id] = (members + 1, inactive + int(result.inactive))
        # The key is the page's rows: a retried page (the same rows) finds its receipt and adds nothing again.
        refused = repository.add_counts_once(ctx.app_id, ctx.job.job_id, _page_key(joins), counts, ctx.now)
        return [_outcome(row, join, result, refused) for row, join, result in zip(rows, joins, results, strict=True)]

    def finish(self, ctx: JobContext, tally: Mapping[str, int]) -> None:
        """The counts are in already (each page added its own); the receipts that kept them once can go."""
        ctx.services.segment_repository.forget_receipts(ctx.app_id, ctx.job.job_id)

    # Helpers.

    def _assign(
        self,
        ctx: JobContext,
        params: SplitAudienceParams,
        shard: int,
        read: int,
        users: list[User],
        sizes: dict[str, int],
    ) -> _Assignment:
        counts = [int(count) for count in ctx.state["counts"]]
        part = _split_plan(params, sum(counts)).shard(counts, shard)
        repository = ctx.services.segment_repository
        assignment = _Assignment()
        for index, user in enumerate(users, start=read):
            number = part.segment_at(index)
            row = ReportRow(Entity.USER, user.user_id, ADDED, user.user_id, "")
            if number is None:
                assignment.rows.append(row.with_outcome(Outcome.DRIFTED, SELECTED_AFTER_COUNT))
                continue
            segment_id = segment_id_of(ctx.job.job_id, number)
            if len(user.segments) >= MAX_SEGMENTS_PER_USER and segment_id not in user.segments:
                assignment.rows.append(row.with_outcome(Outcome.SKIPPED, AT_SEGMENT_LIMIT))
                continue
            assignment.rows.append(row.with_outcome(ADDED, segment_name(params.prefix, number)))
            joined = user.model_copy(update={"segments": sorted({*user.segments, segment_id})})
            after = item_size(ctx.services.user_repository.stored_item(ctx.app_id, joined))
            member = repository.member_item(ctx.app_id, Join(user.user_id, segment_id), ctx.now)
            assignment.write_sizes += [max(sizes[user.user_id], after), item_size(member)]
            assignment.segments.add(number)
        return assignment

    def _create(self, ctx: JobContext, params: SplitAudienceParams, count: int) -> None:
        """Create the segments, all or none: a name taken meanwhile removes those created and refuses the job."""
        names = _names(params, count)
        self._refuse_taken(ctx, names, owner=ctx.job.job_id)
        repository = ctx.services.segment_repository
        created: list[Segment] = []
        try:
            for number, name in enumerate(names, start=1):
                created.append(
                    repository.create_static_as(ctx.app_id, segment_id_of(ctx.job.job_id, number), name, ctx.now)
                )
        except Conflict as exc:
            for segment in created:
                repository.remove(ctx.app_id, segment)
            raise JobRefused(exc.message, code=SEGMENT_NAME_TAKEN) from exc

    def _refuse_taken(self, ctx: JobContext, names: list[str], *, owner: str | None) -> None:
        """Refuse the job when a segment holds one of ``names``; those ``owner`` (a job id) created are its own."""
        taken = ctx.services.segment_repository.names_taken(ctx.app_id, names)
        own = {} if owner is None else {name: segment_id_of(owner, number) for number, name in enumerate(names, 1)}
        others = [name for name in names if name in taken and taken[name] != own.get(name)]
        if others:
            shown = ", ".join(repr(clip(name, 64)) for name in others[:_NAMES_SHOWN])
            more = f" and {len(others) - _NAMES_SHOWN} more" if len(others) > _NAMES_SHOWN else ""
            raise JobRefused(
                f"Segments named {shown}{more} already exist: choose another prefix, or delete them first.",
                code=SEGMENT_NAME_TAKEN,
            )

    def _creation_cost(self, ctx: JobContext, params: SplitAudienceParams, meter: _Meter) -> None:
        """What advance spends before any page: the name check and the segments' creation (counted once, here)."""
        count = int(ctx.state["segments"])
        meter.consistent_gets(count)
        for number in range(1, count + 1):
            meter.writes(self._segment_sizes(ctx, params, number), transactional=True)

    def _receipt_size(self, ctx: JobContext) -> int:
        item = ctx.services.segment_repository.receipt_item(ctx.app_id, ctx.job.job_id, "0" * 32, ctx.now)
        return item_size(item)

    def _segment_sizes(self, ctx: JobContext, params: SplitAudienceParams, number: int) -> list[int]:
        """The sizes of segment ``number`` and of its name claim."""
        items = ctx.services.segment_repository.segment_items(
            ctx.app_id, segment_id_of(ctx.job.job_id, number), segment_name(params.prefix, number), ctx.now
        )
        return [item_size(item) for item in items]


def _params(ctx: JobContext) -> SplitAudienceParams:
    return cast(SplitAudienceParams, ctx.params)


def _split_plan(params: SplitAudienceParams, total: int) -> SplitPlan:
    return SplitPlan(total, num_segments=params.num_segments, max_segment_size=params.max_segment_size)


def _names(params: SplitAudienceParams, count: int) -> list[str]:
    return [segment_name(params.prefix, number) for number in range(1, count + 1)]


def _number_of(params: SplitAudienceParams, name: str) -> int:
    """The segment number a row's detail names (``<prefix>-<n>``)."""
    prefix, _, number = name.rpartition("-")
    if prefix != params.prefix or not number.isdigit():
        raise ValueError(f"{name!r} is not a segment of the split {params.prefix!r}")
    return int(number)


def _start(ctx: JobContext, item: WorkItem, position: JsonObject | None) -> tuple[int, Position]:
    if item.shard is None:
        raise ValueError("a split walks shards; this work item has none")
    if position is None:
        return item.shard, Position(item.shard)
    start = Position.from_fields(position, ctx.services.shard_count)
    if start.shard != item.shard:
        raise ValueError(f"a position in shard {start.shard} does not belong to shard {item.shard}")
    return item.shard, start


def _page_key(joins: Sequence[Join]) -> str:
    text = "\n".join(sorted(f"{join.user_id}\t{join.segment_id}" for join in joins))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _outcome(row: ReportRow, join: Join, result: JoinResult, refused: set[str]) -> ReportRow:
    match result.outcome:
        case JoinOutcome.JOINED:
            return row.with_outcome(Outcome.FAILED, SEGMENT_GONE) if join.segment_id in refused else row
        case JoinOutcome.ALREADY_MEMBER:  # in its segment, as listed; whoever added it counted it
            return row
        case JoinOutcome.AT_LIMIT:
            return row.with_outcome(Outcome.SKIPPED, AT_SEGMENT_LIMIT)
        case JoinOutcome.GONE:
            return row.with_outcome(Outcome.DRIFTED, GONE)
        case JoinOutcome.FAILED:
            return row.with_outcome(Outcome.FAILED, clip(result.error))


KINDS: dict[JobType, JobKind] = {JobType.SPLIT_AUDIENCE: SplitAudience()}
