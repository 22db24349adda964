"""Domain exceptions. Logic raises these; the HTTP layer maps each family to a status.

Every error has a stable machine-readable `code` that clients can branch on,
a human message, and the offending `field` when one input is to blame.
"""

# Errors and outcomes quote what the client sent (a field name, an invalid id). Quotes are
# clipped so that an answer never grows with the request: escaped twice on its way out, a
# quote of the request could otherwise pass Lambda's 6 MB answer.
MAX_ECHO_CHARS = 256
MAX_MESSAGE_CHARS = 1024


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text``, cut to ``limit`` characters (marked with an ellipsis) when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class StewardError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class InvalidInput(StewardError):
    """The request is well-formed but its content is not acceptable (422)."""

    code = "invalid_input"


class UnsupportedMediaType(StewardError):
    """The request body is not in a format the API reads (415)."""

    code = "unsupported_media_type"


class NotFound(StewardError):
    code = "not_found"


class Conflict(StewardError):
    """The current state of the item forbids the change (409)."""

    code = "conflict"


class Unauthenticated(StewardError):
    code = "unauthenticated"


class Forbidden(StewardError):
    code = "forbidden"


class ReauthenticationRequired(StewardError):
    """A real (non-dry) run needs fresh admin credentials, and the request has none (428)."""

    code = "reauthentication_required"


class ReauthenticationFailed(Unauthenticated):
    """The admin credentials of a re-authentication are wrong or replayed (401); never says which factor."""

    code = "reauthentication_failed"


class TooManyRequests(StewardError):
    """Too many attempts for now (429); ``retry_after`` is the number of seconds to wait."""

    code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message, code=code, field=field)
        self.retry_after = retry_after


class ServiceUnavailable(StewardError):
    """A service Steward depends on refused the work for now (503). Retry after ``retry_after``; the message says
    what, if anything, was done before the refusal."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message, code=code, field=field)
        self.retry_after = retry_after
