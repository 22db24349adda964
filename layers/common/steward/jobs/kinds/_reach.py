"""What deactivate_users and reactivate_devices share: whether a user can still be reached, per-row writes, costs.

A user is reachable while it has an active device, email address or phone
number. deactivate_users deactivates a user it leaves unreachable, with
reason ``no_active_contact``; reactivate_devices brings such a user back
when it gives it an active device again.

Reachable means that a contact technically works, not consent: a globally
unsubscribed user with an active contact is reachable here (the README's
"Who counts as reachable"). Deliverable counts are the criteria preview's
and split_audience's.
"""

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pynamodb.exceptions import PynamoDBException

from steward.conditions import resend_may_help
from steward.devices.models import Device
from steward.errors import StewardError, clip
from steward.jobs.engine import JobContext, JsonObject, Outcome, PageCost, ReportRow, WorkItem
from steward.jobs.pricing import batch_get_units, item_size, query_read_units, read_units, write_units
from steward.jobs.triggers import MAX_ENTRIES
from steward.shard_reader import Position
from steward.usecases.user_activation import NO_ACTIVE_CONTACT
from steward.users.models import User

# What an item the filter dropped is assumed to weigh when a page kept none to measure.
NOMINAL_DEVICE_BYTES = 300
NOMINAL_PROFILE_BYTES = 1024
# A segment item (name, kind, counts): well under 1 KB, one write unit.
SEGMENT_ITEM_BYTES = 200
# A keys-only index query of one user's devices reads a few hundred bytes: the minimum.
INDEX_QUERY_BYTES = 0

Kind = str  # "emails" or "phones": the User attribute, as steward.users.lifecycle names them
CONTACT_KINDS: tuple[Kind, ...] = ("emails", "phones")
_KIND_NOUNS = {"emails": "email", "phones": "phone"}


def reach_left(user: User, devices: Sequence[Device], gone: Iterable[tuple[Kind, str]] = ()) -> str | None:
    """What still reaches ``user`` once the ``gone`` contacts ((kind, address)) are inactive, or None when nothing does.

    ``devices`` are the user's devices that stay as they are.
    """
    if any(device.active for device in devices):
        return "has an active device"
    leaving = set(gone)
    for kind in CONTACT_KINDS:
        contacts = user.emails if kind == "emails" else user.phones
        if any(contact.active and (kind, contact.address) not in leaving for contact in contacts):
            return f"has an active {_KIND_NOUNS[kind]}"
    return None


def deactivated_for_no_contact_at(user: User, now: datetime) -> bool:
    """Whether deactivate_users' run at ``now`` deactivated ``user``: how a retry recognises its own work."""
    return not user.active and user.deactivation_reason == NO_ACTIVE_CONTACT and user.deactivated_at == now


def start_of(ctx: JobContext, item: WorkItem, position: JsonObject | None) -> Position:
    """Where a page of ``item`` (one shard) starts: its position, or the shard's start."""
    if item.shard is None:
        raise ValueError("these jobs walk shards; a work item without a shard is not theirs")
    if position is None:
        return Position(item.shard)
    start = Position.from_fields(position, ctx.services.shard_count)
    if start.shard != item.shard:
        raise ValueError(f"a position in shard {start.shard} does not belong to shard {item.shard}")
    return start


def next_of(position: Position | None) -> JsonObject | None:
    return None if position is None else position.as_fields()


def failed(row: ReportRow, error: Exception) -> ReportRow:
    """The row, failed: DynamoDB's error code and message (not the request id and table its text holds)."""
    if isinstance(error, StewardError):
        reason = error.message
    elif isinstance(error, PynamoDBException) and error.cause_response_code:
        reason = f"{error.cause_response_code}: {error.cause_response_message}"
    else:
        reason = str(error)
    return row.with_outcome(Outcome.FAILED, clip(reason))


def each[T, R](items: Sequence[T], work: Callable[[T], R]) -> list[R | Exception]:
    """``work`` on every item in turn; an item whose write DynamoDB refused as sent gets its error instead.

    Conditional writes cannot be batched. They run one after the other in
    the worker's thread, where its tracing (and the local stack's fault
    injection) sees them; a page's size bounds its time. An error that
    sending again might cure (throttling, a timeout, an outage) is raised:
    the engine runs the page again from its stored rows, which the jobs'
    idempotent writes allow, rather than reporting as failed rows that a
    retry would change.
    """
    results: list[R | Exception] = []
    for item in items:
        try:
            results.append(work(item))
        except StewardError as exc:  # a row that kept losing races (concurrent_update)
            results.append(exc)
        except Exception as exc:
            if resend_may_help(exc):
                raise
            results.append(exc)
    return results


@dataclass
class Meter:
    """Adds up the DynamoDB units a page costs a real run, by DynamoDB's billing rules (``steward.jobs.pricing``)."""

    read_units: Decimal = Decimal(0)
    write_units: int = 0
    s3_gets: int = 0
    events: int = 0
    put_events_calls: int = 0

    def walk(self, scanned: int, kept_bytes: Sequence[int], nominal: int) -> None:
        """A filtered read of a shard, billed on every item it scanned (eventually consistent).

        The items the filter dropped never come back, so they are sized like
        those it kept (or ``nominal`` when it kept none).
        """
        mean = sum(kept_bytes) / len(kept_bytes) if kept_bytes else nominal
        dropped = max(0, scanned - len(kept_bytes))
        self.read_units += query_read_units(math.ceil(sum(kept_bytes) + dropped * mean), consistent=False)

    def gets(self, sizes: Iterable[int], *, consistent: bool) -> None:
        """A BatchGetItem (or as many GetItem): each item rounded up on its own."""
        self.read_units += batch_get_units(sizes, consistent=consistent)

    def index_queries(self, count: int) -> None:
        """Keys-only queries of the devices' by_user index, one per user (always eventually consistent)."""
        self.read_units += count * query_read_units(INDEX_QUERY_BYTES, consistent=False)

    def writes(self, sizes: Iterable[int]) -> None:
        """One PutItem or UpdateItem per size: the larger of the item before and after."""
        self.write_units += sum(write_units(size) for size in sizes)

    def transaction(self, sizes: Iterable[int]) -> None:
        """One TransactWriteItems over items of these sizes (each billed twice, as DynamoDB does)."""
        self.write_units += sum(write_units(size, transactional=True) for size in sizes)

    def user_transition(self, user_bytes: int, segments: int) -> None:
        """``UserActivation.set_active_when``: read the user, one transaction (user + its segments), read it again."""
        self.read_units += 2 * read_units(user_bytes, consistent=True)
        self.write_units += write_units(user_bytes, transactional=True)
        self.write_units += segments * write_units(SEGMENT_ITEM_BYTES, transactional=True)

    def s3_reads(self, requests: int) -> None:
        """GETs of S3 objects (an audience's member list, by byte range)."""
        self.s3_gets += requests

    def trigger_events(self, count: int) -> None:
        """A page's trigger events, published after its writes in PutEvents calls of ``MAX_ENTRIES``."""
        self.events += count
        self.put_events_calls += math.ceil(count / MAX_ENTRIES)

    def cost(self) -> PageCost:
        return PageCost(self.read_units, self.write_units, self.s3_gets, self.events, self.put_events_calls)


def sizes_of(items: Iterable[dict[str, dict[str, Any]]]) -> list[int]:
    return [item_size(item) for item in items]
