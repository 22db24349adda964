"""The audience importer: S3 ObjectCreated on imports/<app_id>/<name>.csv, and removals of replaced versions."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from steward.audiences.events import CleanupRequest, S3Notification
from steward.audiences.importer import Invocation
from steward.composition import audience_import_services
from steward.observability import tracer
from steward.settings import AudienceImporterSettings
from steward.tables import bind_tables

logger = Logger()
metrics = Metrics()


def count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


settings = AudienceImporterSettings.from_env()
bind_tables(settings)
services = audience_import_services(settings, count, settings.fan_out)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    importer = services.audience_importer_service
    if "cleanup" in event:
        request = CleanupRequest.model_validate(event).cleanup
        # Raises when some of it was left: Lambda's retries, then the OnFailure destination, remove it again.
        importer.remove_deleted(request.app_id, request.name, request)
        return {"removed": request.version}
    created = S3Notification.model_validate(event).created()
    invocation = Invocation(context.aws_request_id, lambda: context.get_remaining_time_in_millis() / 1000)
    outcomes = [importer.handle(record, invocation) for record in created]
    for outcome in outcomes:
        logger.info(
            "Audience file handled", extra={"outcome": outcome.outcome, "key": outcome.key, "reason": outcome.reason}
        )
    return {
        "outcomes": [
            outcome.__dict__ | {"counts": outcome.counts and outcome.counts.model_dump()} for outcome in outcomes
        ]
    }
