"""Whether AWS refused a request for the moment, so that the same request later may go through.

Throttling, an item another transaction held, or S3's ``SlowDown`` say nothing
about the request itself. The HTTP API answers such a refusal with 503 and
``Retry-After``; the jobs engine retries the page. Only pynamodb's exceptions
are imported here, so every function can afford it at cold start.
"""

from pynamodb.exceptions import TransactWriteError

# A cancelled transaction's reasons that speak of the moment, not of the items.
THROTTLING_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})
TRANSIENT_REASONS = THROTTLING_REASONS | {"TransactionConflict"}

# Error codes of DynamoDB, S3, Step Functions, EventBridge and Lambda that mean "later".
REFUSED_FOR_NOW_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "TransactionConflict",
        "TransactionConflictException",
    }
)


def transient(exc: TransactWriteError) -> bool:
    """Whether a refused transaction is worth sending again as it is."""
    return any(reason is not None and reason.code in TRANSIENT_REASONS for reason in exc.cancellation_reasons)


def refused_for_now(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from or while handling, is such a refusal.

    pynamodb wraps botocore's error (its ``cause_response_code``), and code that
    handles one may raise another: the whole chain is looked at.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TransactWriteError) and transient(seen):
            return True
        response = getattr(seen, "response", None)
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if code in REFUSED_FOR_NOW_CODES or getattr(seen, "cause_response_code", None) in REFUSED_FOR_NOW_CODES:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
