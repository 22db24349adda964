"""Secrets: API key tokens, admin password hashes and TOTP codes.

API key secrets are 256 random bits, so a fast SHA-256 is enough to store
them (nothing to brute-force). Admin passwords are chosen by people, so they
get a slow, salted scrypt hash.
"""

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import pyotp

from steward.apps.models import APP_ID_PATTERN

TOKEN_PREFIX = "stw_"  # noqa: S105 (a public prefix that secret scanners can match)
KEY_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")

# scrypt cost: ~16 MiB and tens of milliseconds per check; stored with the hash
# so it can be raised later without breaking existing passwords.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD_LENGTH = 12


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


def new_admin_password() -> str:
    return secrets.token_urlsafe(18)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)])


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    return hmac.compare_digest(candidate, _unb64(digest))


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_matches(secret: str, code: str) -> bool:
    # One step of clock drift either way, as authenticator apps expect.
    return pyotp.TOTP(secret).verify(code, valid_window=1)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
