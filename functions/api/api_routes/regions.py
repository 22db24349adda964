"""Region routes: create, bulk import, read, list, delete."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import Field

from api_routes.params import SegmentPath
from steward.composition import Services
from steward.http.auth import current_principal
from steward.http.openapi import errors
from steward.pagination import Page
from steward.regions.models import (
    DEFAULT_REGION_PAGE_SIZE,
    MAX_BATCH_REGIONS,
    MAX_REGION_PAGE_SIZE,
    CountryCode,
    NewRegion,
    Region,
    RegionFilter,
    RegionImportBatchOutcome,
    RegionType,
    Tag,
)
from steward.schema import Schema

TAG = "Regions"
NOT_FOUND = errors({404: ["region_not_found"]})


class RegionBatch(Schema):
    # Items stay raw here so that a bad region fails alone, with its own field path.
    regions: list[Any] = Field(
        description=(
            f"Up to {MAX_BATCH_REGIONS} regions, each shaped like the body of `POST /v1/regions`. "
            "Each gets its own outcome; the valid ones are imported even when others are not."
        )
    )


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    @router.post(
        "/v1/regions",
        tags=[TAG],
        summary="Create a region",
        status_code=201,
        responses=errors(
            {
                409: ["region_exists"],
                422: ["polygon_not_closed", "polygon_too_few_points", "polygon_self_intersecting"],
            }
        ),
    )
    def create_region(body: NewRegion) -> Region:
        return services.regions.create(current_principal(router).app_id, body)

    @router.post(
        "/v1/regions/batch",
        tags=[TAG],
        summary=f"Import up to {MAX_BATCH_REGIONS} regions",
        responses=errors({422: ["batch_too_large"]}),
    )
    def import_regions(body: RegionBatch) -> RegionImportBatchOutcome:
        return services.regions.import_regions(current_principal(router).app_id, body.regions)

    @router.get("/v1/regions", tags=[TAG], summary="List the app's regions")
    def list_regions(
        region_type: Annotated[RegionType | None, Query(alias="type", description="Only regions of this type.")] = None,
        tag: Annotated[Tag | None, Query(description="Only regions with this tag (exact match).")] = None,
        country: Annotated[CountryCode | None, Query(description="Only regions in this country, e.g. FR.")] = None,
        cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_REGION_PAGE_SIZE, description="Page size (regions may hold large polygons).")
        ] = DEFAULT_REGION_PAGE_SIZE,
    ) -> Page[Region]:
        region_filter = RegionFilter(type=region_type, tag=tag, country=country)
        return services.regions.list_for_app(current_principal(router).app_id, region_filter, cursor, limit)

    @router.get("/v1/regions/<region_id>", tags=[TAG], summary="Get one region", responses=NOT_FOUND)
    def get_region(region_id: SegmentPath) -> Region:
        return services.regions.get(current_principal(router).app_id, region_id)

    @router.delete(
        "/v1/regions/<region_id>", tags=[TAG], summary="Delete a region", status_code=204, responses=NOT_FOUND
    )
    def delete_region(region_id: SegmentPath) -> Response[None]:
        services.regions.delete(current_principal(router).app_id, region_id)
        return Response(status_code=204)

    return router
