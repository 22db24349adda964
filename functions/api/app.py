"""The HTTP API function: one Powertools resolver for every /v1 route and the docs."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from api_routes import api_keys, criteria, devices, docs, loyalty, regions, resources, segments, tags, users
from steward.apps.service import AppService
from steward.criteria.preview import CriteriaPreviewService
from steward.devices.repository import DeviceRepository
from steward.devices.service import DeviceService
from steward.http.auth import authorize, refuse_unauthenticated
from steward.http.errors import register_error_handlers
from steward.http.openapi import document_responses
from steward.http.paths import canonical_path
from steward.loyalty.service import LoyaltyService
from steward.regions.service import RegionService
from steward.resources.repository import ResourceRepository
from steward.segments.service import SegmentService
from steward.settings import StoreSettings
from steward.tables import bind_tables
from steward.tags.service import TagService
from steward.users.repository import UserRepository
from steward.users.service import UserService

logger = Logger()
tracer = Tracer()
metrics = Metrics()

settings = StoreSettings()
bind_tables(settings)

app = APIGatewayHttpResolver(enable_validation=True)
docs.configure(app)
app.use(middlewares=[authorize(public_paths=docs.PUBLIC_PATHS)])
register_error_handlers(app, logger)
app.include_router(devices.build_router(DeviceService(DeviceRepository(settings.shard_count))))
app.include_router(users.build_router(UserService(UserRepository(settings.shard_count))))
app.include_router(resources.build_router(ResourceRepository()))
app.include_router(api_keys.build_router(AppService()))
app.include_router(regions.build_router(RegionService(settings.shard_count)))
app.include_router(criteria.build_router(CriteriaPreviewService(settings.shard_count)))
app.include_router(loyalty.build_router(LoyaltyService(settings.shard_count)))
app.include_router(segments.build_router(SegmentService(settings.shard_count)))
app.include_router(tags.build_router(TagService(settings.shard_count)))
app.include_router(docs.build_router(app))
document_responses(app, docs.PUBLIC_PATHS)  # after the last route, before the first request


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)  # responses hold API keys and push tokens
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    event["rawPath"] = canonical_path(event.get("rawPath", "/"))
    refusal = refuse_unauthenticated(event, docs.PUBLIC_PATHS)
    return refusal if refusal is not None else app.resolve(event, context)
