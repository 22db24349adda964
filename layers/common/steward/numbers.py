"""Numbers DynamoDB can store, checked before a write (a refused write is a 500, or a whole failed batch).

DynamoDB numbers have at most 38 significant digits and a magnitude from
1e-130 to below 1e126; NaN and the infinities do not exist there. JSON
parsing in Python turns ``1e400`` into infinity and keeps ``1e-200`` and
39-digit integers as they are, so every number that reaches a table goes
through ``storable_number`` first (pydantic models use ``StorableNumber``).
"""

import math
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator

MAX_DIGITS = 38
MIN_EXPONENT = -130
MAX_EXPONENT = 125
NOT_STORABLE = "must be a finite number of at most 38 significant digits, with a magnitude from 1e-130 to 1e125"


def number_problem(value: int | float) -> str | None:
    """Why DynamoDB would refuse this number, or None if it stores it."""
    if isinstance(value, float) and not math.isfinite(value):
        return NOT_STORABLE
    exact = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    if exact == 0:
        return None
    # Not Decimal.normalize(): it rounds to the context's 28 digits.
    digits = len("".join(str(digit) for digit in exact.as_tuple().digits).rstrip("0"))
    if digits > MAX_DIGITS or not MIN_EXPONENT <= exact.adjusted() <= MAX_EXPONENT:
        return NOT_STORABLE
    return None


def storable_number[N: (int, float)](value: N) -> N:
    """The number itself, or ValueError (for pydantic validators) if DynamoDB cannot store it."""
    if isinstance(value, bool):
        return value
    problem = number_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


StorableFloat = Annotated[float, AfterValidator(storable_number)]
StorableInt = Annotated[int, AfterValidator(storable_number)]
