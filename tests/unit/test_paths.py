"""Ids in paths as HTTP APIs deliver them: decoded, so ids with '/' must be re-segmented."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steward.http.paths import canonical_path, decode_id


@pytest.mark.parametrize(
    ("delivered", "canonical"),
    [
        ("/v1/devices/fcm:abc", "/v1/devices/fcm%3Aabc"),
        ("/v1/devices/https://push.example.com/a/b", "/v1/devices/https%3A%2F%2Fpush.example.com%2Fa%2Fb"),
        (
            "/v1/devices/https://push.example.com/a/push-results",
            "/v1/devices/https%3A%2F%2Fpush.example.com%2Fa/push-results",
        ),
        ("/v1/devices/x/y/user", "/v1/devices/x%2Fy/user"),
        ("/v1/devices/user", "/v1/devices/user"),
        ("/v1/users/team/alice/devices", "/v1/users/team%2Falice/devices"),
        ("/v1/devices", "/v1/devices"),
        ("/v1/api-keys/0123456789abcdef", "/v1/api-keys/0123456789abcdef"),
        ("/health", "/health"),
    ],
)
def test_id_segments_are_rebuilt(delivered: str, canonical: str) -> None:
    assert canonical_path(delivered) == canonical


# Ids that end like a route suffix or start with '~' travel base64url-encoded instead.
@given(st.text(min_size=1).filter(lambda text: not text.endswith(("/user", "/push-results")) and text[0] != "~"))
def test_any_device_id_survives_the_round_trip(device_id: str) -> None:
    segment = canonical_path(f"/v1/devices/{device_id}/push-results").split("/")[3]

    assert decode_id(segment) == device_id


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1))
def test_base64url_form_carries_any_id(device_id: str) -> None:
    encoded = "~" + base64.urlsafe_b64encode(device_id.encode()).decode().rstrip("=")

    assert decode_id(encoded) == device_id


@pytest.mark.parametrize("segment", ["~***", "~__8", "%ff"])
def test_undecodable_segments_raise_value_error(segment: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (UnicodeDecodeError is a ValueError too)
        decode_id(segment)
