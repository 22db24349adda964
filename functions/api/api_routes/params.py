"""Ids and addresses taken from the path (see steward.http.paths for how they are encoded), checked as in bodies."""

from pydantic import TypeAdapter, ValidationError

from steward.errors import InvalidInput
from steward.http.paths import decode_id
from steward.types import DeviceId, UserId
from steward.users.models import EmailAddress, PhoneNumber

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
