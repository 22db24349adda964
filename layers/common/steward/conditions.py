"""Helpers for DynamoDB conditional writes through pynamodb."""

from collections.abc import Callable
from typing import Any

from pynamodb.exceptions import PutError, PynamoDBException, TransactWriteError, UpdateError

from steward.errors import Conflict

CONDITION_FAILED = "ConditionalCheckFailedException"
# How a cancelled transaction names an item whose condition failed.
CONDITION_FAILED_REASON = "ConditionalCheckFailed"


# DynamoDB refused the request itself (an item too large, a value it cannot store):
# the same request fails the same way however often it is sent.
_REFUSED_AS_SENT = frozenset({"ValidationException", "ItemCollectionSizeLimitExceededException"})


def resend_may_help(exc: BaseException) -> bool:
    """Whether a failed write might go through if sent again (throttling, a timeout, an outage)."""
    return not (isinstance(exc, PynamoDBException) and exc.cause_response_code in _REFUSED_AS_SENT)


def condition_failures(exc: TransactWriteError, count: int) -> list[bool]:
    """Which of a cancelled transaction's ``count`` items failed their condition, in request order.

    pynamodb sends condition checks first, then deletes, puts and updates
    (``steward.transactions.Transaction`` keeps track of that for callers).
    """
    failed = [reason is not None and reason.code == CONDITION_FAILED_REASON for reason in exc.cancellation_reasons]
    return failed if len(failed) == count else [False] * count


def condition_failed(exc: PynamoDBException) -> bool:
    """Whether a write was refused by its condition (as opposed to a real failure)."""
    return exc.cause_response_code == CONDITION_FAILED


# Optimistic-concurrency retries for read-modify-write (identify, user upserts).
MAX_ATTEMPTS = 5


def save_versioned(record: Any, version: int | None) -> bool:
    """Put ``record`` only if the stored item is still at ``version`` (None: it must not exist yet).

    ``record`` is a pynamodb model with ``sk`` and a numeric ``version``; False when someone wrote first.
    """
    model = type(record)
    condition = model.sk.does_not_exist() if version is None else model.version == version
    record.version = 1 if version is None else version + 1
    try:
        record.save(condition=condition)
    except PutError as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def read_modify_write[T](
    load: Callable[[], tuple[T | None, int | None]],
    change: Callable[[T | None], T],
    save: Callable[[T, int | None], bool],
    what: str,
) -> T:
    """Load, apply the pure ``change`` and save unless someone wrote in between; retried a few times.

    A change that returns the current value unchanged writes nothing.
    """
    for _ in range(MAX_ATTEMPTS):
        current, version = load()
        updated = change(current)
        if updated == current or save(updated, version):
            return updated
    raise Conflict(f"The {what} changed concurrently too many times; retry the request.", code="concurrent_update")


def update_if(record: Any, actions: list[Any], condition: Any) -> bool:
    """One UpdateItem of a pynamodb record; False when its condition refused it (other failures raise)."""
    try:
        record.update(actions=actions, condition=condition)
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise
    return True
