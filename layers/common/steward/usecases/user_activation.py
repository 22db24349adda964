"""Deactivating and reactivating a user, with the inactive counts of its static segments."""

from collections.abc import Callable
from datetime import datetime

from steward.conditions import MAX_ATTEMPTS
from steward.errors import Conflict
from steward.segments.repository import SegmentRepository
from steward.users.models import User
from steward.users.repository import UserRepository

# Why deactivate_users deactivated a user: it was left with no active device, email or phone.
# reactivate_devices brings such a user back when it gives it an active device again.
NO_ACTIVE_CONTACT = "no_active_contact"


class UserActivation:
    def __init__(self, users: UserRepository, segments: SegmentRepository) -> None:
        self.users = users
        self.segments = segments

    def set_active(self, app_id: str, user_id: str, active: bool, reason: str | None, now: datetime) -> User | None:
        """Deactivate or reactivate a user and move it between its segments' counts, in one transaction.

        This is what keeps ``inactive_member_count`` exact when a user's state
        changes after it joined. None when the user does not exist; no write
        when the user already has that state.
        """
        return self.set_active_when(app_id, user_id, active, reason, now, lambda _: True)

    def set_active_when(
        self,
        app_id: str,
        user_id: str,
        active: bool,
        reason: str | None,
        now: datetime,
        condition: Callable[[User], bool],
    ) -> User | None:
        """``set_active``, made only while ``condition`` holds for the user as read.

        The write is conditional on the version read, so a change in between
        reads the user again and asks ``condition`` again. Returns the user as
        stored after the call (changed or not); None when it does not exist.
        """
        for _ in range(MAX_ATTEMPTS):
            stored = self.users.get_with_version(app_id, user_id)
            if stored is None:
                return None
            user, version = stored
            if user.active == active or not condition(user):
                return user
            if self.segments.move_user_activity(app_id, user, version, active, reason, now):
                return self.users.get(app_id, user_id)
        raise Conflict("The user changed concurrently too many times; retry the request.", code="concurrent_update")
