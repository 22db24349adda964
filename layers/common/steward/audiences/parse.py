"""Streaming parse and validation of an audience file, a chunk at a time.

Rules (the contract): UTF-8, one id per line; a BOM, CRLF or LF, blank
lines and surrounding whitespace (Unicode's: a no-break space too) are
tolerated; a first row ``user_id`` is a header and skipped. A line is
invalid when, stripped, it is longer than 256 bytes, is not UTF-8, or holds
a comma or a quote. The common case, a chunk of
plain ASCII lines, is checked with a few whole-chunk operations in C, which
is what keeps the parser faster than ``csv.reader``.
"""

from collections.abc import Iterable, Iterator

from steward.audiences.models import InvalidLine

MAX_LINE_BYTES = 256
# A line without a newline is held until its end; past this it is counted invalid and skipped.
MAX_RAW_LINE_BYTES = 64 * 1024
SAMPLE_LIMIT = 5
SAMPLE_CHARS = 64
HEADER = b"user_id"
BOM = b"\xef\xbb\xbf"
_SLOW_PATH_BYTES = (b",", b'"', b"\r", b" ", b"\t", b"\x0b", b"\x0c")


class Scanner:
    """Feed it the file's bytes in chunks; it returns each chunk's valid ids and counts the rest."""

    def __init__(self, *, at_file_start: bool = True) -> None:
        """``at_file_start`` False: a byte range after the file's start. It holds no BOM, and its first row,
        when ``user_id``, is kept as an id and noted (``header_first``): it is the file's header only when no
        range before it saw a row, which only the ranges' results together tell."""
        self.rows = 0
        self.invalid = 0
        self.samples: list[InvalidLine] = []
        self.header_first = False
        self._carry = b""
        self._line_no = 0
        self._at_file_start = at_file_start
        self._seen_row = False
        self._skipping = False

    @property
    def seen_row(self) -> bool:
        """Whether a non-blank line was read (a header included)."""
        return self._seen_row

    @property
    def lines(self) -> int:
        """Lines read so far, blank ones included (sample line numbers count from 1 in what was fed)."""
        return self._line_no

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                return []
            chunk = chunk[newline + 1 :]
            self._skipping = False
        data = self._carry + chunk if self._carry else chunk
        lines = data.split(b"\n")
        self._carry = lines.pop()
        ids = self._lines(lines, data)
        if len(self._carry) > MAX_RAW_LINE_BYTES:
            if not self._carry.strip():
                # Leading whitespace only so far: stripped anyway, so drop it and read the line on.
                self._carry = b""
                return ids
            self._line_no += 1
            self.rows += 1
            self._seen_row = True  # a row came first: a later `user_id` line is an id, not the header
            self._reject(self._line_no, self._carry, "too_long")
            self._carry = b""
            self._skipping = True
        return ids

    def finish(self) -> list[bytes]:
        tail, self._carry = self._carry, b""
        return self._lines([tail], tail) if tail else []

    def _lines(self, lines: list[bytes], data: bytes) -> list[bytes]:
        first = self._line_no + 1
        self._line_no += len(lines)
        if first == 1 and self._at_file_start and lines and lines[0].startswith(BOM):
            lines[0] = lines[0][len(BOM) :]
        if not self._seen_row:
            self._skip_header(lines)
        plain = data.isascii() and not any(marker in data for marker in _SLOW_PATH_BYTES)
        if plain and max(map(len, lines), default=0) <= MAX_LINE_BYTES:
            ids = [line for line in lines if line] if b"" in lines else lines
            self.rows += len(ids)
            return ids
        return self._checked(lines, first)

    def _checked(self, lines: list[bytes], first: int) -> list[bytes]:
        ids: list[bytes] = []
        for offset, raw in enumerate(lines):
            line = raw.strip()
            if not line.isascii():
                line = _unicode_stripped(line)
            if not line:
                continue
            self.rows += 1
            if len(line) > MAX_LINE_BYTES:
                self._reject(first + offset, line, "too_long")
            elif b"," in line:
                self._reject(first + offset, line, "comma")
            elif b'"' in line:
                self._reject(first + offset, line, "quote")
            elif not line.isascii() and not _is_utf8(line):
                self._reject(first + offset, line, "not_utf8")
            else:
                ids.append(line)
        return ids

    def _skip_header(self, lines: list[bytes]) -> None:
        for index, raw in enumerate(lines):
            line = raw.strip()
            if not line.isascii():
                line = _unicode_stripped(line)
            if line:
                self._seen_row = True
                if line == HEADER:
                    self.header_first = True
                    if self._at_file_start:
                        lines[index] = b""
                return

    def _reject(self, line_no: int, line: bytes, reason: str) -> None:
        self.invalid += 1
        if len(self.samples) < SAMPLE_LIMIT:
            text = line[: SAMPLE_CHARS * 4].decode("utf-8", errors="replace")[:SAMPLE_CHARS]
            self.samples.append(InvalidLine(line=line_no, reason=reason, text=text))


def _unicode_stripped(line: bytes) -> bytes:
    """Surrounding whitespace is Unicode's (a no-break space from a spreadsheet, an ideographic space)."""
    try:
        return line.decode("utf-8").strip().encode("utf-8")
    except UnicodeDecodeError:
        return line  # refused as not_utf8 below


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def scan(chunks: Iterable[bytes], scanner: Scanner) -> Iterator[list[bytes]]:
    """The valid ids of each chunk, then of the last line."""
    for chunk in chunks:
        ids = scanner.feed(chunk)
        if ids:
            yield ids
    tail = scanner.finish()
    if tail:
        yield tail
