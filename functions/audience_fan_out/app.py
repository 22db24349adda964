"""The fan-out import's steps (range, prepare, check, pack, flip, fail), called by its state machine; the fail step
for an execution that failed, called by an EventBridge rule on that machine; and, once no task of an execution that
failed, timed out or was aborted can be running, its fail step or the removal of what was written since, called by
the delay state machine that a rule on those endings starts."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from steward.audiences.fanout import AfterDelay, FanOutStep
from steward.composition import audience_import_services
from steward.observability import tracer
from steward.settings import AudienceFanOutSettings
from steward.step_functions import ExecutionEnded
from steward.tables import bind_tables

logger = Logger()
# AudienceVersionRemovalFailed: a version's removal left some of it (the invocation fails, and is retried).
metrics = Metrics()


def count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


settings = AudienceFanOutSettings.from_env()
bind_tables(settings)
services = audience_import_services(settings, count, None)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "detail-type" in event:
        return services.audience_fan_out_steps.execution_ended(ExecutionEnded.model_validate(event))
    if "after_delay" in event:
        return services.audience_fan_out_steps.after_delay(AfterDelay.model_validate(event).event)
    step = FanOutStep.model_validate(event)
    logger.append_keys(step=step.step, key=step.job.key, version=step.job.version)
    return services.audience_fan_out_steps.run(step)
