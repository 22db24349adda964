"""Validation: every bad part of criteria is a 422 invalid_criteria naming its exact JSON path."""

from datetime import UTC, datetime
from typing import Any

import pytest

from steward.criteria.fields import Attribute, FieldType, Scope, resolve_field
from steward.criteria.models import MAX_DEPTH, MAX_RULES, Combinator, Group, Operator, Rule
from steward.criteria.parse import parse_criteria
from steward.errors import InvalidInput
from tests.support.criteria import ACTIVE, nested


def error_of(criteria: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_criteria(criteria)
    assert caught.value.code == "invalid_criteria"
    assert caught.value.message.startswith(f"{caught.value.field}: ")
    return caught.value


@pytest.mark.parametrize(
    ("criteria", "path"),
    [
        # Structure
        ([ACTIVE], "criteria"),
        ("active", "criteria"),
        ({"all": []}, "criteria.all"),
        ({"all": [ACTIVE, {"any": []}]}, "criteria.all[1].any"),
        ({"all": [ACTIVE], "any": [ACTIVE]}, "criteria"),
        ({"all": [ACTIVE], "note": "x"}, "criteria.note"),
        ({"any": ACTIVE}, "criteria.any"),
        ({"all": [ACTIVE, 3]}, "criteria.all[1]"),
        ({"all": [ACTIVE, {}]}, "criteria.all[1].field"),
        ({"field": "active", "op": "eq", "value": True, "negate": True}, "criteria.negate"),
        # Fields
        ({"all": [ACTIVE, {"field": "plan", "op": "eq", "value": "x"}]}, "criteria.all[1].field"),
        ({"field": "fields.", "op": "exists"}, "criteria.field"),
        ({"field": "fields.1plan", "op": "exists"}, "criteria.field"),
        ({"field": "fields.a.b", "op": "exists"}, "criteria.field"),
        ({"field": "subscription.news.fax", "op": "exists"}, "criteria.field"),
        ({"field": "subscription.email", "op": "exists"}, "criteria.field"),
        ({"field": "device.user_id", "op": "exists"}, "criteria.field"),
        ({"field": 7, "op": "exists"}, "criteria.field"),
        ({"field": "fields.a\nb", "op": "exists"}, "criteria.field"),
        # Operators
        ({"all": [ACTIVE, {"any": [{"field": "active", "op": "gt", "value": True}]}]}, "criteria.all[1].any[0].op"),
        ({"field": "active", "op": "like", "value": True}, "criteria.op"),
        ({"field": "active", "value": True}, "criteria.op"),
        ({"field": "active", "op": ["eq"], "value": True}, "criteria.op"),
        ({"field": "device.transport", "op": "starts_with", "value": "F"}, "criteria.op"),
        ({"field": "device.tags", "op": "in", "value": ["a"]}, "criteria.op"),
        ({"field": "email.address", "op": "before", "value": "2024-01-01"}, "criteria.op"),
        ({"field": "created_at", "op": "contains", "value": "2024"}, "criteria.op"),
        ({"field": "subscription.news.email", "op": "gt", "value": "Subscribed"}, "criteria.op"),
        # Values: presence
        ({"field": "active", "op": "eq"}, "criteria.value"),
        ({"field": "active", "op": "exists", "value": True}, "criteria.value"),
        ({"field": "active", "op": "not_exists", "value": None}, "criteria.value"),
        # Values: type
        ({"field": "active", "op": "eq", "value": "true"}, "criteria.value"),
        ({"field": "active", "op": "eq", "value": 1}, "criteria.value"),
        ({"field": "device.transport", "op": "eq", "value": "fcm"}, "criteria.value"),
        ({"field": "device.last_status", "op": "in", "value": ["sent", "lost"]}, "criteria.value[1]"),
        ({"field": "subscription.news.sms", "op": "eq", "value": "subscribed"}, "criteria.value"),
        ({"field": "user_id", "op": "eq", "value": 5}, "criteria.value"),
        ({"field": "fields.plan", "op": "eq", "value": None}, "criteria.value"),
        ({"field": "fields.plan", "op": "eq", "value": ["gold"]}, "criteria.value"),
        ({"field": "fields.plan", "op": "eq", "value": {"a": 1}}, "criteria.value"),
        ({"field": "fields.plan", "op": "gt", "value": True}, "criteria.value"),
        ({"field": "fields.plan", "op": "contains", "value": ["a"]}, "criteria.value"),
        ({"field": "device.tags", "op": "contains", "value": 3}, "criteria.value"),
        ({"field": "device.tags", "op": "eq", "value": "vip"}, "criteria.value"),
        ({"field": "device.tags", "op": "eq", "value": []}, "criteria.value"),
        ({"field": "device.tags", "op": "eq", "value": ["a", 1]}, "criteria.value[1]"),
        # Values: lists
        ({"field": "fields.plan", "op": "in", "value": []}, "criteria.value"),
        ({"field": "fields.plan", "op": "in", "value": "gold"}, "criteria.value"),
        ({"field": "fields.plan", "op": "not_in", "value": list(range(101))}, "criteria.value"),
        ({"field": "fields.plan", "op": "in", "value": ["gold", 1]}, "criteria.value[1]"),
        ({"field": "fields.plan", "op": "in", "value": [1, 2.5, True]}, "criteria.value[2]"),
        ({"field": "created_at", "op": "in", "value": ["2024-01-01", "2024-01-02", "soon"]}, "criteria.value[2]"),
        # Values: dates and days
        ({"field": "created_at", "op": "before", "value": "yesterday"}, "criteria.value"),
        ({"field": "created_at", "op": "after", "value": "2024-02-30"}, "criteria.value"),
        ({"field": "created_at", "op": "gt", "value": 1700000000}, "criteria.value"),
        ({"field": "fields.born", "op": "before", "value": 2000}, "criteria.value"),
        ({"field": "last_activity_at", "op": "within_last_days", "value": -1}, "criteria.value"),
        ({"field": "last_activity_at", "op": "within_last_days", "value": 1.5}, "criteria.value"),
        ({"field": "last_activity_at", "op": "within_last_days", "value": True}, "criteria.value"),
        ({"field": "last_activity_at", "op": "within_last_days", "value": "7"}, "criteria.value"),
        ({"field": "last_activity_at", "op": "within_last_days", "value": 36_601}, "criteria.value"),
        # Values: strings and numbers DynamoDB could not take
        ({"field": "fields.code", "op": "starts_with", "value": ""}, "criteria.value"),
        ({"field": "fields.code", "op": "contains", "value": ""}, "criteria.value"),
        ({"field": "email.address", "op": "contains", "value": ""}, "criteria.value"),
        ({"field": "fields.code", "op": "eq", "value": "x" * 1025}, "criteria.value"),
        ({"field": "fields.code", "op": "eq", "value": "é" * 513}, "criteria.value"),
        ({"field": "fields.code", "op": "eq", "value": "\ud800"}, "criteria.value"),
        ({"field": "fields.score", "op": "gt", "value": float("nan")}, "criteria.value"),
        ({"field": "fields.score", "op": "gt", "value": float("inf")}, "criteria.value"),
        ({"field": "fields.score", "op": "eq", "value": 1e200}, "criteria.value"),
        ({"field": "fields.score", "op": "eq", "value": 1e-200}, "criteria.value"),
        ({"field": "fields.score", "op": "eq", "value": 10**40 + 1}, "criteria.value"),
    ],
)
def test_bad_criteria_name_the_bad_part(criteria: Any, path: str) -> None:
    assert error_of(criteria).field == path


def test_groups_nest_ten_deep_and_no_deeper() -> None:
    assert isinstance(parse_criteria(nested(MAX_DEPTH)), Group)

    error = error_of(nested(MAX_DEPTH + 1))

    assert error.field == "criteria" + ".any[0]" * MAX_DEPTH + ".all"


def test_at_most_200_rules() -> None:
    parse_criteria({"all": [ACTIVE] * MAX_RULES})

    error = error_of({"all": [{"any": [ACTIVE] * 150}, {"all": [ACTIVE] * 60}]})

    assert error.field == "criteria.all[1].all[50]"


def test_oversized_criteria_are_refused_whole() -> None:
    many = [{"field": "fields.code", "op": "in", "value": ["x" * 1000] * 100}]

    assert error_of({"all": many}).field == "criteria"


def test_the_first_error_in_document_order_is_reported() -> None:
    criteria = {"any": [{"field": "nope", "op": "eq", "value": 1}, {"field": "active", "op": "gt", "value": 1}]}

    assert error_of(criteria).field == "criteria.any[0].field"


def test_a_rule_alone_is_valid_criteria() -> None:
    rule = parse_criteria({"field": "global_unsubscribed", "op": "eq", "value": False})

    assert isinstance(rule, Rule)
    assert rule.op is Operator.EQ
    assert rule.value is False


def test_custom_field_values_are_normalized_like_stored_ones() -> None:
    rule = parse_criteria({"field": "fields.renewal", "op": "in", "value": ["2024-01-01", "2024-01-01T12:00:00+02:00"]})

    assert isinstance(rule, Rule)
    assert rule.value == ("2024-01-01T00:00:00Z", "2024-01-01T10:00:00Z")


def test_date_values_become_utc_instants() -> None:
    rule = parse_criteria({"field": "created_at", "op": "before", "value": "2024-06-01T00:00:00-05:00"})

    assert isinstance(rule, Rule)
    assert rule.value == datetime(2024, 6, 1, 5, tzinfo=UTC)


def test_before_on_a_custom_field_compares_with_the_stored_form() -> None:
    rule = parse_criteria({"field": "fields.renewal", "op": "before", "value": "2024-06-01"})

    assert isinstance(rule, Rule)
    assert rule.value == "2024-06-01T00:00:00Z"


def test_contains_and_starts_with_keep_the_text_as_given() -> None:
    contains = parse_criteria({"field": "fields.note", "op": "contains", "value": "2024-06-01"})
    starts = parse_criteria({"field": "fields.note", "op": "starts_with", "value": "2024-06"})

    assert isinstance(contains, Rule)
    assert isinstance(starts, Rule)
    assert (contains.value, starts.value) == ("2024-06-01", "2024-06")


def test_tags_equality_is_a_set() -> None:
    rule = parse_criteria({"field": "device.tags", "op": "eq", "value": ["vip", "beta", "vip"]})

    assert isinstance(rule, Rule)
    assert rule.value == ("beta", "vip")


def test_groups_keep_their_order_and_kind() -> None:
    tree = parse_criteria({"any": [ACTIVE, {"all": [{"field": "user_id", "op": "exists"}]}]})

    assert isinstance(tree, Group)
    assert tree.combinator is Combinator.ANY
    assert isinstance(tree.children[1], Group)
    assert tree.children[1].combinator is Combinator.ALL


@pytest.mark.parametrize(
    ("path", "attribute", "scope", "field_type", "key", "channel"),
    [
        ("user_id", Attribute.USER_ID, Scope.USER, FieldType.STRING, None, None),
        ("fields.plan_2", Attribute.CUSTOM, Scope.USER, FieldType.ANY, "plan_2", None),
        ("last_activity_at", Attribute.LAST_ACTIVITY_AT, Scope.USER, FieldType.DATE, None, None),
        ("subscription.news.email", Attribute.SUBSCRIPTION, Scope.USER, FieldType.ENUM, "news", "email"),
        ("subscription.shop.eu.whatsapp", Attribute.SUBSCRIPTION, Scope.USER, FieldType.ENUM, "shop.eu", "whatsapp"),
        ("device.last_status", Attribute.DEVICE_LAST_STATUS, Scope.DEVICE, FieldType.ENUM, None, None),
        ("device.tags", Attribute.DEVICE_TAGS, Scope.DEVICE, FieldType.STRING_LIST, None, None),
        ("email.address", Attribute.EMAIL_ADDRESS, Scope.EMAIL, FieldType.STRING, None, None),
        ("phone.active", Attribute.PHONE_ACTIVE, Scope.PHONE, FieldType.BOOLEAN, None, None),
    ],
)
def test_fields_resolve_to_their_scope_and_type(
    path: str, attribute: Attribute, scope: Scope, field_type: FieldType, key: str | None, channel: str | None
) -> None:
    field = resolve_field(path)

    assert field is not None
    assert (field.attribute, field.scope, field.type, field.key, field.channel) == (
        attribute,
        scope,
        field_type,
        key,
        channel,
    )


def test_every_operator_applies_to_custom_fields() -> None:
    values: dict[Operator, Any] = {
        Operator.IN: [1, 2],
        Operator.NOT_IN: ["a"],
        Operator.BEFORE: "2024-01-01",
        Operator.AFTER: "2024-01-01",
        Operator.WITHIN_LAST_DAYS: 0,
        Operator.CONTAINS: True,
        Operator.STARTS_WITH: "a",
    }
    for op in Operator:
        rule: dict[str, Any] = {"field": "fields.any", "op": op.value}
        if op not in (Operator.EXISTS, Operator.NOT_EXISTS):
            rule["value"] = values.get(op, 1)
        assert isinstance(parse_criteria(rule), Rule)


def test_email_addresses_are_compared_as_the_users_api_stores_them() -> None:
    equal = parse_criteria({"field": "email.address", "op": "in", "value": ["Ann@Example.COM", "not an address"]})
    partial = parse_criteria({"field": "email.address", "op": "contains", "value": "@Example.COM"})

    assert isinstance(equal, Rule)
    assert isinstance(partial, Rule)
    assert equal.value == ("Ann@example.com", "not an address")
    assert partial.value == "@Example.COM"
