"""The shared guards: body decoding, the JSON depth guard, storable numbers, pages cut by size."""

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import BaseModel
from pynamodb.exceptions import PutError

from steward.batch import UNAPPLIED_FINAL, UNAPPLIED_RETRY, run_batch
from steward.devices.models import MAX_BATCH_RESULTS, Device, LastStatus, PushResultBatchOutcome, PushResultOutcome
from steward.errors import InvalidInput, UnsupportedMediaType, clip
from steward.http.body import MAX_JSON_DEPTH, load_json, readable_body, refuse_unreadable_body
from steward.numbers import number_problem
from steward.pagination import MAX_PAGE_BYTES, fit_page, response_bytes

LAMBDA_ANSWER_BYTES = 6_291_556


def event(body: bytes, content_type: str | None, *, binary: bool = False, method: str = "POST") -> dict[str, Any]:
    headers = {} if content_type is None else {"content-type": content_type}
    context = {"http": {"method": method}}
    if binary:
        return {
            "headers": headers,
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
            "requestContext": context,
        }
    return {"headers": headers, "body": body.decode(), "isBase64Encoded": False, "requestContext": context}


@pytest.mark.parametrize("method", ["GET", "DELETE", "HEAD"])
def test_a_body_on_a_method_without_one_is_never_read(method: str) -> None:
    # Only POST, PUT and PATCH routes take a body and document 415.
    sent = event(b"\xff not json", "text/plain", binary=True, method=method)

    assert refuse_unreadable_body(sent) is None


def test_a_utf8_body_reaches_the_resolver_as_plain_text_with_a_plain_content_type() -> None:
    sent = event('{"a": "é"}'.encode(), "Application/JSON; charset=UTF-8", binary=True)

    assert refuse_unreadable_body(sent) is None
    assert sent["body"] == '{"a": "é"}'
    assert sent["isBase64Encoded"] is False
    assert sent["headers"] == {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{}", "text/plain", 415, "unsupported_media_type"),
        (b"{}", "application/merge-patch+json", 415, "unsupported_media_type"),
        (b"{}", ";", 415, "unsupported_media_type"),
        (b'{"a": "\xe9"}', "application/json", 422, "malformed_json"),
        (b"{}", "application/json; charset=latin-1", 422, "malformed_json"),
    ],
)
def test_an_unreadable_body_is_answered_before_routing(body: bytes, content_type: str, status: int, code: str) -> None:
    answer = refuse_unreadable_body(event(body, content_type, binary=True))

    assert answer is not None
    assert answer["statusCode"] == status
    assert json.loads(answer["body"])["error"]["code"] == code


def test_no_body_and_no_content_type_are_fine() -> None:
    assert refuse_unreadable_body({"headers": {"content-type": "text/plain"}}) is None
    assert readable_body(None, "{}", False) == "{}"


def test_readable_body_raises_domain_errors() -> None:
    with pytest.raises(UnsupportedMediaType):
        readable_body("text/csv", "a,b", False)
    with pytest.raises(InvalidInput):
        readable_body("application/json", base64.b64encode(b"\xff").decode(), True)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "[" * 5000 + "]" * 5000,
        "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
        '{"n": ' + "1" * 5000 + "}",
    ],
)
def test_load_json_fails_only_with_json_decode_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        load_json(text)


def test_load_json_takes_the_maximum_depth() -> None:
    text = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH

    assert load_json(text) is not None


@pytest.mark.parametrize(
    ("value", "storable"),
    [
        (0, True),
        (0.0, True),
        (1e-130, True),
        (9.9e125, True),
        (10**50, True),  # one significant digit
        (int("9" * 38), True),
        (int("9" * 39), False),
        (1e-200, False),
        (1e126, False),
        (float("nan"), False),
        (float("inf"), False),
        (float("-inf"), False),
    ],
)
def test_storable_numbers(value: float, storable: bool) -> None:
    assert (number_problem(value) is None) is storable


class Item(BaseModel):
    text: str


def test_a_page_is_cut_before_it_passes_its_byte_budget_and_resumes_after_its_last_item() -> None:
    items = [(Item(text="x" * 100), f"after-{index}") for index in range(10)]
    budget = 3 * response_bytes(items[0][0]) + 1

    page = fit_page(items, "end", max_bytes=budget)

    assert [item.text for item in page.items] == ["x" * 100] * 3
    assert page.next_cursor == "after-2"
    assert fit_page(items, "end").next_cursor == "end"


def test_response_bytes_counts_escapes_as_lambda_sends_them() -> None:
    item = Item(text='"\\é\U0001f600')
    body = json.dumps(item.model_dump(mode="json"), separators=(",", ":"))

    assert response_bytes(item) == len(json.dumps(body)) - 2 + 1  # minus the string's quotes, plus a comma


def test_clip_marks_what_it_cuts() -> None:
    assert clip("a" * 256) == "a" * 256
    assert clip("a" * 257) == "a" * 255 + "…"


def test_a_push_results_batch_answer_fits_lambda_by_construction() -> None:
    """Device fields are capped, so 100 of the largest possible devices still fit one answer."""
    worst = "\U0001f600"  # 14 bytes in the answer for 4 in a field
    now = datetime(2026, 1, 1, tzinfo=UTC)
    device = Device(
        device_id=worst * 256,
        user_id=worst * 256,
        transport="FCM",
        last_status=LastStatus.SUPPRESSED,
        has_succeeded=True,
        failure_streak=10**6,
        active=False,
        deactivated_at=now,
        deactivation_reason="delivery_error",
        last_error_code=worst * 128,
        last_error_message="\u0001" * 1024,
        attributes={f"a{index:02d}": worst * 10 for index in range(50)},
        tags=["t" * 64] * 20,
        created_at=now,
        updated_at=now,
        last_push_at=now,
        last_push_id=worst * 128,
    )
    outcome = PushResultBatchOutcome(
        succeeded=MAX_BATCH_RESULTS,
        failed=0,
        results=[
            PushResultOutcome(index=index, device_id=device.device_id, ok=True, device=device)
            for index in range(MAX_BATCH_RESULTS)
        ],
    )

    assert response_bytes(outcome) < MAX_PAGE_BYTES < LAMBDA_ANSWER_BYTES


class Keyed(BaseModel):
    key: str


def test_a_batch_item_says_send_again_only_when_a_resend_can_help() -> None:
    def refuse(item: Keyed) -> str:
        code = "ValidationException" if item.key == "refused" else "ProvisionedThroughputExceededException"
        raise PutError("write failed", ClientError({"Error": {"Code": code, "Message": "no"}}, "PutItem"))

    results = run_batch([{"key": "refused"}, {"key": "throttled"}], Keyed, "key", refuse, "items", max_items=10)

    messages = [result.error.message for result in results if result.error is not None]
    assert messages == [UNAPPLIED_FINAL, UNAPPLIED_RETRY]
