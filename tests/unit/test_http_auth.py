"""The authorizer's context and the HTTP error field names."""

from typing import Any

import pytest

from steward.apps.keys import authorizer_context
from steward.apps.models import Principal, Scope
from steward.apps.service import AppService
from steward.composition import Services
from steward.errors import Unauthenticated
from steward.http.errors import validation_field
from steward.settings import StoreSettings

PRINCIPAL = Principal(app_id="acme", key_id="0123456789abcdef", scopes=frozenset({Scope.WRITE, Scope.READ}))
MISSING = {"auth_error": "missing_api_key", "auth_message": "Send an API key as `Authorization: Bearer <key>`."}


class FakeAuthenticate:
    def __init__(self, error: Unauthenticated | None = None) -> None:
        self.error = error
        self.tokens: list[str] = []

    def __call__(self, token: str) -> Principal:
        self.tokens.append(token)
        if self.error is not None:
            raise self.error
        return PRINCIPAL


@pytest.mark.parametrize(
    "header", [None, "", "   ", "Basic x", "Bearer ", "Bearer", "Bearer    ", "Token abc", "Bearerabc"]
)
def test_missing_api_key(header: str | None) -> None:
    authenticate = FakeAuthenticate()

    assert authorizer_context(header, authenticate) == MISSING
    assert authenticate.tokens == []


@pytest.mark.parametrize("header", ["Bearer tok", "bearer tok", "BEARER tok", "  Bearer   tok  "])
def test_valid_key_gives_the_principal_context(header: str) -> None:
    authenticate = FakeAuthenticate()

    context = authorizer_context(header, authenticate)

    assert context == {"app_id": "acme", "key_id": "0123456789abcdef", "scopes": "read write"}
    assert authenticate.tokens == ["tok"]


def test_refused_key_gives_the_failure_context() -> None:
    authenticate = FakeAuthenticate(Unauthenticated("The API key has been revoked.", code="revoked_api_key"))

    context = authorizer_context("Bearer tok", authenticate)

    assert context == {"auth_error": "revoked_api_key", "auth_message": "The API key has been revoked."}


@pytest.fixture
def apps(store: StoreSettings) -> AppService:
    return Services(1).apps


def test_real_service_resolves_a_bootstrap_key(apps: AppService) -> None:
    booted = apps.bootstrap("acme", "Acme", admin_password="correct horse battery staple")

    context = authorizer_context(f"Bearer {booted.api_key.api_key}", apps.authenticate)

    assert context == {"app_id": "acme", "key_id": booted.api_key.key_id, "scopes": "admin read write"}
    assert all(isinstance(value, str) for value in context.values())


def test_real_service_resolves_a_read_only_key(apps: AppService) -> None:
    apps.bootstrap("acme", "Acme", admin_password="correct horse battery staple")
    reader = apps.create_key("acme", "reader", [Scope.READ])

    context = authorizer_context(f"Bearer {reader.api_key}", apps.authenticate)

    assert context == {"app_id": "acme", "key_id": reader.key_id, "scopes": "read"}


def test_real_service_refuses_a_malformed_key(apps: AppService) -> None:
    context = authorizer_context("Bearer stw_acme.nope", apps.authenticate)

    assert context["auth_error"] == "invalid_api_key"
    assert "app_id" not in context


def test_real_service_refuses_a_revoked_key(apps: AppService) -> None:
    apps.bootstrap("acme", "Acme", admin_password="correct horse battery staple")
    reader = apps.create_key("acme", "reader", [Scope.READ])
    apps.revoke_key("acme", reader.key_id)

    context = authorizer_context(f"Bearer {reader.api_key}", apps.authenticate)

    assert context["auth_error"] == "revoked_api_key"
    assert "app_id" not in context


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (("body", "results", 3, "accepted"), "results[3].accepted"),
        (("body", "results", 3), "results[3]"),
        (("body", "user_id"), "user_id"),
        (("body", "attributes", "locale"), "attributes.locale"),
        (("query", "limit"), "limit"),
        (("path", "device_id"), "device_id"),
        (("body",), None),
        ((), None),
    ],
)
def test_validation_field(location: tuple[Any, ...], expected: str | None) -> None:
    assert validation_field(location) == expected
