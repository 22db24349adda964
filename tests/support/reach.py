"""Data for the tests of deactivate_users and reactivate_devices: devices, contacts, segments, and table snapshots."""

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import boto3

from steward.composition import Services
from steward.devices.models import Device, IdentifyDevice, PushResult, Transport
from steward.jobs.engine import Entity, JobContext, JobKind, ReportRow, WorkItem
from steward.segments.models import ChangeMembers, CreateSegment, SegmentKind
from steward.settings import StoreSettings
from steward.sharding import shard_of
from steward.users.models import User
from tests.support.jobs import run_inline
from tests.support.service import SHARD_COUNT, new_users

ERROR = PushResult(accepted=False, error_code="Unregistered", error_message="gone")


def services() -> Services:
    return Services(SHARD_COUNT)


def identify(app_id: str, device_id: str, user_id: str, transport: Transport = Transport.FCM) -> Device:
    return services().devices.identify(app_id, device_id, IdentifyDevice(user_id=user_id, transport=transport))


def fail_twice(app_id: str, device_id: str, at: datetime) -> None:
    """Two failed pushes at ``at``: the device ends inactive with reason delivery_error, deactivated at ``at``."""
    repository = services().device_repository
    assert repository.record_first_failure(app_id, device_id, ERROR, at) is not None
    assert repository.record_repeated_failure(app_id, device_id, ERROR, at) is not None


def device(app_id: str, device_id: str) -> Device:
    found = services().device_repository.get(app_id, device_id)
    assert found is not None
    return found


def user(app_id: str, user_id: str) -> User:
    found = services().user_repository.get(app_id, user_id)
    assert found is not None
    return found


def last_activity(app_id: str, *user_ids: str) -> dict[str, datetime | None]:
    """The users' last_activity_at: a bulk change must leave it as it was."""
    return {user_id: user(app_id, user_id).last_activity_at for user_id in user_ids}


def add_contact(app_id: str, user_id: str, kind: str, address: str, active: bool = True) -> None:
    services().users.put_contact(app_id, user_id, kind, address, active)


def static_segment(app_id: str, name: str, *members: str) -> str:
    segments = services().segments
    segment_id = segments.create(app_id, CreateSegment(name=name, kind=SegmentKind.STATIC)).segment_id
    segments.change_members(app_id, segment_id, ChangeMembers(add=list(members), remove=[]))
    return segment_id


def inactive_count(app_id: str, segment_id: str) -> int:
    count = services().segments.get(app_id, segment_id).inactive_member_count
    assert count is not None  # a static segment
    return count


def ids_in_shards(prefix: str, shards: Sequence[int]) -> list[str]:
    """One id per shard listed, ``<prefix>-<n>``: ids that land where a test needs them."""
    found: list[str] = []
    for shard in shards:
        found.append(next(f"{prefix}-{n}" for n in range(10_000) if shard_of(f"{prefix}-{n}", SHARD_COUNT) == shard))
    return found


def far_apart() -> tuple[str, str]:
    """Two device ids: the greater one in shard 0 (walked first), the other in the last shard."""
    return ids_in_shards("z", [0])[0], ids_in_shards("a", [SHARD_COUNT - 1])[0]


def interleaved(ctx: JobContext, kind: JobKind) -> tuple[list[ReportRow], list[ReportRow], list[ReportRow]]:
    """Two workers side by side: shard 0's page applies its devices, the last shard's page is selected,
    then shard 0's page applies its users and the last shard's page all its rows.

    Returns both pages' rows and the outcomes, in that order.
    """
    first = kind.select(ctx, WorkItem(0, shard=0), None).rows
    kind.apply(ctx, [row for row in first if row.entity is not Entity.USER])
    last = kind.select(ctx, WorkItem(SHARD_COUNT - 1, shard=SHARD_COUNT - 1), None).rows
    done = kind.apply(ctx, [row for row in first if row.entity is Entity.USER]) + kind.apply(ctx, last)
    return first, last, done


def snapshot(store: StoreSettings) -> dict[str, list[dict[str, Any]]]:
    """Every item of the data tables, read consistently: to show a run changed nothing (or nothing more)."""
    client = boto3.client("dynamodb")
    tables = (store.devices_table, store.profiles_table, store.catalog_table)
    return {
        table: sorted(
            client.scan(TableName=table, ConsistentRead=True)["Items"],
            key=lambda item: (item["pk"]["S"], item["sk"]["S"]),
        )
        for table in tables
    }


def dry_pages(ctx: JobContext) -> list[list[ReportRow]]:
    """A dry run's rows, page by page: what a confirmed run replays."""
    pages: list[list[ReportRow]] = []
    run_inline(ctx, on_page=lambda item, page: pages.append(page.rows))
    return pages


def confirm(ctx: JobContext, kind: JobKind, pages: Sequence[Sequence[ReportRow]]) -> list[ReportRow]:
    """A confirmed run as the engine replays a dry run: each page's changes rechecked, then applied, in turn."""
    done: list[ReportRow] = []
    for page in pages:
        done.extend(_outcomes(kind.apply, ctx, _outcomes(kind.recheck, ctx, page)))
    return done


def _outcomes(
    step: Callable[[JobContext, Sequence[ReportRow]], list[ReportRow]], ctx: JobContext, rows: Sequence[ReportRow]
) -> list[ReportRow]:
    """``step`` on the rows that are changes (one outcome each, as the engine demands); the others as they are."""
    changes = [row for row in rows if row.is_change]
    results = step(ctx, changes)
    assert len(results) == len(changes)
    done = iter(results)
    return [next(done) if row.is_change else row for row in rows]


def add_users(app_id: str, *user_ids: str) -> None:
    new_users(app_id, *user_ids)
