"""Opaque cursors and pages shared by every list route.

A cursor is base64url JSON that only this code reads. It never carries a
partition key: callers rebuild keys from the caller's own app id, so a
forged cursor cannot reach another app's items.
"""

import base64
import binascii
import json
from typing import Any

from pydantic import BaseModel, Field

from steward.errors import InvalidInput

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class Page[T](BaseModel):
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
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise invalid_cursor() from exc
    if not isinstance(position, dict):
        raise invalid_cursor()
    return position


# DynamoDB rejects an empty sort key or one over 1 KB in a start key (a 500 if it got there).
MAX_SORT_KEY_BYTES = 1024


def cursor_str(position: dict[str, Any], key: str) -> str:
    """Read one sort-key field of a decoded cursor, rejecting tampered ones."""
    value = position.get(key)
    if not isinstance(value, str) or not value or len(value.encode("utf-8")) > MAX_SORT_KEY_BYTES:
        raise invalid_cursor()
    return value
