"""Property: for any valid criteria and any users, DynamoDB (pushdown + residual) selects what code selects.

Each example gets its own moto context and tables (hypothesis runs many
examples inside one test, so a function-scoped fixture would leak state
between them). Values are drawn from small pools so that rules often match:
mixed types in one custom field, numbers a float cannot hold, non-ASCII
text, dates to the microsecond, missing fields, subscriptions and contacts.
"""

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from steward.composition import Services
from steward.criteria.evaluate import contact_subject, device_subject, matches, user_subject
from steward.criteria.models import PreviewRequest, Target
from steward.criteria.parse import parse_criteria
from steward.criteria.preview import CriteriaPreviewService
from steward.criteria.selection import SelectionLimits
from steward.devices.models import Device, LastStatus, Transport
from steward.users.models import Contact, Subscription, SubscriptionStatus, User
from steward_local.moto_tables import create_template_tables
from tests.support.criteria import (
    APP,
    NOW,
    make_device,
    make_user,
    read_all_users,
    select_in_memory,
    select_pushed_down,
    store_users,
)
from tests.support.service import SHARD_COUNT

EXAMPLES = 40
PUSHDOWN_EXAMPLES = 50
FIELD_NAMES = ("a", "b")
DATES = ("2024-01-01T00:00:00Z", "2025-06-15T12:00:00Z", "2026-02-27T12:00:00Z", "2026-03-01T12:00:00Z")
SUBSCRIPTION_KEYS = (("news", "email"), ("news", "sms"), ("shop.eu", "push"), ("p[1]", "email"))
STATUSES = tuple(status.value for status in SubscriptionStatus)
ADDRESSES = ("a@x.io", "b@x.io", "+4470", "+3360")
TAGS = ("vip", "beta", "x")

# --- stored values ---------------------------------------------------------

texts = st.text(alphabet="ab5é😀", min_size=0, max_size=2)
numbers = st.one_of(
    st.integers(-1, 2),
    st.sampled_from([2**60 + 1, 2**53, -(2**60), 10**20]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False).filter(
        lambda number: number == 0 or abs(number) > 1e-100
    ),
    st.sampled_from([0.1, 5.5, float(2**60), 1e20]),
)
# Dense pools on purpose: 1 next to true, "5" next to 5, dates next to text.
scalars = st.one_of(numbers, st.booleans(), texts, st.sampled_from(DATES))
field_values = st.one_of(scalars, st.lists(scalars, max_size=3))
moments = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 4, 1), timezones=st.just(UTC))
contacts = st.lists(
    st.builds(Contact, address=st.sampled_from(ADDRESSES), active=st.booleans(), added_at=st.just(NOW)),
    max_size=2,
    unique_by=lambda contact: contact.address,
)


@st.composite
def users(draw: st.DrawFn, user_id: str) -> User:
    subscriptions = draw(st.dictionaries(st.sampled_from(SUBSCRIPTION_KEYS), st.sampled_from(STATUSES), max_size=3))
    return make_user(
        user_id,
        fields=draw(st.dictionaries(st.sampled_from(FIELD_NAMES), field_values, max_size=3)),
        created_at=draw(moments),
        last_activity_at=draw(st.none() | moments),
        active=draw(st.booleans()),
        global_unsubscribed=draw(st.booleans()),
        emails=draw(contacts),
        phones=draw(contacts),
        subscriptions=[
            Subscription(resource_id=resource_id, channel=channel, status=status)
            for (resource_id, channel), status in sorted(subscriptions.items())
        ],
    )


user_ids = st.lists(st.text(alphabet="ab-é", min_size=1, max_size=3), max_size=8, unique=True)
user_lists = user_ids.flatmap(lambda ids: st.tuples(*(users(user_id) for user_id in ids)).map(list))

# --- criteria ----------------------------------------------------------------

non_empty_texts = st.text(alphabet="ab5é😀", min_size=1, max_size=2)
days = st.integers(0, 500)
homogeneous_lists = st.one_of(
    st.lists(numbers, min_size=1, max_size=3),
    st.lists(texts, min_size=1, max_size=3),
    st.lists(st.booleans(), min_size=1, max_size=2),
    st.lists(st.sampled_from(DATES), min_size=1, max_size=2),
)
custom_values: dict[str, st.SearchStrategy[Any]] = {
    "eq": scalars,
    "ne": scalars,
    "in": homogeneous_lists,
    "not_in": homogeneous_lists,
    "gt": numbers | texts | st.sampled_from(DATES),
    "gte": numbers | texts,
    "lt": numbers | texts | st.sampled_from(DATES),
    "lte": numbers | st.sampled_from(DATES),
    "before": st.sampled_from(DATES),
    "after": st.sampled_from(DATES),
    "within_last_days": days,
    "contains": non_empty_texts | numbers | st.booleans() | st.sampled_from(DATES),
    "starts_with": non_empty_texts,
}
date_values: dict[str, st.SearchStrategy[Any]] = {
    **{op: st.sampled_from(DATES) for op in ("eq", "ne", "gt", "gte", "lt", "lte", "before", "after")},
    "in": st.lists(st.sampled_from(DATES), min_size=1, max_size=2),
    "not_in": st.lists(st.sampled_from(DATES), min_size=1, max_size=2),
    "within_last_days": days,
}


def rules_for(field: st.SearchStrategy[str], values: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Rules on these fields, every operator equally likely."""

    def with_op(op: str) -> st.SearchStrategy[Any]:
        if op in ("exists", "not_exists"):
            return st.builds(lambda name: {"field": name, "op": op}, field)
        return st.builds(lambda name, value: {"field": name, "op": op, "value": value}, field, values[op])

    return st.sampled_from([*sorted(values), "exists", "not_exists"]).flatmap(with_op)


def choice_values(choices: tuple[Any, ...]) -> dict[str, st.SearchStrategy[Any]]:
    return {
        "eq": st.sampled_from(choices),
        "ne": st.sampled_from(choices),
        "in": st.lists(st.sampled_from(choices), min_size=1, max_size=3),
        "not_in": st.lists(st.sampled_from(choices), min_size=1, max_size=3),
    }


date_rules = rules_for(st.sampled_from(["created_at", "last_activity_at"]), date_values)
custom_rules = rules_for(st.sampled_from([f"fields.{name}" for name in FIELD_NAMES]), custom_values)
user_rules = st.one_of(
    custom_rules,  # drawn as often as all the others together: custom fields are where types mix
    custom_rules,
    custom_rules,
    custom_rules,
    date_rules,
    date_rules,  # last_activity_at may be missing: ne / not_in must then be false in DynamoDB too
    rules_for(st.sampled_from(["active", "global_unsubscribed"]), choice_values((True, False))),
    rules_for(
        st.sampled_from([f"subscription.{resource}.{channel}" for resource, channel in SUBSCRIPTION_KEYS]),
        choice_values(STATUSES),
    ),
    rules_for(
        st.just("user_id"),
        {"eq": texts, "starts_with": non_empty_texts, "gt": texts, "contains": non_empty_texts},
    ),
)
contact_rules = st.one_of(
    rules_for(
        st.sampled_from(["email.address", "phone.number"]), {**choice_values(ADDRESSES), "contains": non_empty_texts}
    ),
    rules_for(st.sampled_from(["email.active", "phone.active"]), choice_values((True, False))),
)
device_rules = st.one_of(
    rules_for(st.just("device.transport"), choice_values(tuple(item.value for item in Transport))),
    rules_for(st.just("device.last_status"), choice_values(tuple(item.value for item in LastStatus))),
    rules_for(st.just("device.active"), choice_values((True, False))),
    rules_for(
        st.just("device.tags"),
        {"contains": st.sampled_from(TAGS), "eq": st.lists(st.sampled_from(TAGS), min_size=1, max_size=2)},
    ),
)


def trees(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: st.builds(
            lambda kind, items: {kind: items},
            st.sampled_from(["all", "any"]),
            st.lists(children, min_size=1, max_size=3),
        ),
        max_leaves=8,
    )


PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


# Where moto's FilterExpression strays from DynamoDB, pinned so every run checks the pushdown avoids it.
_ONE = make_user("one", fields={"a": 1})
_TRUE = make_user("t", fields={"a": True})
_TEXT = make_user("s", fields={"a": "x"})
_LIST = make_user("list", fields={"a": [True, "x"]})


@settings(PROPERTY_SETTINGS, max_examples=PUSHDOWN_EXAMPLES)
@given(stored=user_lists, criteria_list=st.lists(trees(user_rules | contact_rules), min_size=1, max_size=6))
@example(stored=[_ONE, _TRUE], criteria_list=[{"field": "fields.a", "op": "eq", "value": True}])  # moto: true = 1
@example(stored=[_ONE, _TRUE], criteria_list=[{"field": "fields.a", "op": "in", "value": [1]}])
@example(stored=[_ONE, _TRUE], criteria_list=[{"field": "fields.a", "op": "ne", "value": 0}])
@example(stored=[_ONE, _TEXT, _LIST], criteria_list=[{"field": "fields.a", "op": "lt", "value": 2}])  # moto: raises
@example(stored=[_LIST], criteria_list=[{"field": "fields.a", "op": "contains", "value": 1}])  # moto: 1 in [true]
@example(stored=[_ONE], criteria_list=[{"field": "fields.b", "op": "ne", "value": 1}])  # moto: missing <> 1
def test_pushdown_and_residual_select_what_code_selects(stored: list[User], criteria_list: list[Any]) -> None:
    with mock_aws():
        create_template_tables(SHARD_COUNT, "test")
        store_users(stored, SHARD_COUNT)
        read_back = read_all_users()
        # Several criteria per stored set: the tables cost more to set up than a query.
        for criteria in criteria_list:
            node = parse_criteria(criteria)
            in_code = select_in_memory(node, stored)
            assert select_in_memory(node, read_back) == in_code, "stored users evaluate differently"
            assert select_pushed_down(node, SHARD_COUNT) == in_code, f"pushdown disagrees for {criteria}"


# --- the whole preview, over pages, for every target ---------------------------

device_lists = st.lists(
    st.builds(
        lambda device_id, user_id, transport, status, active, tags: make_device(
            device_id, user_id, transport=transport, last_status=status, active=active, tags=sorted(tags)
        ),
        st.sampled_from([f"dev-{n}" for n in range(6)]),
        st.none() | st.sampled_from(["a", "b", "ab", "ghost"]),
        st.sampled_from(Transport),
        st.sampled_from(LastStatus),
        st.booleans(),
        st.sets(st.sampled_from(TAGS), max_size=2),
    ),
    max_size=6,
    unique_by=lambda device: device.device_id,
)
fixed_user_lists = st.tuples(users("a"), users("b"), users("ab"), users("c")).map(list)


def expected_matches(target: Target, criteria: Any, stored: list[User], devices: list[Device]) -> list[str]:
    """What the preview must find, computed in code from the objects as generated."""
    node = parse_criteria(criteria)
    by_id = {user.user_id: user for user in stored}
    owned = {
        user.user_id: sorted((d for d in devices if d.user_id == user.user_id), key=lambda d: d.device_id)
        for user in stored
    }
    found: list[str] = []
    if target is Target.DEVICES:
        for device in devices:
            owner = by_id.get(device.user_id or "")
            if matches(node, device_subject(device, owner), NOW):
                found.append(device.device_id)
        return sorted(found)
    for user in stored:
        if target is Target.USERS:
            if matches(node, user_subject(user, owned[user.user_id]), NOW):
                found.append(user.user_id)
            continue
        is_email = target is Target.EMAILS
        for item in user.emails if is_email else user.phones:
            if matches(node, contact_subject(item, user, is_email, owned[user.user_id]), NOW):
                found.append(f"{user.user_id}/{item.address}")
    return sorted(found)


def preview_all_pages(service: CriteriaPreviewService, target: Target, criteria: Any) -> tuple[int, list[str]]:
    matched, sampled, cursor = 0, [], None
    for _ in range(200):
        page = service.preview(APP, PreviewRequest(target=target, criteria=criteria, sample_size=50, cursor=cursor))
        matched += page.matched
        for item in page.sample:
            if isinstance(item, User):
                sampled.append(item.user_id)
            elif isinstance(item, Device):
                sampled.append(item.device_id)
            else:
                sampled.append(f"{item.user_id}/{item.address}")
        assert page.complete is (page.next_cursor is None)
        if page.next_cursor is None:
            return matched, sorted(sampled)
        cursor = page.next_cursor
    raise AssertionError("the preview never completed")


@PROPERTY_SETTINGS
@given(
    stored=fixed_user_lists,
    devices=device_lists,
    target=st.sampled_from(Target),
    criteria=trees(user_rules | device_rules | contact_rules),
    budget=st.integers(1, 4),
)
def test_preview_pages_add_up_to_what_code_selects(
    stored: list[User], devices: list[Device], target: Target, criteria: Any, budget: int
) -> None:
    with mock_aws():
        create_template_tables(SHARD_COUNT, "test")
        store_users(stored, SHARD_COUNT)
        limits = SelectionLimits(max_scanned=budget, max_device_lookups=budget, max_owner_lookups=budget)
        services = Services(SHARD_COUNT, clock=lambda: NOW, selection_limits=limits)
        repository = services.device_repository
        for device in devices:
            repository.upsert(APP, device.device_id, lambda _, device=device: device)  # type: ignore[misc]
        # Tiny budgets, so that pages end everywhere: mid-shard, on lookups, on scans.
        service = services.criteria

        matched, sampled = preview_all_pages(service, target, criteria)

    expected = expected_matches(target, criteria, stored, devices)
    assert (matched, sampled) == (len(expected), expected)
