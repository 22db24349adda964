"""EventBridge's "Step Functions Execution Status Change" event, as the rules on our state machines deliver it.

One model for every function that hears how an execution ended (the audience
fan-out's fail step, the retention sweep), so that both read the event the
same way. No domain owns it, and it loads nothing but pydantic.
"""

from typing import Literal

from pydantic import Field

from steward.schema import Schema

# Step Functions' limit on an execution's input; over it, the event leaves the input out.
MAX_INPUT_CHARS = 262_144


class ExecutionDetail(Schema):
    # The template's rules match only the statuses that end an execution without success.
    status: Literal["FAILED", "TIMED_OUT", "ABORTED"]
    executionArn: str = Field(min_length=1)  # noqa: N815 (Step Functions' field names)
    stateMachineArn: str = Field(pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:stateMachine:")  # noqa: N815
    stopDate: int | None = Field(default=None, description="Epoch milliseconds.")  # noqa: N815
    # AWS leaves the input out (``inputDetails.included: false``) when the event would pass its size limit.
    input: str | None = Field(default=None, max_length=MAX_INPUT_CHARS, description="The execution's input, JSON.")
    error: str | None = None
    cause: str | None = None


class ExecutionEnded(Schema):
    """An execution that failed, timed out or was aborted (events/eventbridge-*-timed-out.json)."""

    source: Literal["aws.states"]
    detail: ExecutionDetail
