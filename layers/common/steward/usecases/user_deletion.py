"""Deleting a user: its devices are deleted, its promo codes released and it leaves its static segments first."""

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from steward.clock import utc_now
from steward.conditions import MAX_ATTEMPTS
from steward.devices.models import Device
from steward.devices.repository import DeviceOwnedByOther, DeviceRepository
from steward.errors import Conflict, NotFound, ServiceUnavailable
from steward.loyalty.repository import LoyaltyRepository
from steward.segments.repository import SegmentBusy, SegmentRepository, WaitBudget
from steward.users.models import User
from steward.users.repository import UserRepository, user_not_found

# When DynamoDB throttled a request's segment writes: the seconds its client waits before trying again.
THROTTLED_RETRY_AFTER_SECONDS = 1


class DeletionUnfinished(Conflict):
    """A decided deletion (the user carries its mark) that could not finish yet: its next attempt finishes it."""

    def __init__(self, user_id: str) -> None:
        super().__init__(
            f"The deletion of user {user_id!r} has started and could not finish yet; retry the request.",
            code="concurrent_update",
        )


@dataclass(frozen=True)
class _Conditional:
    """A bulk deletion's terms: why it keeps a user as read, and who it is (a job's id, written in its mark)."""

    declines: Callable[[User], str | None]
    by: str


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
        Decided from the start: a mark a bulk deletion left on the user changes nothing.
        """
        self._delete(app_id, user_id, WaitBudget(), None)

    def delete_on_request(self, app_id: str, user_id: str) -> None:
        """``delete`` for DELETE /v1/users/{id}, which answers soon rather than waiting as a job or a sweep does.

        A segment whose counts stay busy (other changes to the segment: parallel deletions of its members, a bulk
        change) is waited out a few short pauses in all (``WaitBudget.for_request``), then ``SegmentBusy`` (409
        ``concurrent_update``); throttled all along, it is ``ServiceUnavailable`` (503, ``Retry-After``). Either
        way what was done stays done (devices deleted, codes released, segments left), and a retry goes on.
        """
        try:
            self._delete(app_id, user_id, WaitBudget.for_request(), None)
        except SegmentBusy as busy:
            if not busy.throttled:
                raise
            raise ServiceUnavailable(
                "DynamoDB throttled the user's segment writes; what was done stays done. Retry the request.",
                retry_after=THROTTLED_RETRY_AFTER_SECONDS,
            ) from busy

    def delete_if(self, app_id: str, user_id: str, declines: Callable[[User], str | None], *, by: str) -> str | None:
        """``delete``, unless ``declines`` gives a reason to keep the user (returned; then nothing of it changed).

        A bulk deletion's rules (still selected, no interaction since a
        cutoff) are checked on the read that the first change is conditioned
        on: a user holding devices, codes or segments is first marked
        (``deletion_started_at``, and ``by``: the deleter, a job's id) at that
        version, and a user that changed since the read is read again. So a
        user that is kept keeps everything. From that mark on the deletion is
        decided for ``by``: its later attempts (a round here, a retried page)
        finish it, whatever the user did meanwhile; if it cannot yet,
        ``DeletionUnfinished`` says so. Another deleter's mark (a job
        cancelled or failed midway) decides nothing: the rules are checked as
        for any user, and a user they keep has that mark removed.
        """
        return self._delete(app_id, user_id, WaitBudget(), _Conditional(declines, by))

    def _delete(self, app_id: str, user_id: str, budget: WaitBudget, conditional: _Conditional | None) -> str | None:
        decided = conditional is None
        for _ in range(MAX_ATTEMPTS):
            stored = self.users.get_with_version(app_id, user_id)
            if stored is None:
                raise user_not_found(user_id)
            user, version = stored
            if conditional is not None and not decided:
                decided = user.deletion_started_by == conditional.by  # its own mark: a retried page finishes it
                reason = None if decided else conditional.declines(user)
                if reason is not None:
                    if user.deletion_started_at is not None:
                        # Another deleter's mark (its job ended midway): removed, unless the user changed meanwhile.
                        self.users.release_hold(app_id, user, version)
                    return reason
            # With their versions: a tagged device's delete is conditioned on the version read here.
            devices = self.devices.versioned_devices_of_users(app_id, [user_id], consistent=True).get(user_id, [])
            if devices or user.promo_codes or user.segments:
                if (
                    conditional is not None
                    and not decided
                    and not self.users.hold(app_id, user, version, utc_now(), conditional.by)
                ):
                    continue  # changed since the read that qualified: read it again
                decided = True
                released = self._release(app_id, user, devices, budget)
                if released is None:
                    continue
                user, version = released
            if self.users.delete(app_id, user_id, version):
                return None
        if decided and conditional is not None:
            raise DeletionUnfinished(user_id)
        raise Conflict("The user changed concurrently too many times; retry the request.", code="concurrent_update")

    def _release(
        self, app_id: str, user: User, devices: Sequence[tuple[Device, int]], budget: WaitBudget
    ) -> tuple[User, int] | None:
        """Delete the user's devices, release its codes, leave its segments; the user as it is then, or None: again.

        A segment still held once ``budget`` is spent ends the call (``SegmentBusy``): no round can wait more.
        """
        now = utc_now()
        devices_gone = self._delete_devices(app_id, user.user_id, devices, now)
        for promo in user.promo_codes:
            with contextlib.suppress(NotFound):  # released by a concurrent detach
                self.loyalty.detach(app_id, user.user_id, promo.code, now)
        try:
            draining = self.segments.leave_all(app_id, user, now, budget)
        except SegmentBusy:
            if budget.spent:
                raise
            return None  # held all along this round: the next one waits again
        except Conflict:
            return None  # the user changed while leaving: read it again
        stored = self.users.get_with_version(app_id, user.user_id)
        if stored is None:
            raise user_not_found(user.user_id)
        after = stored[0]
        return None if not devices_gone or after.promo_codes or set(after.segments) - draining else stored

    def _delete_devices(self, app_id: str, user_id: str, devices: Sequence[tuple[Device, int]], now: datetime) -> bool:
        """The user's devices go first (with their tags), so a failure leaves a user that a retry deletes.

        False when one kept changing (a device written often): the next round reads it again, and the user is
        not deleted before it.
        """
        gone = True
        for device, version in devices:
            try:
                self.devices.delete(app_id, device.device_id, user_id, now, as_read=(device, version))
            except (NotFound, DeviceOwnedByOther):
                pass  # gone meanwhile, or identified by another user since: not this user's to delete
            except Conflict:
                gone = False
        return gone
