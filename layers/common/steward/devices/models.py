"""Domain objects and input shapes for devices."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from steward.batch import BatchOutcome, ItemOutcome
from steward.schema import Schema
from steward.types import DeviceId, UserId

MAX_BATCH_RESULTS = 100
# Every push result rewrites the whole item, so attributes are kept small (1 KB = 1 write unit).
MAX_ATTRIBUTES_BYTES = 2048


class Transport(StrEnum):
    APNS = "APNS"
    FCM = "FCM"
    HMS = "HMS"
    SAFARI_PUSH = "SafariPush"
    WEB_PUSH = "WebPush"


class LastStatus(StrEnum):
    UNUSED = ""
    SENT = "sent"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"


class DeactivationReason(StrEnum):
    DELIVERY_ERROR = "delivery_error"
    # A deactivate_users job: identify does not bring such a device back.
    JOB = "deactivated_by_job"


ErrorCode = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ErrorMessage = Annotated[str, StringConstraints(max_length=1024)]
PushId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
AttributeValue = Annotated[str, StringConstraints(max_length=1024)]


class Device(Schema):
    model_config = ConfigDict(frozen=True)

    device_id: str = Field(description="Push token or installation id.")
    user_id: str | None = Field(description="Owner; null once the device was dissociated at logout.")
    transport: Transport
    last_status: LastStatus = Field(description='"" (unused), sent, bounced or suppressed.')
    has_succeeded: bool = Field(description="Whether any push to this device was ever accepted.")
    failure_streak: int = Field(description="Consecutive failed pushes since the last accepted one.")
    active: bool = Field(description="Inactive devices receive no pushes.")
    deactivated_at: datetime | None
    deactivation_reason: DeactivationReason | None
    last_error_code: str | None
    last_error_message: str | None
    attributes: dict[str, str]
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    last_push_at: datetime | None
    last_push_id: str | None = Field(default=None, description="push_id of the last result applied.")


class IdentifyDevice(Schema):
    """Body of PUT /v1/devices/{device_id}."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    transport: Transport
    attributes: dict[AttributeName, AttributeValue] | None = Field(
        default=None,
        max_length=50,
        description=(
            f"App-defined attributes (app version, locale...), at most {MAX_ATTRIBUTES_BYTES} bytes in all. "
            "Omit to keep the stored ones."
        ),
    )

    @field_validator("attributes")
    @classmethod
    def _small_enough(cls, attributes: dict[str, str] | None) -> dict[str, str] | None:
        if attributes is not None:
            size = sum(len(name.encode()) + len(value.encode()) for name, value in attributes.items())
            if size > MAX_ATTRIBUTES_BYTES:
                raise ValueError(f"attributes take {size} bytes; at most {MAX_ATTRIBUTES_BYTES} are allowed")
        return attributes


class PushResult(Schema):
    """Body of POST /v1/devices/{device_id}/push-results."""

    model_config = ConfigDict(extra="forbid")

    accepted: bool = Field(description="Whether the push provider accepted the push.")
    error_code: ErrorCode | None = Field(default=None, description="The provider's error code, if any.")
    error_message: ErrorMessage | None = None
    push_id: PushId | None = Field(
        default=None,
        description="The provider's message id, or any id unique per push: a retried result is applied once.",
    )


class DevicePushResult(PushResult):
    """One item of POST /v1/push-results."""

    device_id: DeviceId


class DeviceFilter(Schema):
    model_config = ConfigDict(frozen=True)

    transport: Transport | None = None
    last_status: LastStatus | None = None
    active: bool | None = None


class PushResultOutcome(ItemOutcome):
    """What happened to one result of a batch: the device after it, or why not."""

    device_id: str | None
    device: Device | None = None


class PushResultBatchOutcome(BatchOutcome[PushResultOutcome]):
    pass
