"""Whether AWS refused a request for the moment, so that the same request later may go through.

Throttling, an item another transaction held, or S3's ``SlowDown`` say nothing
about the request itself. The HTTP API answers such a refusal with 503 and
``Retry-After``; the jobs engine retries the page. Only pynamodb's exceptions
are imported here, so every function can afford it at cold start.
"""

from collections.abc import Iterator

from pynamodb.exceptions import PutError, PynamoDBException, TransactWriteError

# A cancelled transaction's reasons that speak of the moment, not of the items.
THROTTLING_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})
TRANSIENT_REASONS = THROTTLING_REASONS | {"TransactionConflict"}

# Error codes of DynamoDB, S3, Step Functions, EventBridge, SNS and Lambda that mean "later" (botocore's own list
# of throttling codes, and the conflicts of a write with a transaction).
REFUSED_FOR_NOW_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "TransactionConflict",
        "TransactionConflictException",
    }
)


# pynamodb's batch write when DynamoDB kept answering with unprocessed items, its way of throttling a batch.
_BATCH_UNPROCESSED = "max_retry_attempts exceeded"


def transient(exc: TransactWriteError) -> bool:
    """Whether a refused transaction is worth sending again as it is."""
    return any(reason is not None and reason.code in TRANSIENT_REASONS for reason in exc.cancellation_reasons)


def throttled(exc: TransactWriteError) -> bool:
    """Whether DynamoDB refused the transaction for throughput (rather than for another transaction on an item)."""
    return any(reason is not None and reason.code in THROTTLING_REASONS for reason in exc.cancellation_reasons)


def refused_for_now(exc: BaseException, *, while_handling: bool = False) -> bool:
    """Whether ``exc``, or an error it was raised from, is such a refusal.

    pynamodb keeps botocore's error as its ``cause``. With ``while_handling``,
    an error raised while handling one (``__context__``) counts too: the jobs
    engine retries a page either way, where the API must not answer a bug with
    503.
    """
    for current in causes(exc, while_handling=while_handling):
        if isinstance(current, TransactWriteError) and _only_transient(current):
            return True
        if isinstance(current, PutError) and current.cause is None and _BATCH_UNPROCESSED in str(current):
            return True
        response = getattr(current, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if code in REFUSED_FOR_NOW_CODES:
            return True
    return False


def causes(exc: BaseException, *, while_handling: bool) -> Iterator[BaseException]:
    """``exc``, then what it was raised from (pynamodb's ``cause`` too), and so on; with ``while_handling``, also
    what it was raised while handling. Each error once: `raise e from e` makes a loop."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = _cause(current, while_handling=while_handling)


def _only_transient(exc: TransactWriteError) -> bool:
    """Refused for the moment only: a reason of the items' own (a failed condition, a bad value) would come back."""
    reasons = [reason.code for reason in exc.cancellation_reasons if reason is not None]
    return bool(reasons) and all(code in TRANSIENT_REASONS for code in reasons)


def _cause(exc: BaseException, *, while_handling: bool) -> BaseException | None:
    if exc.__cause__ is not None:
        return exc.__cause__
    cause = getattr(exc, "cause", None) if isinstance(exc, PynamoDBException) else None
    if isinstance(cause, BaseException):
        return cause
    return exc.__context__ if while_handling else None
