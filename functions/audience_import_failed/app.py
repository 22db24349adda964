"""The importer's OnFailure destination: an import that crashed, timed out or ran out of memory, retries included."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from steward.audiences.events import FailedInvocation
from steward.composition import Services
from steward.observability import tracer
from steward.settings import AudienceImportFailedSettings
from steward.tables import bind_tables

logger = Logger()
settings = AudienceImportFailedSettings.from_env()
bind_tables(settings)
services = Services(
    settings.shard_count, audience_topic=settings.audience_topic, audience_event_bus=settings.audience_event_bus
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failed = FailedInvocation.model_validate(event)
    outcomes = services.audience_lost_imports.record_all(failed.requestPayload.created(), failed.reason())
    for outcome in outcomes:
        logger.warning("Lost audience import", extra={"outcome": outcome.outcome, "key": outcome.key})
    return {"outcomes": [{"outcome": item.outcome, "key": item.key, "reason": item.reason} for item in outcomes]}
