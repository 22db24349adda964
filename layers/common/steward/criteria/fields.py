"""The fields criteria can name: their scope (whose value it is) and their type.

A field path resolves to a ``FieldRef`` once, at validation time, so the two
evaluators (code and DynamoDB) never parse paths themselves.
"""

import re
from dataclasses import dataclass
from enum import StrEnum

from steward.devices.models import LastStatus, Transport
from steward.types import Channel
from steward.users.models import FIELD_NAME_PATTERN, SubscriptionStatus

MAX_FIELD_PATH_LENGTH = 512
_CUSTOM_FIELD = re.compile(FIELD_NAME_PATTERN)


class Scope(StrEnum):
    """Whose value a field is: the user's, or one of the user's devices or contacts."""

    USER = "user"
    DEVICE = "device"
    EMAIL = "email"
    PHONE = "phone"


class FieldType(StrEnum):
    STRING = "string"
    ENUM = "enum"  # a string from a fixed set
    BOOLEAN = "boolean"
    DATE = "date"  # an instant; stored with microseconds, compared as instants
    STRING_LIST = "string_list"
    ANY = "any"  # custom fields: the stored value decides, per item


class Attribute(StrEnum):
    """What a field reads; ``key`` on the FieldRef names the custom field or subscription."""

    USER_ID = "user_id"
    CUSTOM = "fields"
    CREATED_AT = "created_at"
    LAST_ACTIVITY_AT = "last_activity_at"
    ACTIVE = "active"
    GLOBAL_UNSUBSCRIBED = "global_unsubscribed"
    SUBSCRIPTION = "subscription"
    DEVICE_TRANSPORT = "device.transport"
    DEVICE_LAST_STATUS = "device.last_status"
    DEVICE_ACTIVE = "device.active"
    DEVICE_TAGS = "device.tags"
    EMAIL_ADDRESS = "email.address"
    EMAIL_ACTIVE = "email.active"
    PHONE_NUMBER = "phone.number"
    PHONE_ACTIVE = "phone.active"


@dataclass(frozen=True)
class FieldRef:
    path: str
    attribute: Attribute
    scope: Scope
    type: FieldType
    key: str | None = None  # custom field name, or the resource id of a subscription
    channel: str | None = None  # channel of a subscription
    choices: tuple[str, ...] = ()  # allowed values of an ENUM field


_FIXED: dict[str, tuple[Scope, FieldType, tuple[str, ...]]] = {
    Attribute.USER_ID: (Scope.USER, FieldType.STRING, ()),
    Attribute.CREATED_AT: (Scope.USER, FieldType.DATE, ()),
    Attribute.LAST_ACTIVITY_AT: (Scope.USER, FieldType.DATE, ()),
    Attribute.ACTIVE: (Scope.USER, FieldType.BOOLEAN, ()),
    Attribute.GLOBAL_UNSUBSCRIBED: (Scope.USER, FieldType.BOOLEAN, ()),
    Attribute.DEVICE_TRANSPORT: (Scope.DEVICE, FieldType.ENUM, tuple(item.value for item in Transport)),
    Attribute.DEVICE_LAST_STATUS: (Scope.DEVICE, FieldType.ENUM, tuple(item.value for item in LastStatus)),
    Attribute.DEVICE_ACTIVE: (Scope.DEVICE, FieldType.BOOLEAN, ()),
    Attribute.DEVICE_TAGS: (Scope.DEVICE, FieldType.STRING_LIST, ()),
    Attribute.EMAIL_ADDRESS: (Scope.EMAIL, FieldType.STRING, ()),
    Attribute.EMAIL_ACTIVE: (Scope.EMAIL, FieldType.BOOLEAN, ()),
    Attribute.PHONE_NUMBER: (Scope.PHONE, FieldType.STRING, ()),
    Attribute.PHONE_ACTIVE: (Scope.PHONE, FieldType.BOOLEAN, ()),
}
_CHANNELS = frozenset(item.value for item in Channel)
SUBSCRIPTION_STATUSES = tuple(item.value for item in SubscriptionStatus)


def resolve_field(path: str) -> FieldRef | None:
    """The field a path names, or None when no such field exists."""
    if len(path) > MAX_FIELD_PATH_LENGTH or any(ord(char) < 32 for char in path):
        return None
    if path in _FIXED:
        scope, field_type, choices = _FIXED[path]
        return FieldRef(path=path, attribute=Attribute(path), scope=scope, type=field_type, choices=choices)
    head, _, rest = path.partition(".")
    if head == "fields" and _CUSTOM_FIELD.match(rest):
        return FieldRef(path=path, attribute=Attribute.CUSTOM, scope=Scope.USER, type=FieldType.ANY, key=rest)
    if head == "subscription":
        # The resource id may itself hold dots; the channel is always the last segment.
        resource_id, _, channel = rest.rpartition(".")
        if resource_id and channel in _CHANNELS:
            return FieldRef(
                path=path,
                attribute=Attribute.SUBSCRIPTION,
                scope=Scope.USER,
                type=FieldType.ENUM,
                key=resource_id,
                channel=channel,
                choices=SUBSCRIPTION_STATUSES,
            )
    return None
