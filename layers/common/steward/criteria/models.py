"""The criteria language as typed objects, and the preview route's input and output shapes.

Criteria arrive as JSON (see ``steward.criteria.parse``) and become a tree of
``Group`` and ``Rule`` nodes whose fields are resolved and whose values are
checked and normalized, so evaluation never meets a malformed rule.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, JsonValue, WithJsonSchema

from steward.criteria.fields import FieldRef
from steward.devices.models import Device
from steward.schema import Schema
from steward.users.models import User

MAX_DEPTH = 10  # groups nested in groups
MAX_RULES = 200
MAX_LIST_VALUES = 100  # DynamoDB's cap on the operands of IN
MAX_STRING_BYTES = 1024
MAX_DAYS = 36_600  # within_last_days: a century is "everything"
MAX_CRITERIA_BYTES = 64 * 1024  # keeps a pushed-down filter's values far below DynamoDB's 2 MB
DEFAULT_SAMPLE_SIZE = 10
MAX_SAMPLE_SIZE = 50


class Operator(StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BEFORE = "before"
    AFTER = "after"
    WITHIN_LAST_DAYS = "within_last_days"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"


class Combinator(StrEnum):
    ALL = "all"
    ANY = "any"


class Target(StrEnum):
    USERS = "users"
    DEVICES = "devices"
    EMAILS = "emails"
    PHONES = "phones"


Scalar = str | int | float | bool
# After validation: a scalar, an instant (date fields), a tuple (in/not_in, or eq/ne on a list
# field), an int (within_last_days) or None (exists/not_exists).
RuleValue = Scalar | datetime | tuple[Scalar, ...] | tuple[datetime, ...] | None


@dataclass(frozen=True)
class Rule:
    field: FieldRef
    op: Operator
    value: RuleValue = None


@dataclass(frozen=True)
class Group:
    combinator: Combinator
    children: tuple["Node", ...]


Node = Rule | Group


# --- the preview route ------------------------------------------------------

_CRITERIA_SCHEMA: dict[str, Any] = {
    "description": (
        'A group `{"all": [...]}` (AND) or `{"any": [...]}` (OR) of criteria, nested up to 10 deep, '
        'or a rule `{"field", "op", "value"}` (no `value` for exists/not_exists); at most 200 rules. '
        "See the README for fields, operators and their exact semantics."
    ),
    "oneOf": [
        {
            "title": "All (AND)",
            "type": "object",
            "properties": {"all": {"type": "array", "minItems": 1, "items": {"type": "object"}}},
            "required": ["all"],
            "additionalProperties": False,
        },
        {
            "title": "Any (OR)",
            "type": "object",
            "properties": {"any": {"type": "array", "minItems": 1, "items": {"type": "object"}}},
            "required": ["any"],
            "additionalProperties": False,
        },
        {
            "title": "Rule",
            "type": "object",
            "properties": {
                "field": {
                    "type": "string",
                    "description": (
                        "user_id, fields.<name>, created_at, last_activity_at, active, global_unsubscribed, "
                        "subscription.<resource_id>.<channel>, device.transport, device.last_status, "
                        "device.active, device.tags, email.address, email.active, phone.number, phone.active"
                    ),
                },
                "op": {"type": "string", "enum": [item.value for item in Operator]},
                "value": {"description": "Depends on the field's type and the operator."},
            },
            "required": ["field", "op"],
            "additionalProperties": False,
        },
    ],
    "examples": [
        {
            "all": [
                {"field": "last_activity_at", "op": "within_last_days", "value": 30},
                {"field": "subscription.newsletter.email", "op": "eq", "value": "Subscribed"},
                {"any": [{"field": "fields.plan", "op": "in", "value": ["gold", "silver"]}]},
            ]
        }
    ],
}
# Validated by steward.criteria.parse, not by pydantic, so that every error names the
# exact JSON path of the bad part (``criteria.all[1].any[0].op``) with code invalid_criteria.
CriteriaJson = Annotated[JsonValue, WithJsonSchema(_CRITERIA_SCHEMA)]


class PreviewRequest(Schema):
    """Body of POST /v1/criteria/preview."""

    model_config = ConfigDict(extra="forbid")

    target: Target = Field(
        description="What the criteria select: users, devices, emails or phones (one subject per contact)."
    )
    criteria: CriteriaJson
    sample_size: int = Field(
        default=DEFAULT_SAMPLE_SIZE,
        ge=1,
        le=MAX_SAMPLE_SIZE,
        description="How many matching subjects of this page to return in `sample`.",
    )
    cursor: str | None = Field(
        default=None,
        description="`next_cursor` of the previous page; send the same target and criteria with it.",
    )


class ContactSample(Schema):
    """One email address or phone number, with the user who owns it."""

    user_id: str
    address: str = Field(description="The email address or phone number.")
    active: bool


# A globally unsubscribed user receives nothing: every count of deliverable users or contacts leaves it out.
NOT_GLOBALLY_UNSUBSCRIBED: dict[str, Any] = {"field": "global_unsubscribed", "op": "eq", "value": False}
# What a message can reach, per target: a user not globally unsubscribed; an active contact or device of
# one (a device without an owner is reached through no profile's consent, only its own).
DELIVERABLE: dict[Target, dict[str, Any]] = {
    Target.USERS: NOT_GLOBALLY_UNSUBSCRIBED,
    Target.EMAILS: {"all": [{"field": "email.active", "op": "eq", "value": True}, NOT_GLOBALLY_UNSUBSCRIBED]},
    Target.PHONES: {"all": [{"field": "phone.active", "op": "eq", "value": True}, NOT_GLOBALLY_UNSUBSCRIBED]},
    Target.DEVICES: {
        "all": [
            {"field": "device.active", "op": "eq", "value": True},
            {"any": [NOT_GLOBALLY_UNSUBSCRIBED, {"field": "global_unsubscribed", "op": "not_exists"}]},
        ]
    },
}


class PreviewResult(Schema):
    matched: int = Field(description="Subjects of this page that match. Sum it over all pages for the total.")
    deliverable: int = Field(
        description="Of those, what a message can reach: users not globally unsubscribed; active emails, phones "
        "and devices of such users (a device without an owner: when active). Sum it over all pages."
    )
    scanned: int = Field(description="Items read from the target's table for this page (what the page costs).")
    complete: bool = Field(description="Whether the whole collection has been read (then `next_cursor` is null).")
    next_cursor: str | None = Field(description="Pass as `cursor` to continue; null on the last page.")
    sample: list[User | Device | ContactSample] = Field(
        description="Up to `sample_size` matching subjects of this page: users, devices, or contacts."
    )
