"""The audience importer: S3 ObjectCreated on imports/<app_id>/<name>.csv, and removals of replaced versions."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from steward.audiences.importer import ObjectCreated
from steward.audiences.models import Layout
from steward.composition import Services
from steward.observability import tracer
from steward.settings import AudienceImporterSettings
from steward.tables import bind_tables

logger = Logger()
metrics = Metrics()


def count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


settings = AudienceImporterSettings.from_env()
bind_tables(settings)
services = Services(
    settings.shard_count,
    audience_data_bucket=settings.audience_data_bucket,
    audience_topic=settings.audience_topic,
    audience_event_bus=settings.audience_event_bus,
    audience_metric=count,
)


class S3Bucket(BaseModel):
    name: str


class S3Object(BaseModel):
    key: str
    size: int = Field(ge=0)
    # Real S3 always sends one on ObjectCreated; the local stack adds it as S3 would.
    sequencer: str = Field(pattern=r"^[0-9A-Fa-f]{1,64}$")
    # Pins the read to this object: a newer one at the same key is its own event's to import.
    eTag: str = Field(min_length=1)  # noqa: N815 (S3's field name)


class S3Entity(BaseModel):
    bucket: S3Bucket
    object: S3Object


class S3Record(BaseModel):
    eventName: str  # noqa: N815 (S3's field name)
    s3: S3Entity


class S3Notification(BaseModel):
    Records: list[S3Record]


class Cleanup(Layout):
    model_config = ConfigDict(frozen=True)

    app_id: str


class CleanupRequest(BaseModel):
    cleanup: Cleanup


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    importer = services.audience_importer_service
    if "cleanup" in event:
        request = CleanupRequest.model_validate(event).cleanup
        importer.remove_version(request.app_id, request)
        return {"removed": request.version}
    notification = S3Notification.model_validate(event)
    outcomes = [
        importer.handle(
            ObjectCreated(
                record.s3.bucket.name,
                record.s3.object.key,
                record.s3.object.size,
                record.s3.object.sequencer,
                record.s3.object.eTag,
            )
        )
        for record in notification.Records
        if record.eventName.startswith("ObjectCreated")
    ]
    for outcome in outcomes:
        logger.info(
            "Audience file handled", extra={"outcome": outcome.outcome, "key": outcome.key, "reason": outcome.reason}
        )
    return {
        "outcomes": [
            outcome.__dict__ | {"counts": outcome.counts and outcome.counts.model_dump()} for outcome in outcomes
        ]
    }
