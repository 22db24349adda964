"""Domain objects and input shapes for users, contacts and subscriptions."""

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from steward.batch import BatchOutcome, ItemOutcome
from steward.numbers import storable_number
from steward.schema import Schema
from steward.types import Channel, UserId

MAX_FIELDS = 100
# A list value holds at most this many items, and all fields together take at most
# MAX_FIELDS_BYTES of JSON: with the capped contacts, subscriptions and segments, a
# profile stays under ~64 KB, far from DynamoDB's 400 KB item limit (and a write of it
# costs at most ~64 write units).
MAX_LIST_ITEMS = 100
MAX_FIELDS_BYTES = 32 * 1024
MAX_SUBSCRIPTIONS = 200
MAX_PROMO_CODES = 100
MAX_CONTACTS = 10  # per kind, so a user item stays a few KB
MAX_BATCH_USERS = 100
FIELD_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$")


class SubscriptionStatus(StrEnum):
    SUBSCRIBED = "Subscribed"
    UNSUBSCRIBED = "Unsubscribed"
    COMPLAINER = "Complainer"
    HARDBOUNCED = "Hardbounced"
    INVALID = "Invalid"


UNSAFE_STATUSES = frozenset(
    {
        SubscriptionStatus.UNSUBSCRIBED,
        SubscriptionStatus.COMPLAINER,
        SubscriptionStatus.HARDBOUNCED,
        SubscriptionStatus.INVALID,
    }
)


def normalize_date(text: str) -> str | None:
    """An ISO-8601 date or date-time as a UTC 'YYYY-MM-DDTHH:MM:SSZ' string, or None if it is not one.

    Stored dates in one format compare correctly as strings, in code and in DynamoDB.
    """
    if not _ISO_DATE.match(text):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    # Zero-padded by hand: strftime leaves years before 1000 unpadded, and then they would not sort.
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}Z"


def _normalize_value(value: "FieldValue") -> "FieldValue":
    """Dates to their stored form; refuses what DynamoDB cannot store (the error names the field)."""
    if isinstance(value, str):
        return normalize_date(value) or value
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            raise ValueError(f"a list holds at most {MAX_LIST_ITEMS} values; this one has {len(value)}")
        normalized = []
        for index, item in enumerate(value):
            try:
                normalized.append(_normalize_value(item))
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc}") from None
        return normalized  # type: ignore[return-value]
    return storable_number(value)


def same_value(left: object, right: object) -> bool:
    """Equal as stored: a boolean never equals a number (Python's ``True == 1``); numbers compare by value."""
    if isinstance(left, list) or isinstance(right, list):
        return (
            isinstance(left, list)
            and isinstance(right, list)
            and len(left) == len(right)
            and all(map(same_value, left, right))
        )
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return left == right


def same_fields(left: Mapping[str, object], right: Mapping[str, object]) -> bool:
    return left.keys() == right.keys() and all(same_value(left[name], right[name]) for name in left)


def fields_bytes(fields: dict[str, "Scalar | list[Scalar]"]) -> int:
    """Size of a user's fields as stored: compact JSON in UTF-8."""
    return len(json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


Scalar = Annotated[str, StringConstraints(max_length=1024)] | int | float | bool
FieldValue = Annotated[Scalar | list[Scalar], AfterValidator(_normalize_value)]
FieldName = Annotated[str, StringConstraints(pattern=FIELD_NAME_PATTERN)]


# Why a contact is inactive when a maintenance job (deactivate_users) made it so.
CONTACT_DEACTIVATED_BY_JOB = "deactivated_by_job"


class Contact(Schema):
    model_config = ConfigDict(frozen=True)

    address: str = Field(description="Email address or E.164 phone number.")
    active: bool
    added_at: datetime
    deactivated_at: datetime | None = Field(default=None, description="When it was last deactivated, if inactive.")
    deactivation_reason: str | None = Field(
        default=None, description=f"`{CONTACT_DEACTIVATED_BY_JOB}` when a maintenance job deactivated it."
    )


class Subscription(Schema):
    model_config = ConfigDict(frozen=True)

    resource_id: str
    channel: Channel
    status: SubscriptionStatus


class PromoCode(Schema):
    model_config = ConfigDict(frozen=True)

    code: str
    program_id: str


class User(Schema):
    model_config = ConfigDict(frozen=True)

    user_id: str
    fields: dict[str, Scalar | list[Scalar]] = Field(description="Custom fields; dates as ISO-8601 UTC strings.")
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime | None
    active: bool
    deactivated_at: datetime | None
    deactivation_reason: str | None
    global_unsubscribed: bool
    emails: list[Contact]
    phones: list[Contact]
    subscriptions: list[Subscription]
    promo_codes: list[PromoCode]
    segments: list[str] = Field(default_factory=list, description="Ids of the static segments the user belongs to.")
    # Internal (not in responses): set when a conditional deletion was decided, with who decided it (a job's id):
    # that one's later attempts finish it.
    deletion_started_at: SkipJsonSchema[datetime | None] = Field(default=None, exclude=True)
    deletion_started_by: SkipJsonSchema[str | None] = Field(default=None, exclude=True)


def _not_in_future(moment: datetime) -> datetime:
    if moment > datetime.now(UTC):
        raise ValueError("must not be in the future")
    return moment.astimezone(UTC)


PastMoment = Annotated[AwareDatetime, AfterValidator(_not_in_future)]


class UpsertUser(Schema):
    """Body of PUT /v1/users/{user_id}: fields merge into the stored ones; null removes a field."""

    model_config = ConfigDict(extra="forbid")

    fields: dict[FieldName, FieldValue | None] = Field(default_factory=dict, max_length=MAX_FIELDS)
    global_unsubscribed: bool | None = None
    last_activity_at: PastMoment | None = Field(
        default=None,
        description=(
            "History from another platform: the user's last activity (with an offset, not in the future). "
            "Sets it on a new user; an existing user's value only moves forward. Without it, the upsert is activity."
        ),
    )


class BatchUser(UpsertUser):
    """One item of POST /v1/users/batch."""

    user_id: UserId


E164_PATTERN = r"^\+[1-9]\d{1,14}$"


def normalize_email(address: str) -> str:
    """Syntax check (no DNS lookup) and the normalized form: the domain lower-cased, IDNA applied."""
    # Imported on first use: only the email routes need it, and it costs every cold start ~50 ms.
    from email_validator import EmailNotValidError, validate_email

    try:
        return str(validate_email(address, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc


EmailAddress = Annotated[str, StringConstraints(max_length=254), AfterValidator(normalize_email)]
PhoneNumber = Annotated[str, StringConstraints(pattern=E164_PATTERN)]


class PutContact(Schema):
    """Body of PUT /v1/users/{user_id}/emails/{email} and /phones/{phone} (may be empty)."""

    model_config = ConfigDict(extra="forbid")

    active: bool = Field(default=True, description="Inactive contacts receive nothing.")


class PutSubscription(Schema):
    model_config = ConfigDict(extra="forbid")

    status: SubscriptionStatus


class UserOutcome(ItemOutcome):
    """One item's outcome. Without the profile: 100 profiles could pass Lambda's 6 MB answer."""

    user_id: str | None
    updated_at: datetime | None = Field(default=None, description="When the user was last changed, if ok.")


class UserBatchOutcome(BatchOutcome[UserOutcome]):
    pass
