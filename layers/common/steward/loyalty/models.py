"""Domain objects and input shapes for loyalty programs and promo codes."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints

from steward.schema import Schema

CODE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
PROGRAM_ID_PREFIX = "lp_"
MAX_CODES_PER_REQUEST = 1000

PromoCodeValue = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]


class LoyaltyProgram(Schema):
    model_config = ConfigDict(frozen=True)

    program_id: str
    name: str
    created_at: datetime
    updated_at: datetime


class CreateLoyaltyProgram(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class AddCodes(Schema):
    model_config = ConfigDict(extra="forbid")

    codes: list[Any] = Field(
        description=f"Up to {MAX_CODES_PER_REQUEST} codes, each 1-64 characters of A-Z, a-z, 0-9, '_' and '-'."
    )


class AddCodesOutcome(Schema):
    added: int = Field(description="Codes new to the app, now in the program.")
    duplicates: int = Field(
        description="Codes that already exist in one of the app's programs (or repeat in the request); left unchanged."
    )
    invalid: list[str] = Field(description="Items that are not valid codes, as sent (non-strings as JSON text).")
    failed: list[str] = Field(
        default_factory=list, description="Valid codes not written because of an outage; send them again."
    )
