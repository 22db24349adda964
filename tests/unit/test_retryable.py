"""Which refusals of AWS are for the moment only: the API answers them 503, the jobs engine retries the page."""

import threading
from typing import Any

import pytest
from pynamodb.connection import Connection
from pynamodb.exceptions import PutError

from steward.clock import utc_now
from steward.retryable import refused_for_now
from steward.settings import StoreSettings
from steward.tables import AppRecord
from tests.support.aws_errors import (
    cancelled_transaction,
    client_error,
    raised_from,
    raised_while_handling,
    wrapped_by_pynamodb,
)


@pytest.mark.parametrize(
    ("error", "for_now"),
    [
        (wrapped_by_pynamodb("ProvisionedThroughputExceededException"), True),
        (wrapped_by_pynamodb("ThrottlingException"), True),
        (wrapped_by_pynamodb("TransactionConflictException"), True),  # a write on an item a transaction holds
        (client_error("SlowDown"), True),  # S3
        (client_error("TooManyRequestsException", "Invoke"), True),  # Lambda
        (client_error("Throttling", "Publish"), True),  # SNS
        (raised_from(wrapped_by_pynamodb("RequestLimitExceeded")), True),
        (cancelled_transaction(None, "TransactionConflict"), True),
        (cancelled_transaction("ThrottlingError", None), True),
        (cancelled_transaction("ConditionalCheckFailed", None), False),  # the items' state: sending again cannot help
        (cancelled_transaction("ValidationError", "TransactionConflict"), False),  # would come back the same way
        (cancelled_transaction("ValidationError"), False),
        (wrapped_by_pynamodb("ConditionalCheckFailedException"), False),
        (wrapped_by_pynamodb("ValidationException"), False),
        (client_error("AccessDenied"), False),
        (ValueError("no"), False),
    ],
)
def test_refused_for_now(error: BaseException, for_now: bool) -> None:
    assert refused_for_now(error) is for_now


def test_an_error_raised_while_handling_one_counts_only_for_who_retries_either_way() -> None:
    bug = raised_while_handling(wrapped_by_pynamodb("ProvisionedThroughputExceededException"))

    assert refused_for_now(bug) is False  # the API answers a bug 500, not 503
    assert refused_for_now(bug, while_handling=True) is True  # the jobs engine retries the page


def test_an_error_raised_from_itself_ends_the_walk() -> None:
    error = ValueError("mine")
    error.__cause__ = error
    answers: list[bool] = []
    # In a thread, so that a walk that loops fails the test rather than hanging it.
    walk = threading.Thread(
        target=lambda: answers.extend([refused_for_now(error), refused_for_now(error, while_handling=True)]),
        daemon=True,
    )

    walk.start()
    walk.join(timeout=5)

    assert answers == [False, False]


def test_a_batch_write_dynamodb_kept_answering_with_unprocessed_items_is_refused_for_now(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB throttles a BatchWriteItem by handing items back: pynamodb sends them again, then gives up."""

    def unprocessed(connection: Connection, table_name: str, put_items: list[Any], **kwargs: Any) -> dict[str, Any]:
        return {"UnprocessedItems": {table_name: [{"PutRequest": {"Item": item}} for item in put_items]}}

    monkeypatch.setattr(Connection, "batch_write_item", unprocessed)
    at = utc_now()
    record = AppRecord(pk="APP#a", sk="PROFILE", app_id="a", name="A", admin_password_hash="x")
    record.created_at = record.updated_at = at

    with pytest.raises(PutError) as raised, AppRecord.batch_write() as batch:
        batch.save(record)

    assert refused_for_now(raised.value) is True
