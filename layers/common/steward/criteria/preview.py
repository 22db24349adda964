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
from datetime import UTC, datetime
from typing import Any

from steward.criteria.models import DELIVERABLE, PreviewRequest, PreviewResult, Target
from steward.criteria.parse import parse_criteria
from steward.criteria.selection import Selected, Selection
from steward.errors import InvalidInput
from steward.pagination import (
    MAX_PAGE_BYTES,
    Page,
    decode_cursor,
    encode_cursor,
    fit_page,
    invalid_cursor,
    response_bytes,
)
from steward.shard_reader import Position
from steward.sharding import shard_of
from steward.users.models import User

MAX_SAMPLE_BYTES = MAX_PAGE_BYTES
# The range a cursor's `now` must lie in: no first page was read outside it.
EARLIEST_NOW = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_NOW = datetime(3000, 1, 1, tzinfo=UTC)


class CriteriaPreviewService:
    def __init__(self, selection: Selection, clock: Callable[[], datetime]) -> None:
        self.selection = selection
        self.clock = clock

    def preview(self, app_id: str, request: PreviewRequest) -> PreviewResult:
        node = parse_criteria(request.criteria)
        fingerprint = _fingerprint(request.target, request.criteria)
        start, now = self._resume(request.cursor, fingerprint)
        deliverable = parse_criteria(DELIVERABLE[request.target])
        page = self.selection.page(app_id, request.target, node, now, start, also=deliverable)
        sample: list[Selected] = []
        sample_bytes = 0
        for item in page.matches[: request.sample_size]:
            # Large profiles make a shorter sample, never an answer over Lambda's 6 MB.
            sample_bytes += response_bytes(item)
            if sample and sample_bytes > MAX_SAMPLE_BYTES:
                break
            sample.append(item)
        return PreviewResult(
            matched=len(page.matches),
            deliverable=page.also,
            scanned=page.scanned,
            complete=page.next is None,
            next_cursor=None if page.next is None else _cursor(page.next, now, fingerprint),
            sample=sample,
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
        users = (
            # A page cut for size resumes right after its last user (profiles are sharded by user id).
            (
                item,
                _cursor(Position(shard_of(item.user_id, self.selection.shard_count), item.user_id), now, fingerprint),
            )
            for item in page.matches
            if isinstance(item, User)
        )
        return fit_page(users, None if page.next is None else _cursor(page.next, now, fingerprint))

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
        raw_now = fields.get("now")
        try:
            now = datetime.fromisoformat(raw_now) if isinstance(raw_now, str) else None
        except ValueError:
            now = None
        # Dates far from today (0001-01-01) overflow the date arithmetic of within_last_days.
        if now is None or now.tzinfo is None or not EARLIEST_NOW <= now < LATEST_NOW:
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
