"""What the segment and tag deletions share: deleting a container whose members must go first, page by page.

A segment's members are users, a tag's are devices; either can count
millions. The engine applies the rows of a page and nothing else (a
confirmed run replays the dry run's rows without selecting again), so the
bounded pieces of work must be rows the dry run already lists:

- A container with at most ``budget`` members gets one row (``deleted``),
  and a page holds several such rows while their members add up to at most
  ``budget`` (and at most ``max_rows`` rows).
- A larger one takes ``ceil(members / budget)`` pages of its own, one row
  each: every page but the last holds a *step* row (``members_removed`` for
  a segment, ``devices_untagged`` for a tag), a consequence row so that the
  counts select the container once; the last holds its ``deleted`` row.
  Each row's apply removes at most ``budget`` members, read from the start
  of what is left (what it removed is gone), and only the ``deleted`` row
  deletes the container, once no member is left.

Rows are the intent, not a tally: the steps follow from the member count
read when the container is first seen, which the position carries, so a
dry run and a real run list the same rows however far the removal got.
Applying a step row twice removes up to ``budget`` more members of a
container this job is deleting anyway: once every row is applied the data
is as one application of each would leave it (the container gone, its
members out of it), and each row reports the same outcome again. A row whose
container is already gone when applied was applied before (the engine
stores rows before applying them and a retry re-applies them), so it reports
its action again; a container deleted by someone else between a dry run and
its confirmation is caught by ``recheck`` (drifted, "no longer exists").

Members that arrive after the count (devices tagged since; users that joined
a segment before the job marked it deleting, or between a dry run and its
confirmation) are removed by the ``deleted`` row, up to ``budget`` of them;
when more remain, that row fails and asks to run the job again, and the
container stays.
"""

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from pynamodb.exceptions import PynamoDBException

from steward.conditions import resend_may_help
from steward.errors import StewardError, clip
from steward.jobs.engine import (
    Entity,
    JobContext,
    JsonObject,
    Outcome,
    Page,
    PageCost,
    Plan,
    ReportRow,
    SinglePhase,
    WorkItem,
    name_items,
)
from steward.jobs.pricing import query_read_units
from steward.sharded_query import partition_cursor_after

DELETED = "deleted"
# Members one row removes: about 2 writes each (the member item and its owner's set), run
# side by side, keep a page to seconds; a bulk untag takes at most 1,000 devices a call.
STEP_BUDGET = 1000
# Rows of small containers per page: each costs a few sequential requests.
ROWS_PER_PAGE = 100
# Named containers per work item: up to 10 workers for 1,000 names.
NAMES_PER_ITEM = 100

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Container:
    """A segment or tag to delete, as first seen: its members then, and its ``deleted`` row's detail.

    ``label`` names it in its step rows; ``item_bytes`` is its stored item's
    size, for the cost of reading and deleting it.
    """

    id: str
    label: str
    members: int
    summary: str
    item_bytes: int

    def as_json(self) -> JsonObject:
        return {
            "id": self.id,
            "label": self.label,
            "members": self.members,
            "summary": self.summary,
            "item_bytes": self.item_bytes,
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> "Container":
        return cls(
            str(data["id"]), str(data["label"]), int(data["members"]), str(data["summary"]), int(data["item_bytes"])
        )


@dataclass(frozen=True, slots=True)
class Draining:
    """A container larger than one page: the step the next page takes, of ``steps``."""

    container: Container
    step: int
    steps: int

    def as_json(self) -> JsonObject:
        return {**self.container.as_json(), "step": self.step, "steps": self.steps}

    @classmethod
    def from_json(cls, data: JsonObject | None) -> "Draining | None":
        if data is None:
            return None
        return cls(Container.from_json(data), int(data["step"]), int(data["steps"]))


@dataclass(frozen=True, slots=True)
class Undecided:
    """A listed container that needs more reading to tell whether it is selected; ``state`` holds its id."""

    state: JsonObject


# What a listing says of one container: selected (with its members), not selected, or not known yet.
Verdict = Container | None | Undecided


@dataclass(frozen=True, slots=True)
class Listed:
    """One read of a listing: each container's id with its verdict, and whether more follows."""

    entries: list[tuple[str, Verdict]]
    more: bool


class ContainerDeletion(SinglePhase):
    """A job type that deletes segments or tags; a subclass reads, prices, rechecks and applies one row."""

    entity: ClassVar[Entity]
    step_action: ClassVar[str]

    def __init__(self, budget: int = STEP_BUDGET, max_rows: int = ROWS_PER_PAGE) -> None:
        self.budget = budget
        self.max_rows = max_rows

    # What each type says.

    def step_detail(self, container: Container, first: int, last: int) -> str:
        raise NotImplementedError

    def removal_cost(self, ctx: JobContext, members: int) -> PageCost:
        """What removing ``members`` members costs a real run."""
        raise NotImplementedError

    def row_cost(self, ctx: JobContext, container: Container, *, first: bool, last: bool) -> PageCost:
        """What a row costs beyond its members: reading the container, marking it (first), deleting it (last)."""
        raise NotImplementedError

    def look_up(self, ctx: JobContext, entity_id: str, rows: "PageRows") -> Container | None:
        """A named container as it is now (None: there is none); adds the read's cost to ``rows``."""
        raise NotImplementedError

    def list_after(self, ctx: JobContext, after: str | None, rows: "PageRows") -> Listed:
        """The app's containers after ``after`` (all from the start when None); adds the reads' cost to ``rows``."""
        raise NotImplementedError

    def judge(self, ctx: JobContext, state: JsonObject, rows: "PageRows") -> Verdict:
        """Read on to decide an Undecided container, within ``rows.reads_left``."""
        raise NotImplementedError

    def recheck_row(self, ctx: JobContext, row: ReportRow) -> ReportRow:
        raise NotImplementedError

    def apply_row(self, ctx: JobContext, row: ReportRow) -> ReportRow:
        raise NotImplementedError

    # The pages.

    def select_named(self, ctx: JobContext, item: WorkItem, position: JsonObject | None) -> Page:
        """A chunk of named containers: position ``at`` (the next name), and ``draining`` while one takes pages."""
        position = position or {}
        at = int(position.get("at", 0))
        rows = PageRows(self)
        draining = Draining.from_json(position.get("draining"))
        if draining is not None:
            more = rows.go_on(ctx, draining)
            if more is not None:
                return rows.page(0, {"at": at, "draining": more.as_json()})
            at += 1
        scanned = 0
        while at < len(item.names) and not rows.full:
            name = item.names[at]
            container = self.look_up(ctx, name, rows)
            scanned += 1
            if container is None:
                rows.add(ReportRow(self.entity, name, Outcome.NOT_FOUND, detail=f"no such {self.entity.value}"))
                at += 1
                continue
            taken = rows.take(ctx, container)
            if taken is False:
                break
            if isinstance(taken, Draining):
                return rows.page(scanned, {"at": at, "draining": taken.as_json()})
            at += 1
        return rows.page(scanned, {"at": at} if at < len(item.names) else None)

    def select_listed(self, ctx: JobContext, position: JsonObject | None) -> Page:
        """The app's containers in id order: position ``after`` (the last one done), and the one in progress.

        In progress: ``draining`` (taking pages), ``judging`` (still being read
        to decide), or ``judged`` (selected, for the next page).
        """
        position = position or {}
        after: str | None = position.get("after")
        rows = PageRows(self)
        verdict: Verdict = None
        if (draining := Draining.from_json(position.get("draining"))) is not None:
            more = rows.go_on(ctx, draining)
            if more is not None:
                return rows.page(0, {"after": after, "draining": more.as_json()})
            after = draining.container.id
        elif (judged := position.get("judged")) is not None:
            verdict = Container.from_json(judged)
        elif (judging := position.get("judging")) is not None:
            verdict = Undecided(judging)
        if verdict is not None:
            stop = self._place(ctx, rows, after, verdict)
            if stop is not None:
                return rows.page(0, stop)
            after = verdict.id if isinstance(verdict, Container) else str(verdict.state["id"])
        listed = self.list_after(ctx, after, rows)
        scanned = len(listed.entries)
        for entry_id, entry_verdict in listed.entries:
            stop = self._place(ctx, rows, after, entry_verdict)
            if stop is not None:
                return rows.page(scanned, stop)
            after = entry_id
        return rows.page(scanned, {"after": after} if listed.more else None)

    def _place(self, ctx: JobContext, rows: "PageRows", after: str | None, verdict: Verdict) -> JsonObject | None:
        """Put a listed container on the page: None to go on listing, or the position that ends the page."""
        while isinstance(verdict, Undecided):
            if rows.reads_left <= 0:
                return {"after": after, "judging": verdict.state}
            verdict = self.judge(ctx, verdict.state, rows)
        if verdict is None:
            return None
        taken = rows.take(ctx, verdict)
        if taken is False:
            return {"after": after, "judged": verdict.as_json()}
        if isinstance(taken, Draining):
            return {"after": after, "draining": taken.as_json()}
        return None

    # The rows.

    def recheck(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        return [self._each(ctx, row, self.recheck_row) for row in rows]

    def apply(self, ctx: JobContext, rows: Sequence[ReportRow]) -> list[ReportRow]:
        return [self._each(ctx, row, self.apply_row) for row in rows]

    def is_step(self, row: ReportRow) -> bool:
        return row.action == self.step_action

    def _each(self, ctx: JobContext, row: ReportRow, work: Callable[[JobContext, ReportRow], ReportRow]) -> ReportRow:
        if not row.is_change:  # not_found, drifted...: nothing to do, and the outcome stands
            return row
        try:
            return work(ctx, row)
        except StewardError as exc:  # lost races over and over (concurrent_update)
            return row.with_outcome(Outcome.FAILED, clip(exc.message))
        except PynamoDBException as exc:
            if resend_may_help(exc):
                raise  # throttling or an outage: the engine retries the page, and its rows are idempotent
            logger.exception("A %s row could not be applied", self.entity.value)
            return row.with_outcome(Outcome.FAILED, clip(str(exc)))


class ListedContainers(ContainerDeletion):
    """A type that finds its containers by listing the app's: one partition, read in order by one worker."""

    def plan(self, ctx: JobContext) -> Plan:
        return Plan([WorkItem(index=0)])

    def select(self, ctx: JobContext, item: WorkItem, position: JsonObject | None) -> Page:
        return self.select_listed(ctx, position)


class NamedContainers(ContainerDeletion):
    """A type that deletes the containers its params name, in chunks of names."""

    def names(self, ctx: JobContext) -> list[str]:
        raise NotImplementedError

    def plan(self, ctx: JobContext) -> Plan:
        return Plan(name_items(self.names(ctx), NAMES_PER_ITEM))

    def select(self, ctx: JobContext, item: WorkItem, position: JsonObject | None) -> Page:
        return self.select_named(ctx, item, position)


def listing(rows: "PageRows", entries: Sequence[tuple[str, int, Verdict]], more: bool) -> Listed:
    """A page of a catalog's listing, from each container's (id, stored size, verdict); prices the query."""
    rows.cost += PageCost(query_read_units(sum(size for _, size, _ in entries), consistent=False))
    return Listed([(entry_id, verdict) for entry_id, _, verdict in entries], more)


def cursor_after(after: str | None) -> str | None:
    """The listing cursor that resumes after the container ``after`` (from the start when None)."""
    return None if after is None else partition_cursor_after(after)


class PageRows:
    """The rows of one page and their cost: at most ``budget`` members to remove and ``max_rows`` rows.

    ``reads_left`` bounds what deciding containers may read (a tag's devices).
    """

    def __init__(self, deletion: ContainerDeletion) -> None:
        self.deletion = deletion
        self.rows: list[ReportRow] = []
        self.members = 0
        self.cost = PageCost()
        self.reads_left = deletion.budget

    @property
    def full(self) -> bool:
        return len(self.rows) >= self.deletion.max_rows

    def add(self, row: ReportRow, cost: PageCost | None = None) -> None:
        self.rows.append(row)
        if cost is not None:
            self.cost += cost

    def page(self, scanned: int, position: JsonObject | None) -> Page:
        return Page(self.rows, scanned, position, cost=self.cost)

    def take(self, ctx: JobContext, container: Container) -> Draining | bool:
        """Add the container's rows: True when its row is in, False when it must start the next page,
        or where it stands when its first step is in and the next pages go on with it."""
        budget = self.deletion.budget
        if container.members <= budget:
            if self.rows and (self.full or self.members + container.members > budget):
                return False
            self._final(ctx, container, container.members, first=True)
            return True
        if self.rows:
            return False
        draining = self.go_on(ctx, Draining(container, 0, math.ceil(container.members / budget)))
        assert draining is not None  # two steps at least
        return draining

    def go_on(self, ctx: JobContext, draining: Draining) -> Draining | None:
        """Add the row of the container's next step; where it stands next, or None once its last row is in."""
        deletion, container = self.deletion, draining.container
        done = draining.step * deletion.budget
        first = draining.step == 0
        if draining.step + 1 == draining.steps:
            self._final(ctx, container, container.members - done, first=first)
            return None
        detail = deletion.step_detail(container, done + 1, done + deletion.budget)
        cost = deletion.removal_cost(ctx, deletion.budget) + deletion.row_cost(ctx, container, first=first, last=False)
        self.add(ReportRow(deletion.entity, container.id, deletion.step_action, detail=detail, consequence=True), cost)
        self.members += deletion.budget
        return Draining(container, draining.step + 1, draining.steps)

    def _final(self, ctx: JobContext, container: Container, members: int, *, first: bool) -> None:
        deletion = self.deletion
        cost = deletion.removal_cost(ctx, members) + deletion.row_cost(ctx, container, first=first, last=True)
        self.add(ReportRow(deletion.entity, container.id, DELETED, detail=container.summary), cost)
        self.members += members
