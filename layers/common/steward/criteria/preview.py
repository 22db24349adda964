"""Preview: how many users, devices, emails or phones criteria select, page by page, with a sample.

One request takes one page of the selection and returns its count plus a
cursor; the client sums ``matched`` over pages. The cursor also carries the
``now`` of the first page, so within_last_days means the same on every page,
and a fingerprint of the target and criteria, so a cursor is never
continued with other criteria.
"""

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from steward.criteria.models import PreviewRequest, PreviewResult, Target
from steward.criteria.parse import parse_criteria
from steward.criteria.selection import Selection
from steward.errors import InvalidInput
from steward.pagination import Page, decode_cursor, encode_cursor, invalid_cursor
from steward.shard_reader import Position
from steward.users.models import User


class CriteriaPreviewService:
    def __init__(self, selection: Selection, clock: Callable[[], datetime]) -> None:
        self.selection = selection
        self.clock = clock

    def preview(self, app_id: str, request: PreviewRequest) -> PreviewResult:
        node = parse_criteria(request.criteria)
        fingerprint = _fingerprint(request.target, request.criteria)
        start, now = self._resume(request.cursor, fingerprint)
        page = self.selection.page(app_id, request.target, node, now, start)
        return PreviewResult(
            matched=len(page.matches),
            scanned=page.scanned,
            complete=page.next is None,
            next_cursor=None if page.next is None else _cursor(page.next, now, fingerprint),
            sample=page.matches[: request.sample_size],
        )

    def matching_users(self, app_id: str, criteria: Any, cursor: str | None, limit: int) -> Page[User]:
        """One page of the users that criteria select (the members of a criteria segment).

        A page reads under the same budget as a preview, so it may hold fewer
        than ``limit`` users, or none, and still have a next one.
        """
        node = parse_criteria(criteria)
        fingerprint = _fingerprint(Target.USERS, criteria)
        start, now = self._resume(cursor, fingerprint)
        page = self.selection.page(app_id, Target.USERS, node, now, start, max_items=limit)
        users = [item for item in page.matches if isinstance(item, User)]
        return Page[User](items=users, next_cursor=None if page.next is None else _cursor(page.next, now, fingerprint))

    def _resume(self, cursor: str | None, fingerprint: str) -> tuple[Position, datetime]:
        """Where to start and the ``now`` of this preview: fresh, or as the first page fixed them."""
        fields = decode_cursor(cursor)
        if fields is None:
            return Position(0), self.clock()
        if fields.get("q") != fingerprint:
            raise InvalidInput(
                "This cursor belongs to a preview of another target or other criteria.",
                code="invalid_cursor",
                field="cursor",
            )
        position = Position.from_fields(fields, self.selection.shard_count)
        try:
            now = datetime.fromisoformat(str(fields.get("now")))
        except ValueError:
            raise invalid_cursor() from None
        if now.tzinfo is None:
            raise invalid_cursor()
        return position, now


def _cursor(position: Position, now: datetime, fingerprint: str) -> str:
    return encode_cursor({**position.as_fields(), "now": now.isoformat(), "q": fingerprint})


def _fingerprint(target: Target, criteria: Any) -> str:
    canonical = json.dumps(
        {"target": target.value, "criteria": criteria},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
