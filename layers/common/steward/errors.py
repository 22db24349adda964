"""Domain exceptions. Logic raises these; the HTTP layer maps each family to a status.

Every error has a stable machine-readable `code` that clients can branch on,
a human message, and the offending `field` when one input is to blame.
"""


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
