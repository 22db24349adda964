"""The retention schedule's target: starts one sweep execution per app that has retention settings."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, ConfigDict, Field

from steward.composition import Services
from steward.observability import tracer
from steward.schema import Schema
from steward.settings import RetentionSchedulerSettings
from steward.tables import bind_tables

logger = Logger()

settings = RetentionSchedulerSettings.from_env()
bind_tables(settings)
services = Services(settings.shard_count, retention_state_machine=settings.retention_state_machine)


class ScheduledSweep(Schema):
    """The schedule's input (template.yaml): every app with settings is swept, as of the scheduled time."""

    model_config = ConfigDict(extra="forbid")

    scheduled_time: AwareDatetime = Field(description="<aws.scheduler.scheduled-time>: names the runs, idempotently.")


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduled = ScheduledSweep.model_validate(event)
    result = services.retention_scheduler.start_sweeps(scheduled.scheduled_time)
    logger.info("Retention sweeps started", extra={"apps": len(result.started), "skipped": len(result.skipped)})
    return {"started": result.started, "skipped": result.skipped}
