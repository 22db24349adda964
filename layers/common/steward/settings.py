"""Typed configuration, read from the environment once at cold start.

template.yaml sets these variables with !Ref; a missing or malformed one
fails the cold start loudly instead of failing a request later.
"""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseSettings):
    """Where the data lives: every function that touches DynamoDB needs this."""

    model_config = SettingsConfigDict(env_prefix="STEWARD_", frozen=True)

    apps_table: str = Field(min_length=3)
    devices_table: str = Field(min_length=3)
    profiles_table: str = Field(min_length=3)
    catalog_table: str = Field(min_length=3)
    shard_count: int = Field(ge=1, le=256)
