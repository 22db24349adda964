"""Domain objects and input shapes for device tags."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints

from steward.schema import Schema

TAG_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
MAX_TAGS_PER_DEVICE = 20
MAX_DEVICES_PER_REQUEST = 1000

TagName = Annotated[str, StringConstraints(pattern=TAG_PATTERN)]


class Tag(Schema):
    model_config = ConfigDict(frozen=True)

    tag: str = Field(description="The tag name: 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'.")
    device_count: int = Field(
        description=(
            "Devices carrying the tag. A tag whose last device was untagged stays listed with 0 "
            "until a maintenance job deletes it."
        )
    )
    created_at: datetime = Field(description="When a device first carried the tag.")
    updated_at: datetime = Field(description="When a device was last tagged or untagged with it.")


class BulkTagDevices(Schema):
    """Body of POST /v1/tags/{tag}/devices."""

    model_config = ConfigDict(extra="forbid")

    add: list[Any] = Field(
        default_factory=list,
        description=(
            f"Ids of devices to tag. `add` and `remove` hold at most {MAX_DEVICES_PER_REQUEST} ids together, "
            "and no id may be in both."
        ),
    )
    remove: list[Any] = Field(default_factory=list, description="Ids of devices to untag.")


class BulkTagOutcome(Schema):
    added: int = Field(description="Devices of `add` that now carry the tag.")
    removed: int = Field(description="Devices of `remove` that no longer carry the tag.")
    unchanged: int = Field(
        description=(
            "Devices of `add` that already carried the tag and devices of `remove` that did not "
            "(ids repeated in a list count here too); nothing was written for them."
        )
    )
    not_found: list[str] = Field(description="Ids of devices that do not exist in the app.")
    too_many_tags: list[str] = Field(
        description=f"Ids of `add` left untagged because the device already carries {MAX_TAGS_PER_DEVICE} tags."
    )
    invalid: list[str] = Field(description="Items that are not valid device ids, as sent (non-strings as JSON text).")
    failed: list[str] = Field(
        description="Ids not changed because of a transient error (throttling, concurrent changes); send them again."
    )
    device_count: int = Field(description="Devices carrying the tag after the request.")
