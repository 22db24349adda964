"""Domain objects and input shapes for segments."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from steward.criteria.models import CriteriaJson
from steward.schema import Schema

SEGMENT_ID_PREFIX = "seg_"
MAX_MEMBER_CHANGES = 1000
# A user's deactivation adjusts the counts of all its segments in one
# transaction (at most 100 writes), so a user is in at most this many.
MAX_SEGMENTS_PER_USER = 90


class SegmentKind(StrEnum):
    STATIC = "static"
    CRITERIA = "criteria"


class Segment(Schema):
    model_config = ConfigDict(frozen=True)

    segment_id: str
    name: str
    kind: SegmentKind
    criteria: dict[str, Any] | None = Field(description="The stored criteria (criteria segments only).")
    member_count: int | None = Field(
        description="Members, active or not (static segments). Null for criteria segments: "
        "their members are counted when read, e.g. with POST /v1/criteria/preview."
    )
    inactive_member_count: int | None = Field(description="Members that are inactive users (static segments).")
    active_member_count: int | None = Field(
        description="member_count - inactive_member_count: 0 means empty, ignoring inactive users."
    )
    deleting: bool = Field(description="A DELETE is removing the members; repeat it to finish.")
    created_at: datetime
    updated_at: datetime


class CreateSegment(Schema):
    """Body of POST /v1/segments."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Unique in the app.")
    kind: SegmentKind
    criteria: CriteriaJson | None = Field(
        default=None,
        description="Required for criteria segments, refused for static ones; the form of POST /v1/criteria/preview.",
    )


class ChangeMembers(Schema):
    """Body of POST /v1/segments/{segment_id}/members."""

    model_config = ConfigDict(extra="forbid")

    add: list[Any] = Field(default_factory=list, description="User ids to add (registered users only).")
    remove: list[Any] = Field(default_factory=list, description="User ids to remove.")


class MemberChangeOutcome(Schema):
    added: int = Field(description="Users that became members.")
    removed: int = Field(description="Users that stopped being members.")
    unchanged: int = Field(description="Users to add that already were members, or to remove that were not.")
    not_found: list[str] = Field(description="User ids that are not registered in the app.")
    at_segment_limit: list[str] = Field(
        description=f"Users not added: already in {MAX_SEGMENTS_PER_USER} static segments, the most a user can be in."
    )
    invalid: list[str] = Field(description="Items that are not valid user ids, as sent (non-strings as JSON text).")
    failed: list[str] = Field(description="Users not changed because of concurrent changes or an outage; send again.")
    segment: Segment = Field(description="The segment after the change, with its counts.")
