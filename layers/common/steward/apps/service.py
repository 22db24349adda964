"""Use cases for apps and API keys: bootstrap, authenticate, manage keys (re-authentication: ``reauth``)."""

from steward.apps import credentials, tokens
from steward.apps.keys import authenticate_token
from steward.apps.models import (
    ApiKey,
    App,
    BootstrappedApp,
    IssuedApiKey,
    Principal,
    Scope,
    TotpChange,
    known_scopes,
)
from steward.apps.repository import ApiKeyRepository, AppRepository
from steward.apps.tokens import APP_ID_PATTERN
from steward.clock import utc_now
from steward.errors import Conflict, InvalidInput
from steward.pagination import Page


class AppService:
    def __init__(self, apps: AppRepository, keys: ApiKeyRepository) -> None:
        self.apps = apps
        self.keys = keys

    def bootstrap(
        self,
        app_id: str,
        name: str,
        admin_password: str | None = None,
        with_totp: bool = False,
        key_name: str = "bootstrap",
    ) -> BootstrappedApp:
        """Create an app, its admin credentials and a first key with every scope (operators only)."""
        if not APP_ID_PATTERN.match(app_id):
            raise InvalidInput(
                "An app id is 3-40 characters: lowercase letters, digits and '-', starting with a letter or digit.",
                code="invalid_app_id",
                field="app_id",
            )
        password = admin_password or credentials.new_admin_password()
        _check_password_strength(password)
        totp_secret = credentials.new_totp_secret() if with_totp else None
        app = self.apps.create(app_id, name, credentials.hash_password(password), totp_secret, utc_now())
        key = self.create_key(app_id, key_name, [Scope.READ, Scope.WRITE, Scope.ADMIN])
        return BootstrappedApp(app=app, admin_password=password, totp_secret=totp_secret, api_key=key)

    def rotate_admin_credentials(
        self, app_id: str, admin_password: str | None, totp: TotpChange = TotpChange.KEEP
    ) -> BootstrappedApp:
        """Replace an app's admin password; the TOTP secret is kept unless asked. Issues a fresh admin key."""
        password = admin_password or credentials.new_admin_password()
        _check_password_strength(password)
        password_hash = credentials.hash_password(password)
        totp_secret = credentials.new_totp_secret() if totp is TotpChange.RESET else None
        if totp is TotpChange.KEEP:
            self.apps.set_password(app_id, password_hash, utc_now())
        else:
            self.apps.set_password_and_totp(app_id, password_hash, totp_secret, utc_now())
        key = self.create_key(app_id, "rotated-admin", [Scope.READ, Scope.WRITE, Scope.ADMIN])
        return BootstrappedApp(app=self.apps.get(app_id), admin_password=password, totp_secret=totp_secret, api_key=key)

    def authenticate(self, token: str) -> Principal:
        """Resolve an API key token to its app and scopes, or raise Unauthenticated."""
        identity = authenticate_token(token)
        return Principal(app_id=identity.app_id, key_id=identity.key_id, scopes=known_scopes(identity.scopes))

    def create_key(self, app_id: str, name: str, scopes: list[Scope]) -> IssuedApiKey:
        self.apps.get(app_id)  # raises NotFound: a key for an app that does not exist could write orphan data
        key_id = tokens.new_key_id()
        token, secret_hash = tokens.new_token(app_id, key_id)
        unique_scopes = sorted(set(scopes), key=list(Scope).index)
        key = self.keys.create(app_id, key_id, name, unique_scopes, secret_hash, utc_now())
        return IssuedApiKey(**key.model_dump(), api_key=token)

    def list_keys(self, app_id: str, cursor: str | None, limit: int) -> Page[ApiKey]:
        return self.keys.list_page(app_id, cursor, limit)

    def get_key(self, app_id: str, key_id: str) -> ApiKey:
        return self.keys.get(app_id, key_id)

    def revoke_key(self, app_id: str, key_id: str) -> ApiKey:
        """Revoke a key; the last active admin key is kept so the app is never locked out."""
        key = self.keys.get(app_id, key_id)
        keep_active = None
        if key.active and Scope.ADMIN in key.scopes:
            other_admins = [
                other
                for other in self.keys.list_active(app_id)
                if other.key_id != key_id and Scope.ADMIN in other.scopes
            ]
            if not other_admins:
                raise Conflict(
                    "This is the app's last active admin key; create another admin key first.",
                    code="last_admin_key",
                    field="key_id",
                )
            keep_active = other_admins[0].key_id
        return self.keys.revoke(app_id, key_id, utc_now(), while_active=keep_active)

    def get_app(self, app_id: str) -> App:
        return self.apps.get(app_id)


def _check_password_strength(password: str) -> None:
    if len(password) < credentials.MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"The admin password needs at least {credentials.MIN_PASSWORD_LENGTH} characters.",
            code="weak_password",
            field="admin_password",
        )
