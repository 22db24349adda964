"""Domain objects and input shapes for resources."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from steward.types import Channel


class Resource(BaseModel):
    model_config = ConfigDict(frozen=True)

    resource_id: str
    name: str
    channels: list[Channel] = Field(description="The channels users can subscribe to on this resource.")
    created_at: datetime
    updated_at: datetime


class CreateResource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    channels: list[Channel] = Field(min_length=1, max_length=len(Channel))
