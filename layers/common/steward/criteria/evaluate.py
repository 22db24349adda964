"""Evaluation in code: does a subject match a criteria tree?

A subject is what one target yields (a user, a device, an email or a phone)
together with everything rules can reach from it: the owning user, and the
devices, emails and phones that go with it. For target devices, ``devices``
is just that device; for target emails, ``emails`` is just that contact; for
target users, they are all of the user's.

Semantics (the pushdown in ``steward.criteria.pushdown`` implements the same):

- A rule on device.*, email.* or phone.* holds when at least one of the
  subject's devices (emails, phones) satisfies it. Each rule is quantified on
  its own: ``all[device.transport eq FCM, device.active eq true]`` asks for
  an FCM device and an active device, not necessarily the same one.
- A missing value (no such custom field, no subscription, no devices, no
  owner...) fails every operator except ``not_exists``; so ``ne`` and
  ``not_in`` are false on a missing value.
- Values compare only with values of the same type (see ``values``); a value
  of another type fails like a missing one (``ne`` included).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from steward.criteria.fields import Attribute, FieldRef, FieldType, Scope
from steward.criteria.models import Combinator, Group, Node, Operator, Rule
from steward.criteria.values import custom_date, days_ago, dynamo_type, normalize_custom, order, same
from steward.devices.models import Device
from steward.users.models import Contact, User


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class Subject:
    user: User | None
    devices: Sequence[Device] = ()
    emails: Sequence[Contact] = ()
    phones: Sequence[Contact] = ()


def user_subject(user: User, devices: Sequence[Device] = ()) -> Subject:
    return Subject(user=user, devices=devices, emails=user.emails, phones=user.phones)


def device_subject(device: Device, owner: User | None) -> Subject:
    return Subject(
        user=owner,
        devices=(device,),
        emails=owner.emails if owner else (),
        phones=owner.phones if owner else (),
    )


def contact_subject(contact: Contact, owner: User, is_email: bool, devices: Sequence[Device] = ()) -> Subject:
    if is_email:
        return Subject(user=owner, devices=devices, emails=(contact,), phones=owner.phones)
    return Subject(user=owner, devices=devices, emails=owner.emails, phones=(contact,))


def matches(node: Node, subject: Subject, now: datetime) -> bool:
    if isinstance(node, Group):
        results = (matches(child, subject, now) for child in node.children)
        return all(results) if node.combinator is Combinator.ALL else any(results)
    return any(holds(node, value, now) for value in _values(node.field, subject))


def holds(rule: Rule, value: object, now: datetime) -> bool:
    """Whether one value (or MISSING) satisfies one rule."""
    if value is MISSING:
        return rule.op is Operator.NOT_EXISTS
    expected = rule.value
    match rule.op:
        case Operator.EXISTS:
            return True
        case Operator.NOT_EXISTS:
            return False
        case Operator.EQ:
            return _equal(rule.field, value, expected)
        case Operator.NE:
            return _comparable(rule.field, value, expected) and not _equal(rule.field, value, expected)
        case Operator.IN:
            return any(same(value, item) for item in _items(expected))
        case Operator.NOT_IN:
            items = _items(expected)
            return _comparable(rule.field, value, items[0]) and not any(same(value, item) for item in items)
        case Operator.GT | Operator.AFTER:
            return order(value, expected) == 1
        case Operator.GTE:
            return order(value, expected) in (0, 1)
        case Operator.LT | Operator.BEFORE:
            return order(value, expected) == -1
        case Operator.LTE:
            return order(value, expected) in (-1, 0)
        case Operator.WITHIN_LAST_DAYS:
            assert isinstance(expected, int)
            bound = days_ago(now, expected)
            return order(value, bound if rule.field.type is FieldType.DATE else custom_date(bound)) in (0, 1)
        case Operator.CONTAINS:
            return _contains(rule.field, value, expected)
        case Operator.STARTS_WITH:
            return isinstance(value, str) and isinstance(expected, str) and value.startswith(expected)


def _items(expected: object) -> tuple[object, ...]:
    assert isinstance(expected, tuple)
    return expected


def _equal(field: FieldRef, value: object, expected: object) -> bool:
    if field.type is FieldType.STRING_LIST:
        return isinstance(value, list) and set(value) == set(_items(expected))  # tags are a set
    return same(value, expected)


def _comparable(field: FieldRef, value: object, expected: object) -> bool:
    if field.type is not FieldType.ANY:
        return True  # a built-in field only ever holds values of its own type
    kind = dynamo_type(value)
    return kind is not None and kind == dynamo_type(expected)


def _contains(field: FieldRef, value: object, needle: object) -> bool:
    if field.type is FieldType.STRING_LIST:
        return isinstance(value, list) and needle in value
    kind = dynamo_type(value)
    if kind == "S":
        return isinstance(needle, str) and isinstance(value, str) and needle in value
    if kind == "L" and field.type is FieldType.ANY:
        # List items were normalized on write like any custom value, so a date needle is too.
        member = normalize_custom(needle) if isinstance(needle, str) else needle
        return isinstance(value, list) and any(same(item, member) for item in value)
    return False


def _values(field: FieldRef, subject: Subject) -> list[object]:
    """The values a rule looks at: one per device or contact in reach, or [MISSING] when there is none."""
    values: list[object]
    match field.scope:
        case Scope.USER:
            values = [MISSING if subject.user is None else _user_value(field, subject.user)]
        case Scope.DEVICE:
            values = [_device_value(field, device) for device in subject.devices]
        case Scope.EMAIL:
            values = [_contact_value(field, contact) for contact in subject.emails]
        case Scope.PHONE:
            values = [_contact_value(field, contact) for contact in subject.phones]
    return values or [MISSING]


def _user_value(field: FieldRef, user: User) -> object:
    match field.attribute:
        case Attribute.USER_ID:
            return user.user_id
        case Attribute.CUSTOM:
            return user.fields.get(field.key or "", MISSING)
        case Attribute.CREATED_AT:
            return user.created_at
        case Attribute.LAST_ACTIVITY_AT:
            return MISSING if user.last_activity_at is None else user.last_activity_at
        case Attribute.ACTIVE:
            return user.active
        case Attribute.GLOBAL_UNSUBSCRIBED:
            return user.global_unsubscribed
        case Attribute.SUBSCRIPTION:
            for subscription in user.subscriptions:
                if subscription.resource_id == field.key and subscription.channel.value == field.channel:
                    return subscription.status.value
            return MISSING
    raise ValueError(f"{field.path} is not a user field")


def _device_value(field: FieldRef, device: Device) -> object:
    match field.attribute:
        case Attribute.DEVICE_TRANSPORT:
            return device.transport.value
        case Attribute.DEVICE_LAST_STATUS:
            return device.last_status.value
        case Attribute.DEVICE_ACTIVE:
            return device.active
        case Attribute.DEVICE_TAGS:
            return list(device.tags) if device.tags else MISSING  # DynamoDB stores no empty set
    raise ValueError(f"{field.path} is not a device field")


def _contact_value(field: FieldRef, contact: Contact) -> object:
    if field.attribute in (Attribute.EMAIL_ADDRESS, Attribute.PHONE_NUMBER):
        return contact.address
    if field.attribute in (Attribute.EMAIL_ACTIVE, Attribute.PHONE_ACTIVE):
        return contact.active
    raise ValueError(f"{field.path} is not a contact field")


def scopes_in(node: Node | None) -> frozenset[Scope]:
    """The scopes a (residual) tree reads, to know which related items must be fetched."""
    if node is None:
        return frozenset()
    if isinstance(node, Rule):
        return frozenset({node.field.scope})
    return frozenset().union(*(scopes_in(child) for child in node.children))
