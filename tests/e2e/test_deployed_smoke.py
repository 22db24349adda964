"""Opt-in smoke test of a deployed stack: `pytest tests/e2e` with these variables set.

STEWARD_E2E_API_URL  the stack's ApiUrl output
STEWARD_E2E_API_KEY  a key with read and write scopes (from `python -m steward_admin ... create-key`)
"""

import os
import uuid
from urllib.parse import quote

import pytest
import requests

API_URL = os.environ.get("STEWARD_E2E_API_URL", "")
API_KEY = os.environ.get("STEWARD_E2E_API_KEY", "")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (API_URL and API_KEY), reason="STEWARD_E2E_API_URL and STEWARD_E2E_API_KEY are not set"),
]


def call(method: str, path: str, **kwargs: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    return requests.request(method, API_URL.rstrip("/") + path, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_device_round_trip_on_the_deployed_stack() -> None:
    device = f"/v1/devices/{quote(f'fcm:e2e-{uuid.uuid4().hex}', safe='')}"

    identified = call("PUT", device, json={"user_id": "e2e-user", "transport": "FCM"})
    bounced = call("POST", device + "/push-results", json={"accepted": False, "error_code": "UNREGISTERED"})
    deleted = call("DELETE", device)

    assert identified.json()["last_status"] == ""
    assert bounced.json()["last_status"] == "bounced"
    assert deleted.status_code == 204
    assert call("GET", device).status_code == 404
