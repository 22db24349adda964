"""The fan-out import's steps (range, prepare, check, pack, flip, fail), called by its state machine; and the fail
step for an execution that ended failed, timed out or aborted, called by an EventBridge rule on that machine."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from steward.audiences.fanout import FanOutStep
from steward.composition import audience_import_services
from steward.observability import tracer
from steward.settings import AudienceFanOutSettings
from steward.step_functions import ExecutionEnded
from steward.tables import bind_tables

logger = Logger()
settings = AudienceFanOutSettings.from_env()
bind_tables(settings)
services = audience_import_services(settings, None, None)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "detail-type" in event:
        return services.audience_fan_out_steps.execution_ended(ExecutionEnded.model_validate(event))
    step = FanOutStep.model_validate(event)
    logger.append_keys(step=step.step, key=step.job.key, version=step.job.version)
    return services.audience_fan_out_steps.run(step)
