"""BatchWriteItem of up to 25 puts or deletes, with the unprocessed ones sent again after a jittered backoff."""

import random
import time
from collections.abc import Iterable, Sequence
from itertools import batched
from typing import Any

from pynamodb.exceptions import PutError
from pynamodb.models import Model

# DynamoDB's limit on the requests of one BatchWriteItem.
BATCH_WRITE_SIZE = 25
BATCH_WRITE_ATTEMPTS = 4
BATCH_BACKOFF_SECONDS = 0.05

type _Key = tuple[tuple[tuple[str, Any], ...], ...]


class BatchNotWritten(RuntimeError):
    """Items BatchWriteItem still handed back, or refused, after every attempt; raised from the first ``PutError``,
    which tells a throttled batch (see ``steward.retryable``) from a refused one."""


def write_chunk[M: Model](
    model: type[M],
    records: Sequence[M],
    *,
    delete: bool,
    attempts: int = BATCH_WRITE_ATTEMPTS,
    backoff_seconds: float = BATCH_BACKOFF_SECONDS,
) -> tuple[list[M], PutError | None]:
    """Write (or delete) up to 25 ``records``; returns those left after ``attempts``, and the last error.

    pynamodb re-sends UnprocessedItems at once, without waiting; on top of
    that, items it gives up on are retried after a jittered, doubling pause.
    """
    if len(records) > BATCH_WRITE_SIZE:
        # pynamodb would send the first 25 while the rest are queued, and a failure there would lose the rest.
        raise ValueError(f"A chunk holds at most {BATCH_WRITE_SIZE} records.")
    pending = {_record_key(model, record): record for record in records}
    failure: PutError | None = None
    for attempt in range(attempts):
        if attempt:
            # Full jitter, so that concurrent writers do not retry in step.
            time.sleep(random.uniform(0, backoff_seconds * 2**attempt))  # noqa: S311 (not a secret)
        batch = model.batch_write()
        try:
            with batch:
                for record in pending.values():
                    if delete:
                        batch.delete(record)
                    else:
                        batch.save(record)
        except PutError as exc:
            failure = exc
            left = {_request_key(model, request) for request in batch.failed_operations}
            # No list of unprocessed items means the call itself failed, and a key that matches no record must not
            # be dropped: resend the whole chunk then (puts and deletes are safe to repeat).
            if left and left <= pending.keys():
                pending = {key: pending[key] for key in left}
            continue
        return [], None
    return list(pending.values()), failure


def write_all[M: Model](model: type[M], records: Iterable[M], *, delete: bool = False) -> None:
    """Write (or delete) every record, 25 a call. Every chunk is tried, even after one that was left unwritten;
    raises ``BatchNotWritten`` once all were tried, when any record was left."""
    left = 0
    failure: PutError | None = None
    for chunk in batched(records, BATCH_WRITE_SIZE, strict=False):
        pending, error = write_chunk(model, chunk, delete=delete)
        left += len(pending)
        failure = failure or error
    if left:
        raise BatchNotWritten(f"BatchWriteItem left {left} {model.__name__} items unwritten") from failure


def _record_key(model: type[Model], record: Model) -> _Key:
    item: dict[str, Any] = record.serialize(null_check=False)  # a delete's record holds only its key
    return _key(model, item)


def _request_key(model: type[Model], request: dict[str, Any]) -> _Key:
    """The key of one unprocessed BatchWriteItem request (a put or a delete)."""
    if "DeleteRequest" in request:
        return _key(model, request["DeleteRequest"]["Key"])
    return _key(model, request["PutRequest"]["Item"])


def _key(model: type[Model], item: dict[str, Any]) -> _Key:
    """The item's primary key (hash, and range if the table has one): each attribute as (type, value) pairs."""
    names = [model._hash_key_attribute().attr_name]
    range_key = model._range_key_attribute()
    if range_key is not None:
        names.append(range_key.attr_name)
    return tuple(tuple(sorted(item[name].items())) for name in names)
