"""Lambda authorizer of the HTTP API: resolves the Bearer API key to an app and scopes."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from steward.apps.keys import CONTEXT_ERROR, authenticate_token, authorizer_context
from steward.observability import tracer
from steward.settings import AuthorizerSettings
from steward.tables import bind_apps_table

logger = Logger()
metrics = Metrics()

bind_apps_table(AuthorizerSettings.from_env().apps_table)


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Payload 2.0 lowercases header names; a direct invocation may not.
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    auth = authorizer_context(headers.get("authorization"), authenticate_token)
    if CONTEXT_ERROR in auth:
        logger.info("API key refused", extra={"reason": auth[CONTEXT_ERROR]})
        metrics.add_metric(name="ApiKeyRefused", unit=MetricUnit.Count, value=1)
    # The simple response of a payload 2.0 authorizer (what APIGatewayAuthorizerResponseV2 builds).
    return {"isAuthorized": True, "context": auth}
