"""Ids and addresses taken from the path (see steward.http.paths for how they are encoded), checked as in bodies."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import TypeAdapter, ValidationError

from steward.errors import InvalidInput
from steward.http.paths import decode_id
from steward.types import DeviceId, UserId
from steward.users.models import EmailAddress, PhoneNumber

# API Gateway decodes the path before routing and cuts it at a decoded '?' or '#', so a value
# holding one reaches another route (or none). The patterns tell clients; the checks stay in code.
_ID_HELP = "URL-encoded. An id holding '?' or '#' travels as '~' followed by its base64url encoding."
DeviceIdPath = Annotated[str, Path(pattern=r"^[^?#]+$", description=f"The device id (a push token), {_ID_HELP}")]
UserIdPath = Annotated[str, Path(pattern=r"^[^?#]+$", description=f"The user id, {_ID_HELP}")]
# Any other path parameter is one segment: it cannot hold '/' either.
SegmentPath = Annotated[str, Path(pattern=r"^[^/?#]+$")]

_DEVICE_ID = TypeAdapter(DeviceId)
_USER_ID = TypeAdapter(UserId)
_EMAIL = TypeAdapter(EmailAddress)
_PHONE = TypeAdapter(PhoneNumber)


def device_id_param(raw: str) -> str:
    return _decode(_DEVICE_ID, raw, "device_id")


def user_id_param(raw: str) -> str:
    return _decode(_USER_ID, raw, "user_id")


def email_param(raw: str) -> str:
    return _decode(_EMAIL, raw, "email")


def phone_param(raw: str) -> str:
    return _decode(_PHONE, raw, "phone")


def _decode(adapter: TypeAdapter[str], raw: str, field: str) -> str:
    try:
        return adapter.validate_python(decode_id(raw))
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"{field} is not valid: {exc}", code="invalid_path_parameter", field=field) from exc
