"""Validation: criteria JSON in, a checked ``Node`` tree out, or InvalidInput naming the bad part.

Every error has code ``invalid_criteria`` and ``field`` set to the JSON path
of the offending part, e.g. ``criteria.all[1].any[0].op``. The walk is by
hand (not a pydantic model) because pydantic cannot report paths through a
recursive union of groups and rules in this form.
"""

import json
import re
from datetime import datetime
from typing import Any

from steward.criteria.fields import Attribute, FieldRef, FieldType, resolve_field
from steward.criteria.models import (
    MAX_CRITERIA_BYTES,
    MAX_DAYS,
    MAX_DEPTH,
    MAX_LIST_VALUES,
    MAX_RULES,
    MAX_STRING_BYTES,
    Combinator,
    Group,
    Node,
    Operator,
    Rule,
    RuleValue,
    Scalar,
)
from steward.criteria.values import custom_date, dynamo_type, normalize_custom
from steward.errors import InvalidInput
from steward.numbers import number_problem
from steward.users.models import normalize_date, normalize_email

ROOT = "criteria"
INVALID_CRITERIA = "invalid_criteria"
_RULE_KEYS = frozenset({"field", "op", "value"})
_VALUELESS = frozenset({Operator.EXISTS, Operator.NOT_EXISTS})
_ORDERING = frozenset({Operator.GT, Operator.GTE, Operator.LT, Operator.LTE})
_EVERYWHERE = frozenset({Operator.EQ, Operator.NE, Operator.IN, Operator.NOT_IN, *_VALUELESS})
ALLOWED_OPERATORS: dict[FieldType, frozenset[Operator]] = {
    FieldType.STRING: _EVERYWHERE | _ORDERING | {Operator.CONTAINS, Operator.STARTS_WITH},
    FieldType.ENUM: _EVERYWHERE,
    FieldType.BOOLEAN: _EVERYWHERE,
    FieldType.DATE: _EVERYWHERE | _ORDERING | {Operator.BEFORE, Operator.AFTER, Operator.WITHIN_LAST_DAYS},
    # A list is compared whole (eq/ne, as a set) or looked into (contains); in/not_in make no sense.
    FieldType.STRING_LIST: frozenset({Operator.EQ, Operator.NE, Operator.CONTAINS, *_VALUELESS}),
    FieldType.ANY: frozenset(Operator),
}
# Criteria dates must have the stored form (four-digit year, UTC) to compare as strings.
_SORTABLE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def criteria_error(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", code=INVALID_CRITERIA, field=path)


def parse_criteria(raw: Any) -> Node:
    """The checked tree of a criteria JSON value (raises InvalidInput, code invalid_criteria)."""
    if len(json.dumps(raw, default=str)) > MAX_CRITERIA_BYTES:
        raise criteria_error(ROOT, f"criteria may take at most {MAX_CRITERIA_BYTES} bytes of JSON")
    return _Parser().node(raw, ROOT, depth=1)


class _Parser:
    def __init__(self) -> None:
        self.rules = 0

    def node(self, raw: Any, path: str, depth: int) -> Node:
        if not isinstance(raw, dict):
            raise criteria_error(path, 'must be an object: a group {"all": [...]} or {"any": [...]}, or a rule')
        group_keys = [key for key in (Combinator.ALL, Combinator.ANY) if key in raw]
        if group_keys:
            return self.group(raw, path, depth, group_keys)
        return self.rule(raw, path)

    def group(self, raw: dict[str, Any], path: str, depth: int, group_keys: list[Combinator]) -> Group:
        if len(group_keys) > 1:
            raise criteria_error(path, 'a group has either "all" or "any", not both')
        combinator = group_keys[0]
        extra = sorted(key for key in raw if key != combinator)
        if extra:
            raise criteria_error(f"{path}.{extra[0]}", f'a group has only the key "{combinator}"')
        list_path = f"{path}.{combinator}"
        if depth > MAX_DEPTH:
            raise criteria_error(list_path, f"groups may be nested at most {MAX_DEPTH} deep")
        children = raw[combinator]
        if not isinstance(children, list):
            raise criteria_error(list_path, "must be a list of criteria")
        if not children:
            raise criteria_error(list_path, "a group must hold at least one criterion")
        return Group(
            combinator=combinator,
            children=tuple(
                self.node(child, f"{list_path}[{index}]", depth + 1) for index, child in enumerate(children)
            ),
        )

    def rule(self, raw: dict[str, Any], path: str) -> Rule:
        self.rules += 1
        if self.rules > MAX_RULES:
            raise criteria_error(path, f"criteria may hold at most {MAX_RULES} rules")
        extra = sorted(key for key in raw if key not in _RULE_KEYS)
        if extra:
            raise criteria_error(f"{path}.{extra[0]}", 'a rule has only "field", "op" and "value"')
        field = _field(raw, f"{path}.field")
        op = _operator(raw, field, f"{path}.op")
        value_path = f"{path}.value"
        if op in _VALUELESS:
            if "value" in raw:
                raise criteria_error(value_path, f"{op} takes no value")
            return Rule(field=field, op=op)
        if "value" not in raw:
            raise criteria_error(value_path, f"{op} needs a value")
        return Rule(field=field, op=op, value=_value(field, op, raw["value"], value_path))


def _field(raw: dict[str, Any], path: str) -> FieldRef:
    name = raw.get("field")
    if not isinstance(name, str):
        raise criteria_error(path, "must be a field path such as fields.plan or last_activity_at")
    field = resolve_field(name)
    if field is None:
        raise criteria_error(path, f"unknown field {name!r}")
    return field


def _operator(raw: dict[str, Any], field: FieldRef, path: str) -> Operator:
    name = raw.get("op")
    known = {item.value: item for item in Operator}
    op = known.get(name) if isinstance(name, str) else None
    if op is None:
        raise criteria_error(path, f"must be one of {', '.join(known)}")
    if op not in ALLOWED_OPERATORS[field.type]:
        allowed = ", ".join(item.value for item in Operator if item in ALLOWED_OPERATORS[field.type])
        raise criteria_error(path, f"{op} does not apply to {field.path} ({field.type}); use one of {allowed}")
    return op


def _value(field: FieldRef, op: Operator, raw: Any, path: str) -> RuleValue:
    if op is Operator.WITHIN_LAST_DAYS:
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_DAYS:
            raise criteria_error(path, f"must be a whole number of days from 0 to {MAX_DAYS}")
        return raw
    if op in (Operator.BEFORE, Operator.AFTER):
        moment = _date(raw, path)
        return moment if field.type is FieldType.DATE else custom_date(moment)
    if op in (Operator.IN, Operator.NOT_IN):
        return _list(field, raw, path)
    if field.type is FieldType.STRING_LIST:
        if op is Operator.CONTAINS:
            return _text(raw, path, non_empty=True)
        return tuple(sorted(set(_strings(raw, path))))  # eq/ne: compared as sets
    if op in _ORDERING:
        return _ordered(field, raw, path)
    if op is Operator.CONTAINS:
        if field.type is FieldType.ANY and not isinstance(raw, str):
            return _scalar(field, raw, path)  # list membership of a number or boolean
        return _text(raw, path, non_empty=True)  # substring (or list membership) of a string
    if op is Operator.STARTS_WITH:
        return _text(raw, path, non_empty=True)
    return _scalar(field, raw, path)  # eq, ne


def _list(field: FieldRef, raw: Any, path: str) -> tuple[Scalar, ...] | tuple[datetime, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_LIST_VALUES:
        raise criteria_error(path, f"must be a list of 1 to {MAX_LIST_VALUES} values")
    items = [_scalar(field, item, f"{path}[{index}]") for index, item in enumerate(raw)]
    if field.type is FieldType.ANY:
        # One type per list, so that "not in" has one meaning: a value of that type that is none of these.
        first = dynamo_type(items[0])
        for index, item in enumerate(items):
            if dynamo_type(item) != first:
                raise criteria_error(f"{path}[{index}]", "all values of the list must have the same type")
    return tuple(items)  # type: ignore[return-value]


def _scalar(field: FieldRef, raw: Any, path: str) -> Scalar | datetime:
    """One value of the field's own type (for eq, ne, in, not_in; and contains on custom fields)."""
    match field.type:
        case FieldType.BOOLEAN:
            if not isinstance(raw, bool):
                raise criteria_error(path, "must be true or false")
            return raw
        case FieldType.DATE:
            return _date(raw, path)
        case FieldType.ENUM:
            if raw not in field.choices:
                raise criteria_error(path, f"must be one of {', '.join(repr(choice) for choice in field.choices)}")
            return str(raw)
        case FieldType.ANY:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, int | float):
                return _number(raw, path)
            if isinstance(raw, str):
                return normalize_custom(_text(raw, path))
            raise criteria_error(path, "must be a string, a number or a boolean")
        case _ if field.attribute is Attribute.EMAIL_ADDRESS:
            return _email(_text(raw, path))
        case _:
            return _text(raw, path)


def _ordered(field: FieldRef, raw: Any, path: str) -> Scalar | datetime:
    if field.type is FieldType.DATE:
        return _date(raw, path)
    if field.type is FieldType.ANY and isinstance(raw, int | float) and not isinstance(raw, bool):
        return _number(raw, path)
    if field.type is FieldType.ANY and not isinstance(raw, str):
        raise criteria_error(path, "must be a string, a number or an ISO-8601 date")
    text = _text(raw, path)
    return normalize_custom(text) if field.type is FieldType.ANY else text


def _strings(raw: Any, path: str) -> list[str]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_LIST_VALUES:
        raise criteria_error(path, f"must be a list of 1 to {MAX_LIST_VALUES} strings")
    return [_text(item, f"{path}[{index}]") for index, item in enumerate(raw)]


def _text(raw: Any, path: str, *, non_empty: bool = False) -> str:
    if not isinstance(raw, str):
        raise criteria_error(path, "must be a string")
    try:
        size = len(raw.encode("utf-8"))
    except UnicodeEncodeError:
        raise criteria_error(path, "must be valid Unicode text") from None
    if size > MAX_STRING_BYTES:
        raise criteria_error(path, f"must be at most {MAX_STRING_BYTES} bytes of UTF-8")
    if non_empty and not raw:
        raise criteria_error(path, "must not be empty")
    return raw


def _number(raw: int | float, path: str) -> int | float:
    problem = number_problem(raw)
    if problem is not None:
        raise criteria_error(path, problem)
    return raw


def _email(address: str) -> str:
    """An address as the users API stores it (domain lower-cased); one it would refuse matches nothing anyway."""
    try:
        return normalize_email(address)
    except ValueError:
        return address


def _date(raw: Any, path: str) -> datetime:
    normalized = normalize_date(raw) if isinstance(raw, str) else None
    if normalized is None or not _SORTABLE_DATE.match(normalized):
        raise criteria_error(path, "must be an ISO-8601 date or date-time with a four-digit year")
    return datetime.fromisoformat(normalized)
