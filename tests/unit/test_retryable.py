"""Which refusals of AWS are for the moment only: the API answers them 503, the jobs engine retries the page."""

import pytest

from steward.retryable import refused_for_now
from tests.support.aws_errors import cancelled_transaction, client_error, raised_while_handling, wrapped_by_pynamodb


@pytest.mark.parametrize(
    ("error", "for_now"),
    [
        (wrapped_by_pynamodb("ProvisionedThroughputExceededException"), True),
        (wrapped_by_pynamodb("ThrottlingException"), True),
        (wrapped_by_pynamodb("TransactionConflictException"), True),  # a write on an item a transaction holds
        (client_error("SlowDown"), True),  # S3
        (client_error("TooManyRequestsException", "Invoke"), True),  # Lambda
        (raised_while_handling(wrapped_by_pynamodb("RequestLimitExceeded")), True),
        (cancelled_transaction(None, "TransactionConflict"), True),
        (cancelled_transaction("ThrottlingError", None), True),
        (cancelled_transaction("ConditionalCheckFailed", None), False),  # the items' state: sending again cannot help
        (cancelled_transaction("ValidationError"), False),
        (wrapped_by_pynamodb("ConditionalCheckFailedException"), False),
        (wrapped_by_pynamodb("ValidationException"), False),
        (client_error("AccessDenied"), False),
        (ValueError("no"), False),
    ],
)
def test_refused_for_now(error: BaseException, for_now: bool) -> None:
    assert refused_for_now(error) is for_now
