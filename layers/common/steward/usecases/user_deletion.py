"""Deleting a user: its devices are deleted, its promo codes released and it leaves its static segments first."""

import contextlib
from collections.abc import Callable
from datetime import datetime

from steward.clock import utc_now
from steward.conditions import MAX_ATTEMPTS
from steward.devices.repository import DeviceRepository
from steward.errors import Conflict, NotFound
from steward.loyalty.repository import LoyaltyRepository
from steward.segments.repository import SegmentRepository
from steward.users.models import User
from steward.users.repository import UserRepository, user_not_found


class UserDeletion:
    def __init__(
        self,
        users: UserRepository,
        loyalty: LoyaltyRepository,
        segments: SegmentRepository,
        devices: DeviceRepository,
    ) -> None:
        self.users = users
        self.loyalty = loyalty
        self.segments = segments
        self.devices = devices

    def delete(self, app_id: str, user_id: str) -> None:
        """Delete a user, after releasing its promo codes (others can take them) and leaving its segments.

        The delete is conditioned on the version read after the releases, so a
        code attached or a segment joined meanwhile is released on the next round.
        """
        self.delete_if(app_id, user_id, lambda user: True)

    def delete_if(self, app_id: str, user_id: str, qualifies: Callable[[User], bool]) -> bool:
        """``delete``, only while the user ``qualifies`` (checked on every read); False, untouched, when not.

        A bulk deletion's rule (no interaction since a cutoff) holds up to the
        delete itself: activity recorded meanwhile changes the version, and the
        next round reads it.
        """
        for _ in range(MAX_ATTEMPTS):
            user = self.users.get(app_id, user_id)
            if user is None:
                raise user_not_found(user_id)
            if not qualifies(user):
                return False
            now = utc_now()
            self._delete_devices(app_id, user_id, now)
            for promo in user.promo_codes:
                with contextlib.suppress(NotFound):  # released by a concurrent detach
                    self.loyalty.detach(app_id, user_id, promo.code, now)
            try:
                draining = self.segments.leave_all(app_id, user, now)
            except Conflict:
                continue  # the user changed while leaving: read it again
            stored = self.users.get_with_version(app_id, user_id)
            if stored is None:
                raise user_not_found(user_id)
            after, version = stored
            if after.promo_codes or set(after.segments) - draining or not qualifies(after):
                continue
            if self.users.delete(app_id, user_id, version):
                return True
        raise Conflict("The user changed concurrently too many times; retry the request.", code="concurrent_update")

    def _delete_devices(self, app_id: str, user_id: str, now: datetime) -> None:
        """The user's devices go first (with their tags), so a failure leaves a user that a retry deletes."""
        for device in self.devices.devices_of_users(app_id, [user_id], consistent=True).get(user_id, []):
            # Gone meanwhile, or identified by another user since: not this user's to delete.
            with contextlib.suppress(NotFound, Conflict):
                self.devices.delete(app_id, device.device_id, user_id, now)
