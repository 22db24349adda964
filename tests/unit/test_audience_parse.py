"""The audience file parser and the packed buckets: the contract's format rules, whatever the chunking."""

from hypothesis import given, settings
from hypothesis import strategies as st

from steward.audiences import buckets
from steward.audiences.parse import MAX_RAW_LINE_BYTES, Scanner, scan


def parse(data: bytes, chunk: int = 1024 * 1024) -> tuple[list[bytes], Scanner]:
    scanner = Scanner()
    ids = [
        user_id for part in scan((data[i : i + chunk] for i in range(0, len(data), chunk)), scanner) for user_id in part
    ]
    return ids, scanner


def test_bom_crlf_blank_lines_whitespace_and_header() -> None:
    ids, scanner = parse(b"\xef\xbb\xbf user_id \r\n\r\n a1 \r\n\tb2\n\n c3")

    assert ids == [b"a1", b"b2", b"c3"]
    assert (scanner.rows, scanner.invalid) == (3, 0)


def test_only_the_first_row_is_a_header() -> None:
    ids, scanner = parse(b"\n\nx1\nuser_id\n")

    assert ids == [b"x1", b"user_id"]
    assert scanner.rows == 2


def test_each_invalid_kind_is_counted_with_its_line_number() -> None:
    data = b"ok\n" + b"y" * 257 + b'\na,b\n"q"\n\xc3\x28\n' + ("é" * 128).encode() + b"\n"

    ids, scanner = parse(data)

    assert ids == [b"ok", ("é" * 128).encode()]  # 256 bytes of UTF-8 are allowed
    assert [(sample.line, sample.reason) for sample in scanner.samples] == [
        (2, "too_long"), (3, "comma"), (4, "quote"), (5, "not_utf8"),
    ]  # fmt: skip
    assert (scanner.rows, scanner.invalid) == (6, 4)


def test_the_line_limit_is_256_bytes_of_utf8_not_256_characters() -> None:
    fits, too_long = ("é" * 128).encode(), ("é" * 129).encode()  # 256 and 258 bytes, both under 256 characters
    for plain_chunk in (b"", b"ascii\n"):  # alone, and in a chunk that starts plain
        ids, scanner = parse(plain_chunk + too_long + b"\n" + fits + b"\n")

        assert ids == [*([b"ascii"] if plain_chunk else []), fits]
        assert [sample.reason for sample in scanner.samples] == ["too_long"]
        assert scanner.invalid == 1


def test_a_huge_line_without_newline_is_one_invalid_row_and_memory_stays_bounded() -> None:
    data = b"a1\n" + b"z" * (MAX_RAW_LINE_BYTES * 3) + b"\nb2\n"

    ids, scanner = parse(data, chunk=4096)

    assert ids == [b"a1", b"b2"]
    assert (scanner.rows, scanner.invalid) == (3, 1)


def test_a_huge_first_line_is_a_row_so_a_later_user_id_line_is_an_id() -> None:
    ids, scanner = parse(b"x" * (MAX_RAW_LINE_BYTES * 2) + b"\nuser_id\nb\n", chunk=4096)

    assert ids == [b"user_id", b"b"]
    assert (scanner.rows, scanner.invalid) == (3, 1)


def test_a_huge_run_of_whitespace_is_a_blank_line_or_the_padding_of_an_id() -> None:
    ids, scanner = parse(
        b" " * (MAX_RAW_LINE_BYTES * 2) + b"\nb\n" + b"\t" * (MAX_RAW_LINE_BYTES * 2) + b"c\n", chunk=4096
    )

    assert ids == [b"b", b"c"]
    assert (scanner.rows, scanner.invalid) == (2, 0)


lines = st.lists(
    st.one_of(
        st.text(alphabet="abcXYZ019-_ é", min_size=0, max_size=12).map(str.encode),
        st.sampled_from([b"user_id", b"a,b", b'"', b"\xff", b"  ", b"\r", b"x" * 300]),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(lines=lines, bom=st.booleans(), crlf=st.booleans(), chunk=st.integers(min_value=1, max_value=64))
def test_any_chunking_gives_the_same_result(lines: list[bytes], bom: bool, crlf: bool, chunk: int) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + (b"\r\n" if crlf else b"\n").join(lines)

    whole_ids, whole = parse(data)
    chunked_ids, chunked = parse(data, chunk)

    assert chunked_ids == whole_ids
    assert (chunked.rows, chunked.invalid, chunked.samples) == (whole.rows, whole.invalid, whole.samples)


def test_a_bucket_finds_exactly_its_members() -> None:
    members = [f"user-{n}".encode() for n in range(500)]
    packed = buckets.pack([buckets.member_hash(user_id) for user_id in members])

    assert all(buckets.contains(packed, buckets.member_hash(user_id)) for user_id in members)
    assert not any(buckets.contains(packed, buckets.member_hash(f"other-{n}".encode())) for n in range(500))
    assert not buckets.contains(b"", buckets.member_hash(b"x"))


def test_bucket_numbers_are_stable_and_inside_the_layout() -> None:
    number, hashed = buckets.bucket_of(b"alice", 4, 3)

    # Pinned: stored buckets must be found by every later release.
    assert (number, hashed.hex()) == (9, "ff23ef7fc0d8229f03a71d51")
    assert 0 <= number < 12
    assert number // 3 == buckets.partition_of(b"alice", 4)


def test_surrounding_unicode_whitespace_is_stripped_and_inner_is_kept() -> None:
    nbsp, ideographic = "\u00a0".encode(), "\u3000".encode()
    data = nbsp + b"\n" + nbsp + b"user_id\n" + nbsp + b"a1" + ideographic + b"\n\xe2\x80\x83b\xc2\xa0c\xe2\x80\x83\n"

    ids, scanner = parse(data)

    # An NBSP-only line is blank; the header is found behind its padding; an inner NBSP stays part of the id.
    assert ids == [b"a1", "b\u00a0c".encode()]
    assert (scanner.rows, scanner.invalid) == (2, 0)
