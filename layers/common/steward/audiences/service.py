"""The API's audience use cases: reads, membership lookups, deletion with a tombstone, and upload links.

Lookups read the audience's pointer (its layout only, well under 4 KB, where
the record can pass 4 KB with long names and failure samples) and one bucket
per distinct bucket asked, both eventually consistent: half a read unit each.
A bucket or member list that is not there means the read raced an import
that flipped the version and removed the old one; it reads the pointer
again, consistently, and retries once.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from steward.audiences import buckets
from steward.audiences.keys import import_key, valid_name
from steward.audiences.models import (
    Audience,
    AudienceStatus,
    Layout,
    MemberPage,
    MembersCheckResult,
    Membership,
    UploadUrl,
)
from steward.audiences.ports import MemberLists
from steward.audiences.repository import AudienceRepository, bucket_numbers
from steward.audiences.storage import UploadLinks
from steward.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from steward.pagination import Page, decode_cursor, encode_cursor, invalid_cursor

logger = logging.getLogger(__name__)
MAX_ID_LINE_BYTES = 257  # a 256-byte id and its newline
# Asks the importer to remove a deleted audience's version (app id, name, version), asynchronously.
Cleanup = Callable[[str, str, Layout], None]
CLEANUP_NOT_STARTED = "AudienceCleanupNotStarted"


def _member_cursor(cursor: str | None) -> tuple[str | None, int]:
    """The version and byte offset a member cursor names (none: the first page)."""
    position = decode_cursor(cursor)
    if position is None:
        return None, 0
    version, start = position.get("v"), position.get("o")
    if not isinstance(version, str) or not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise invalid_cursor()
    return version, start


def audience_not_found(name: str) -> NotFound:
    return NotFound(f"Audience {name!r} does not exist.", code="audience_not_found", field="name")


def check_name(name: str) -> str:
    if not valid_name(name):
        raise InvalidInput(
            "An audience name is 1-200 characters, without '/' or control characters.",
            code="invalid_audience_name",
            field="name",
        )
    return name


class AudienceService:
    def __init__(
        self,
        repository: AudienceRepository,
        member_lists: MemberLists,
        upload_links: UploadLinks,
        cleanup: Cleanup,
        clock: Callable[[], datetime],
        metric: Callable[[str], None],
    ) -> None:
        self.repository = repository
        self.member_lists = member_lists
        self.upload_links = upload_links
        self.cleanup = cleanup
        self.clock = clock
        self.metric = metric

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[Audience]:
        return self.repository.list_page(app_id, cursor, limit)

    def get(self, app_id: str, name: str, *, consistent: bool = False) -> Audience:
        audience = self.repository.get(app_id, check_name(name), consistent=consistent)
        if audience is None:
            raise audience_not_found(name)
        return audience

    def is_member(self, app_id: str, name: str, user_id: str) -> Membership:
        members = self._members_of(app_id, name, [user_id])
        if user_id not in members:
            raise NotFound(f"{user_id!r} is not a member of {name!r}.", code="not_a_member", field="user_id")
        return Membership(audience=name, user_id=user_id, member=True)

    def check(self, app_id: str, name: str, user_ids: list[str]) -> MembersCheckResult:
        members = self._members_of(app_id, name, user_ids)
        return MembersCheckResult(
            members=[user_id for user_id in user_ids if user_id in members],
            not_members=[user_id for user_id in user_ids if user_id not in members],
        )

    def members_page(self, app_id: str, name: str, cursor: str | None, limit: int) -> MemberPage:
        version, offset = _member_cursor(cursor)
        layout = self._layout(app_id, name)
        for consistent in (False, True):
            if layout is None:
                return MemberPage(items=[])
            if version is not None and version != layout.version:
                raise Conflict(
                    "The audience was replaced by a newer import since this cursor was issued; start again.",
                    code="audience_replaced",
                    field="cursor",
                )
            page = self._page(layout, offset, limit)
            if page is not None:
                return page
            if not consistent:
                # The list is gone: a replace removed this version just now. Read the pointer again.
                layout = self._layout(app_id, name, consistent=True)
        raise Conflict("The audience is being replaced; try again.", code="audience_replaced", field="cursor")

    def _page(self, layout: Layout, offset: int, limit: int) -> MemberPage | None:
        """A page from the member list at ``offset``; None when the list is gone (its version was replaced)."""
        # One byte before the offset too: a cursor must point at the start of a line.
        start = max(offset - 1, 0)
        wanted = limit * MAX_ID_LINE_BYTES + (offset - start)
        data = self.member_lists.read(layout.members_key, start, wanted)
        if data is None:
            return None
        if offset > 0:
            if data and data[:1] != b"\n":
                raise invalid_cursor()
            data = data[1:]
            wanted -= 1
        complete = len(data) < wanted
        end = len(data) if complete else data.rfind(b"\n") + 1
        lines = data[:end].split(b"\n")[:-1] if end else []
        try:
            items = [line.decode("utf-8") for line in lines[:limit]]
        except UnicodeDecodeError as exc:
            raise invalid_cursor() from exc
        consumed = sum(len(line) + 1 for line in lines[:limit])
        more = len(lines) > limit or not complete
        next_cursor = encode_cursor({"v": layout.version, "o": offset + consumed}) if more and items else None
        return MemberPage(items=items, next_cursor=next_cursor)

    def delete(self, app_id: str, name: str) -> Audience:
        """Leave a tombstone, then ask the importer to remove the members. The tombstone names the removed
        version until the importer has removed it: deleting again asks for the removal again meanwhile."""
        audience = self.get(app_id, name)
        if audience.status is AudienceStatus.DELETED:
            self._remove_members(app_id, audience)
            return audience
        tombstone = self.repository.tombstone(app_id, audience, self.clock())
        if tombstone is None:
            raise Conflict("The audience changed meanwhile (an import finished); try again.", code="concurrent_update")
        self._remove_members(app_id, tombstone)
        return tombstone

    def lift_tombstone(self, app_id: str, name: str) -> None:
        # Consistent: the versions it still names are asked for from this read, and the record goes after it.
        audience = self.get(app_id, name, consistent=True)
        if audience.status is not AudienceStatus.DELETED:
            raise Conflict(f"Audience {name!r} is not deleted.", code="audience_not_deleted", field="name")
        # The versions the tombstone still names would be lost with it: its own removed version until the importer
        # removed it, and versions imports replaced whose removal failed (waiting for a retry or the lost-import
        # recorder, which will not find them once it goes). So they are asked for first, and a request that fails
        # fails the lift before anything changed; removing a version twice changes nothing.
        for layout in _pending_removals(audience):
            try:
                self.cleanup(app_id, name, layout)
            except Exception as exc:
                logger.exception("Could not ask for the removal of version %s of app %s", layout.version, app_id)
                self.metric(CLEANUP_NOT_STARTED)
                raise ServiceUnavailable(
                    "The members' removal could not be started; the tombstone stays. Try again.", retry_after=5
                ) from exc
        # Only this very tombstone goes (its deletion time as read): never one a lift, an import and another DELETE
        # left meanwhile. The lift leaves a floor, so a late event of a file imported before the deletion is skipped.
        if not self.repository.lift(app_id, audience, self.clock()):
            raise Conflict("The audience changed meanwhile; try again.", code="concurrent_update")

    def _remove_members(self, app_id: str, tombstone: Audience) -> None:
        """Ask the importer to remove the versions the tombstone still names (its own, and those imports replaced
        whose removal failed on every retry). The deletion is done whatever happens here: a request that fails is
        logged and counted, and the next DELETE asks again."""
        for layout in _pending_removals(tombstone):
            try:
                self.cleanup(app_id, tombstone.name, layout)
            except Exception:
                logger.exception("Could not ask for the removal of version %s of app %s", layout.version, app_id)
                self.metric(CLEANUP_NOT_STARTED)

    def upload_url(self, app_id: str, name: str) -> UploadUrl:
        existing = self.repository.get(app_id, check_name(name))
        if existing is not None and existing.status is AudienceStatus.DELETED:
            raise Conflict(
                f"Audience {name!r} was deleted; lift its tombstone first.", code="audience_deleted", field="name"
            )
        key = import_key(app_id, name)
        url, expires_at = self.upload_links.presign_put(key, self.clock())
        return UploadUrl(url=url, key=key, expires_at=expires_at)

    def _readable(self, app_id: str, name: str, *, consistent: bool = False) -> Audience:
        audience = self.repository.get(app_id, check_name(name), consistent=consistent)
        if audience is None or audience.status is AudienceStatus.DELETED:
            raise audience_not_found(name)
        return audience

    def _layout(self, app_id: str, name: str, *, consistent: bool = False) -> Layout | None:
        """The version lookups read: the small pointer, else the record (no members yet, deleted, or absent)."""
        layout = self.repository.pointer(app_id, check_name(name), consistent=consistent)
        if layout is not None:
            return layout
        return self._readable(app_id, name, consistent=consistent).layout

    def _members_of(self, app_id: str, name: str, user_ids: list[str]) -> set[str]:
        layout = self._layout(app_id, name)
        for attempt in range(2):
            if layout is None:
                return set()
            found = self._lookup(app_id, layout, user_ids, consistent=attempt > 0)
            if found is not None:
                return found
            if attempt == 0:
                layout = self._layout(app_id, name, consistent=True)
        logger.warning("Audience %r of app %s has missing buckets at version %s", name, app_id, layout)
        return set()

    def _lookup(self, app_id: str, layout: Layout, user_ids: list[str], *, consistent: bool) -> set[str] | None:
        """The members among ``user_ids``; None when a bucket is missing (a newer version replaced this one)."""
        located = bucket_numbers(layout, user_ids)
        packed = self.repository.read_buckets(
            app_id, layout.version, {number for number, _ in located.values()}, consistent=consistent
        )
        if any(value is None for value in packed.values()):
            return None
        return {
            user_id for user_id, (number, hashed) in located.items() if buckets.contains(packed[number] or b"", hashed)
        }


def _pending_removals(tombstone: Audience) -> list[Layout]:
    """The versions a tombstone still names: those flips replaced that are not removed yet, then its own."""
    return [*tombstone.unremoved.values(), *([tombstone.removing] if tombstone.removing is not None else [])]
