"""The importer's OnFailure destination: an import that crashed, timed out or ran out of memory, retries included.
What its record shows is finished (a flip, an untold failure), else the failure is recorded. A removal of a version
that the API asked of the importer, failed the same way, is done once more."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from steward.audiences.events import CleanupRequest, FailedInvocation
from steward.composition import audience_import_services
from steward.observability import tracer
from steward.settings import AudienceImportFailedSettings
from steward.tables import bind_tables

logger = Logger()
# AudienceVersionRemovalFailed: a version's removal left some of it (the invocation fails, and is retried).
metrics = Metrics()


def count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


settings = AudienceImportFailedSettings.from_env()
bind_tables(settings)
services = audience_import_services(settings, count, None)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failed = FailedInvocation.model_validate(event)
    lost, payload = services.audience_lost_imports, failed.requestPayload
    if isinstance(payload, CleanupRequest):
        lost.remove_again(payload.cleanup, failed.reason())
        return {"removed": payload.cleanup.version}
    outcomes = lost.record_all(payload.created(), failed.reason())
    for outcome in outcomes:
        logger.warning("Lost audience import", extra={"outcome": outcome.outcome, "key": outcome.key})
    return {"outcomes": [{"outcome": item.outcome, "key": item.key, "reason": item.reason} for item in outcomes]}
