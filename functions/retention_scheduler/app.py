"""The retention schedule's target: starts one sweep execution per app that has retention settings."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from steward.composition import Services
from steward.observability import tracer
from steward.settings import RetentionSchedulerSettings
from steward.tables import bind_tables

logger = Logger()

settings = RetentionSchedulerSettings.from_env()
bind_tables(settings)
services = Services(settings.shard_count, retention_state_machine=settings.retention_state_machine)


class ScheduledSweep(BaseModel):
    """The schedule's input (template.yaml): nothing to say, every app with settings is swept."""

    model_config = ConfigDict(extra="forbid")


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ScheduledSweep.model_validate(event)
    started = services.retention_scheduler.start_sweeps()
    logger.info("Retention sweeps started", extra={"apps": len(started)})
    return {"started": started}
