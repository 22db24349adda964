"""Re-authentication of real maintenance runs, against moto's DynamoDB, with a clock the tests move."""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest

from steward.apps import credentials
from steward.apps.models import BootstrappedApp
from steward.apps.reauth import ATTEMPT_LIMIT, FAILED_MESSAGE, Reauthentication
from steward.apps.repository import ReauthRepository
from steward.composition import Services
from steward.errors import (
    NotFound,
    ReauthenticationFailed,
    ReauthenticationRequired,
    StewardError,
    TooManyRequests,
)
from steward.http.errors import status_of
from steward.settings import StoreSettings
from steward.tables import AppRecord
from tests.support.service import refusal

PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "wrong horse battery staple"
ACTION = "delete 3 segments"
# On a 30-second TOTP step boundary, so that moving by whole steps is exact.
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def services(store: StoreSettings, clock: Clock) -> Services:
    return Services(1, clock=clock)


@pytest.fixture
def reauth(services: Services) -> Reauthentication:
    return services.reauthentication


@pytest.fixture
def plain_app(services: Services) -> BootstrappedApp:
    return services.apps.bootstrap("plain", "Plain", admin_password=PASSWORD)


@pytest.fixture
def totp_app(services: Services) -> BootstrappedApp:
    return services.apps.bootstrap("secure", "Secure", admin_password=PASSWORD, with_totp=True)


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every scrypt check the use case makes (the real check still runs)."""
    checked: list[str] = []
    original = credentials.password_matches

    def spy(password: str, stored: str) -> bool:
        checked.append(password)
        return original(password, stored)

    monkeypatch.setattr(credentials, "password_matches", spy)
    return checked


def code_at(app: BootstrappedApp, moment: datetime, steps: int = 0) -> str:
    assert app.totp_secret is not None
    return pyotp.TOTP(app.totp_secret).at(moment, counter_offset=steps)


def wrong_code(app: BootstrappedApp, moment: datetime) -> str:
    """A six-digit code that is valid at no step near ``moment``."""
    near = {code_at(app, moment, steps) for steps in range(-3, 4)}
    return next(code for code in (str(digit) * 6 for digit in range(10)) if code not in near)


def stored_attempts(app_id: str) -> int:
    return int(AppRecord.get(f"APP#{app_id}", "PROFILE", consistent_read=True).reauth_attempts or 0)


def fail_with_wrong_password(reauth: Reauthentication, app_id: str, times: int) -> None:
    for _ in range(times):
        refusal(ReauthenticationFailed, reauth.check, app_id, WRONG_PASSWORD, None, ACTION)


# Missing credentials: 428, saying what the run would do.


@pytest.mark.parametrize("password", [None, ""])
def test_without_a_password_the_run_needs_reauthentication(
    plain_app: BootstrappedApp, reauth: Reauthentication, password: str | None
) -> None:
    error = refusal(ReauthenticationRequired, reauth.check, "plain", password, None, ACTION)

    assert status_of(error) == 428
    assert (error.code, error.field) == ("reauthentication_required", "admin_password")
    assert ACTION in error.message
    assert "admin_password" in error.message


def test_a_totp_app_asks_for_both_factors(totp_app: BootstrappedApp, reauth: Reauthentication) -> None:
    error = refusal(ReauthenticationRequired, reauth.check, "secure", None, None, ACTION)

    assert (error.code, error.field) == ("reauthentication_required", "admin_password")
    assert ACTION in error.message
    assert "totp_code" in error.message


@pytest.mark.parametrize("password", [PASSWORD, WRONG_PASSWORD])
@pytest.mark.parametrize("code", [None, ""])
def test_a_totp_app_without_a_code_gets_428_before_the_password_is_checked(
    totp_app: BootstrappedApp,
    reauth: Reauthentication,
    password_checks: list[str],
    password: str,
    code: str | None,
) -> None:
    error = refusal(ReauthenticationRequired, reauth.check, "secure", password, code, ACTION)

    assert status_of(error) == 428
    assert (error.code, error.field) == ("reauthentication_required", "totp_code")
    assert ACTION in error.message
    assert password_checks == []


def test_a_428_does_not_count_toward_the_lock_out(
    totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock
) -> None:
    for _ in range(ATTEMPT_LIMIT + 3):
        refusal(ReauthenticationRequired, reauth.check, "secure", WRONG_PASSWORD, None, ACTION)
        refusal(ReauthenticationRequired, reauth.check, "secure", None, None, ACTION)

    assert stored_attempts("secure") == 0
    assert reauth.check("secure", PASSWORD, code_at(totp_app, clock.now), ACTION) == "password+totp"


def test_an_unknown_app_is_not_found(store: StoreSettings, reauth: Reauthentication) -> None:
    error = refusal(NotFound, reauth.check, "ghost", PASSWORD, None, ACTION)

    assert error.code == "app_not_found"


# Right credentials pass and say how.


def test_the_right_password_confirms_an_app_without_totp(plain_app: BootstrappedApp, reauth: Reauthentication) -> None:
    assert reauth.check("plain", PASSWORD, None, ACTION) == "password"


def test_a_code_sent_to_an_app_without_totp_is_ignored(plain_app: BootstrappedApp, reauth: Reauthentication) -> None:
    assert reauth.check("plain", PASSWORD, "123456", ACTION) == "password"


def test_the_right_password_and_code_confirm_a_totp_app(
    totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock
) -> None:
    assert reauth.check("secure", PASSWORD, code_at(totp_app, clock.now), ACTION) == "password+totp"


def test_successes_do_not_count_toward_the_lock_out(plain_app: BootstrappedApp, reauth: Reauthentication) -> None:
    for _ in range(ATTEMPT_LIMIT * 2):
        assert reauth.check("plain", PASSWORD, None, ACTION) == "password"

    assert stored_attempts("plain") == 0


def test_a_password_of_one_app_does_not_confirm_another(
    plain_app: BootstrappedApp, services: Services, reauth: Reauthentication
) -> None:
    services.apps.bootstrap("globex", "Globex", admin_password="globex long password")

    refusal(ReauthenticationFailed, reauth.check, "globex", PASSWORD, None, ACTION)


# Wrong credentials: 401, one message whichever factor was wrong.


def test_wrong_credentials_get_one_generic_401(
    totp_app: BootstrappedApp, plain_app: BootstrappedApp, reauth: Reauthentication, clock: Clock
) -> None:
    right_code = code_at(totp_app, clock.now)
    bad_code = wrong_code(totp_app, clock.now)

    errors = [
        refusal(ReauthenticationFailed, reauth.check, "plain", WRONG_PASSWORD, None, ACTION),
        refusal(ReauthenticationFailed, reauth.check, "secure", WRONG_PASSWORD, right_code, ACTION),
        refusal(ReauthenticationFailed, reauth.check, "secure", PASSWORD, bad_code, ACTION),
        refusal(ReauthenticationFailed, reauth.check, "secure", WRONG_PASSWORD, bad_code, ACTION),
    ]

    assert {(status_of(error), error.code, error.message, error.field) for error in errors} == {
        (401, "reauthentication_failed", FAILED_MESSAGE, None)
    }


def test_a_wrong_code_still_costs_a_password_check(
    totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock, password_checks: list[str]
) -> None:
    """Both factors are always checked, so the time taken does not tell which one was wrong."""
    refusal(ReauthenticationFailed, reauth.check, "secure", PASSWORD, wrong_code(totp_app, clock.now), ACTION)

    assert len(password_checks) == 1


def test_the_credentials_appear_in_no_error_and_nowhere_in_the_app(
    totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock
) -> None:
    code = code_at(totp_app, clock.now)
    errors: list[StewardError] = [
        refusal(ReauthenticationRequired, reauth.check, "secure", WRONG_PASSWORD, None, ACTION),
        refusal(ReauthenticationFailed, reauth.check, "secure", WRONG_PASSWORD, code, ACTION),
    ]
    reauth.check("secure", PASSWORD, code, ACTION)
    replay = refusal(ReauthenticationFailed, reauth.check, "secure", PASSWORD, code, ACTION)

    stored = json.dumps(AppRecord.get("APP#secure", "PROFILE", consistent_read=True).serialize())
    for text in [*(f"{error.message} {error.field}" for error in [*errors, replay]), stored]:
        assert WRONG_PASSWORD not in text
        assert PASSWORD not in text
        assert code not in text


# TOTP: one step of drift either way, and each step once.


@pytest.mark.parametrize("steps", [-1, 0, 1])
def test_a_code_within_one_step_of_drift_passes(
    totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock, steps: int
) -> None:
    assert reauth.check("secure", PASSWORD, code_at(totp_app, clock.now, steps), ACTION) == "password+totp"


@pytest.mark.parametrize("steps", [-2, 2])
def test_a_code_two_steps_away_fails(
    totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock, steps: int
) -> None:
    code = code_at(totp_app, clock.now, steps)
    if code in {code_at(totp_app, clock.now, near) for near in (-1, 0, 1)}:
        pytest.skip("this secret's codes collide near now")

    refusal(ReauthenticationFailed, reauth.check, "secure", PASSWORD, code, ACTION)


def test_the_same_code_cannot_be_used_twice(totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock) -> None:
    code = code_at(totp_app, clock.now)
    reauth.check("secure", PASSWORD, code, ACTION)

    replay = refusal(ReauthenticationFailed, reauth.check, "secure", PASSWORD, code, ACTION)
    clock.advance(seconds=10)  # same step, a little later
    later = refusal(ReauthenticationFailed, reauth.check, "secure", PASSWORD, code, ACTION)

    for error in (replay, later):
        assert (status_of(error), error.code, error.message, error.field) == (
            401,
            "reauthentication_failed",
            FAILED_MESSAGE,
            None,
        )


def test_a_code_of_an_earlier_step_than_the_last_accepted_is_a_replay(
    totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock
) -> None:
    reauth.check("secure", PASSWORD, code_at(totp_app, clock.now, 1), ACTION)  # a phone running ahead

    refusal(ReauthenticationFailed, reauth.check, "secure", PASSWORD, code_at(totp_app, clock.now), ACTION)


def test_the_next_steps_code_passes_after_a_success(
    totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock
) -> None:
    reauth.check("secure", PASSWORD, code_at(totp_app, clock.now), ACTION)
    clock.advance(seconds=30)

    assert reauth.check("secure", PASSWORD, code_at(totp_app, clock.now), ACTION) == "password+totp"


def test_a_replay_counts_toward_the_lock_out(totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock) -> None:
    code = code_at(totp_app, clock.now)
    reauth.check("secure", PASSWORD, code, ACTION)

    for _ in range(ATTEMPT_LIMIT):
        refusal(ReauthenticationFailed, reauth.check, "secure", PASSWORD, code, ACTION)
    clock.advance(seconds=30)

    refusal(TooManyRequests, reauth.check, "secure", PASSWORD, code_at(totp_app, clock.now), ACTION)


@pytest.mark.usefixtures("atomic_moto")
def test_two_concurrent_checks_with_the_same_code_pass_at_most_once(
    totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock
) -> None:
    for attempt in range(8):
        clock.advance(minutes=16)  # a fresh window and a fresh step each round
        code = code_at(totp_app, clock.now)

        def check(_: int, code: str = code) -> str:
            try:
                return reauth.check("secure", PASSWORD, code, ACTION)
            except ReauthenticationFailed as exc:
                return exc.code

        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = sorted(pool.map(check, range(2)))

        assert outcomes == ["password+totp", "reauthentication_failed"], attempt


# Lock-out: five 401s in 15 minutes, then 429 until the window passes.


def test_five_failures_lock_out_even_the_right_credentials(
    plain_app: BootstrappedApp, reauth: Reauthentication, clock: Clock, password_checks: list[str]
) -> None:
    fail_with_wrong_password(reauth, "plain", ATTEMPT_LIMIT)
    clock.advance(minutes=10)
    checks_before = len(password_checks)

    locked = refusal(TooManyRequests, reauth.check, "plain", PASSWORD, None, ACTION)

    assert status_of(locked) == 429
    assert (locked.code, locked.field) == ("too_many_attempts", None)
    assert locked.retry_after == 5 * 60
    assert len(password_checks) == checks_before  # refused before the slow scrypt check


def test_four_failures_do_not_lock_out(plain_app: BootstrappedApp, reauth: Reauthentication) -> None:
    fail_with_wrong_password(reauth, "plain", ATTEMPT_LIMIT - 1)

    assert reauth.check("plain", PASSWORD, None, ACTION) == "password"


def test_a_totp_app_locks_out_too(totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock) -> None:
    for _ in range(ATTEMPT_LIMIT):
        refusal(ReauthenticationFailed, reauth.check, "secure", PASSWORD, wrong_code(totp_app, clock.now), ACTION)

    locked = refusal(TooManyRequests, reauth.check, "secure", PASSWORD, code_at(totp_app, clock.now), ACTION)

    assert locked.retry_after == 15 * 60


def test_the_lock_out_counts_from_the_first_failure_and_ends_with_the_window(
    plain_app: BootstrappedApp, reauth: Reauthentication, clock: Clock
) -> None:
    fail_with_wrong_password(reauth, "plain", 1)
    clock.advance(minutes=14)
    fail_with_wrong_password(reauth, "plain", ATTEMPT_LIMIT - 1)

    assert refusal(TooManyRequests, reauth.check, "plain", PASSWORD, None, ACTION).retry_after == 60
    clock.advance(seconds=59.5)
    assert refusal(TooManyRequests, reauth.check, "plain", WRONG_PASSWORD, None, ACTION).retry_after == 1
    clock.advance(seconds=0.5)

    assert reauth.check("plain", PASSWORD, None, ACTION) == "password"


def test_attempts_while_locked_do_not_extend_the_lock_out(
    plain_app: BootstrappedApp, reauth: Reauthentication, clock: Clock
) -> None:
    fail_with_wrong_password(reauth, "plain", ATTEMPT_LIMIT)
    for _ in range(10):
        clock.advance(minutes=1)
        refusal(TooManyRequests, reauth.check, "plain", WRONG_PASSWORD, None, ACTION)
    clock.advance(minutes=5)

    assert reauth.check("plain", PASSWORD, None, ACTION) == "password"


def test_failures_in_an_old_window_are_forgotten(
    plain_app: BootstrappedApp, reauth: Reauthentication, clock: Clock
) -> None:
    fail_with_wrong_password(reauth, "plain", ATTEMPT_LIMIT - 1)
    clock.advance(minutes=15)
    fail_with_wrong_password(reauth, "plain", ATTEMPT_LIMIT - 1)

    assert reauth.check("plain", PASSWORD, None, ACTION) == "password"
    assert stored_attempts("plain") == ATTEMPT_LIMIT - 1


def test_the_lock_out_is_per_app(plain_app: BootstrappedApp, services: Services, reauth: Reauthentication) -> None:
    services.apps.bootstrap("other", "Other", admin_password=PASSWORD)
    fail_with_wrong_password(reauth, "plain", ATTEMPT_LIMIT)

    assert reauth.check("other", PASSWORD, None, ACTION) == "password"


@pytest.mark.usefixtures("atomic_moto")
def test_concurrent_guesses_never_exceed_the_limit(plain_app: BootstrappedApp, reauth: Reauthentication) -> None:
    """Each attempt is counted before its password is checked, so parallel requests share the five guesses."""

    def guess(_: int) -> str:
        try:
            reauth.check("plain", WRONG_PASSWORD, None, ACTION)
        except (ReauthenticationFailed, TooManyRequests) as exc:
            return exc.code
        return "passed"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(guess, range(12)))

    assert outcomes.count("reauthentication_failed") == ATTEMPT_LIMIT
    assert outcomes.count("too_many_attempts") == 12 - ATTEMPT_LIMIT


def test_a_replay_writes_as_much_as_a_wrong_password(
    totp_app: BootstrappedApp, reauth: Reauthentication, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The number of writes must not tell a right password from a wrong one.
    code = code_at(totp_app, clock.now)
    reauth.check("secure", PASSWORD, code, ACTION)
    writes: list[str] = []
    for name in ("count_in_window", "open_window", "release", "accept_totp_step"):
        original = getattr(ReauthRepository, name)

        def spy(self: ReauthRepository, *args: Any, name: str = name, original: Any = original) -> Any:
            writes.append(name)
            return original(self, *args)

        monkeypatch.setattr(ReauthRepository, name, spy)

    refusal(ReauthenticationFailed, reauth.check, "secure", PASSWORD, code, ACTION)
    with_right_password = list(writes)
    writes.clear()
    refusal(ReauthenticationFailed, reauth.check, "secure", "not the password at all", code, ACTION)

    assert with_right_password == writes == ["count_in_window"]
