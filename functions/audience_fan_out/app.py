"""The fan-out import's steps (range, prepare, check, pack, flip, fail): only its state machine calls this."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from steward.audiences.fanout import FanOutStep
from steward.composition import audience_import_services
from steward.observability import tracer
from steward.settings import AudienceFanOutSettings
from steward.tables import bind_tables

logger = Logger()
settings = AudienceFanOutSettings.from_env()
bind_tables(settings)
services = audience_import_services(settings, None, None)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = FanOutStep.model_validate(event)
    logger.append_keys(step=step.step, key=step.job.key, version=step.job.version)
    return services.audience_fan_out_steps.run(step)
