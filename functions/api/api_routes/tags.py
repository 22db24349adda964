"""Tag routes: tag and untag devices (one or in bulk), list tags and a tag's devices."""

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import TypeAdapter, ValidationError

from api_routes.params import DeviceIdPath, device_id_param
from steward.composition import Services
from steward.devices.models import Device
from steward.errors import InvalidInput
from steward.http.auth import current_principal
from steward.http.openapi import errors
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from steward.tags.models import (
    MAX_DEVICES_PER_REQUEST,
    MAX_TAGS_PER_DEVICE,
    TAG_PATTERN,
    BulkTagDevices,
    BulkTagOutcome,
    Tag,
    TagName,
)

TAG = "Tags"
_TAG_NAME = TypeAdapter(TagName)
# The pattern is documented, not validated by Powertools: the device route re-encodes the tag (':' as %3A)
# before routing, and _tag() checks the decoded value against the same pattern (422 invalid_path_parameter).
TagParam = Annotated[
    str,
    Path(
        description="The tag: 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'.",
        json_schema_extra={"pattern": TAG_PATTERN},
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.put(
        "/v1/devices/<device_id>/tags/<tag>",
        tags=[TAG],
        summary="Tag a device",
        description=(
            f"Idempotent: a device that already carries the tag is returned unchanged. A device carries at most "
            f"{MAX_TAGS_PER_DEVICE} tags (409 `too_many_tags`)."
        ),
        responses=errors({404: ["device_not_found"], 409: ["too_many_tags", "concurrent_update"]}),
    )
    def tag_device(device_id: DeviceIdPath, tag: TagParam) -> Device:
        return services.tags.tag(app_id(), device_id_param(device_id), _tag(unquote(tag)))

    @router.delete(
        "/v1/devices/<device_id>/tags/<tag>",
        tags=[TAG],
        summary="Untag a device",
        description="404 `tag_not_on_device` when the device does not carry the tag.",
        responses=errors({404: ["device_not_found", "tag_not_on_device"], 409: ["concurrent_update"]}),
    )
    def untag_device(device_id: DeviceIdPath, tag: TagParam) -> Device:
        return services.tags.untag(app_id(), device_id_param(device_id), _tag(unquote(tag)))

    @router.post(
        "/v1/tags/<tag>/devices",
        tags=[TAG],
        summary=f"Tag and untag up to {MAX_DEVICES_PER_REQUEST:,} devices",
        description=(
            "Each device gets an outcome: added, removed, unchanged, not found, too many tags, invalid or "
            "failed (send those again). The tag's device count stays exact."
        ),
        responses=errors({422: ["batch_too_large", "id_in_add_and_remove"]}),
    )
    def change_tag_devices(tag: TagParam, body: BulkTagDevices) -> BulkTagOutcome:
        return services.tags.change_devices(app_id(), _tag(tag), body.add, body.remove)

    @router.get(
        "/v1/tags",
        tags=[TAG],
        summary="List the app's tags with their device counts",
        description="Tags whose last device was untagged stay listed with a count of 0.",
    )
    def list_tags(cursor: Cursor = None, limit: Limit = DEFAULT_PAGE_SIZE) -> Page[Tag]:
        return services.tags.list_tags(app_id(), cursor, limit)

    @router.get(
        "/v1/tags/<tag>/devices",
        tags=[TAG],
        summary="List the devices carrying a tag",
        responses=errors({404: ["tag_not_found"]}),
    )
    def list_tag_devices(tag: TagParam, cursor: Cursor = None, limit: Limit = DEFAULT_PAGE_SIZE) -> Page[Device]:
        return services.tags.list_devices(app_id(), _tag(tag), cursor, limit)

    return router


def _tag(raw: str) -> str:
    try:
        return _TAG_NAME.validate_python(raw)
    except ValidationError as exc:
        raise InvalidInput(
            "tag must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'.",
            code="invalid_path_parameter",
            field="tag",
        ) from exc
