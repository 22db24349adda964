"""Byte ranges of the fan-out: every line is read by exactly one range, whatever the range size."""

import random

import pytest

from steward.audiences.ranges import MAX_RANGES, owned_lines, plan


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)] or [b""]


def read_ranges(data: bytes, range_bytes: int, chunk_bytes: int) -> list[bytes]:
    _, ranges = plan("app", "name", "key", "bucket", "etag", "01", len(data), range_bytes)
    return [
        b"".join(owned_lines(chunked(data[max(item.start - 1, 0) :], chunk_bytes), item.start, item.end))
        for item in ranges
    ]


@pytest.mark.parametrize("range_bytes", [1, 2, 3, 7, 64, 1000])
@pytest.mark.parametrize("chunk_bytes", [1, 5, 1 << 20])
def test_the_ranges_together_read_every_line_once(range_bytes: int, chunk_bytes: int) -> None:
    rng = random.Random(range_bytes * 31 + chunk_bytes)  # noqa: S311 (test data)
    lines = [bytes(rng.choice(b"ab\r ") for _ in range(rng.choice([0, 1, 5, 70, 200]))) for _ in range(60)]
    data = b"\n".join(lines) + rng.choice([b"", b"\n"])

    parts = read_ranges(data, range_bytes, chunk_bytes)

    assert b"".join(parts) == data
    # Each part is whole lines: it starts a line and ends with a newline (but for the file's last line).
    for part in parts[:-1]:
        assert part == b"" or part.endswith(b"\n")


def test_a_range_that_holds_no_line_start_reads_nothing() -> None:
    data = b"x" * 100 + b"\nend\n"

    parts = read_ranges(data, 10, 4)

    assert parts[0] == b"x" * 100 + b"\n"
    assert parts[1:9] == [b""] * 8
    assert b"".join(parts) == data


def test_the_plan_names_the_version_after_the_file_and_bounds_the_ranges() -> None:
    job, ranges = plan("app", "name", "imports/app/name.csv", "bucket", "etag", "0A", 10_000_000, 1)
    again, _ = plan("app", "name", "imports/app/name.csv", "bucket", "etag", "0A", 10_000_000, 1)

    assert job.version == again.version
    assert len(ranges) == MAX_RANGES  # however small the range size
    assert (ranges[0].start, ranges[-1].end) == (0, 10_000_000)
