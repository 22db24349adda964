"""Domain objects for apps and API keys, as the API and the logic see them."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field

from steward.schema import Schema


class TotpChange(StrEnum):
    """What rotating admin credentials does to the TOTP secret."""

    KEEP = "keep"
    RESET = "reset"
    DISABLE = "disable"


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class App(Schema):
    model_config = ConfigDict(frozen=True)

    app_id: str
    name: str
    has_totp: bool
    created_at: datetime


class ApiKey(Schema):
    """An API key as listed: never carries the secret."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    name: str
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class IssuedApiKey(ApiKey):
    """The answer to creating a key: the only time the full token is shown."""

    api_key: str = Field(description="Send as `Authorization: Bearer <api_key>`. Shown once.")


def known_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """The scopes among ``names`` that this version knows; an unknown one grants nothing."""
    known = {scope.value for scope in Scope}
    return frozenset(Scope(name) for name in names if name in known)


class Principal(Schema):
    """Who is calling: resolved by the authorizer from the API key alone."""

    model_config = ConfigDict(frozen=True)

    app_id: str
    key_id: str
    scopes: frozenset[Scope]


class BootstrappedApp(Schema):
    """What an operator gets back when creating an app: secrets shown once."""

    app: App
    admin_password: str
    totp_secret: str | None
    api_key: IssuedApiKey


@dataclass(frozen=True)
class ReauthState:
    """What a re-authentication check reads, from one item: the app's secrets and its attempts."""

    password_hash: str
    totp_secret: str | None
    attempts: int  # counted in the window that starts at window_start
    window_start: int | None  # epoch seconds; None before the first attempt
    last_totp_step: int | None
