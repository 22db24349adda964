"""Write-sharding and opaque cursors: pure functions, checked with examples and properties."""

import base64
import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steward.errors import InvalidInput
from steward.pagination import cursor_str, decode_cursor, encode_cursor
from steward.sharding import partition_for, shard_key, shard_of

PROPERTY = settings(database=None, deadline=None)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)
POSITIONS = st.dictionaries(st.text(), JSON_VALUES, max_size=5)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


# Sharding.


@pytest.mark.parametrize(
    ("item_id", "shard_count", "expected"),
    [
        ("device-1", 16, 11),
        ("device-1", 4, 3),
        ("device-1", 256, 235),
        ("abc", 16, 9),
        ("abc", 256, 89),
        ("fcm:token-123", 16, 4),
        ("ü-device", 16, 3),
        ("", 256, 180),
    ],
)
def test_shard_of_is_stable(item_id: str, shard_count: int, expected: int) -> None:
    assert shard_of(item_id, shard_count) == expected


def test_one_shard_holds_everything() -> None:
    assert {shard_of(f"device-{n}", 1) for n in range(100)} == {0}


@PROPERTY
@given(item_id=st.text(), shard_count=st.integers(min_value=1, max_value=256))
def test_shard_of_is_in_range_and_deterministic(item_id: str, shard_count: int) -> None:
    shard = shard_of(item_id, shard_count)

    assert 0 <= shard < shard_count
    assert shard_of(item_id, shard_count) == shard


def test_shard_of_spreads_ids_evenly() -> None:
    counts = Counter(shard_of(f"device-{n}", 16) for n in range(10_000))

    mean = 10_000 / 16
    assert set(counts) == set(range(16))
    assert all(0.8 * mean <= count <= 1.2 * mean for count in counts.values()), counts


def test_shard_key_is_zero_padded() -> None:
    assert shard_key("acme", 7) == "acme#07"
    assert shard_key("acme", 12) == "acme#12"
    assert partition_for("acme", "device-1", 16) == "acme#11"


# Cursors.


@PROPERTY
@given(position=POSITIONS)
def test_cursor_roundtrips(position: dict[str, Any]) -> None:
    assert decode_cursor(encode_cursor(position)) == position


@PROPERTY
@given(position=POSITIONS)
def test_cursor_is_url_safe_without_padding(position: dict[str, Any]) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", encode_cursor(position))


def test_cursor_is_canonical() -> None:
    assert encode_cursor({"b": 1, "a": "x"}) == encode_cursor({"a": "x", "b": 1})


@pytest.mark.parametrize("cursor", [None, ""])
def test_no_cursor_means_the_start(cursor: str | None) -> None:
    assert decode_cursor(cursor) is None


@pytest.mark.parametrize(
    "cursor",
    [
        "a",
        "!!!!",
        "not a cursor",
        "é",
        b64(bytes(range(128, 160))),
        b64(b"{not json}"),
        b64(b"[1, 2]"),
        b64(b'"shard"'),
        b64(b"42"),
        b64(b"null"),
    ],
)
def test_garbage_cursor_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_cursor(cursor)

    assert (caught.value.code, caught.value.field) == ("invalid_cursor", "cursor")


@PROPERTY
@given(cursor=st.text() | st.binary().map(b64))
def test_any_cursor_decodes_to_a_dict_or_is_invalid(cursor: str) -> None:
    outcome: object
    try:
        outcome = decode_cursor(cursor)
    except InvalidInput as exc:
        outcome = exc.code
    assert outcome is None or isinstance(outcome, dict) or outcome == "invalid_cursor"


def test_cursor_str_reads_a_string_field() -> None:
    assert cursor_str({"after": "device-1"}, "after") == "device-1"


@pytest.mark.parametrize("position", [{}, {"after": ""}, {"after": 3}, {"after": None}, {"after": ["x"]}])
def test_cursor_str_rejects_tampered_fields(position: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        cursor_str(position, "after")

    assert caught.value.code == "invalid_cursor"
