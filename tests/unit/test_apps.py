"""AppService: bootstrap and API keys against moto's DynamoDB (re-authentication: test_reauth.py)."""

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from steward.apps.models import BootstrappedApp, Principal, Scope
from steward.apps.service import AppService
from steward.composition import Services
from steward.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from steward.pagination import encode_cursor
from steward.settings import StoreSettings
from steward.tables import ApiKeyRecord, AppRecord

PASSWORD = "correct horse battery staple"
ALL_SCOPES = [Scope.READ, Scope.WRITE, Scope.ADMIN]


@pytest.fixture
def service(store: StoreSettings) -> AppService:
    return Services(1).apps


@pytest.fixture
def acme(service: AppService) -> BootstrappedApp:
    return service.bootstrap("acme", "Acme", admin_password=PASSWORD)


def confirms(app_id: str, password: str) -> bool:
    """Whether ``password`` re-authenticates as the app's admin (the stored hash matches)."""
    return Services(1).reauthentication.check(app_id, password, None, "test") == "password"


def token_parts(token: str) -> tuple[str, str, str]:
    app_id, key_id, secret = token.removeprefix("stw_").split(".")
    return app_id, key_id, secret


# Bootstrap.


def test_bootstrap_returns_a_full_key_and_an_admin_password(service: AppService) -> None:
    booted = service.bootstrap("acme", "Acme")

    assert booted.app.app_id == "acme"
    assert booted.app.name == "Acme"
    assert booted.app.has_totp is False
    assert booted.totp_secret is None
    assert booted.api_key.scopes == ALL_SCOPES
    assert booted.api_key.active
    assert booted.api_key.api_key.startswith(f"stw_acme.{booted.api_key.key_id}.")
    assert len(booted.admin_password) >= 12
    assert confirms("acme", booted.admin_password)
    assert service.get_app("acme") == booted.app


def test_bootstrap_keeps_a_given_password(acme: BootstrappedApp, service: AppService) -> None:
    assert acme.admin_password == PASSWORD
    assert confirms("acme", PASSWORD)


def test_bootstrap_of_an_existing_app_is_a_conflict(acme: BootstrappedApp, service: AppService) -> None:
    with pytest.raises(Conflict) as caught:
        service.bootstrap("acme", "Impostor", admin_password="another long password")

    assert caught.value.code == "app_exists"
    assert service.get_app("acme").name == "Acme"
    assert confirms("acme", PASSWORD)


@pytest.mark.parametrize("app_id", ["A", "ab", "bad_id", "Acme", "-acme", "", "a" * 41, "acme!", "acme app"])
def test_invalid_app_id_is_rejected(service: AppService, app_id: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        service.bootstrap(app_id, "Bad", admin_password=PASSWORD)

    assert caught.value.code == "invalid_app_id"


@pytest.mark.parametrize("app_id", ["abc", "0-a", "a" * 40, "my-app-2"])
def test_valid_app_id_is_accepted(service: AppService, app_id: str) -> None:
    assert service.bootstrap(app_id, "Good", admin_password=PASSWORD).app.app_id == app_id


def test_short_password_is_weak(service: AppService) -> None:
    with pytest.raises(InvalidInput) as caught:
        service.bootstrap("acme", "Acme", admin_password="x" * 11)

    assert caught.value.code == "weak_password"
    with pytest.raises(NotFound):
        service.get_app("acme")


def test_password_of_minimum_length_is_accepted(service: AppService) -> None:
    service.bootstrap("acme", "Acme", admin_password="x" * 12)

    assert confirms("acme", "x" * 12)


# Authentication.


def test_authenticate_resolves_a_valid_token(acme: BootstrappedApp, service: AppService) -> None:
    principal = service.authenticate(acme.api_key.api_key)

    assert principal == Principal(app_id="acme", key_id=acme.api_key.key_id, scopes=frozenset(ALL_SCOPES))


def test_authenticate_reports_the_keys_own_scopes(acme: BootstrappedApp, service: AppService) -> None:
    key = service.create_key("acme", "reader", [Scope.READ])

    assert service.authenticate(key.api_key).scopes == frozenset({Scope.READ})


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: "",
        lambda token: "garbage",
        lambda token: token.removeprefix("stw_"),
        lambda token: token + "x",
        lambda token: token[:-1],
        lambda token: token.replace(".", ":"),
        lambda token: token + ".extra",
    ],
    ids=["empty", "garbage", "no-prefix", "long-secret", "short-secret", "bad-separators", "four-parts"],
)
def test_malformed_token_is_refused(acme: BootstrappedApp, service: AppService, mangle: Callable[[str], str]) -> None:
    with pytest.raises(Unauthenticated) as caught:
        service.authenticate(mangle(acme.api_key.api_key))

    assert caught.value.code == "invalid_api_key"


def test_wrong_secret_is_refused(acme: BootstrappedApp, service: AppService) -> None:
    app_id, key_id, secret = token_parts(acme.api_key.api_key)
    other_secret = ("A" if secret[0] != "A" else "B") + secret[1:]

    with pytest.raises(Unauthenticated) as caught:
        service.authenticate(f"stw_{app_id}.{key_id}.{other_secret}")

    assert caught.value.code == "invalid_api_key"


def test_unknown_key_id_is_refused(acme: BootstrappedApp, service: AppService) -> None:
    app_id, key_id, secret = token_parts(acme.api_key.api_key)
    unknown = "0123456789abcdef" if key_id != "0123456789abcdef" else "fedcba9876543210"

    with pytest.raises(Unauthenticated) as caught:
        service.authenticate(f"stw_{app_id}.{unknown}.{secret}")

    assert caught.value.code == "invalid_api_key"


def test_revoked_key_is_refused(acme: BootstrappedApp, service: AppService) -> None:
    spare = service.create_key("acme", "spare-admin", ALL_SCOPES)
    service.revoke_key("acme", acme.api_key.key_id)

    with pytest.raises(Unauthenticated) as caught:
        service.authenticate(acme.api_key.api_key)

    assert caught.value.code == "revoked_api_key"
    assert service.authenticate(spare.api_key).key_id == spare.key_id


def test_token_of_one_app_does_not_open_another(acme: BootstrappedApp, service: AppService) -> None:
    other = service.bootstrap("globex", "Globex", admin_password=PASSWORD)
    _, acme_key, acme_secret = token_parts(acme.api_key.api_key)
    _, other_key, _ = token_parts(other.api_key.api_key)

    for forged in (f"stw_globex.{acme_key}.{acme_secret}", f"stw_globex.{other_key}.{acme_secret}"):
        with pytest.raises(Unauthenticated) as caught:
            service.authenticate(forged)
        assert caught.value.code == "invalid_api_key"


# Key management.


def test_create_key_deduplicates_and_orders_scopes(acme: BootstrappedApp, service: AppService) -> None:
    key = service.create_key("acme", "ci", [Scope.ADMIN, Scope.READ, Scope.READ])

    assert key.scopes == [Scope.READ, Scope.ADMIN]
    assert service.get_key("acme", key.key_id).scopes == [Scope.READ, Scope.ADMIN]


def test_list_keys_paginates_without_secrets(acme: BootstrappedApp, service: AppService) -> None:
    created = {acme.api_key.key_id} | {service.create_key("acme", f"k{n}", [Scope.READ]).key_id for n in range(3)}
    service.bootstrap("globex", "Globex", admin_password=PASSWORD)

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        page = service.list_keys("acme", cursor, 1)
        assert len(page.items) <= 1
        assert all("api_key" not in key.model_dump() for key in page.items)
        seen.extend(key.key_id for key in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break

    assert cursor is None
    assert len(seen) == len(set(seen))
    assert set(seen) == created


def test_revoke_key_marks_it_revoked(acme: BootstrappedApp, service: AppService) -> None:
    reader = service.create_key("acme", "reader", [Scope.READ])

    revoked = service.revoke_key("acme", reader.key_id)

    assert revoked.key_id == reader.key_id
    assert revoked.revoked_at is not None
    assert not revoked.active
    assert not service.get_key("acme", reader.key_id).active


def test_revoking_the_last_admin_key_is_refused(acme: BootstrappedApp, service: AppService) -> None:
    service.create_key("acme", "reader", [Scope.READ, Scope.WRITE])

    with pytest.raises(Conflict) as caught:
        service.revoke_key("acme", acme.api_key.key_id)

    assert caught.value.code == "last_admin_key"
    assert service.authenticate(acme.api_key.api_key).app_id == "acme"


def test_revoked_admin_keys_do_not_count_as_other_admins(acme: BootstrappedApp, service: AppService) -> None:
    spare = service.create_key("acme", "spare-admin", [Scope.ADMIN])
    service.revoke_key("acme", spare.key_id)

    with pytest.raises(Conflict) as caught:
        service.revoke_key("acme", acme.api_key.key_id)

    assert caught.value.code == "last_admin_key"


def test_revoking_twice_is_a_conflict(acme: BootstrappedApp, service: AppService) -> None:
    reader = service.create_key("acme", "reader", [Scope.READ])
    service.revoke_key("acme", reader.key_id)

    with pytest.raises(Conflict) as caught:
        service.revoke_key("acme", reader.key_id)

    assert caught.value.code == "api_key_revoked"


def test_revoking_an_unknown_key_is_not_found(acme: BootstrappedApp, service: AppService) -> None:
    with pytest.raises(NotFound) as caught:
        service.revoke_key("acme", "0123456789abcdef")

    assert caught.value.code == "api_key_not_found"


@pytest.fixture
def totp_app(service: AppService) -> BootstrappedApp:
    return service.bootstrap("secure", "Secure", admin_password=PASSWORD, with_totp=True)


def test_totp_app_is_reported(totp_app: BootstrappedApp) -> None:
    assert totp_app.totp_secret is not None
    assert totp_app.app.has_totp is True


# What is stored.


def test_stored_key_holds_only_a_hash_of_the_secret(acme: BootstrappedApp) -> None:
    _, key_id, secret = token_parts(acme.api_key.api_key)

    record = ApiKeyRecord.get("APP#acme", f"KEY#{key_id}", consistent_read=True)
    stored = json.dumps(record.serialize())

    assert secret not in stored
    assert acme.api_key.api_key not in stored
    assert record.secret_hash == hashlib.sha256(secret.encode()).hexdigest()


def test_stored_app_holds_no_plain_password(acme: BootstrappedApp) -> None:
    record = AppRecord.get("APP#acme", "PROFILE", consistent_read=True)

    assert PASSWORD not in json.dumps(record.serialize())
    assert record.admin_password_hash.startswith("scrypt$")


@pytest.mark.usefixtures("atomic_moto")
def test_concurrent_revokes_never_remove_every_admin_key(service: AppService) -> None:
    for attempt in range(20):
        app = service.bootstrap(f"race-{attempt:02d}", "Race")
        second = service.create_key(app.app.app_id, "second-admin", [Scope.ADMIN])
        key_ids = [app.api_key.key_id, second.key_id]

        def revoke(key_id: str, app_id: str = app.app.app_id) -> str:
            try:
                service.revoke_key(app_id, key_id)
            except Conflict as exc:
                return exc.code
            return "revoked"

        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = list(pool.map(revoke, key_ids))

        active_admins = [key for key in service.keys.list_active(app.app.app_id) if Scope.ADMIN in key.scopes]
        assert len(active_admins) == 1, outcomes
        assert sorted(outcomes) == ["last_admin_key", "revoked"]


def test_a_key_list_cursor_outside_the_keys_is_refused(service: AppService) -> None:
    # Real DynamoDB refuses a start key outside the query's key condition (a 500 if it got there).
    created = service.bootstrap("cursor-app", "Cursor app")

    with pytest.raises(InvalidInput) as refused:
        service.list_keys(created.app.app_id, encode_cursor({"after": "PROFILE"}), 10)

    assert refused.value.code == "invalid_cursor"
