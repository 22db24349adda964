"""The retention sweep's steps (plan, sweep a page of a shard, finalize): only its state machine calls this."""

from typing import Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, ConfigDict, Field

from steward.composition import Services
from steward.conversations.models import RUN_ID_PATTERN
from steward.observability import tracer
from steward.schema import Schema
from steward.settings import RetentionSweepSettings
from steward.tables import bind_tables

logger = Logger()

settings = RetentionSweepSettings.from_env()
bind_tables(settings)
services = Services(settings.shard_count, reports_bucket=settings.reports_bucket)


class Step(Schema):
    """What statemachines/retention.asl.json sends."""

    model_config = ConfigDict(extra="forbid")

    step: Literal["plan", "sweep", "finalize"]
    app_id: str = Field(min_length=1, max_length=64)
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    now: AwareDatetime
    shard: int | None = Field(default=None, ge=0)
    error: dict[str, Any] | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = Step.model_validate(event)
    logger.append_keys(app_id=step.app_id, run_id=step.run_id, step=step.step)
    sweep = services.retention_sweep
    if step.step == "plan":
        return {**sweep.plan(step.app_id, step.run_id, step.now), "max_concurrency": settings.retention_max_concurrency}
    if step.step == "sweep":
        done = sweep.sweep_page(step.app_id, step.run_id, step.now, step.shard or 0)
        return {"done": done}
    run = sweep.finalize(step.app_id, step.run_id, step.error)
    return {"run_id": run.run_id, "status": run.status.value}
