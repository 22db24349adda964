"""Data access for apps and API keys (the apps table)."""

from datetime import datetime

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from steward.apps.models import ApiKey, App, ReauthState, Scope
from steward.apps.tokens import KEY_ID_PATTERN
from steward.conditions import condition_failed, update_if
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

    def get(self, app_id: str) -> App:
        return _to_app(self._get(app_id))

    def exists(self, app_id: str) -> bool:
        """One eventually consistent read of the profile's key (half a read unit)."""
        try:
            AppRecord.get(app_pk(app_id), APP_PROFILE_SK, attributes_to_get=["pk"])
        except AppRecord.DoesNotExist:
            return False
        return True

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
        return _get_profile(app_id)


class ReauthRepository:
    """An app's re-authentication state, on its profile item: one read, then conditional writes only.

    Every write is a single UpdateItem whose condition names the state it
    builds on, so concurrent checks can neither lose a count nor accept one
    TOTP step twice. The profile is well under 1 KB: each call is one unit.
    """

    def load(self, app_id: str) -> ReauthState:
        """The secrets and attempts of an app, strongly consistent (1 read unit)."""
        record = _get_profile(app_id)
        return ReauthState(
            password_hash=record.admin_password_hash,
            totp_secret=record.totp_secret,
            attempts=int(record.reauth_attempts or 0),
            window_start=_optional_int(record.reauth_window_start),
            last_totp_step=_optional_int(record.totp_last_step),
        )

    def count_in_window(self, app_id: str, window_start: int, limit: int) -> bool:
        """Count one attempt in the window that starts at ``window_start``, if it still has room.

        False when the window has changed or is full: the caller reads again.
        """
        return _conditional_update(
            app_id,
            [AppRecord.reauth_attempts.add(1)],
            (AppRecord.reauth_window_start == window_start) & (AppRecord.reauth_attempts < limit),
        )

    def open_window(self, app_id: str, previous_start: int | None, start: int) -> bool:
        """Start a new window at ``start`` with this attempt in it, replacing the window that started at
        ``previous_start`` (None: the app never had one). False when another check changed it first."""
        still_previous = (
            AppRecord.reauth_window_start.does_not_exist()
            if previous_start is None
            else AppRecord.reauth_window_start == previous_start
        )
        return _conditional_update(
            app_id,
            [AppRecord.reauth_attempts.set(1), AppRecord.reauth_window_start.set(start)],
            AppRecord.pk.exists() & still_previous,
        )

    def release(self, app_id: str, window_start: int) -> None:
        """Uncount a successful attempt; nothing to do when its window has since been replaced."""
        _conditional_update(app_id, [AppRecord.reauth_attempts.add(-1)], AppRecord.reauth_window_start == window_start)

    def accept_totp_step(self, app_id: str, step: int, window_start: int) -> bool:
        """Record ``step`` as the last accepted TOTP step unless it is not newer than the stored one, and
        uncount the attempt of ``window_start``. False: the step was already accepted (a replay).

        Both in one write in the usual case; when the window was replaced in
        the meantime, the step is claimed alone (the attempt is gone with its window).
        """
        fresh = AppRecord.totp_last_step.does_not_exist() | (AppRecord.totp_last_step < step)
        if _conditional_update(
            app_id,
            [AppRecord.totp_last_step.set(step), AppRecord.reauth_attempts.add(-1)],
            fresh & (AppRecord.reauth_window_start == window_start),
        ):
            return True
        return _conditional_update(app_id, [AppRecord.totp_last_step.set(step)], AppRecord.pk.exists() & fresh)


def _get_profile(app_id: str) -> AppRecord:
    try:
        return AppRecord.get(app_pk(app_id), APP_PROFILE_SK, consistent_read=True)
    except AppRecord.DoesNotExist as exc:
        raise NotFound(f"App {app_id!r} does not exist.", code="app_not_found") from exc


def _conditional_update(app_id: str, actions: list[Action], condition: Condition) -> bool:
    """One UpdateItem on the app's profile; False when its condition refused it."""
    return update_if(AppRecord(pk=app_pk(app_id), sk=APP_PROFILE_SK), actions, condition)


def _optional_int(value: float | None) -> int | None:
    return None if value is None else int(value)


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
