"""Re-authentication of real (non-dry) maintenance runs: the app's admin password, plus a TOTP code when the
app has TOTP.

The rules, in the order a check applies them:

1. Missing credentials answer 428 and say what the run would do. On an app
   with TOTP, a request without a code gets 428 before the password is
   looked at, so a 428 never tells whether the password was right. A 428 is
   not an attempt: it does not count.
2. Five attempts in a 15-minute window lock the app's re-authentication
   until the window passes (429 with the seconds left), whatever the
   credentials. The attempt is counted *before* the slow scrypt check, with
   a conditional ADD, so concurrent requests cannot get more than five
   guesses into a window; a successful attempt is uncounted afterwards.
3. Wrong credentials, or a TOTP code whose time step was already accepted,
   answer 401 with one generic message that names no factor. Both factors
   are always checked, so neither the answer nor its timing tells which
   one was wrong.

The window is fixed (it starts at the first attempt after the previous one
passed), so at most five guesses fit in any window. The credentials are
never stored, logged or put in a message.
"""

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

from steward.apps import credentials
from steward.apps.models import ReauthState
from steward.apps.repository import ReauthRepository
from steward.conditions import MAX_ATTEMPTS
from steward.errors import Conflict, ReauthenticationFailed, ReauthenticationRequired, TooManyRequests

ATTEMPT_LIMIT = 5
WINDOW = timedelta(minutes=15)
FAILED_MESSAGE = "Re-authentication failed: the admin credentials were not accepted."

# What the audit log records about how a run was confirmed.
ReauthMethod = Literal["password", "password+totp"]


class Reauthentication:
    def __init__(self, repository: ReauthRepository, clock: Callable[[], datetime]) -> None:
        self.repository = repository
        self.clock = clock

    def check(self, app_id: str, password: str | None, totp_code: str | None, action_description: str) -> ReauthMethod:
        """Confirm a real run of ``action_description`` (e.g. "delete 3 segments") with the app's admin credentials.

        Returns how it was confirmed. Raises ReauthenticationRequired (428)
        when a credential is missing, TooManyRequests (429) while the app is
        locked out, ReauthenticationFailed (401) for wrong or replayed
        credentials, NotFound when the app does not exist.
        """
        state = self.repository.load(app_id)
        has_totp = state.totp_secret is not None
        if not password:
            raise ReauthenticationRequired(_required_message(action_description, has_totp), field="admin_password")
        if has_totp and not totp_code:
            raise ReauthenticationRequired(_required_message(action_description, has_totp), field="totp_code")
        now = self.clock()
        window_start = self._count_attempt(app_id, state, now.timestamp())
        # Both factors are evaluated whatever the first gives, so timing does not tell which was wrong.
        password_ok = credentials.password_matches(password, state.password_hash)
        step = credentials.totp_step(state.totp_secret, totp_code or "", now) if state.totp_secret else None
        # A replay seen in the read fails here, before any write, like any wrong factor: the number of
        # writes must not tell a right password from a wrong one.
        replayed = step is not None and state.last_totp_step is not None and step <= state.last_totp_step
        if not password_ok or (has_totp and step is None) or replayed:
            raise ReauthenticationFailed(FAILED_MESSAGE)
        if step is None:
            self.repository.release(app_id, window_start)
            return "password"
        if not self.repository.accept_totp_step(app_id, step, window_start):
            raise ReauthenticationFailed(FAILED_MESSAGE)  # replayed: the attempt stays counted
        return "password+totp"

    def _count_attempt(self, app_id: str, state: ReauthState, now: float) -> int:
        """Count this attempt in the current window, opening one if needed; returns the window's start.

        Raises TooManyRequests when the window is full. A refused write means
        another check changed the window first: read again and retry.
        """
        for _ in range(MAX_ATTEMPTS):
            start = state.window_start
            if start is not None and now < start + WINDOW.total_seconds():
                if state.attempts >= ATTEMPT_LIMIT:
                    retry_after = max(1, math.ceil(start + WINDOW.total_seconds() - now))
                    raise TooManyRequests(
                        f"Too many failed re-authentications for this app; retry in {retry_after} seconds.",
                        retry_after=retry_after,
                    )
                if self.repository.count_in_window(app_id, start, ATTEMPT_LIMIT):
                    return start
            else:
                opened = math.floor(now)
                if self.repository.open_window(app_id, start, opened):
                    return opened
            state = self.repository.load(app_id)
        raise Conflict("Re-authentication was attempted concurrently too many times; retry.", code="concurrent_update")


def _required_message(action_description: str, has_totp: bool) -> str:
    needed = "the app's admin password in `admin_password`"
    if has_totp:
        needed += " and a current TOTP code in `totp_code`"
    return f"A real run would {action_description}. Confirm it by sending {needed}."
