"""A version's members as other packages read them (bulk_update's audience source): list pages and lookups."""

from collections.abc import Iterable

from steward.audiences import buckets
from steward.audiences.models import Layout
from steward.audiences.ports import MemberLists
from steward.audiences.repository import AudienceRepository, bucket_numbers

# A 256-byte id and its newline: a read of N lines' worth always holds N whole lines or the end.
MAX_ID_LINE_BYTES = 257


def read_member_ids(
    member_lists: MemberLists, layout: Layout, offset: int, limit: int
) -> tuple[list[str], int | None] | None:
    """Up to ``limit`` ids from byte ``offset`` of the member list, and the offset after them (None: the end).

    None when the list is gone: a newer import replaced the version and removed it.
    """
    wanted = limit * MAX_ID_LINE_BYTES
    data = member_lists.read(layout.members_key, offset, wanted)
    if data is None:
        return None
    complete = len(data) < wanted
    end = len(data) if complete else data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1] if end else []
    taken = lines[:limit]
    consumed = sum(len(line) + 1 for line in taken)
    more = len(lines) > limit or not complete
    return [line.decode("utf-8") for line in taken], (offset + consumed if more and taken else None)


def members_in_version(
    repository: AudienceRepository, app_id: str, layout: Layout, user_ids: Iterable[str]
) -> set[str] | None:
    """The members of that version among ``user_ids``; None when its buckets are gone (a newer import replaced it)."""
    located = bucket_numbers(layout, user_ids)
    packed = repository.read_buckets(app_id, layout.version, {number for number, _ in located.values()})
    if any(value is None for value in packed.values()):
        return None
    return {user_id for user_id, (number, hashed) in located.items() if buckets.contains(packed[number] or b"", hashed)}
