"""The fan-out's plan: a file cut into byte ranges, each parsed on its own, and the lines each range owns.

A line belongs to the range it begins in (a line begins at byte 0 or after a
newline). So every range but the first starts after the first newline at or
after the byte before its start, and every range ends with the line that
crosses its end: each line is read exactly once, whatever the range size.
"""

import hashlib
from collections.abc import Iterable, Iterator

from pydantic import ConfigDict, Field

from steward.audiences.buckets import partitions_for
from steward.schema import Schema

# The models here travel in an execution's input and state, which another deployment's code may have written (an
# execution started before a deploy or a rollback): they ignore a field they do not know rather than refuse it.

# The Map's items travel in the execution's input, and their results in its state (256 KB each): at most this
# many ranges (a bigger file gets bigger ranges), and a range's result is a few counts (its samples go to S3).
MAX_RANGES = 500
# How a job sizes its buckets, recorded on it as Pack and Flip each compute its layout, maybe on different
# deployments' code: 1 from the average partition's members (jobs planned before the rule was recorded), 2 from
# the largest partition's (buckets.buckets_per_partition). Any int is read, so that a rule of later code rolled
# back fails only the steps that size buckets (fanout.UnknownBucketRule), and the fail step still records it.
BUCKET_RULE = 2


class ByteRange(Schema):
    model_config = ConfigDict(frozen=True, extra="ignore")

    index: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int = Field(gt=0)


class FanOutJob(Schema):
    """One file's import by the fan-out state machine: everything every step needs, in the execution's input."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    app_id: str
    name: str
    key: str
    bucket: str
    etag: str
    sequencer: str
    size: int = Field(ge=0)
    version: str
    partitions: int = Field(ge=1)
    bucket_rule: int = 1

    @property
    def staging(self) -> str:
        """Where the steps leave their work for the next ones (removed at the end)."""
        return f"staging/{self.app_id}/{self.version}/"


class RangeResult(Schema):
    """What one range's parse found: its counts and its lines. Its first invalid lines (numbered within the
    range) are staged in S3 when it has any, so that the state stays small whatever the range count."""

    model_config = ConfigDict(extra="ignore")

    rows: int
    invalid: int
    valid: int
    # The valid ids it spilled, each chunk's repeats once: at least its distinct ids (0 from an earlier deployment).
    spilled: int = 0
    lines: int
    seen_row: bool = False
    # The range's first row is `user_id`, counted as an id: the file's header if no range before saw a row.
    header_first: bool = False


class Deduplicated(Schema):
    """A partition's distinct ids, staged by the Distinct step before Prepare decides how to check them."""

    model_config = ConfigDict(extra="ignore")

    distinct: int


class Checked(Schema):
    model_config = ConfigDict(extra="ignore")

    distinct: int
    members: int


def header_range(parsed: list[RangeResult]) -> int | None:
    """The range after the first whose leading `user_id` row is the file's header (every range before it
    held only blank lines), else None. The first range skips its own header as the inline import does."""
    for index, result in enumerate(parsed):
        if result.seen_row:
            return index if index > 0 and result.header_first else None
    return None


def execution_name(key: str, sequencer: str) -> str:
    """The same file's events start one execution: its name comes from the key and the sequencer."""
    return "audience-" + hashlib.sha256(f"{key}\n{sequencer}".encode()).hexdigest()[:64]


def plan(
    app_id: str, name: str, key: str, bucket: str, etag: str, sequencer: str, size: int, range_bytes: int
) -> tuple[FanOutJob, list[ByteRange]]:
    """The job (its version named after the file, so a repeated start is the same execution) and its ranges."""
    version = hashlib.sha256(f"{key}\n{sequencer}".encode()).hexdigest()[:16]
    job = FanOutJob(
        app_id=app_id, name=name, key=key, bucket=bucket, etag=etag, sequencer=sequencer, size=size,
        version=version, partitions=partitions_for(size), bucket_rule=BUCKET_RULE,
    )  # fmt: skip
    step = max(range_bytes, -(-size // MAX_RANGES), 1)
    ranges = [
        ByteRange(index=index, start=start, end=min(start + step, size))
        for index, start in enumerate(range(0, max(size, 1), step))
    ]
    return job, ranges


def owned_lines(chunks: Iterable[bytes], start: int, end: int) -> Iterator[bytes]:
    """The bytes of the lines that begin in [start, end), from chunks of the object read from ``max(start - 1, 0)``."""
    position = max(start - 1, 0)
    skipping = start > 0
    for chunk in chunks:
        if skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                position += len(chunk)
                continue
            chunk = chunk[newline + 1 :]
            position += newline + 1
            skipping = False
            if position >= end:
                return  # the line after the newline begins in the next range
        if position + len(chunk) > end - 1:
            newline = chunk.find(b"\n", max(end - 1 - position, 0))
            if newline >= 0:
                yield chunk[: newline + 1]
                return
        if chunk:
            yield chunk
        position += len(chunk)
