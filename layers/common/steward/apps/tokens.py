"""API key tokens: ``stw_<app>.<key id>.<secret>``, parsed and checked with the standard library alone.

The authorizer runs this on every cache miss, before any request is served,
so it stays free of pydantic and of the domain models. Key secrets are 256
random bits, so a fast SHA-256 is enough to store them (nothing to
brute-force).
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "stw_"  # noqa: S105 (a public prefix that secret scanners can match)
APP_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{2,39}$")
KEY_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class ParsedToken:
    app_id: str
    key_id: str
    secret: str


def new_key_id() -> str:
    return secrets.token_hex(8)


def new_token(app_id: str, key_id: str) -> tuple[str, str]:
    """Return (token shown to the client, hash to store)."""
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}{app_id}.{key_id}.{secret}", hash_key_secret(secret)


def parse_token(token: str) -> ParsedToken | None:
    """Split a token into its parts, or None when it cannot be one of ours."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    parts = token[len(TOKEN_PREFIX) :].split(".")
    if len(parts) != 3:
        return None
    app_id, key_id, secret = parts
    if not (APP_ID_PATTERN.match(app_id) and KEY_ID_PATTERN.match(key_id) and _SECRET_PATTERN.match(secret)):
        return None
    return ParsedToken(app_id=app_id, key_id=key_id, secret=secret)


def hash_key_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def key_secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key_secret(secret), stored_hash)
