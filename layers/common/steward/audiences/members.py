"""A version's members as other packages read them (bulk_update's audience source): list pages, runs and lookups."""

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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


# The survey reads the member list this many bytes a request, and at most SURVEY_PAGE_BYTES in one call,
# so that a call ends in time (and in memory) whatever the list's size.
SURVEY_READ_BYTES = 8 * 1024 * 1024
SURVEY_PAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Run:
    """One partition's ids in the member list: bytes [start, end), and whether they are in byte order.

    The importers write a version's list partition after partition (an id's
    partition is ``buckets.partition_of``), so each partition is one run.
    Lists written before the runs were sorted hold each run in bucket order.
    """

    start: int
    end: int
    ordered: bool

    def as_json(self) -> list[Any]:
        return [self.start, self.end, self.ordered]

    @classmethod
    def from_json(cls, raw: list[Any]) -> "Run":
        return cls(int(raw[0]), int(raw[1]), bool(raw[2]))


@dataclass(frozen=True)
class Survey:
    """The runs found in the member list up to ``offset`` (a line's start), and the last id read."""

    runs: tuple[Run, ...] = ()
    offset: int = 0
    last: str | None = None
    done: bool = False
    requests: int = 0  # the range reads this call made

    def as_json(self) -> dict[str, Any]:
        return {"runs": [run.as_json() for run in self.runs], "offset": self.offset, "last": self.last}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "Survey":
        return cls(tuple(Run.from_json(run) for run in raw["runs"]), int(raw["offset"]), raw.get("last"))


def survey_runs(member_lists: MemberLists, layout: Layout, survey: Survey) -> Survey | None:
    """Go on finding the list's runs from where ``survey`` stopped, for at most SURVEY_PAGE_BYTES; None: list gone.

    Memory holds one read (8 MB) and the runs: a partition's ids are never all held.
    """
    runs, offset, last, requests = list(survey.runs), survey.offset, survey.last, 0
    while offset - survey.offset < SURVEY_PAGE_BYTES:
        data = member_lists.read(layout.members_key, offset, SURVEY_READ_BYTES)
        requests += 1
        if data is None:
            return None
        complete = len(data) < SURVEY_READ_BYTES
        end = len(data) if complete else data.rfind(b"\n") + 1
        lines = data[:end].split(b"\n")[:-1]
        start, until = 0, offset  # where the next run starts, kept as it goes (not summed again per run)
        while start < len(lines):
            # An id's partition only grows along the list: the run ends where the next partition begins.
            partition = buckets.partition_of(lines[start], layout.partitions)
            stop = bisect_right(
                lines, partition, lo=start, key=lambda line: buckets.partition_of(line, layout.partitions)
            )
            group = lines[start:stop]
            at = until
            until = at + sum(map(len, group)) + len(group)
            ordered = group == sorted(group)
            previous = runs[-1] if runs else None
            if (
                previous is not None
                and previous.end == at
                and last is not None
                and _partition(last, layout) == partition
            ):
                runs[-1] = Run(previous.start, until, previous.ordered and ordered and last.encode() <= group[0])
            else:
                runs.append(Run(at, until, ordered))
            last = group[-1].decode("utf-8")
            start = stop
        offset += end
        if complete:
            return Survey(tuple(runs), offset, last, True, requests)
    return Survey(tuple(runs), offset, last, False, requests)


def _partition(user_id: str, layout: Layout) -> int:
    return buckets.partition_of(user_id.encode("utf-8"), layout.partitions)


@dataclass(frozen=True)
class RunRead:
    """Ids of a run in byte order; for each, the run's cursor right after it; and the cursor after them all."""

    ids: list[str]
    resume: dict[str, dict[str, Any]]
    next: dict[str, Any] | None  # None: the run is read to its end
    requests: int = 1


def read_run(member_lists: MemberLists, layout: Layout, run: Run, cursor: dict[str, Any], limit: int) -> RunRead | None:
    """Up to ``limit`` ids of ``run`` in byte order from ``cursor`` (``{}`` at its start); None: the list is gone.

    The run must be ordered: a list imported before runs were sorted is refused before it is merged.
    """
    if not run.ordered:
        raise ValueError("a run in bucket order cannot be read in byte order")
    offset = int(cursor.get("offset", run.start))
    read = read_member_ids(member_lists, layout, offset, limit)
    if read is None:
        return None
    ids: list[str] = []
    resume: dict[str, dict[str, Any]] = {}
    for user_id in read[0]:
        if offset >= run.end:
            break
        offset += len(user_id.encode("utf-8")) + 1
        ids.append(user_id)
        resume[user_id] = {"offset": offset}
    return RunRead(ids, resume, {"offset": offset} if offset < run.end else None)
