"""Each job type's parameters: one model per type, and ``parse_params``, which checks raw params against it.

Every refusal is an InvalidInput whose ``field`` is the JSON path from the
body's ``params`` (``params.num_segments``, ``params.criteria.all[1].op``).
Criteria keep their own code (``invalid_criteria``) and an area its
geometry codes (``polygon_not_closed``...); everything else is
``invalid_params``.

Rules that need several fields, or the criteria walk, raise InvalidInput
with a path relative to the params from inside the model; ``parse_params``
puts ``params.`` in front. A new type is one model and one entry in
``_MODELS``.
"""

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from steward.audiences.keys import valid_name
from steward.criteria.models import CriteriaJson
from steward.criteria.parse import INVALID_CRITERIA, parse_criteria
from steward.devices.models import DeactivationReason, Transport
from steward.errors import InvalidInput, clip
from steward.jobs.models import JobType
from steward.regions.area import AREA_ERROR_CODES, AREA_TYPES, Area
from steward.regions.area import TOO_LARGE as AREA_TOO_LARGE
from steward.regions.models import MAX_TAGS as MAX_REGION_TAGS
from steward.regions.models import CountryCode, RegionType
from steward.regions.models import Tag as RegionTag
from steward.schema import Schema
from steward.segments.models import SEGMENT_ID_PREFIX
from steward.tags.models import TagName
from steward.types import Channel, no_control_characters
from steward.users.models import (
    MAX_FIELDS,
    MAX_FIELDS_BYTES,
    FieldName,
    FieldValue,
    SubscriptionStatus,
    fields_bytes,
)

INVALID_PARAMS = "invalid_params"
SELECTION_CONDITIONS_REQUIRED = "selection_conditions_required"
ROOT = "params"

MAX_SEGMENTS = 1000
# Segment names are 1-200 characters (steward.segments.models.CreateSegment): the
# longest name a split makes is "<prefix>-1000".
MAX_SEGMENT_NAME_CHARS = 200
MAX_PREFIX_CHARS = MAX_SEGMENT_NAME_CHARS - len(f"-{MAX_SEGMENTS}")
# Larger segments than this are better expressed with num_segments.
MAX_SEGMENT_SIZE = 10_000_000
MAX_REACTIVATION_WINDOW = timedelta(days=180)
MAX_LISTED_IDS = 1000
# What a job records of its params must fit in its audit entry (96 KB of canonical JSON),
# with room for what the engine adds (dry_run).
MAX_PARAMS_BYTES = 95 * 1024
_SEGMENT_ID = re.compile(rf"^{SEGMENT_ID_PREFIX}[0-9a-f]{{16}}$")
# A date, or a date-time with optional seconds, fraction and offset (the criteria's ISO-8601 forms).
_ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_SHOWN_ITEMS = 3
_CRITERIA_PATHS = (f"{ROOT}.criteria", f"{ROOT}.selection.criteria")


class Medium(StrEnum):
    """How a user is reached: an active device, email address or phone number."""

    PUSH = "push"
    EMAIL = "email"
    SMS = "sms"


_MEDIUM_NOUNS = {Medium.PUSH: "push devices", Medium.EMAIL: "email addresses", Medium.SMS: "phone numbers"}
_MEDIUM_REACH = {
    Medium.PUSH: "an active push device",
    Medium.EMAIL: "an active email address",
    Medium.SMS: "an active phone number",
}


def _utc_moment(value: Any) -> datetime:
    """An ISO-8601 date (midnight UTC) or date-time (naive is UTC; an offset is converted) as an aware UTC datetime."""
    if not isinstance(value, str) or not _ISO_MOMENT.match(value):
        raise ValueError("must be an ISO-8601 date (2026-01-31) or date-time (2026-01-31T08:00:00Z)")
    try:
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # 2026-02-30, or year 1 moved before year 1
        raise ValueError("is not a valid date or date-time") from exc


def _iso_z(moment: datetime) -> str:
    """The one form params keep: UTC with a Z, seconds always, a fraction only when there is one."""
    text = moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="auto")
    return f"{text}Z"


UtcMoment = Annotated[
    datetime,
    BeforeValidator(_utc_moment),
    PlainSerializer(_iso_z, return_type=str, when_used="json"),
    Field(description="ISO-8601 date (00:00 UTC) or date-time; a naive time is UTC, an offset is converted."),
]


def _audience_name(value: str) -> str:
    if not valid_name(value):
        raise ValueError("an audience name is 1-200 characters, without '/' or control characters")
    return value


AudienceName = Annotated[str, AfterValidator(_audience_name)]


def _segment_id(value: str) -> str:
    if not _SEGMENT_ID.match(value):
        raise ValueError(f"must be a segment id: {SEGMENT_ID_PREFIX} followed by 16 hex digits")
    return value


SegmentId = Annotated[str, AfterValidator(_segment_id)]
SegmentPrefix = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PREFIX_CHARS),
    AfterValidator(no_control_characters),
    Field(description=f"Names the segments `<prefix>-1` .. `<prefix>-N`; 1-{MAX_PREFIX_CHARS} characters."),
]


def _unique[T](items: list[T]) -> list[T]:
    """The items without repeats, in their first order: a repeated id names the same thing."""
    return list(dict.fromkeys(items))


def _listing(items: Sequence[str]) -> str:
    """'a', 'a or b', 'a, b or c', 'a, b, c or 2 more': short enough for a 428's message."""
    shown = [clip(item, 64) for item in items[:_SHOWN_ITEMS]]
    rest = len(items) - len(shown)
    if rest:
        return f"{', '.join(shown)} or {rest} more"
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _checked_criteria(criteria: Any) -> Any:
    # Raises InvalidInput (invalid_criteria, field "criteria..."): pydantic lets it through,
    # and parse_params puts "params." in front of the path.
    parse_criteria(criteria)
    return criteria


def _checked_unless_null(criteria: Any) -> Any:
    return None if criteria is None else _checked_criteria(criteria)


# JSON's null is a JsonValue too: where criteria are required, parse_criteria refuses it.
CheckedCriteria = Annotated[CriteriaJson, AfterValidator(_checked_criteria)]
OptionalCriteria = Annotated[CriteriaJson, AfterValidator(_checked_unless_null)]


class JobParams(Schema):
    """The parameters of one job type; ``describe`` says what a real run would do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_type: ClassVar[JobType]

    def describe(self) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The params as a job keeps and shows them: JSON values, defaults filled in, unset options left out."""
        return self.model_dump(mode="json", exclude_none=True)


class SplitAudienceParams(JobParams):
    job_type = JobType.SPLIT_AUDIENCE

    medium: Medium | None = Field(
        default=None, description="Keep only users with an active device (push), email address or phone number (sms)."
    )
    prefix: SegmentPrefix
    num_segments: StrictInt | None = Field(
        default=None, ge=2, le=MAX_SEGMENTS, description="Split into this many segments of even size."
    )
    max_segment_size: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_SEGMENT_SIZE,
        description=f"Split into as many segments of at most this many users as needed (at most {MAX_SEGMENTS}).",
    )
    criteria: OptionalCriteria = Field(default=None, description="Select the users to split; all when omitted.")

    @model_validator(mode="after")
    def _one_way_to_split(self) -> Self:
        if self.num_segments is not None and self.max_segment_size is not None:
            raise InvalidInput(
                "max_segment_size: give either num_segments or max_segment_size, not both.",
                code=INVALID_PARAMS,
                field="max_segment_size",
            )
        if self.num_segments is None and self.max_segment_size is None:
            raise InvalidInput(
                "num_segments: give either num_segments (2-1000) or max_segment_size.",
                code=INVALID_PARAMS,
                field="num_segments",
            )
        return self

    def describe(self) -> str:
        selected = "the users the criteria select" if self.criteria is not None else "all users"
        if self.medium is not None:
            selected += f" that have {_MEDIUM_REACH[self.medium]}"
        if self.num_segments is not None:
            return (
                f"split {selected} into {self.num_segments} segments named "
                f"{self.prefix}-1..{self.prefix}-{self.num_segments}"
            )
        return (
            f"split {selected} into segments of at most {self.max_segment_size:,} users named "
            f"{self.prefix}-1, {self.prefix}-2, ..."
        )


class ReactivateDevicesParams(JobParams):
    job_type = JobType.REACTIVATE_DEVICES

    transport: Transport
    reason: DeactivationReason = Field(
        default=DeactivationReason.DELIVERY_ERROR,
        description="Why they were deactivated: `delivery_error` (the default), or `deactivated_by_job` to undo a "
        "deactivate_users job (identify brings back only the former).",
    )
    start: UtcMoment = Field(description="Devices deactivated at or after this moment...")
    end: UtcMoment = Field(description=f"...and before this one; at most {MAX_REACTIVATION_WINDOW.days} days later.")

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.end <= self.start:
            raise InvalidInput("end: must be after start.", code=INVALID_PARAMS, field="end")
        if self.end - self.start > MAX_REACTIVATION_WINDOW:
            raise InvalidInput(
                f"end: the window is at most {MAX_REACTIVATION_WINDOW.days} days long.",
                code=INVALID_PARAMS,
                field="end",
            )
        return self

    def describe(self) -> str:
        by = "delivery errors" if self.reason is DeactivationReason.DELIVERY_ERROR else "a deactivate_users job"
        return (
            f"reactivate the {self.transport.value} devices deactivated by {by} "
            f"from {_iso_z(self.start)} to {_iso_z(self.end)}"
        )


class DeactivateUsersParams(JobParams):
    job_type = JobType.DEACTIVATE_USERS

    medium: Medium = Field(description="What to deactivate: the users' push devices, email addresses or phones.")
    criteria: CheckedCriteria = Field(description="Select the users.")

    def describe(self) -> str:
        return f"deactivate the {_MEDIUM_NOUNS[self.medium]} of the users the criteria select"


class DeleteEmptySegmentsParams(JobParams):
    job_type = JobType.DELETE_EMPTY_SEGMENTS

    keep_segments_with_inactive_users: StrictBool = Field(
        default=True,
        description="Keep a segment whose members are all inactive users; false deletes it as empty too.",
    )

    def describe(self) -> str:
        if self.keep_segments_with_inactive_users:
            return "delete the static segments that have no members"
        return "delete the static segments that have no active members"


class DeleteSegmentsParams(JobParams):
    job_type = JobType.DELETE_SEGMENTS

    segment_ids: list[SegmentId] = Field(
        min_length=1, max_length=MAX_LISTED_IDS, description="1-1000 segment ids; repeats are dropped."
    )

    @field_validator("segment_ids")
    @classmethod
    def _no_repeats(cls, segment_ids: list[str]) -> list[str]:
        return _unique(segment_ids)

    def describe(self) -> str:
        return f"delete the segments listed ({len(self.segment_ids)})"


class DeleteEmptyTagsParams(JobParams):
    job_type = JobType.DELETE_EMPTY_TAGS

    keep_tags_with_inactive_devices: StrictBool = Field(
        default=True,
        description="Keep a tag whose devices are all inactive; false deletes it as empty too.",
    )

    def describe(self) -> str:
        if self.keep_tags_with_inactive_devices:
            return "delete the device tags that no device carries"
        return "delete the device tags that no active device carries"


class DeleteTagsParams(JobParams):
    job_type = JobType.DELETE_TAGS

    tags: list[TagName] = Field(
        min_length=1, max_length=MAX_LISTED_IDS, description="1-1000 device tags; repeats are dropped."
    )

    @field_validator("tags")
    @classmethod
    def _no_repeats(cls, tags: list[str]) -> list[str]:
        return _unique(tags)

    def describe(self) -> str:
        return f"delete the device tags listed ({len(self.tags)}) and untag their devices"


class DeleteRegionsParams(JobParams):
    job_type = JobType.DELETE_REGIONS

    region_type: RegionType
    tags: list[RegionTag] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_REGION_TAGS,
        description=f"Only regions with any of these 1-{MAX_REGION_TAGS} tags; repeats are dropped.",
    )
    country: CountryCode | None = None
    area: Area | None = Field(default=None, description="Only regions whose center lies in this area (edges included).")

    @field_validator("tags")
    @classmethod
    def _no_repeats(cls, tags: list[str] | None) -> list[str] | None:
        return None if tags is None else _unique(tags)

    def describe(self) -> str:
        parts = [f"delete the {self.region_type.value} regions"]
        if self.tags is not None:
            parts.append(f"tagged {_listing(self.tags)}")
        if self.country is not None:
            parts.append(f"in {self.country}")
        if self.area is not None:
            parts.append("whose center lies in the area")
        return " ".join(parts)


MAX_TOTAL_LIMIT = 100_000_000


class SelectionSource(StrEnum):
    """Where a bulk update's users come from."""

    ALL = "all"
    SEGMENT = "segment"
    AUDIENCE = "audience"


class PercentRange(Schema):
    """A stable slice of the source: the users whose id hashes into [from_percent, to_percent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_percent: float = Field(default=0, ge=0, le=100, strict=False)
    to_percent: float = Field(default=100, ge=0, le=100, strict=False)

    @field_validator("from_percent", "to_percent", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number from 0 to 100")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.from_percent >= self.to_percent:
            raise InvalidInput(
                "selection.range.to_percent: must be greater than from_percent.",
                code=INVALID_PARAMS,
                field="selection.range.to_percent",
            )
        return self


class BulkSelection(Schema):
    """Which users a bulk update changes: a source, optional criteria, and at most one limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: SelectionSource = Field(
        description="`all` users of the app, the users of a `segment`, or the members of an imported `audience`."
    )
    segment_id: SegmentId | None = Field(default=None, description="The segment, for source `segment`.")
    name: AudienceName | None = Field(default=None, description="The imported audience, for source `audience`.")
    criteria: CriteriaJson = Field(default=None, description="Narrow the source (the criteria language).")
    range: PercentRange | None = Field(
        default=None, description="A stable slice of the source by a hash of the user id, before the criteria."
    )
    total_limit: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_TOTAL_LIMIT,
        description="Only the first N users selected, in byte order of the user id.",
    )

    @field_validator("criteria")
    @classmethod
    def _checked(cls, criteria: Any) -> Any:
        try:
            return _checked_unless_null(criteria)
        except InvalidInput as exc:
            raise InvalidInput(
                f"selection.{exc.message}" if exc.field and exc.message.startswith(f"{exc.field}:") else exc.message,
                code=exc.code,
                field=f"selection.{exc.field}" if exc.field else "selection.criteria",
            ) from None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.source is SelectionSource.SEGMENT and self.segment_id is None:
            raise InvalidInput(
                "selection.segment_id: required for source segment.",
                code=INVALID_PARAMS,
                field="selection.segment_id",
            )
        if self.source is not SelectionSource.SEGMENT and self.segment_id is not None:
            raise InvalidInput(
                "selection.segment_id: only for source segment.", code=INVALID_PARAMS, field="selection.segment_id"
            )
        if self.source is SelectionSource.AUDIENCE and self.name is None:
            raise InvalidInput(
                "selection.name: required for source audience.", code=INVALID_PARAMS, field="selection.name"
            )
        if self.source is not SelectionSource.AUDIENCE and self.name is not None:
            raise InvalidInput("selection.name: only for source audience.", code=INVALID_PARAMS, field="selection.name")
        if self.range is not None and self.total_limit is not None:
            raise InvalidInput(
                "selection.total_limit: give either range or total_limit, not both.",
                code=INVALID_PARAMS,
                field="selection.total_limit",
            )
        return self

    @property
    def has_conditions(self) -> bool:
        """Whether anything narrows the selection beyond "every user" (a slice or a limit does not)."""
        return self.criteria is not None or self.source is not SelectionSource.ALL

    def describe(self) -> str:
        selected = {
            SelectionSource.ALL: "all users",
            SelectionSource.SEGMENT: f"the users of segment {self.segment_id}",
            SelectionSource.AUDIENCE: f"the members of audience {self.name}",
        }[self.source]
        if self.criteria is not None:
            selected += " that the criteria select"
        if self.range is not None:
            selected += f" in the slice {self.range.from_percent:g}-{self.range.to_percent:g}%"
        if self.total_limit is not None:
            selected = f"the first {self.total_limit:,} of {selected}"
        return selected


class BulkAction(StrEnum):
    UPDATE_FIELDS = "update_fields"
    GLOBAL_UNSUBSCRIBE = "global_unsubscribe"
    ADD_SUBSCRIPTION = "add_subscription"
    UPDATE_SUBSCRIPTION = "update_subscription"
    DELETE_PROFILES = "delete_profiles"
    PROMO_CODES = "promo_codes"


class PromoOperation(StrEnum):
    ATTACH = "attach"
    DETACH = "detach"


class ContactSource(StrEnum):
    """Where add_subscription finds the contact: the profile's own contacts, or its subscription on another resource."""

    PROFILE_FIELDS = "profile_fields"
    RESOURCE = "resource"


_SUBSCRIPTION_FIELDS = {"resource_id", "channel", "status", "include_unsafe"}
# What each action takes besides the selection: a field another action does not accept is refused.
_ACTION_FIELDS: dict[BulkAction, set[str]] = {
    BulkAction.UPDATE_FIELDS: {"set", "delete"},
    BulkAction.GLOBAL_UNSUBSCRIBE: set(),
    BulkAction.ADD_SUBSCRIPTION: _SUBSCRIPTION_FIELDS | {"contact_source", "source_resource_id"},
    BulkAction.UPDATE_SUBSCRIPTION: _SUBSCRIPTION_FIELDS,
    BulkAction.DELETE_PROFILES: set(),
    BulkAction.PROMO_CODES: {"operation", "program_id"},
}
# Actions that never run on "every user": they need criteria, or a segment or audience source.
_NEED_CONDITIONS = (BulkAction.GLOBAL_UNSUBSCRIBE, BulkAction.DELETE_PROFILES)
# What each action needs: a missing one is refused, naming it.
_REQUIRED_FIELDS: dict[BulkAction, tuple[str, ...]] = {
    BulkAction.ADD_SUBSCRIPTION: ("resource_id", "channel", "status", "contact_source"),
    BulkAction.UPDATE_SUBSCRIPTION: ("resource_id", "channel", "status"),
    BulkAction.PROMO_CODES: ("operation", "program_id"),
}
ResourceId = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(no_control_characters)]


class BulkUpdateParams(JobParams):
    job_type = JobType.BULK_UPDATE

    action: BulkAction
    selection: BulkSelection
    suppress_triggers: StrictBool = Field(default=False, description="Publish no trigger events for the changes.")
    set: dict[FieldName, FieldValue] | None = Field(
        default=None, max_length=MAX_FIELDS, description="update_fields: the fields to set, as for PUT /v1/users."
    )
    delete: list[FieldName] | None = Field(
        default=None, min_length=1, max_length=MAX_FIELDS, description="update_fields: the fields to remove."
    )
    resource_id: ResourceId | None = Field(
        default=None, description="add_subscription, update_subscription: the resource of the subscription."
    )
    channel: Channel | None = Field(
        default=None, description="add_subscription, update_subscription: the channel of the subscription."
    )
    status: SubscriptionStatus | None = Field(
        default=None, description="add_subscription, update_subscription: the status to set."
    )
    contact_source: ContactSource | None = Field(
        default=None,
        description="add_subscription: `profile_fields` (an active email, phone or device of the profile) or "
        "`resource` (the profile's subscription on `source_resource_id`, same channel).",
    )
    source_resource_id: ResourceId | None = Field(
        default=None, description="add_subscription with contact_source `resource`: the resource to copy from."
    )
    operation: PromoOperation | None = Field(
        default=None,
        description="promo_codes: `attach` a free code of the program to each profile that holds none of its "
        "codes, or `detach` the program's codes from the profiles.",
    )
    program_id: ResourceId | None = Field(default=None, description="promo_codes: the loyalty program.")
    include_unsafe: StrictBool | None = Field(
        default=None,
        description="add_subscription, update_subscription: also subscribe profiles whose status is Unsubscribed, "
        "Complainer, Hardbounced or Invalid (false by default).",
    )

    @field_validator("delete")
    @classmethod
    def _no_repeats(cls, names: list[str] | None) -> list[str] | None:
        return None if names is None else _unique(names)

    @model_validator(mode="after")
    def _action_fields(self) -> Self:
        given = {name for name in _ALL_ACTION_FIELDS if getattr(self, name) is not None}
        for name in sorted(given - _ACTION_FIELDS[self.action]):
            raise InvalidInput(f"{name}: not a field of action {self.action.value}.", code=INVALID_PARAMS, field=name)
        for name in _REQUIRED_FIELDS.get(self.action, ()):
            if getattr(self, name) is None:
                raise InvalidInput(f"{name}: required for action {self.action.value}.", code=INVALID_PARAMS, field=name)
        if self.action is BulkAction.UPDATE_FIELDS:
            if not self.set and not self.delete:
                raise InvalidInput("set: give fields to set or delete.", code=INVALID_PARAMS, field="set")
            both = sorted(set(self.set or {}) & set(self.delete or []))
            if both:
                raise InvalidInput(f"delete: {both[0]} is both set and deleted.", code=INVALID_PARAMS, field="delete")
            if self.set and fields_bytes(dict(self.set)) > MAX_FIELDS_BYTES:
                # Every profile would end over the limit: refused now, not skipped user by user.
                raise InvalidInput(
                    f"set: the fields to set take over {MAX_FIELDS_BYTES:,} bytes, more than a profile holds.",
                    code=INVALID_PARAMS,
                    field="set",
                )
        if self.action is BulkAction.ADD_SUBSCRIPTION:
            self._contact_source()
        if self.action in _NEED_CONDITIONS and not self.selection.has_conditions:
            raise InvalidInput(
                f"selection: {self.action.value} needs criteria, or a segment or audience source.",
                code=SELECTION_CONDITIONS_REQUIRED,
                field="selection",
            )
        return self

    def _contact_source(self) -> None:
        from_resource = self.contact_source is ContactSource.RESOURCE
        if from_resource and self.source_resource_id is None:
            raise InvalidInput(
                "source_resource_id: required for contact_source resource.",
                code=INVALID_PARAMS,
                field="source_resource_id",
            )
        if not from_resource and self.source_resource_id is not None:
            raise InvalidInput(
                "source_resource_id: only for contact_source resource.", code=INVALID_PARAMS, field="source_resource_id"
            )
        if from_resource and self.source_resource_id == self.resource_id:
            raise InvalidInput(
                "source_resource_id: must be another resource than resource_id.",
                code=INVALID_PARAMS,
                field="source_resource_id",
            )

    @property
    def attaches_codes(self) -> bool:
        """Attaching hands out a pool of codes in order: one walk over the shards, not a worker per shard."""
        return self.action is BulkAction.PROMO_CODES and self.operation is PromoOperation.ATTACH

    @property
    def unsafe_allowed(self) -> bool:
        return bool(self.include_unsafe)

    @property
    def resources(self) -> list[str]:
        """The resources the action names: each must exist and offer the channel."""
        return [name for name in (self.resource_id, self.source_resource_id) if name is not None]

    def describe(self) -> str:
        selected = self.selection.describe()
        if self.action is BulkAction.GLOBAL_UNSUBSCRIBE:
            return f"globally unsubscribe {selected}"
        if self.action is BulkAction.PROMO_CODES:
            if self.operation is PromoOperation.ATTACH:
                return f"attach a free code of loyalty program {self.program_id} to {selected}"
            return f"detach the codes of loyalty program {self.program_id} from {selected}"
        if self.action is BulkAction.DELETE_PROFILES:
            return f"delete {selected} that had no interaction since the inactivity cutoff"
        if self.action in (BulkAction.ADD_SUBSCRIPTION, BulkAction.UPDATE_SUBSCRIPTION):
            assert self.channel is not None
            assert self.status is not None
            verb = "add" if self.action is BulkAction.ADD_SUBSCRIPTION else "set"
            what = f"{verb} the {self.channel.value} subscription to {self.resource_id} as {self.status.value}"
            if self.include_unsafe:
                what += ", unsafe statuses included,"
            return f"{what} for {selected}"
        changes = []
        if self.set:
            changes.append(f"set {_listing(list(self.set))}")
        if self.delete:
            changes.append(f"delete {_listing(self.delete)}")
        return f"{' and '.join(changes)} on {selected}"


_ALL_ACTION_FIELDS = sorted(set().union(*_ACTION_FIELDS.values()))


_MODELS: tuple[type[JobParams], ...] = (
    SplitAudienceParams,
    ReactivateDevicesParams,
    DeactivateUsersParams,
    DeleteEmptySegmentsParams,
    DeleteSegmentsParams,
    DeleteEmptyTagsParams,
    DeleteTagsParams,
    DeleteRegionsParams,
    BulkUpdateParams,
)
PARAMS_MODELS: Mapping[JobType, type[JobParams]] = MappingProxyType({model.job_type: model for model in _MODELS})


def parse_params(job_type: JobType, raw: Any) -> JobParams:
    """``raw`` checked against ``job_type``'s model; raises InvalidInput with ``field`` = ``params.<path>``."""
    if not isinstance(raw, dict):
        raise InvalidInput("params: must be an object.", code=INVALID_PARAMS, field=ROOT)
    try:
        params = PARAMS_MODELS[job_type].model_validate(raw)
    except ValidationError as exc:
        raise _from_pydantic(exc) from None
    except InvalidInput as exc:
        raise _under_params(exc) from None
    _check_recordable(params)
    return params


FIELD_VALUE_RULE = (
    "a field value is a string of at most 1,024 characters, a number, a boolean, a date or a list of those"
)


def _from_pydantic(exc: ValidationError) -> InvalidInput:
    errors = exc.errors(include_input=False)
    first = errors[0]
    if first["loc"][:1] == ("set",):
        # A value fails each member of its union; the deepest failure names the list item at fault.
        first = max((error for error in errors if error["loc"][:2] == first["loc"][:2]), key=lambda e: len(e["loc"]))
    location = first["loc"]
    message = first["msg"].removeprefix("Value error, ")
    if location[:1] == ("set",) and len(location) > 2 and first["type"] != "value_error":
        # ('set', 'plan', 'list[...]', 1, 'constrained-str'): after the field's name, strings name the member of
        # the value's union that pydantic tried first; the path is the field's (and the list item's), and the
        # message says what a value may be.
        location = (*location[:2], *(part for part in location[2:] if isinstance(part, int)))
        message = FIELD_VALUE_RULE
    field = _field_path(location)
    code = first["type"] if first["type"] in AREA_ERROR_CODES else INVALID_PARAMS
    if first["type"] == "too_long" and {"area", "coordinates"} <= set(first["loc"]):
        code = AREA_TOO_LARGE  # a ring or a list of rings over the cap: the area is too large, as for the total
    return InvalidInput(f"{field}: {message}", code=code, field=field)


def _under_params(exc: InvalidInput) -> InvalidInput:
    """The same error, its path (and the path its message starts with) under ``params``."""
    field = f"{ROOT}.{exc.field}" if exc.field else ROOT
    message = f"{ROOT}.{exc.message}" if exc.field and exc.message.startswith(f"{exc.field}:") else exc.message
    return InvalidInput(message, code=exc.code, field=field)


def _field_path(location: Sequence[int | str]) -> str:
    """('area', 'Polygon', 'coordinates', 0, 3) -> 'params.area.coordinates[0][3]'."""
    path = ROOT
    for index, part in enumerate(location):
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in AREA_TYPES and index > 0 and location[index - 1] == "area":
            continue  # the union's tag, not a key of the body
        else:
            path += f".{part}"
    return path


def _check_recordable(params: JobParams) -> None:
    """The params must read back the same from the job's audit entry, and fit in it."""
    # Imported here: canonical JSON loads rfc8785, which only job submissions and the audit log need.
    from steward.audit.canonical import NotCanonical, canonical_json

    try:
        size = len(canonical_json(params.to_json()))
    except NotCanonical as exc:
        # Its message starts with the path from the root it was given ("$.criteria.all[0].value: ...").
        where, _, reason = str(exc).partition(": ")
        field = ROOT + where.removeprefix("$")
        # Only criteria hold free-form values, and their errors keep their own code.
        code = INVALID_CRITERIA if field.startswith(_CRITERIA_PATHS) else INVALID_PARAMS
        raise InvalidInput(f"{field}: {reason}", code=code, field=field) from None
    if size > MAX_PARAMS_BYTES:
        raise InvalidInput(
            f"params: take {size:,} bytes of JSON; at most {MAX_PARAMS_BYTES:,}.", code=INVALID_PARAMS, field=ROOT
        )
