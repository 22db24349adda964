"""Deactivating and reactivating a user, with the inactive counts of its static segments."""

from datetime import datetime

from steward.conditions import MAX_ATTEMPTS
from steward.errors import Conflict
from steward.segments.repository import SegmentRepository
from steward.users.models import User
from steward.users.repository import UserRepository


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
        for _ in range(MAX_ATTEMPTS):
            stored = self.users.get_with_version(app_id, user_id)
            if stored is None:
                return None
            user, version = stored
            if user.active == active:
                return user
            if self.segments.move_user_activity(app_id, user, version, active, reason, now):
                return self.users.get(app_id, user_id)
        raise Conflict("The user changed concurrently too many times; retry the request.", code="concurrent_update")
