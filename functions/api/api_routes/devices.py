"""Device routes: identify, read, push results, logout."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import Field

from api_routes.params import DeviceIdPath, UserIdPath, device_id_param, user_id_param
from steward.composition import Services
from steward.devices.models import (
    Device,
    DeviceFilter,
    IdentifyDevice,
    LastStatus,
    PushResult,
    PushResultBatchOutcome,
    Transport,
)
from steward.errors import InvalidInput
from steward.http.auth import current_principal
from steward.http.openapi import errors
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from steward.schema import Schema
from steward.types import UserId

TAG = "Devices"
NOT_FOUND = ["device_not_found"]
OWNERSHIP = ["device_owned_by_other_user", "concurrent_update"]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]


class PushResultBatch(Schema):
    results: list[Any] = Field(
        description="Up to 100 items `{device_id, accepted, error_code, error_message}`; each gets its own outcome."
    )


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    @router.put(
        "/v1/devices/<device_id>",
        tags=[TAG],
        summary="Identify (register or refresh) a device",
        responses=errors({409: ["concurrent_update"]}),
    )
    def identify_device(device_id: DeviceIdPath, body: IdentifyDevice) -> Device:
        return services.devices.identify(current_principal(router).app_id, device_id_param(device_id), body)

    @router.get("/v1/devices/<device_id>", tags=[TAG], summary="Get one device", responses=errors({404: NOT_FOUND}))
    def get_device(device_id: DeviceIdPath) -> Device:
        return services.devices.get(current_principal(router).app_id, device_id_param(device_id))

    @router.delete(
        "/v1/devices/<device_id>",
        tags=[TAG],
        summary="Log out: delete the device",
        status_code=204,
        responses=errors({404: NOT_FOUND, 409: OWNERSHIP}),
    )
    def delete_device(
        device_id: DeviceIdPath,
        user_id: Annotated[
            UserId | None, Query(description="Only delete while the device still belongs to this user.")
        ] = None,
    ) -> Response[None]:
        services.devices.logout(current_principal(router).app_id, device_id_param(device_id), user_id)
        return Response(status_code=204)

    @router.delete(
        "/v1/devices/<device_id>/user",
        tags=[TAG],
        summary="Log out: keep the device, drop its user",
        responses=errors({404: NOT_FOUND, 409: OWNERSHIP}),
    )
    def dissociate_device(
        device_id: DeviceIdPath,
        user_id: Annotated[
            UserId | None, Query(description="Only dissociate while the device belongs to this user.")
        ] = None,
    ) -> Device:
        return services.devices.dissociate(current_principal(router).app_id, device_id_param(device_id), user_id)

    @router.post(
        "/v1/devices/<device_id>/push-results",
        tags=[TAG],
        summary="Record one push result",
        responses=errors({404: NOT_FOUND, 409: ["device_inactive", "concurrent_update"]}),
    )
    def record_push_result(device_id: DeviceIdPath, body: PushResult) -> Device:
        return services.devices.record_push_result(current_principal(router).app_id, device_id_param(device_id), body)

    @router.post(
        "/v1/push-results",
        tags=[TAG],
        summary="Record up to 100 push results",
        responses=errors({422: ["batch_too_large"]}),
    )
    def record_push_results(body: PushResultBatch) -> PushResultBatchOutcome:
        return services.devices.record_push_results(current_principal(router).app_id, body.results)

    @router.get("/v1/users/<user_id>/devices", tags=[TAG], summary="List one user's devices")
    def list_user_devices(user_id: UserIdPath, cursor: Cursor = None, limit: Limit = DEFAULT_PAGE_SIZE) -> Page[Device]:
        return services.devices.list_for_user(current_principal(router).app_id, user_id_param(user_id), cursor, limit)

    @router.get("/v1/devices", tags=[TAG], summary="List the app's devices")
    def list_devices(
        transport: Annotated[Transport | None, Query()] = None,
        last_status: Annotated[
            str | None, Query(description='One of "unused" (or empty), "sent", "bounced", "suppressed".')
        ] = None,
        active: Annotated[bool | None, Query()] = None,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_PAGE_SIZE,
    ) -> Page[Device]:
        device_filter = DeviceFilter(transport=transport, last_status=_last_status(last_status), active=active)
        return services.devices.list_for_app(current_principal(router).app_id, device_filter, cursor, limit)

    return router


def _last_status(value: str | None) -> LastStatus | None:
    if value is None:
        return None
    if value in ("", "unused"):
        return LastStatus.UNUSED
    try:
        return LastStatus(value)
    except ValueError as exc:
        raise InvalidInput(
            "last_status must be one of unused, sent, bounced, suppressed.", code="invalid_input", field="last_status"
        ) from exc
