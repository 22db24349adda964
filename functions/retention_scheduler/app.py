"""The retention scheduler's steps (statemachines/retention_scheduler.asl.json, which the schedule starts): list the
shards of the index of apps with settings, then start one sweep execution per app, a page of apps per call."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, ConfigDict, Field

from steward.composition import Services
from steward.observability import tracer
from steward.schema import Schema
from steward.settings import MAX_SHARDS, RetentionSchedulerSettings
from steward.tables import bind_tables

logger = Logger()
# RetentionAppErrors: apps a page could not settle or start (an alarm watches it; the page goes on without them).
metrics = Metrics()

settings = RetentionSchedulerSettings.from_env()
bind_tables(settings)
services = Services(
    settings.shard_count,
    retention_state_machine=settings.retention_state_machine,
)


class ScheduledSweep(Schema):
    """The schedule's input (template.yaml), or one page of a shard: every app with settings is swept, as of the
    scheduled time."""

    model_config = ConfigDict(extra="forbid")

    scheduled_time: AwareDatetime = Field(description="<aws.scheduler.scheduled-time>: names the runs, idempotently.")
    shard: int | None = Field(default=None, ge=0, lt=MAX_SHARDS)
    # The last app id of the shard's previous page.
    cursor: str | None = Field(default=None, min_length=1, max_length=64)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduled = ScheduledSweep.model_validate(event)
    scheduler = services.retention_scheduler
    if scheduled.shard is None:
        return {"shards": scheduler.shards()}
    result = scheduler.start_page(
        scheduled.scheduled_time,
        scheduled.shard,
        scheduled.cursor,
        remaining=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    logger.info(
        "Retention sweeps started",
        extra={"shard": scheduled.shard, "apps": len(result.started), "skipped": len(result.skipped)},
    )
    if result.failed:
        logger.error("Retention sweeps could not start", extra={"failed": result.failed})
    if result.unconfirmed:
        logger.warning("Retention sweeps whose start is unknown", extra={"unconfirmed": result.unconfirmed})
    if result.errors:
        logger.error("Retention apps the call could not settle or start", extra={"errors": result.errors})
        metrics.add_metric(name="RetentionAppErrors", unit=MetricUnit.Count, value=len(result.errors))
    return {
        "started": result.started,
        "skipped": result.skipped,
        "failed": result.failed,
        "unconfirmed": result.unconfirmed,
        "errors": result.errors,
        "cursor": result.cursor,
    }
