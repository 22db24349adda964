"""What the Lambda authorizer does: resolve an API key to its app and scopes, and say it to API Gateway.

API Gateway calls the authorizer on every cache miss, before any request is
served, so its cold start is on the critical path of every new connection.
This module therefore needs only the standard library, pynamodb and the
tables: no pydantic, no domain models, no event handler.
"""

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from steward.apps.tokens import key_secret_matches, parse_token
from steward.errors import Unauthenticated
from steward.tables import ApiKeyRecord, api_key_sk, app_pk

# Keys the authorizer puts in its context (strings only: API Gateway's rule).
CONTEXT_APP_ID = "app_id"
CONTEXT_KEY_ID = "key_id"
CONTEXT_SCOPES = "scopes"
CONTEXT_ERROR = "auth_error"
CONTEXT_ERROR_MESSAGE = "auth_message"
MISSING_KEY_MESSAGE = "Send an API key as `Authorization: Bearer <key>`."


class Caller(Protocol):
    @property
    def app_id(self) -> str: ...
    @property
    def key_id(self) -> str: ...
    @property
    def scopes(self) -> Collection[str]: ...


@dataclass(frozen=True)
class KeyIdentity:
    app_id: str
    key_id: str
    scopes: frozenset[str]


def authenticate_token(token: str) -> KeyIdentity:
    """Resolve an API key token to its app and scopes (one consistent GetItem), or raise Unauthenticated."""
    parsed = parse_token(token)
    if parsed is None:
        raise Unauthenticated("The API key is malformed.", code="invalid_api_key")
    try:
        record = ApiKeyRecord.get(app_pk(parsed.app_id), api_key_sk(parsed.key_id), consistent_read=True)
    except ApiKeyRecord.DoesNotExist:
        record = None
    if record is None or not key_secret_matches(parsed.secret, record.secret_hash):
        raise Unauthenticated("The API key is not valid.", code="invalid_api_key")
    if record.revoked_at is not None:
        raise Unauthenticated("The API key has been revoked.", code="revoked_api_key")
    return KeyIdentity(app_id=parsed.app_id, key_id=record.key_id, scopes=frozenset(map(str, record.scopes)))


def principal_context(caller: Caller) -> dict[str, str]:
    return {
        CONTEXT_APP_ID: caller.app_id,
        CONTEXT_KEY_ID: caller.key_id,
        CONTEXT_SCOPES: " ".join(sorted(str(scope) for scope in caller.scopes)),
    }


def failure_context(code: str, message: str) -> dict[str, str]:
    return {CONTEXT_ERROR: code, CONTEXT_ERROR_MESSAGE: message}


def authorizer_context(authorization: str | None, authenticate_key: Callable[[str], Caller]) -> dict[str, str]:
    """What the Lambda authorizer hands API Gateway for an Authorization header.

    Always a simple 'allow' answer: the context says who the caller is, or
    why they are not anyone, and the API function refuses the latter with 401.
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return failure_context("missing_api_key", MISSING_KEY_MESSAGE)
    try:
        return principal_context(authenticate_key(token.strip()))
    except Unauthenticated as exc:
        return failure_context(exc.code, exc.message)
