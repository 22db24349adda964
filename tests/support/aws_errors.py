"""Errors as botocore and pynamodb raise them, for tests of what the code makes of them."""

from botocore.exceptions import ClientError
from pynamodb.exceptions import CancellationReason, PutError, TransactWriteError, VerboseClientError


def client_error(code: str, operation: str = "PutItem") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "refused"}}, operation)


def wrapped_by_pynamodb(code: str) -> PutError:
    """What pynamodb raises for a failed put: its own error, which keeps botocore's as its ``cause``."""
    cause = client_error(code)
    try:
        try:
            raise cause
        except ClientError as exc:
            raise PutError("Failed to put item", exc)  # noqa: B904 (as pynamodb raises it: no `from`)
    except PutError as error:
        return error


def cancelled_transaction(*reasons: str | None) -> TransactWriteError:
    """What pynamodb raises for a cancelled TransactWriteItems: one reason per item, None for an item not at fault."""
    cause = VerboseClientError(
        {"Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}},
        "TransactWriteItems",
        cancellation_reasons=[None if code is None else CancellationReason(code=code) for code in reasons],
    )
    return TransactWriteError("Failed to write transaction items", cause)


def raised_while_handling(error: BaseException) -> RuntimeError:
    """An error raised by code that was handling ``error`` (its ``__context__``)."""
    try:
        try:
            raise error
        except Exception:
            raise RuntimeError("the page failed")  # noqa: B904 (the implicit context is the point)
    except RuntimeError as outer:
        return outer


def raised_from(error: BaseException) -> RuntimeError:
    """An error our code raised from ``error`` (its ``__cause__``), as a use case wraps a store's failure."""
    try:
        try:
            raise error
        except Exception as exc:
            raise RuntimeError("the store failed") from exc
    except RuntimeError as outer:
        return outer
