"""One TransactWriteItems call whose writes are labelled, so a refusal says whose condition failed.

DynamoDB names the items of a cancelled transaction by position, and
pynamodb sends condition checks, deletes, puts and updates in that order,
whatever order they were added in. This keeps each write's label and replays
the writes in send order, so callers never count positions themselves.
"""

from collections.abc import Callable, Hashable
from functools import cache

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from steward.conditions import condition_failures
from steward.retryable import transient
from steward.tables import CONNECT_TIMEOUT_SECONDS, MAX_RETRY_ATTEMPTS, READ_TIMEOUT_SECONDS

# DynamoDB's limit on the items of one transaction.
MAX_TRANSACTION_ITEMS = 100
# Membership changes (segment members, tagged devices) write two items each (the
# member and its owner's set) plus one update of the shared count.
MEMBERSHIPS_PER_TRANSACTION = (MAX_TRANSACTION_ITEMS - 1) // 2

_CHECK, _DELETE, _PUT, _UPDATE = range(4)  # pynamodb's send order
_Write = Callable[[TransactWrite], None]


class Transaction:
    def __init__(self) -> None:
        self._writes: list[tuple[int, Hashable, _Write]] = []

    def __len__(self) -> int:
        return len(self._writes)

    def condition_check(
        self, label: Hashable, model: type[Model], hash_key: str, range_key: str, condition: Condition
    ) -> None:
        self._add(_CHECK, label, lambda tx: tx.condition_check(model, hash_key, range_key, condition=condition))

    def delete(self, label: Hashable, record: Model, condition: Condition | None = None) -> None:
        self._add(_DELETE, label, lambda tx: tx.delete(record, condition=condition))

    def put(self, label: Hashable, record: Model, condition: Condition | None = None) -> None:
        self._add(_PUT, label, lambda tx: tx.save(record, condition=condition))

    def update(self, label: Hashable, record: Model, actions: list[Action], condition: Condition | None = None) -> None:
        self._add(_UPDATE, label, lambda tx: tx.update(record, actions=actions, condition=condition))

    def commit(self) -> set[Hashable]:
        """Send the writes as one transaction.

        Returns the labels whose condition failed (nothing was written then),
        or an empty set when every write went through. Other failures raise.
        """
        if not self._writes:
            return set()
        ordered = sorted(self._writes, key=lambda write: write[0])  # stable: same-kind writes keep their order
        try:
            with TransactWrite(connection=_connection()) as transaction:
                for _, _, write in ordered:
                    write(transaction)
        except TransactWriteError as exc:
            failed = condition_failures(exc, len(ordered))
            if not any(failed):
                raise
            return {label for (_, label, _), refused in zip(ordered, failed, strict=True) if refused}
        return set()

    def _add(self, kind: int, label: Hashable, write: _Write) -> None:
        if len(self._writes) >= MAX_TRANSACTION_ITEMS:
            raise ValueError(f"A transaction holds at most {MAX_TRANSACTION_ITEMS} writes.")
        self._writes.append((kind, label, write))


def applied(transaction: Transaction) -> bool:
    """Commit ``transaction``: False when a condition failed, or when it was refused for the moment (another
    transaction held an item, or throttling), for callers that read again and decide again either way."""
    try:
        return not transaction.commit()
    except TransactWriteError as exc:
        if transient(exc):
            return False
        raise


@cache
def _connection() -> Connection:
    """One per process, with the models' timeouts (a bare Connection waits 15 s to connect, 30 s to read)."""
    return Connection(
        connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS,
        read_timeout_seconds=READ_TIMEOUT_SECONDS,
        max_retry_attempts=MAX_RETRY_ATTEMPTS,
    )
