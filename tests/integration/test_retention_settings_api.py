"""Retention settings through the local API: admin scope, validation with paths, stored and effective settings."""

from typing import Any

import pytest

from tests.support.client import RunningStack, assert_error, bootstrap_app, create_key, ok
from tests.support.retention import EXAMPLE_SETTINGS as EXAMPLE

PATH = "/v1/retention-settings"


@pytest.fixture(scope="module")
def admin_key(stack: RunningStack) -> str:
    """A fresh app: settings are per app, and the demo apps' settings belong to the sweep tests."""
    return str(bootstrap_app(stack, "settings", "Settings")["api_key"]["api_key"])


def test_stored_and_effective(stack: RunningStack, admin_key: str) -> None:
    assert ok(stack.api("GET", PATH, admin_key)) == {"settings": None, "effective": None, "channels": {}}
    answer = ok(stack.api("PUT", PATH, admin_key, json=EXAMPLE))
    assert ok(stack.api("GET", PATH, admin_key)) == answer
    assert answer["settings"]["channels"] == {"whatsapp": {"archive_after_days": {"open": 5}, "purge_after_days": 0}}
    assert answer["effective"]["purge_after_days"] == 30
    whatsapp = answer["channels"]["whatsapp"]
    assert whatsapp["archive_after_days"] == {"open": 5, "pending": 30, "automated": 7, "sent": 14}
    assert whatsapp["purge_after_days"] == 0
    assert whatsapp["delete_after_days"] == {"archive": 90, "irrelevant": 0, "resolved": None}

    left_out = ok(stack.api("PUT", PATH, admin_key, json={"archive_after_days": {"open": 1}}))
    assert left_out["effective"]["archive_after_days"] == {"open": 1, "pending": None, "automated": None, "sent": None}
    assert left_out["channels"] == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"archive_after_days": {"open": -1}}, "archive_after_days.open"),
        ({"archive_after_days": {"open": 2.5}}, "archive_after_days.open"),
        ({"delete_after_days": {"archive": 36_501}}, "delete_after_days.archive"),
        ({"purge_after_days": "3"}, "purge_after_days"),
        ({"retain": 3}, "retain"),
        ({"channels": {"sms": {"delete_after_days": {"closed": 1}}}}, "channels.sms.delete_after_days.closed"),
        ({"channels": {"sms": {"archive_after_days": {"open": -2}}}}, "channels.sms.archive_after_days.open"),
    ],
)
def test_bad_settings_get_422_with_the_path(stack: RunningStack, admin_key: str, body: Any, field: str) -> None:
    before = ok(stack.api("GET", PATH, admin_key))
    error = assert_error(stack.api("PUT", PATH, admin_key, json=body), 422, "invalid_input")
    assert error["field"].startswith(field)
    assert ok(stack.api("GET", PATH, admin_key)) == before


def test_settings_need_the_admin_scope(stack: RunningStack) -> None:
    writer = create_key(stack, ["read", "write"])["api_key"]
    assert_error(stack.api("GET", PATH, writer), 403, "insufficient_scope")
    assert_error(stack.api("PUT", PATH, writer, json={}), 403, "insufficient_scope")
