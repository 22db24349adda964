"""Id and value types that several domains share, at the bottom of the import graph.

Domain packages import these instead of each other's models, so no domain
has to load another to validate an id.
"""

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

MAX_DEVICE_ID_BYTES = 1024  # DynamoDB's limit for a sort key


def no_control_characters(value: str) -> str:
    """Reject C0 controls and DEL: they break logs, CSV reports and key conditions."""
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("must not contain control characters")
    return value


def _fits_sort_key(value: str) -> str:
    if len(value.encode("utf-8")) > MAX_DEVICE_ID_BYTES:
        raise ValueError(f"must be at most {MAX_DEVICE_ID_BYTES} bytes of UTF-8")
    return value


DeviceId = Annotated[
    str,
    StringConstraints(min_length=1),
    AfterValidator(_fits_sort_key),
    AfterValidator(no_control_characters),
]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(no_control_characters)]


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    VIBER = "viber"
    PUSH = "push"
