"""The jobs worker: every step of a job's state machine (plan, work, advance, finalize) calls this handler."""

from typing import Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ConfigDict, Field

from steward.composition import Services
from steward.jobs.models import JOB_ID_PATTERN
from steward.jobs.runner import WorkerLimits, error_from_state_machine, is_throttling
from steward.observability import tracer
from steward.schema import Schema
from steward.settings import JobsSettings
from steward.tables import bind_tables

logger = Logger()

settings = JobsSettings.from_env()
bind_tables(settings)
services = Services(
    settings.shard_count,
    reports_bucket=settings.reports_bucket,
    job_event_bus=settings.job_event_bus,
    job_max_concurrency=settings.job_max_concurrency,
    inactive_profile_months=settings.inactive_profile_months,
    audience_data_bucket=settings.audience_data_bucket,
)


class Throttled(Exception):
    """DynamoDB, S3 or EventBridge asked to slow down: the state machine retries the step with backoff."""


class Step(Schema):
    """What the state machine sends (statemachines/job.asl.json)."""

    model_config = ConfigDict(extra="forbid")

    step: Literal["plan", "work", "advance", "finalize"]
    app_id: str = Field(min_length=1, max_length=64)
    job_id: str = Field(pattern=JOB_ID_PATTERN)
    index: int | None = Field(default=None, ge=0)
    error: dict[str, Any] | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = Step.model_validate(event)
    logger.append_keys(app_id=step.app_id, job_id=step.job_id, step=step.step)
    runner = services.job_runner
    try:
        if step.step == "plan":
            return runner.plan(step.app_id, step.job_id)
        if step.step == "work":
            limits = WorkerLimits(context.memory_limit_in_mb, context.get_remaining_time_in_millis)
            return runner.work(step.app_id, step.job_id, step.index or 0, limits)
        if step.step == "advance":
            return runner.advance(step.app_id, step.job_id)
        error = error_from_state_machine(step.error)
        return runner.finalize(step.app_id, step.job_id, error, int(context.memory_limit_in_mb))
    except Exception as exc:
        if is_throttling(exc):
            raise Throttled(str(exc)) from exc
        raise
