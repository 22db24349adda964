"""Each operator, the missing-value rule and type strictness, checked in code AND in DynamoDB.

Every selection goes through ``select_both``: the users are stored in moto and
selected in code, and with the pushed-down filter plus the residual; the test
fails if the two disagree, before comparing with the expected selection.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from steward.criteria.evaluate import MISSING, holds
from steward.criteria.models import Operator, Rule
from steward.criteria.parse import parse_criteria
from steward.criteria.values import custom_date, days_ago
from steward.settings import StoreSettings
from tests.support.criteria import NOW, contact, make_user, select_both, subscription
from tests.support.service import SHARD_COUNT

BIG = 2**60 + 1  # a float cannot hold it: the number comparisons must still agree

MIXED = [
    make_user("one", fields={"v": 1}),
    make_user("five", fields={"v": 5}),
    make_user("five-and-a-half", fields={"v": 5.5}),
    make_user("big", fields={"v": BIG}),
    make_user("text-5", fields={"v": "5"}),
    make_user("banana", fields={"v": "banana"}),
    make_user("true", fields={"v": True}),
    make_user("false", fields={"v": False}),
    make_user("list", fields={"v": ["a", 5, True, "2024-01-01T00:00:00Z"]}),
    make_user("date", fields={"v": "2024-01-01T00:00:00Z"}),
    make_user("empty", fields={"v": ""}),
    make_user("missing", fields={"other": 5}),
]
NUMBERS = {"one", "five", "five-and-a-half", "big"}
STRINGS = {"text-5", "banana", "date", "empty"}


def rule(op: str, value: Any = None, field: str = "fields.v") -> dict[str, Any]:
    return {"field": field, "op": op} if value is None else {"field": field, "op": op, "value": value}


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        # eq compares type and value: true is not 1, "5" is not 5, 5.0 is 5.
        (rule("eq", 1), {"one"}),
        (rule("eq", True), {"true"}),
        (rule("eq", False), {"false"}),
        (rule("eq", 0), set()),
        (rule("eq", 5.0), {"five"}),
        (rule("eq", "5"), {"text-5"}),
        (rule("eq", ""), {"empty"}),
        (rule("eq", BIG), {"big"}),
        (rule("eq", "2024-01-01"), {"date"}),  # normalized like the stored value
        # ne and not_in hold only for a present value of the same type.
        (rule("ne", 5), NUMBERS - {"five"}),
        (rule("ne", True), {"false"}),
        (rule("ne", "banana"), STRINGS - {"banana"}),
        (rule("in", [5, 1]), {"five", "one"}),
        (rule("in", [True]), {"true"}),
        (rule("in", ["5", "banana"]), {"text-5", "banana"}),
        (rule("not_in", [5, 1]), {"five-and-a-half", "big"}),
        (rule("not_in", ["5"]), STRINGS - {"text-5"}),
        (rule("not_in", [False]), {"true"}),
        # Ordering: numbers with numbers, strings with strings.
        (rule("gt", 5), {"five-and-a-half", "big"}),
        (rule("gte", 5), {"five", "five-and-a-half", "big"}),
        (rule("lt", 5), {"one"}),
        (rule("lte", 1), {"one"}),
        (rule("gt", "a"), {"banana"}),
        (rule("lt", "6"), {"text-5", "date", "empty"}),
        # DynamoDB compares the decimal a float is stored as: BIG is below float(2**60)'s "1.152921504606847e+18".
        (rule("gt", float(2**60)), set()),
        (rule("lt", float(2**60)), NUMBERS),
        (rule("exists"), {user.user_id for user in MIXED} - {"missing"}),
        (rule("not_exists"), {"missing"}),
        # contains: substring of a string, or member of a list.
        (rule("contains", "an"), {"banana"}),
        (rule("contains", "a"), {"banana", "list"}),
        (rule("contains", 5), {"list"}),
        (rule("contains", True), {"list"}),
        (rule("contains", 1), set()),  # the list holds true, which is not 1
        (rule("contains", "2024-01-01"), {"date", "list"}),  # a substring there, a (normalized) member here
        (rule("starts_with", "ban"), {"banana"}),
        (rule("starts_with", "5"), {"text-5"}),
        # before/after on a custom field compare the stored string with the normalized date.
        (rule("before", "2024-06-01"), {"date", "empty"}),
        (rule("after", "2023-12-31T23:59:59Z"), {"date", "banana", "text-5"}),
    ],
)
def test_custom_field_operators(store: StoreSettings, criteria: dict[str, Any], expected: set[str]) -> None:
    assert select_both(criteria, MIXED, SHARD_COUNT) == expected


@pytest.mark.parametrize("op", [op for op in Operator if op is not Operator.NOT_EXISTS])
def test_a_missing_value_fails_every_operator_but_not_exists(op: Operator) -> None:
    values: dict[Operator, Any] = {
        Operator.IN: ["x"],
        Operator.NOT_IN: ["x"],
        Operator.BEFORE: "2024-01-01",
        Operator.AFTER: "2024-01-01",
        Operator.WITHIN_LAST_DAYS: 7,
    }
    raw = rule(op.value, None if op is Operator.EXISTS else values.get(op, "x"))
    parsed = parse_criteria(raw)
    assert isinstance(parsed, Rule)

    assert holds(parsed, MISSING, NOW) is False
    assert holds(Rule(field=parsed.field, op=Operator.NOT_EXISTS), MISSING, NOW) is True


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (rule("ne", "2024-01-01", "last_activity_at"), {"seen"}),
        (rule("not_in", ["2024-01-01"], "last_activity_at"), {"seen"}),
        (rule("before", "2030-01-01", "last_activity_at"), {"seen"}),
        (rule("within_last_days", 36600, "last_activity_at"), {"seen"}),
        (rule("exists", None, "last_activity_at"), {"seen"}),
        (rule("not_exists", None, "last_activity_at"), {"never-seen"}),
    ],
)
def test_missing_built_in_dates(store: StoreSettings, criteria: dict[str, Any], expected: set[str]) -> None:
    users = [
        make_user("seen", last_activity_at=datetime(2025, 5, 5, tzinfo=UTC)),
        make_user("never-seen", last_activity_at=None),
    ]

    assert select_both(criteria, users, SHARD_COUNT) == expected


def test_within_last_days_counts_from_now_in_whole_seconds(store: StoreSettings) -> None:
    bound = days_ago(NOW, 7)
    users = [
        make_user("on-the-bound", last_activity_at=bound),
        make_user("a-second-early", last_activity_at=bound - timedelta(seconds=1)),
        make_user("yesterday", last_activity_at=NOW - timedelta(days=1)),
        make_user("future", last_activity_at=NOW + timedelta(days=1)),
        make_user("custom-on-the-bound", fields={"seen": custom_date(bound)}),
        make_user("custom-early", fields={"seen": custom_date(bound - timedelta(seconds=1))}),
    ]

    assert select_both(rule("within_last_days", 7, "last_activity_at"), users, SHARD_COUNT) == {
        "on-the-bound",
        "yesterday",
        "future",
    }
    assert select_both(rule("within_last_days", 7, "fields.seen"), users, SHARD_COUNT, stored=True) == {
        "custom-on-the-bound"
    }


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        # Stored to the microsecond, compared as instants: 00:00:00.5 is after 00:00:00.
        (rule("eq", "2025-01-01T00:00:00Z", "created_at"), set()),
        (rule("gte", "2025-01-01", "created_at"), {"half-second", "next-day"}),
        (rule("after", "2025-01-01T00:00:00Z", "created_at"), {"half-second", "next-day"}),
        (rule("before", "2025-01-01T00:00:01Z", "created_at"), {"half-second"}),
        (rule("lte", "2025-01-02T00:00:00+00:00", "created_at"), {"half-second", "next-day"}),
        (rule("lt", "2025-01-02", "created_at"), {"half-second"}),
        (rule("in", ["2025-01-02", "2030-01-01"], "created_at"), {"next-day"}),
        (rule("not_in", ["2025-01-02"], "created_at"), {"half-second"}),
        (rule("ne", "2025-01-02T01:00:00+01:00", "created_at"), {"half-second"}),
    ],
)
def test_built_in_dates(store: StoreSettings, criteria: dict[str, Any], expected: set[str]) -> None:
    users = [
        make_user("half-second", created_at=datetime(2025, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)),
        make_user("next-day", created_at=datetime(2025, 1, 2, tzinfo=UTC)),
    ]

    assert select_both(criteria, users, SHARD_COUNT) == expected


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (rule("eq", False, "active"), {"inactive"}),
        (rule("ne", False, "active"), {"plain"}),
        (rule("in", [True, False], "active"), {"plain", "inactive"}),
        (rule("not_in", [True], "active"), {"inactive"}),
        (rule("eq", True, "global_unsubscribed"), {"inactive"}),
        (rule("exists", None, "global_unsubscribed"), {"plain", "inactive"}),
        (rule("not_exists", None, "active"), set()),
    ],
)
def test_built_in_booleans(store: StoreSettings, criteria: dict[str, Any], expected: set[str]) -> None:
    users = [make_user("plain"), make_user("inactive", active=False, global_unsubscribed=True)]

    assert select_both(criteria, users, SHARD_COUNT) == expected


SUBSCRIBERS = [
    make_user("subscribed", subscriptions=[subscription("news", "email", "Subscribed")]),
    make_user("unsubscribed", subscriptions=[subscription("news", "email", "Unsubscribed")]),
    make_user("sms-only", subscriptions=[subscription("news", "sms", "Subscribed")]),
    make_user("dotted", subscriptions=[subscription("shop.eu", "push", "Complainer")]),
    make_user("bracketed", subscriptions=[subscription("promo[1]", "email", "Hardbounced")]),
    make_user("none"),
]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (rule("eq", "Subscribed", "subscription.news.email"), {"subscribed"}),
        (rule("ne", "Subscribed", "subscription.news.email"), {"unsubscribed"}),
        (rule("in", ["Subscribed", "Invalid"], "subscription.news.sms"), {"sms-only"}),
        (rule("not_in", ["Subscribed"], "subscription.news.email"), {"unsubscribed"}),
        (rule("exists", None, "subscription.news.email"), {"subscribed", "unsubscribed"}),
        (rule("not_exists", None, "subscription.news.email"), {"sms-only", "dotted", "bracketed", "none"}),
        (rule("eq", "Complainer", "subscription.shop.eu.push"), {"dotted"}),
        (rule("eq", "Hardbounced", "subscription.promo[1].email"), {"bracketed"}),
        (rule("ne", "Subscribed", "subscription.promo[1].email"), {"bracketed"}),
    ],
)
def test_subscriptions(store: StoreSettings, criteria: dict[str, Any], expected: set[str]) -> None:
    assert select_both(criteria, SUBSCRIBERS, SHARD_COUNT) == expected


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (rule("eq", "ann", "user_id"), {"ann"}),
        (rule("ne", "ann", "user_id"), {"bob", "anna-maria"}),
        (rule("starts_with", "ann", "user_id"), {"ann", "anna-maria"}),
        (rule("contains", "-", "user_id"), {"anna-maria"}),
        (rule("gt", "ann", "user_id"), {"bob", "anna-maria"}),
        (rule("in", ["bob", "zed"], "user_id"), {"bob"}),
        (rule("not_in", ["bob"], "user_id"), {"ann", "anna-maria"}),
    ],
)
def test_user_id(store: StoreSettings, criteria: dict[str, Any], expected: set[str]) -> None:
    users = [make_user("ann"), make_user("bob"), make_user("anna-maria")]

    assert select_both(criteria, users, SHARD_COUNT) == expected


CONTACTS = [
    make_user("two-emails", emails=[contact("a@x.io"), contact("b@y.io", active=False)], phones=[contact("+441")]),
    make_user("one-email", emails=[contact("c@x.io")]),
    make_user("no-contacts"),
]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (rule("eq", "b@y.io", "email.address"), {"two-emails"}),
        (rule("eq", False, "email.active"), {"two-emails"}),
        (rule("ne", "c@x.io", "email.address"), {"two-emails"}),  # some email is not c@x.io
        (rule("contains", "@x.io", "email.address"), {"two-emails", "one-email"}),
        (rule("not_exists", None, "email.address"), {"no-contacts"}),
        (rule("exists", None, "phone.number"), {"two-emails"}),
        (rule("starts_with", "+44", "phone.number"), {"two-emails"}),
        (rule("eq", True, "phone.active"), {"two-emails"}),
        # Each rule finds its own contact: a@x.io is active, b@y.io is the inactive one.
        ({"all": [rule("eq", "a@x.io", "email.address"), rule("eq", False, "email.active")]}, {"two-emails"}),
    ],
)
def test_contacts_of_users(store: StoreSettings, criteria: dict[str, Any], expected: set[str]) -> None:
    assert select_both(criteria, CONTACTS, SHARD_COUNT) == expected


def test_groups_combine_pushed_and_residual_rules(store: StoreSettings) -> None:
    users = [
        make_user("gold-ann", fields={"plan": "gold"}),
        make_user("gold-bob", fields={"plan": "gold"}, active=False),
        make_user("amy-silver", fields={"plan": "silver"}),
        make_user("al-free", fields={"plan": "free"}, active=False),
    ]
    criteria = {
        "all": [
            {"any": [rule("eq", "gold", "fields.plan"), rule("starts_with", "a", "user_id")]},
            {"any": [rule("eq", True, "active"), rule("eq", "free", "fields.plan")]},
            rule("not_in", ["silver"], "fields.plan"),
        ]
    }

    assert select_both(criteria, users, SHARD_COUNT) == {"gold-ann", "al-free"}
