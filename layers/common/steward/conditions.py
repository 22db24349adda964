"""Helpers for DynamoDB conditional writes through pynamodb."""

from pynamodb.exceptions import PynamoDBException

CONDITION_FAILED = "ConditionalCheckFailedException"
# How a cancelled transaction names an item whose condition failed.
CONDITION_FAILED_REASON = "ConditionalCheckFailed"


def condition_failed(exc: PynamoDBException) -> bool:
    """Whether a write was refused by its condition (as opposed to a real failure)."""
    return exc.cause_response_code == CONDITION_FAILED
