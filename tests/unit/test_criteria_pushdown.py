"""What is pushed down to DynamoDB and what stays in code, for each target."""

from typing import Any

import pytest

from steward.criteria.models import MAX_LIST_VALUES, MAX_RULES, Group, Rule, Target
from steward.criteria.parse import parse_criteria
from steward.criteria.pushdown import MAX_FILTER_BYTES, MAX_FILTER_OPERATORS, Plan, _operators, plan
from steward.settings import StoreSettings
from tests.support.criteria import NOW, make_user, select_both
from tests.support.service import SHARD_COUNT

PLAN_GOLD = {"field": "fields.plan", "op": "eq", "value": "gold"}
ACTIVE = {"field": "active", "op": "eq", "value": True}
USER_ID = {"field": "user_id", "op": "starts_with", "value": "a"}
FCM = {"field": "device.transport", "op": "eq", "value": "FCM"}
EMAIL = {"field": "email.active", "op": "eq", "value": True}


def planned(criteria: Any, target: Target = Target.USERS) -> Plan:
    return plan(parse_criteria(criteria), target, NOW)


def expression(result: Plan) -> str:
    """The FilterExpression as sent, with placeholders."""
    assert result.condition is not None
    return str(result.condition.serialize({}, {}))


def readable(result: Plan) -> str:
    """The FilterExpression with names and values written out."""
    assert result.condition is not None
    return repr(result.condition)


@pytest.mark.parametrize(
    ("criteria", "target"),
    [
        (PLAN_GOLD, Target.USERS),
        (ACTIVE, Target.EMAILS),
        ({"field": "subscription.news.sms", "op": "ne", "value": "Subscribed"}, Target.PHONES),
        ({"field": "last_activity_at", "op": "within_last_days", "value": 3}, Target.USERS),
        (FCM, Target.DEVICES),
        ({"field": "device.tags", "op": "contains", "value": "vip"}, Target.DEVICES),
        ({"field": "device.last_status", "op": "eq", "value": ""}, Target.DEVICES),
        ({"field": "fields.note", "op": "contains", "value": "x"}, Target.USERS),
        ({"any": [PLAN_GOLD, {"all": [ACTIVE, PLAN_GOLD]}]}, Target.USERS),
    ],
)
def test_rules_on_the_targets_own_items_are_pushed_whole(criteria: Any, target: Target) -> None:
    result = planned(criteria, target)

    assert result.condition is not None
    assert result.residual is None


@pytest.mark.parametrize(
    ("criteria", "target"),
    [
        (USER_ID, Target.USERS),  # a key attribute: DynamoDB refuses it in a filter
        (FCM, Target.USERS),
        (EMAIL, Target.USERS),
        (PLAN_GOLD, Target.DEVICES),
        ({"field": "phone.number", "op": "exists"}, Target.PHONES),
        ({"field": "fields.codes", "op": "contains", "value": 7}, Target.USERS),
        ({"field": "device.tags", "op": "eq", "value": ["a"]}, Target.DEVICES),
        ({"field": "subscription.promo[1].email", "op": "exists"}, Target.USERS),
    ],
)
def test_other_rules_stay_in_code(criteria: Any, target: Target) -> None:
    result = planned(criteria, target)

    assert result.condition is None
    assert isinstance(result.residual, Rule)


def test_all_pushes_what_it_can_and_keeps_the_rest() -> None:
    result = planned({"all": [PLAN_GOLD, USER_ID, {"all": [ACTIVE, FCM]}]})

    assert result.condition is not None
    assert readable(result) == (
        "((attribute_type (fields.plan, {'S': 'S'}) AND fields.plan = {'S': 'gold'}) AND active = {'BOOL': True})"
    )
    assert isinstance(result.residual, Group)
    assert [child.field.path for child in result.residual.children if isinstance(child, Rule)] == [
        "user_id",
        "device.transport",
    ]


def test_any_with_one_rule_in_code_stays_in_code_whole() -> None:
    criteria = {"all": [ACTIVE, {"any": [PLAN_GOLD, USER_ID]}]}

    result = planned(criteria)

    assert readable(result) == "active = {'BOOL': True}"
    assert isinstance(result.residual, Group)
    assert result.residual.combinator == "any"


def test_custom_fields_check_the_type_first() -> None:
    # moto evaluates AND from the left and fails on "a" < 1; DynamoDB only needs the guard at all.
    text = expression(planned({"field": "fields.score", "op": "lt", "value": 10}))

    assert text.startswith("(attribute_type (#0.#1, :0) AND #0.#1 < :1)")


def test_ne_and_not_in_on_built_in_fields_require_the_attribute() -> None:
    assert expression(planned({"field": "last_activity_at", "op": "ne", "value": "2024-01-01"})).startswith(
        "(attribute_exists (#0) AND"
    )
    assert expression(planned({"field": "device.active", "op": "not_in", "value": [False]}, Target.DEVICES)) == (
        "(attribute_exists (#0) AND (NOT #0 IN (:0)))"
    )


def test_oversized_filters_keep_whole_children_in_code(store: StoreSettings) -> None:
    big_in = {"field": "fields.code", "op": "in", "value": [f"code-{n:03}" for n in range(MAX_LIST_VALUES)]}
    criteria = {"all": [ACTIVE, *([big_in] * 20)]}

    result = planned(criteria)

    assert result.condition is not None
    assert len(expression(result)) <= MAX_FILTER_BYTES
    assert isinstance(result.residual, Group)
    assert 0 < len(result.residual.children) < 20
    users = [make_user("match", fields={"code": "code-042"}), make_user("other", fields={"code": "nope"})]
    assert select_both(criteria, users, SHARD_COUNT) == {"match"}


def test_filters_stay_under_the_operator_limit() -> None:
    many = [{"field": f"fields.f{n}", "op": "contains", "value": "x"} for n in range(MAX_RULES)]

    result = planned({"all": many})

    assert result.condition is not None
    assert _operators(result.condition) <= MAX_FILTER_OPERATORS
    assert isinstance(result.residual, Group)


def test_an_oversized_any_stays_in_code() -> None:
    big_in = {"field": "fields.code", "op": "in", "value": [f"code-{n:03}" for n in range(MAX_LIST_VALUES)]}

    result = planned({"any": [big_in] * 10})

    assert result.condition is None
    assert isinstance(result.residual, Group)
