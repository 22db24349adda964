"""Push-down: the part of a criteria tree DynamoDB can filter, and the rest (the residual) for code.

``plan`` splits a tree for one target's table. The query's FilterExpression
is ``condition``; every item it returns must still satisfy ``residual`` in
code. ``condition AND residual`` selects exactly what ``evaluate.matches``
selects, because each rule compiles to an expression with the same meaning:

- Custom fields and subscriptions may hold any type, so every comparison is
  guarded with ``attribute_type`` first: values of another type never match
  (that also makes ``ne`` / ``not in`` false on a missing value).
- Built-in attributes have one type; ``ne`` and ``not_in`` add
  ``attribute_exists``, as a missing value fails them.
- ``within_last_days`` is ``>=`` the instant ``now - days`` (whole seconds),
  serialized as the attribute stores it.

What is never pushed (evaluated in code instead):

- ``user_id``: DynamoDB refuses key attributes in a FilterExpression (moto accepts them).
- ``contains`` with a number or boolean on a custom field: moto's ``contains``
  finds ``1`` in ``[true]``, and list membership is cheap in code.
- eq/ne on ``device.tags`` (set equality), and subscriptions whose resource id
  holds ``[`` or ``]``, which pynamodb would read as a list index.
- Rules on another table's items (devices for target users, contacts...).

An ``all`` group pushes its pushable children and keeps the others as
residual; an ``any`` group is pushed only when all its children are. If the
expression would pass DynamoDB's size limits, top-level children are kept
in code instead, so a query is never refused.

The guard comes first in every AND: moto evaluates AND left to right and
raises on ``<`` between a string and a number, where DynamoDB returns false.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pynamodb.expressions.condition import And, Condition, Not, Or
from pynamodb.expressions.operand import Path

from steward.criteria.fields import Attribute, FieldRef, FieldType, Scope
from steward.criteria.models import Combinator, Group, Node, Operator, Rule, Target
from steward.criteria.values import DynamoType, custom_date, days_ago, dynamo_type, normalize_custom
from steward.tables import DeviceRecord, ProfileRecord, subscription_key

# DynamoDB allows 4 KB per expression and 300 operators; the margin covers the
# placeholder numbers, which shift once the key condition takes the first ones.
MAX_FILTER_BYTES = 3600
MAX_FILTER_OPERATORS = 250

_TABLE_SCOPE = {
    Target.USERS: Scope.USER,
    Target.EMAILS: Scope.USER,
    Target.PHONES: Scope.USER,
    Target.DEVICES: Scope.DEVICE,
}
_TYPED_PATHS: dict[Attribute, Callable[[], Path]] = {
    Attribute.CREATED_AT: lambda: Path(ProfileRecord.created_at),
    Attribute.LAST_ACTIVITY_AT: lambda: Path(ProfileRecord.last_activity_at),
    Attribute.ACTIVE: lambda: Path(ProfileRecord.active),
    Attribute.GLOBAL_UNSUBSCRIBED: lambda: Path(ProfileRecord.global_unsubscribed),
    Attribute.DEVICE_TRANSPORT: lambda: Path(DeviceRecord.transport),
    Attribute.DEVICE_LAST_STATUS: lambda: Path(DeviceRecord.last_status),
    Attribute.DEVICE_ACTIVE: lambda: Path(DeviceRecord.active),
    Attribute.DEVICE_TAGS: lambda: Path(DeviceRecord.tags),
}


@dataclass(frozen=True)
class Plan:
    condition: Condition | None  # the FilterExpression, or None to read every item
    residual: Node | None  # what code must still check, or None when DynamoDB decides alone


def plan(node: Node, target: Target, now: datetime) -> Plan:
    def compile_one(rule: Rule) -> Condition | None:
        return compile_rule(rule, target, now)

    if isinstance(node, Group) and node.combinator is Combinator.ALL:
        pushed: list[Condition] = []
        residual: list[Node] = []
        for child in node.children:
            condition, rest = _split(child, compile_one)
            if condition is not None and _fits(_and([*pushed, condition])):
                pushed.append(condition)
                if rest is not None:
                    residual.append(rest)
            else:
                residual.append(child)
        return Plan(_and(pushed), _all(residual))
    condition, rest = _split(node, compile_one)
    if condition is not None and not _fits(condition):
        return Plan(None, node)
    return Plan(condition, rest)


def compile_rule(rule: Rule, target: Target, now: datetime) -> Condition | None:
    """The FilterExpression of one rule on the target's table, or None when code must evaluate it."""
    field = rule.field
    if field.scope is not _TABLE_SCOPE[target]:
        return None
    if field.attribute in _TYPED_PATHS:
        if field.type is FieldType.STRING_LIST and rule.op in (Operator.EQ, Operator.NE):
            return None
        return _typed(rule, _TYPED_PATHS[field.attribute](), now)
    path = _untyped_path(field)
    return None if path is None else _untyped(rule, path, now)


def _untyped_path(field: FieldRef) -> Path | None:
    if field.attribute is Attribute.CUSTOM and field.key:
        return Path(["fields", field.key])
    if field.attribute is Attribute.SUBSCRIPTION and field.key and field.channel:
        key = subscription_key(field.key, field.channel)
        return None if "[" in key or "]" in key else Path(["subscriptions", key])
    return None  # user_id (a key attribute)


def _typed(rule: Rule, path: Path, now: datetime) -> Condition:
    """An attribute with one known type: plain comparisons, pynamodb serializes values as it stores them."""
    value = rule.value
    match rule.op:
        case Operator.EXISTS:
            return path.exists()
        case Operator.NOT_EXISTS:
            return path.does_not_exist()
        case Operator.EQ:
            return path == value
        case Operator.NE:
            return And(path.exists(), path != value)
        case Operator.IN:
            return path.is_in(*_items(value))
        case Operator.NOT_IN:
            return And(path.exists(), Not(path.is_in(*_items(value))))
        case Operator.GT | Operator.AFTER:
            return path > value
        case Operator.GTE:
            return path >= value
        case Operator.LT | Operator.BEFORE:
            return path < value
        case Operator.LTE:
            return path <= value
        case Operator.WITHIN_LAST_DAYS:
            assert isinstance(value, int)
            return path >= days_ago(now, value)
        case Operator.CONTAINS:
            return path.contains(value)
        case Operator.STARTS_WITH:
            assert isinstance(value, str)
            return path.startswith(value)


def _untyped(rule: Rule, path: Path, now: datetime) -> Condition | None:
    """A map entry that may hold any type: every comparison is guarded by the value's type."""
    value = rule.value
    match rule.op:
        case Operator.EXISTS:
            return path.exists()
        case Operator.NOT_EXISTS:
            return path.does_not_exist()
        case Operator.EQ:
            return And(_is(path, value), path == value)
        case Operator.NE:
            return And(_is(path, value), path != value)
        case Operator.IN:
            items = _items(value)
            return And(_is(path, items[0]), path.is_in(*items))
        case Operator.NOT_IN:
            items = _items(value)
            return And(_is(path, items[0]), Not(path.is_in(*items)))
        case Operator.GT | Operator.AFTER:
            return And(_is(path, value), path > value)
        case Operator.GTE:
            return And(_is(path, value), path >= value)
        case Operator.LT | Operator.BEFORE:
            return And(_is(path, value), path < value)
        case Operator.LTE:
            return And(_is(path, value), path <= value)
        case Operator.WITHIN_LAST_DAYS:
            assert isinstance(value, int)
            return And(path.is_type("S"), path >= custom_date(days_ago(now, value)))
        case Operator.CONTAINS:
            if not isinstance(value, str):
                return None
            substring = And(path.is_type("S"), path.contains(value))
            return Or(substring, And(path.is_type("L"), path.contains(normalize_custom(value))))
        case Operator.STARTS_WITH:
            assert isinstance(value, str)
            return And(path.is_type("S"), path.startswith(value))


def _is(path: Path, value: object) -> Condition:
    kind: DynamoType | None = dynamo_type(value)
    assert kind is not None, f"not a custom-field value: {value!r}"
    return path.is_type(kind)


def _items(value: object) -> tuple[object, ...]:
    assert isinstance(value, tuple)
    return value


def _split(node: Node, compile_one: Callable[[Rule], Condition | None]) -> tuple[Condition | None, Node | None]:
    """(what DynamoDB can filter, what code must still check) for one subtree."""
    if isinstance(node, Rule):
        condition = compile_one(node)
        return (condition, None) if condition is not None else (None, node)
    parts = [_split(child, compile_one) for child in node.children]
    if node.combinator is Combinator.ALL:
        return _and([c for c, _ in parts if c is not None]), _all([r for _, r in parts if r is not None])
    if all(rest is None for _, rest in parts):
        conditions = [c for c, _ in parts if c is not None]
        combined = conditions[0]
        for condition in conditions[1:]:
            combined = Or(combined, condition)
        return combined, None
    return None, node  # an "any" with one part DynamoDB cannot decide is decided in code, whole


def _and(conditions: list[Condition]) -> Condition | None:
    if not conditions:
        return None
    combined = conditions[0]
    for condition in conditions[1:]:
        combined = And(combined, condition)
    return combined


def _all(nodes: list[Node]) -> Node | None:
    if not nodes:
        return None
    return nodes[0] if len(nodes) == 1 else Group(combinator=Combinator.ALL, children=tuple(nodes))


def _fits(condition: Condition | None) -> bool:
    if condition is None:
        return True
    expression = condition.serialize({}, {})
    return len(expression.encode()) <= MAX_FILTER_BYTES and _operators(condition) <= MAX_FILTER_OPERATORS


def _operators(condition: Condition) -> int:
    """Comparisons, functions, AND/OR/NOT: what DynamoDB counts against its limit of 300."""
    return 1 + sum(_operators(value) for value in condition.values if isinstance(value, Condition))
