"""Resource routes: the mailing resources and sender brands users subscribe to."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from api_routes.params import SegmentPath
from steward.composition import Services
from steward.http.auth import current_principal
from steward.http.openapi import errors
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from steward.resources.models import CreateResource, Resource

TAG = "Resources"
NOT_FOUND = errors({404: ["resource_not_found"]})


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.post("/v1/resources", tags=[TAG], summary="Create a resource", status_code=201)
    def create_resource(body: CreateResource) -> Resource:
        return services.resources.create(app_id(), body.name, body.channels)

    @router.get("/v1/resources", tags=[TAG], summary="List resources")
    def list_resources(
        cursor: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> Page[Resource]:
        return services.resources.list_page(app_id(), cursor, limit)

    @router.get("/v1/resources/<resource_id>", tags=[TAG], summary="Get one resource", responses=NOT_FOUND)
    def get_resource(resource_id: SegmentPath) -> Resource:
        return services.resources.get(app_id(), resource_id)

    @router.delete(
        "/v1/resources/<resource_id>", tags=[TAG], summary="Delete a resource", status_code=204, responses=NOT_FOUND
    )
    def delete_resource(resource_id: SegmentPath) -> Response[None]:
        services.resources.delete(app_id(), resource_id)
        return Response(status_code=204)

    return router
