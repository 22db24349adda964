"""Ids in request paths, as API Gateway HTTP APIs deliver them.

HTTP APIs decode the path before invoking the function (``%2F`` arrives as
``/``) and cut it at a decoded ``?`` or ``#``. Device ids (WebPush endpoints
are URLs) and user ids may hold ``/``, so before routing, the id segment of
each id-bearing route is found by the route's fixed suffix and re-encoded as
a single segment. An id that holds ``?`` or ``#`` (a WNS endpoint does), or
that ends like a route suffix, cannot survive the path: clients send it as
``~`` followed by its base64url encoding.
"""

import base64
import binascii
import re
from urllib.parse import quote, unquote

ENCODED_ID_MARK = "~"
# Each id-bearing route family: the prefix before the id and the suffixes that may follow it
# (most specific first; a suffix's own parameters never hold '/').
_ID_ROUTES: tuple[tuple[str, tuple[re.Pattern[str], ...]], ...] = (
    ("/v1/devices/", tuple(re.compile(f"{end}$") for end in (r"/push-results", r"/user", r"/tags/[^/]+"))),
    (
        "/v1/users/",
        tuple(
            re.compile(f"{end}$")
            for end in (
                r"/devices",
                r"/emails/[^/]+",
                r"/phones/[^/]+",
                r"/promo-codes/[^/]+",
                r"/subscriptions/[^/]+/[^/]+",
                r"/subscriptions",
            )
        ),
    ),
)


_AUDIENCES = "/v1/audiences/"
_AUDIENCE_MEMBERS = "members/"
_AUDIENCE_CHECK = "members/check"


def _canonical_audience_path(path: str) -> str:
    """An audience name is one segment; a member's user id (which may hold '/') after it is made one too."""
    name, slash, rest = path[len(_AUDIENCES) :].partition("/")
    if rest.startswith(_AUDIENCE_MEMBERS) and rest != _AUDIENCE_CHECK and len(rest) > len(_AUDIENCE_MEMBERS):
        rest = _AUDIENCE_MEMBERS + quote(rest[len(_AUDIENCE_MEMBERS) :], safe="")
    return _AUDIENCES + quote(name, safe="") + slash + rest


def canonical_path(path: str) -> str:
    """Re-encode the id of an id-bearing route as one path segment; other paths are unchanged."""
    if path.startswith(_AUDIENCES) and len(path) > len(_AUDIENCES):
        return _canonical_audience_path(path)
    for prefix, suffixes in _ID_ROUTES:
        if not path.startswith(prefix) or len(path) == len(prefix):
            continue
        rest = path[len(prefix) :]
        suffix = ""
        for pattern in suffixes:
            match = pattern.search(rest)
            if match and match.start() > 0:
                suffix = match.group(0)
                break
        identifier = rest[: len(rest) - len(suffix)]
        # The suffix's own parameters (an email, a resource id) are re-encoded too, one segment each.
        encoded_suffix = "/".join(quote(part, safe="") for part in suffix.split("/"))
        return prefix + quote(identifier, safe="") + encoded_suffix
    return path


def decode_id(segment: str) -> str:
    """The id in one canonical segment: percent-decoded, or base64url-decoded after ``~``.

    Raises ValueError when the segment is neither.
    """
    text = unquote(segment, errors="strict")
    if not text.startswith(ENCODED_ID_MARK):
        return text
    encoded = text[len(ENCODED_ID_MARK) :]
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("not valid base64url after '~'") from exc
