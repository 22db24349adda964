"""total_limit's merge: the next users of a selection in byte order of the id, over sources each read in that order.

A source is a shard (all users, a static segment's members) or a run of an
audience's member list. Each page reads a bounded chunk from every source
not yet done, takes the users below the lowest point every source has
reached (the ones no other source can precede), and keeps, per source, where
it stopped. Each chunk is the source's share of the page's room and a
quarter more (at least ``MIN_MERGE_CHUNK``), so a page reads about 1.25 times
what it takes, and re-reads what it did not take.

A source whose ids come without their users (an audience's member list)
merges the ids first (``merge_ids_page``): the users are then fetched in
order, a batch at a time, only until the page is full.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from steward.jobs.engine import JsonObject
from steward.users.models import User

# The least a merge reads from a source per page: its share of the page, and a quarter more.
MIN_MERGE_CHUNK = 8
MERGE_SLACK = 1.25


@dataclass(frozen=True)
class Chunk:
    """One read of a source."""

    users: list[User]  # the selected ones, in byte order of the id
    scanned: int
    frontier: str  # the id of the last candidate read (selected or not)
    next: JsonObject | None  # where the source goes on after this read; None: read to its end
    resume: Callable[[str], JsonObject]  # where it goes on right after one of its selected users


# (source's index, its cursor, at most this many candidates) -> what that read selected.
Reader = Callable[[int, JsonObject, int], Chunk]


def merge_page(
    cursors: Sequence[JsonObject | None], room: int, read: Reader
) -> tuple[list[User], int, list[JsonObject | None]]:
    """Up to ``room`` next users of the merged sources, what was scanned, and each source's cursor after the page.

    A None cursor is a source read to its end.
    """
    open_sources = sum(1 for cursor in cursors if cursor is not None)
    chunk_size = max(MIN_MERGE_CHUNK, math.ceil(MERGE_SLACK * room / max(open_sources, 1)))
    chunks = {index: read(index, cursor, chunk_size) for index, cursor in enumerate(cursors) if cursor is not None}
    # Every source has been read up to its frontier: no user below the lowest one is still unread.
    frontiers = [key(chunk.frontier) for chunk in chunks.values() if chunk.next is not None]
    bound = min(frontiers) if frontiers else None
    ready = sorted(
        ((user, index) for index, chunk in chunks.items() for user in chunk.users),
        key=lambda pair: key(pair[0].user_id),
    )
    chosen = [pair for pair in ready if bound is None or key(pair[0].user_id) <= bound][:room]
    after = list(cursors)
    for index, chunk in chunks.items():
        mine = [user.user_id for user, owner in chosen if owner == index]
        if len(mine) == len(chunk.users):
            after[index] = chunk.next  # everything this source's read selected is taken
        elif mine:
            after[index] = chunk.resume(mine[-1])
    return [user for user, _ in chosen], sum(chunk.scanned for chunk in chunks.values()), after


@dataclass(frozen=True)
class IdChunk:
    """One read of a source of ids, in byte order."""

    ids: list[str]
    next: JsonObject | None  # where the source goes on after this read; None: read to its end
    resume: Callable[[str], JsonObject]  # where it goes on right after one of its ids


def merge_ids_page(
    cursors: Sequence[JsonObject | None],
    room: int,
    read: Callable[[int, JsonObject, int], IdChunk],
    fetch: Callable[[list[str]], list[User]],
    batch: int,
) -> tuple[list[User], int, list[JsonObject | None]]:
    """``merge_page`` for sources of ids: merge the ids, then ``fetch`` the selected users ``batch`` ids at a time.

    The ids below the lowest point every source has reached are fetched in
    order until ``room`` users are selected; each source then resumes after
    its last id that was fetched. Memory: the ids of one page's reads.
    """
    open_sources = sum(1 for cursor in cursors if cursor is not None)
    chunk_size = max(MIN_MERGE_CHUNK, math.ceil(MERGE_SLACK * room / max(open_sources, 1)))
    chunks = {index: read(index, cursor, chunk_size) for index, cursor in enumerate(cursors) if cursor is not None}
    frontiers = [key(chunk.ids[-1]) for chunk in chunks.values() if chunk.next is not None and chunk.ids]
    bound = min(frontiers) if frontiers else None
    ready = sorted((key(user_id), user_id) for chunk in chunks.values() for user_id in chunk.ids)
    ids = [user_id for point, user_id in ready if bound is None or point <= bound]
    users: list[User] = []
    fetched = 0
    while fetched < len(ids) and len(users) < room:
        users.extend(fetch(ids[fetched : fetched + batch]))
        fetched = min(len(ids), fetched + batch)
    if len(users) > room:  # the last batch went past the page: resume after the last user taken
        users = users[:room]
        fetched = ids.index(users[-1].user_id) + 1
    last = key(ids[fetched - 1]) if fetched else None
    after = list(cursors)
    for index, chunk in chunks.items():
        mine = [user_id for user_id in chunk.ids if last is not None and key(user_id) <= last]
        if len(mine) == len(chunk.ids):
            after[index] = chunk.next
        elif mine:
            after[index] = chunk.resume(mine[-1])
    return users, sum(len(chunk.ids) for chunk in chunks.values()), after


def key(user_id: str) -> bytes:
    """DynamoDB's order of string sort keys: their UTF-8 bytes."""
    return user_id.encode("utf-8")
