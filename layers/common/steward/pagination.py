"""Opaque cursors and pages shared by every list route.

A cursor is base64url JSON that only this code reads. It never carries a
partition key: callers rebuild keys from the caller's own app id, so a
forged cursor cannot reach another app's items.
"""

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from steward.errors import InvalidInput
from steward.schema import Schema

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Lambda answers at most 6 MB (6,291,556 bytes). A page stops before its items pass
# this many bytes, whatever its limit: large items make shorter pages, never a 500.
MAX_PAGE_BYTES = 4 * 1024 * 1024


class Page[T](Schema):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page."
    )


def invalid_cursor() -> InvalidInput:
    return InvalidInput("The cursor is not one this API issued.", code="invalid_cursor", field="cursor")


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR_CHARS:
        raise invalid_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise invalid_cursor() from exc
    if not isinstance(position, dict):
        raise invalid_cursor()
    return position


# DynamoDB rejects an empty sort key or one over 1 KB in a start key (a 500 if it got there).
MAX_SORT_KEY_BYTES = 1024
# The longest cursor this API issues holds a 1 KB sort key escaped as JSON (about 4 KB).
MAX_CURSOR_CHARS = 8192


def cursor_str(position: dict[str, Any], key: str) -> str:
    """Read one sort-key field of a decoded cursor, rejecting tampered ones."""
    value = position.get(key)
    if not isinstance(value, str) or not value:
        raise invalid_cursor()
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON (\ud800) is no key DynamoDB has
        raise invalid_cursor() from None
    if size > MAX_SORT_KEY_BYTES:
        raise invalid_cursor()
    return value


def response_bytes(item: BaseModel) -> int:
    """Bytes ``item`` adds to Lambda's answer.

    Powertools writes the body as ASCII JSON (non-ASCII escaped as \\uXXXX), and
    the body then travels as a JSON string inside Lambda's answer, where every
    quote and backslash is escaped once more.
    """
    text = json.dumps(item.model_dump(mode="json"), separators=(",", ":"))
    return len(text) + text.count('"') + text.count("\\") + 1  # +1: the comma between items


def fit_page[T: BaseModel](
    entries: Iterable[tuple[T, str]], next_cursor: str | None, max_bytes: int = MAX_PAGE_BYTES
) -> Page[T]:
    """A page of ``entries`` (each item with the cursor that resumes right after it), cut at ``max_bytes``.

    The first item always fits (item caps keep any one far below the limit);
    a cut page's cursor resumes after its last item.
    """
    items: list[T] = []
    used = 0
    last_cursor: str | None = None
    for item, cursor_after in entries:
        used += response_bytes(item)
        if items and used > max_bytes:
            return Page[T](items=items, next_cursor=last_cursor)
        items.append(item)
        last_cursor = cursor_after
    return Page[T](items=items, next_cursor=next_cursor)
