"""The HTTP API function: one Powertools resolver for every /v1 route and the docs."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from api_routes import (
    api_keys,
    audiences,
    audit,
    conversations,
    criteria,
    devices,
    docs,
    jobs,
    loyalty,
    regions,
    resources,
    retention,
    segments,
    tags,
    users,
)
from steward.composition import Services
from steward.http.auth import authorize, refuse_unauthenticated
from steward.http.body import load_json, refuse_unreadable_body
from steward.http.errors import register_error_handlers
from steward.http.openapi import document_responses
from steward.http.paths import canonical_path
from steward.observability import tracer
from steward.settings import ApiSettings
from steward.tables import bind_tables

logger = Logger()
metrics = Metrics()


def count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


settings = ApiSettings.from_env()
bind_tables(settings)
services = Services(
    settings.shard_count,
    reports_bucket=settings.reports_bucket,
    job_state_machine=settings.job_state_machine,
    imports_bucket=settings.imports_bucket,
    audience_data_bucket=settings.audience_data_bucket,
    audience_importer=settings.audience_importer,
    audience_metric=count,
)

app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=load_json)
docs.configure(app)
app.use(middlewares=[authorize(public_paths=docs.PUBLIC_PATHS)])
register_error_handlers(app, logger)
for routes in (
    devices,
    users,
    resources,
    api_keys,
    audit,
    jobs,
    regions,
    criteria,
    loyalty,
    segments,
    tags,
    conversations,
    retention,
    audiences,
):
    app.include_router(routes.build_router(services))
app.include_router(docs.build_router(app))
document_responses(app, docs.PUBLIC_PATHS)  # after the last route, before the first request


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)  # responses hold API keys and push tokens
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    event["rawPath"] = canonical_path(event.get("rawPath", "/"))
    refusal = refuse_unauthenticated(event, docs.PUBLIC_PATHS) or refuse_unreadable_body(event)
    return refusal if refusal is not None else app.resolve(event, context)
