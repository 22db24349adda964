"""BatchWriteItem of up to 25 puts or deletes, with the unprocessed ones sent again after a jittered backoff."""

import random
import time
from typing import Any

from pynamodb.exceptions import PutError
from pynamodb.models import Model


def write_chunk[M: Model](
    model: type[M], pending: dict[str, M], key_attribute: str, *, delete: bool, attempts: int, backoff_seconds: float
) -> tuple[dict[str, M], PutError | None]:
    """Write (or delete) ``pending`` (by the value of ``key_attribute``); returns what is left after ``attempts``.

    pynamodb re-sends UnprocessedItems at once, without waiting; on top of
    that, items it gives up on are retried after a jittered, doubling pause.
    """
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
            left = {_request_key(request, key_attribute) for request in batch.failed_operations}
            # No list of unprocessed items means the call itself failed: resend the whole chunk.
            pending = {key: pending[key] for key in left if key in pending} if left else pending
            continue
        return {}, None
    return pending, failure


def _request_key(request: dict[str, Any], key_attribute: str) -> str:
    """The key of one unprocessed BatchWriteItem request (a put or a delete)."""
    if "DeleteRequest" in request:
        return str(request["DeleteRequest"]["Key"][key_attribute]["S"])
    return str(request["PutRequest"]["Item"][key_attribute]["S"])
