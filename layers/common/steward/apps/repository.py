"""Data access for apps and API keys (the apps table)."""

from datetime import datetime

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.update import Action

from steward.apps.models import ApiKey, App, Scope
from steward.apps.tokens import KEY_ID_PATTERN
from steward.conditions import condition_failed
from steward.errors import Conflict, NotFound
from steward.pagination import Page
from steward.sharded_query import query_partition
from steward.tables import API_KEY_SK_PREFIX, APP_PROFILE_SK, ApiKeyRecord, AppRecord, api_key_sk, app_pk
from steward.transactions import Transaction


class AppRepository:
    def create(self, app_id: str, name: str, password_hash: str, totp_secret: str | None, now: datetime) -> App:
        record = AppRecord(
            pk=app_pk(app_id),
            sk=APP_PROFILE_SK,
            app_id=app_id,
            name=name,
            admin_password_hash=password_hash,
            totp_secret=totp_secret,
            created_at=now,
            updated_at=now,
        )
        try:
            record.save(condition=AppRecord.pk.does_not_exist())
        except PutError as exc:
            if condition_failed(exc):
                raise Conflict(f"App {app_id!r} already exists.", code="app_exists", field="app_id") from exc
            raise
        return _to_app(record)

    def get_credentials(self, app_id: str) -> tuple[str, str | None]:
        """The stored password hash and TOTP secret of an app."""
        record = self._get(app_id)
        return record.admin_password_hash, record.totp_secret

    def get(self, app_id: str) -> App:
        return _to_app(self._get(app_id))

    def set_password(self, app_id: str, password_hash: str, now: datetime) -> None:
        """Replace the admin password hash, keeping the TOTP secret."""
        self._update_profile(app_id, [AppRecord.admin_password_hash.set(password_hash), AppRecord.updated_at.set(now)])

    def set_password_and_totp(self, app_id: str, password_hash: str, totp_secret: str | None, now: datetime) -> None:
        """Replace the admin password hash and the TOTP secret (None turns TOTP off)."""
        self._update_profile(
            app_id,
            [
                AppRecord.admin_password_hash.set(password_hash),
                AppRecord.totp_secret.set(totp_secret) if totp_secret else AppRecord.totp_secret.remove(),
                AppRecord.updated_at.set(now),
            ],
        )

    def _update_profile(self, app_id: str, actions: list[Action]) -> None:
        record = AppRecord(pk=app_pk(app_id), sk=APP_PROFILE_SK)
        try:
            record.update(actions=actions, condition=AppRecord.pk.exists())
        except UpdateError as exc:
            if condition_failed(exc):
                raise NotFound(f"App {app_id!r} does not exist.", code="app_not_found") from exc
            raise

    def _get(self, app_id: str) -> AppRecord:
        try:
            return AppRecord.get(app_pk(app_id), APP_PROFILE_SK, consistent_read=True)
        except AppRecord.DoesNotExist as exc:
            raise NotFound(f"App {app_id!r} does not exist.", code="app_not_found") from exc


class ApiKeyRepository:
    def create(
        self, app_id: str, key_id: str, name: str, scopes: list[Scope], secret_hash: str, now: datetime
    ) -> ApiKey:
        record = ApiKeyRecord(
            pk=app_pk(app_id),
            sk=api_key_sk(key_id),
            app_id=app_id,
            key_id=key_id,
            name=name,
            scopes=[scope.value for scope in scopes],
            secret_hash=secret_hash,
            created_at=now,
        )
        record.save(condition=ApiKeyRecord.sk.does_not_exist())
        return _to_key(record)

    def find_with_hash(self, app_id: str, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its stored secret hash; None when unknown."""
        if not KEY_ID_PATTERN.match(key_id):
            return None
        try:
            record = ApiKeyRecord.get(app_pk(app_id), api_key_sk(key_id), consistent_read=True)
        except ApiKeyRecord.DoesNotExist:
            return None
        return _to_key(record), record.secret_hash

    def get(self, app_id: str, key_id: str) -> ApiKey:
        found = self.find_with_hash(app_id, key_id)
        if found is None:
            raise NotFound(f"API key {key_id!r} does not exist.", code="api_key_not_found", field="key_id")
        return found[0]

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[ApiKey]:
        records, next_cursor = query_partition(ApiKeyRecord, app_pk(app_id), cursor, limit, API_KEY_SK_PREFIX)
        return Page[ApiKey](items=[_to_key(record) for record in records], next_cursor=next_cursor)

    def list_active(self, app_id: str) -> list[ApiKey]:
        """Every unrevoked key of an app: an app has a handful, so one query suffices."""
        results = ApiKeyRecord.query(
            app_pk(app_id),
            ApiKeyRecord.sk.startswith(API_KEY_SK_PREFIX),
            filter_condition=ApiKeyRecord.revoked_at.does_not_exist(),
        )
        return [_to_key(record) for record in results]

    def revoke(self, app_id: str, key_id: str, now: datetime, while_active: str | None = None) -> ApiKey:
        """Revoke a key; with ``while_active``, only if that other key is still active, atomically.

        The transaction is what keeps two concurrent revokes from removing an
        app's last two admin keys: each one checks the other.
        """
        target = ApiKeyRecord(pk=app_pk(app_id), sk=api_key_sk(key_id))
        unrevoked = ApiKeyRecord.sk.exists() & ApiKeyRecord.revoked_at.does_not_exist()
        transaction = Transaction()
        transaction.update("key", target, [ApiKeyRecord.revoked_at.set(now)], unrevoked)
        if while_active is not None:
            transaction.condition_check("other", ApiKeyRecord, app_pk(app_id), api_key_sk(while_active), unrevoked)
        failed = transaction.commit()
        if "key" in failed:
            self.get(app_id, key_id)  # raises NotFound when the key is missing
            raise Conflict(f"API key {key_id!r} is already revoked.", code="api_key_revoked")
        if "other" in failed:
            raise Conflict(
                "Another admin key was revoked at the same time; this one is kept. Retry if intended.",
                code="last_admin_key",
                field="key_id",
            )
        return self.get(app_id, key_id)


def _to_app(record: AppRecord) -> App:
    return App(
        app_id=record.app_id,
        name=record.name,
        has_totp=record.totp_secret is not None,
        created_at=record.created_at,
    )


def _to_key(record: ApiKeyRecord) -> ApiKey:
    return ApiKey(
        key_id=record.key_id,
        name=record.name,
        scopes=[Scope(str(scope)) for scope in record.scopes],
        created_at=record.created_at,
        revoked_at=record.revoked_at,
    )
