"""The retention sweep's steps (plan, sweep a page of a shard, progress, finalize), called by its state machine;
and the end of an execution that failed, timed out or was stopped, heard through EventBridge."""

from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, ConfigDict, Field

from steward.composition import Services
from steward.conversations.models import RUN_ID_PATTERN
from steward.conversations.scheduler import ExecutionState
from steward.observability import tracer
from steward.schema import Schema
from steward.settings import RetentionSweepSettings
from steward.step_functions import ExecutionDetail, ExecutionEnded
from steward.tables import bind_tables

logger = Logger()

settings = RetentionSweepSettings.from_env()
bind_tables(settings)
services = Services(
    settings.shard_count,
    reports_bucket=settings.reports_bucket,
    retention_pages_per_execution=settings.retention_pages_per_execution,
    retention_finalize_margin_seconds=settings.retention_finalize_margin_seconds,
)


class Step(Schema):
    """What statemachines/retention.asl.json sends."""

    model_config = ConfigDict(extra="forbid")

    step: Literal["plan", "sweep", "progress", "finalize"]
    app_id: str = Field(min_length=1, max_length=64)
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    now: AwareDatetime
    # Which execution of the run this is (0 for the one the scheduler starts); finalize acts only for the
    # generation that carries the run on (absent: from an execution started before generations were sent).
    generation: int | None = Field(default=None, ge=0)
    shard: int | None = Field(default=None, ge=0)
    error: dict[str, Any] | None = None
    # progress: the state machine the run's next execution starts in ($$.StateMachine.Id, its own).
    state_machine: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:stateMachine:"
    )


class RunInput(Schema):
    """An execution's input, as its status change event carries it (a JSON string)."""

    app_id: str = Field(min_length=1, max_length=64)
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    # None for a finalize-only execution, whose end the scheduler's next pass follows up.
    generation: int | None = Field(default=0, ge=0)
    finalize_only: bool = False


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "detail-type" in event:
        return _execution_ended(ExecutionEnded.model_validate(event).detail)
    step = Step.model_validate(event)
    logger.append_keys(app_id=step.app_id, run_id=step.run_id, step=step.step, generation=step.generation)
    if step.step == "plan":
        plan = services.retention_executions.plan(step.app_id, step.run_id, step.now, step.generation or 0)
        return {
            "shards": plan.shards,
            "pages": plan.pages,
            "max_concurrency": settings.retention_max_concurrency,
            "stop": plan.stop,
        }
    if step.step == "sweep":
        sweep = services.retention_sweep
        done = sweep.sweep_page(step.app_id, step.run_id, step.now, step.shard or 0, settings.retention_page_entries)
        return {"done": done}
    if step.step == "progress":
        if step.state_machine is None:
            raise ValueError("The progress step needs the state machine the run goes on in.")
        executions = services.retention_executions
        done = executions.progress(step.app_id, step.run_id, step.now, step.generation or 0, step.state_machine)
        return {"done": done}
    # Not done: the state machine calls the step again, which goes on from where this one saved its progress.
    finalized = services.retention_sweep.finalize(
        step.app_id, step.run_id, step.error, step.generation, lambda: context.get_remaining_time_in_millis() / 1000
    )
    return {"run_id": finalized.run.run_id, "status": finalized.run.status.value, "done": finalized.done}


def _execution_ended(detail: ExecutionDetail) -> dict[str, Any]:
    if detail.input is None:
        # Left out of an event over its size limit: the scheduler's next pass finds the run held by an
        # execution that is no longer running, and ends it then.
        logger.error("Sweep execution ended without its input", extra={"execution": detail.executionArn})
        return {"run_id": None, "status": None}
    run_input = RunInput.model_validate_json(detail.input)
    logger.append_keys(
        app_id=run_input.app_id, run_id=run_input.run_id, step="execution_ended", generation=run_input.generation
    )
    if run_input.finalize_only or run_input.generation is None:
        # The run stays ending: the scheduler's next pass hands it to another finalize-only execution.
        logger.warning("Finalize execution ended unfinished", extra={"status": detail.status})
        return {"run_id": run_input.run_id, "status": None}
    stopped_at = None if detail.stopDate is None else datetime.fromtimestamp(detail.stopDate / 1000, UTC)
    ended_as = ExecutionState(detail.executionArn, detail.status, detail.error, detail.cause, stopped_at)
    ended = services.retention_executions.execution_ended(
        run_input.app_id, run_input.run_id, run_input.generation, ended_as, detail.stateMachineArn
    )
    logger.info("Sweep execution ended", extra={"status": detail.status, "run_status": ended and ended.status.value})
    return {"run_id": run_input.run_id, "status": None if ended is None else ended.status.value}
