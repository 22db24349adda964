"""The real handler modules, fed the sample events in events/ (API Gateway's shapes)."""

import copy
from types import ModuleType

import pytest

from steward.composition import Services
from steward.settings import StoreSettings
from tests.support.service import call, context, load_event, load_function


def test_identify_event_registers_the_device_as_unused(api: ModuleType) -> None:
    status, device = call(api, load_event("http-api-identify-device.json"))

    assert status == 200
    assert device["device_id"] == "fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH"
    assert device["user_id"] == "user-42"
    assert device["last_status"] == ""
    assert device["attributes"] == {"app_version": "5.2.0", "locale": "en_GB"}


def test_push_result_events_walk_the_device_to_suppressed(api: ModuleType) -> None:
    call(api, load_event("http-api-identify-device.json"))

    first = call(api, load_event("http-api-push-result.json"))
    second = call(api, load_event("http-api-push-result.json"))

    assert first[1]["last_status"] == "bounced"
    assert second[1]["last_status"] == "suppressed"
    assert second[1]["active"] is False
    assert second[1]["deactivation_reason"] == "delivery_error"
    assert second[1]["last_error_code"] == "UNREGISTERED"


def test_batch_event_reports_each_item(api: ModuleType) -> None:
    call(api, load_event("http-api-identify-device.json"))

    status, outcome = call(api, load_event("http-api-push-results-batch.json"))

    assert status == 200
    assert (outcome["succeeded"], outcome["failed"]) == (1, 1)
    assert outcome["results"][0]["device"]["last_status"] == "sent"
    assert outcome["results"][1]["error"]["code"] == "device_not_found"


def test_list_event_filters_by_query_string(api: ModuleType) -> None:
    call(api, load_event("http-api-identify-device.json"))

    status, page = call(api, load_event("http-api-list-devices.json"))

    assert status == 200
    assert [device["device_id"] for device in page["items"]] == ["fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH"]


def test_the_app_comes_from_the_authorizer_context_only(api: ModuleType) -> None:
    call(api, load_event("http-api-identify-device.json"))
    other_app = load_event("http-api-get-device.json")
    other_app["requestContext"]["authorizer"]["lambda"]["app_id"] = "other-app"

    status, error = call(api, other_app)

    assert status == 404
    assert error["error"]["code"] == "device_not_found"


def test_without_authorizer_context_the_api_answers_401(api: ModuleType) -> None:
    event = load_event("http-api-get-device.json")
    event["requestContext"]["authorizer"] = {"lambda": {"auth_error": "invalid_api_key", "auth_message": "nope"}}

    status, error = call(api, event)

    assert status == 401
    assert error["error"]["code"] == "invalid_api_key"


def test_health_event_needs_no_key(api: ModuleType) -> None:
    assert call(api, load_event("http-api-health.json")) == (200, {"status": "ok"})


def test_authorizer_resolves_a_real_key(store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    created = Services(1).apps.bootstrap("demo-shop", "Demo Shop")
    authorizer = load_function("authorizer", store, monkeypatch)
    event = load_event("authorizer-request.json")
    event["headers"]["authorization"] = f"Bearer {created.api_key.api_key}"

    answer = authorizer.lambda_handler(event, context())

    assert answer == {
        "isAuthorized": True,
        "context": {"app_id": "demo-shop", "key_id": created.api_key.key_id, "scopes": "admin read write"},
    }


def test_authorizer_marks_an_unknown_key(store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    authorizer = load_function("authorizer", store, monkeypatch)
    event = copy.deepcopy(load_event("authorizer-request.json"))

    answer = authorizer.lambda_handler(event, context())

    assert answer["context"]["auth_error"] == "invalid_api_key"
    assert "app_id" not in answer["context"]
