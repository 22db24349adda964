"""Request bodies: JSON in UTF-8 (or no body at all), read without ever failing with a 500.

Powertools decodes the body in its validation middleware, the first step of
every route. A body that is not UTF-8 fails there with a UnicodeDecodeError,
and a content type it does not know raises an error of its own: both ended
as 500s. So ``refuse_unreadable_body`` runs ahead of the resolver, like the
401 check: it answers 415 for a body that is not JSON and 422
``malformed_json`` for one that is not UTF-8, and hands the resolver the
body as text.

``load_json`` is the resolver's JSON deserializer. Input that Python's parser
cannot take (nesting that exhausts the stack, integers of 4,300+ digits) and
nesting deeper than ``MAX_JSON_DEPTH`` become a ``JSONDecodeError``, which
Powertools reports as a validation error (422 ``malformed_json``). No body
needs deep nesting (criteria groups nest 10 deep, about 22 JSON levels), and
a shallow body keeps every recursive validator far from the stack's limit.
"""

import base64
import binascii
import json
from typing import Any

from steward.errors import InvalidInput, StewardError, UnsupportedMediaType
from steward.http.errors import error_body, status_of

JSON_MEDIA_TYPE = "application/json"
UTF8_CHARSETS = frozenset({"utf-8", "utf8"})
MAX_JSON_DEPTH = 32


BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def refuse_unreadable_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """Before routing: an error response for a body that is not UTF-8 JSON, else None.

    A readable body is left in ``event`` as plain text (no longer base64), so
    the resolver never decodes bytes itself. A request without a content type
    is read as JSON, as Powertools does: simple clients often send none.
    """
    body = event.get("body")
    method = str(((event.get("requestContext") or {}).get("http") or {}).get("method", "")).upper()
    # Only POST, PUT and PATCH routes read a body (and document 415); another method's body is never read.
    if not body or method not in BODY_METHODS:
        return None
    headers: dict[str, Any] = event.get("headers") or {}
    content_type = next((str(value) for name, value in headers.items() if str(name).lower() == "content-type"), None)
    try:
        text = readable_body(content_type, str(body), bool(event.get("isBase64Encoded")))
    except StewardError as exc:
        return {
            "statusCode": status_of(exc),
            "headers": {"Content-Type": "application/json"},
            "body": error_body(exc.code, exc.message, exc.field),
        }
    # Powertools compares the raw header with a lower-case prefix: hand it the plain media type.
    event["headers"] = {name: value for name, value in headers.items() if str(name).lower() != "content-type"}
    event["headers"]["content-type"] = JSON_MEDIA_TYPE
    event["body"], event["isBase64Encoded"] = text, False
    return None


def readable_body(content_type: str | None, body: str, is_base64: bool) -> str:
    """The body as text; UnsupportedMediaType (415) or InvalidInput ``malformed_json`` (422) if it is not JSON."""
    media_type, charset = _media_type(content_type or "")
    if content_type and content_type.strip() and media_type != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"Send the body as {JSON_MEDIA_TYPE} (UTF-8); {media_type or content_type.strip()} is not read.",
            code="unsupported_media_type",
        )
    if charset is not None and charset not in UTF8_CHARSETS:
        raise _not_utf8(f"JSON bodies are UTF-8; this one declares charset {charset}")
    if not is_base64:
        return body
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _not_utf8("the body is not UTF-8 text") from None


def load_json(text: str) -> Any:
    """``json.loads`` that fails only with JSONDecodeError, and refuses nesting deeper than MAX_JSON_DEPTH."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(text) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # int() refuses integer literals of 4,300+ digits
        raise json.JSONDecodeError("it holds a number too long to read", text, 0) from None
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise _too_deep(text)
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` deep (iterative: the input may be deep)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _too_deep(text: str) -> json.JSONDecodeError:
    return json.JSONDecodeError(f"arrays and objects nest more than {MAX_JSON_DEPTH} levels deep", text, 0)


def _not_utf8(reason: str) -> InvalidInput:
    return InvalidInput(f"The request body is not valid JSON: {reason}.", code="malformed_json")


def _media_type(content_type: str) -> tuple[str, str | None]:
    """``application/json; charset=UTF-8`` -> ("application/json", "utf-8")."""
    media_type, *parameters = content_type.split(";")
    charset = None
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return media_type.strip().lower(), charset
