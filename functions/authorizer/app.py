"""Lambda authorizer of the HTTP API: resolves the Bearer API key to an app and scopes."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
    APIGatewayAuthorizerResponseV2,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from steward.apps.service import AppService
from steward.http.auth import CONTEXT_ERROR, authorizer_context
from steward.settings import StoreSettings
from steward.tables import bind_tables

logger = Logger()
tracer = Tracer()
metrics = Metrics()

bind_tables(StoreSettings())
apps = AppService()


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=APIGatewayAuthorizerEventV2)
def lambda_handler(event: APIGatewayAuthorizerEventV2, context: LambdaContext) -> dict[str, Any]:
    auth = authorizer_context(event.headers.get("authorization"), apps.authenticate)
    if CONTEXT_ERROR in auth:
        logger.info("API key refused", extra={"reason": auth[CONTEXT_ERROR]})
        metrics.add_metric(name="ApiKeyRefused", unit=MetricUnit.Count, value=1)
    return APIGatewayAuthorizerResponseV2(authorize=True, context=auth).asdict()
