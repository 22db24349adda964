"""Value semantics shared by both evaluators, so code and DynamoDB cannot drift apart.

Values are typed the way DynamoDB types them: S (string), N (number), BOOL
and L (list). Two values compare only when their types match, and a bool is
never a number (Python's ``True == 1`` is not DynamoDB's). Numbers compare as
the decimals DynamoDB stores: pynamodb writes a float as ``repr(float)``, so
``Decimal(repr(x))`` is exactly what DynamoDB compares, also between a big
int and a float, where Python's exact comparison would disagree.
"""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from steward.users.models import normalize_date

DynamoType = Literal["S", "N", "BOOL", "L"]
CUSTOM_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # what steward.users.models.normalize_date produces


def dynamo_type(value: object) -> DynamoType | None:
    """The DynamoDB type a stored value of a custom field has (None: not one DynamoDB stores here)."""
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int | float):
        return "N"
    if isinstance(value, str):
        return "S"
    if isinstance(value, list | tuple):
        return "L"
    return None


def number_key(value: int | float) -> Decimal:
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def same(stored: object, expected: object) -> bool:
    """DynamoDB's ``=`` on two scalars: same type and equal value."""
    if isinstance(stored, datetime) or isinstance(expected, datetime):
        return isinstance(stored, datetime) and stored == expected  # built-in dates: instants
    kind = dynamo_type(stored)
    if kind is None or kind != dynamo_type(expected):
        return False
    if kind == "N":
        return number_key(stored) == number_key(expected)  # type: ignore[arg-type]
    if kind == "L":
        return False  # lists are never compared whole (only contains looks inside them)
    return stored == expected


def order(stored: object, expected: object) -> int | None:
    """-1, 0 or 1 like DynamoDB's < = > on strings, numbers or instants; None when they do not compare."""
    left: str | Decimal | datetime
    right: str | Decimal | datetime
    if isinstance(stored, datetime) and isinstance(expected, datetime):
        left, right = stored, expected
    else:
        kind = dynamo_type(stored)
        if kind != dynamo_type(expected) or kind not in ("S", "N"):
            return None
        if kind == "N":
            left, right = number_key(stored), number_key(expected)  # type: ignore[arg-type]
        else:
            left, right = str(stored), str(expected)  # code point order is UTF-8 byte order
    return (left > right) - (left < right)  # type: ignore[operator]


def normalize_custom(value: str) -> str:
    """A string as a custom field stores it: ISO dates become normalized UTC strings (as on write)."""
    return normalize_date(value) or value


def days_ago(now: datetime, days: int) -> datetime:
    """The lower bound of within_last_days: ``now`` minus ``days``, in whole seconds.

    Whole seconds, because custom-field dates are stored to the second: the same
    bound then holds for those and for the built-in dates (stored to the microsecond).
    """
    return (now - timedelta(days=days)).replace(microsecond=0)


def custom_date(moment: datetime) -> str:
    """An instant in the form custom-field dates are stored in."""
    return moment.strftime(CUSTOM_DATE_FORMAT)
