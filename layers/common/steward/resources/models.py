"""Domain objects and input shapes for resources."""

from datetime import datetime

from pydantic import ConfigDict, Field

from steward.schema import Schema
from steward.types import Channel


class Resource(Schema):
    model_config = ConfigDict(frozen=True)

    resource_id: str
    name: str
    channels: list[Channel] = Field(description="The channels users can subscribe to on this resource.")
    created_at: datetime
    updated_at: datetime


class CreateResource(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    channels: list[Channel] = Field(min_length=1, max_length=len(Channel))
