"""Resource routes: the mailing resources and sender brands users subscribe to."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from steward.composition import Services
from steward.http.auth import current_principal
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from steward.resources.models import CreateResource, Resource

TAG = "Resources"


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.post("/v1/resources", tags=[TAG], summary="Create a resource")
    def create_resource(body: CreateResource) -> Response[Resource]:
        resource = services.resources.create(app_id(), body.name, body.channels)
        return Response(status_code=201, content_type="application/json", body=resource)

    @router.get("/v1/resources", tags=[TAG], summary="List resources")
    def list_resources(
        cursor: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> Page[Resource]:
        return services.resources.list_page(app_id(), cursor, limit)

    @router.get("/v1/resources/<resource_id>", tags=[TAG], summary="Get one resource")
    def get_resource(resource_id: str) -> Resource:
        return services.resources.get(app_id(), resource_id)

    @router.delete("/v1/resources/<resource_id>", tags=[TAG], summary="Delete a resource")
    def delete_resource(resource_id: str) -> Response[None]:
        services.resources.delete(app_id(), resource_id)
        return Response(status_code=204)

    return router
