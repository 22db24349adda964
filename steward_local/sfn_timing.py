"""Scale the waits of moto's Step Functions interpreter: Retry intervals and Wait states.

moto really sleeps through a Retrier's interval and a Wait state's seconds, so a
test that drives a step through its retries waits minutes for nothing. The test
stacks set ``STEWARD_LOCAL_SFN_TIME_SCALE`` (e.g. 0.01); `make run` leaves it
unset and keeps real timing. moto is pinned exactly, so these internals cannot
move under us.
"""

import os
import time
from types import SimpleNamespace
from typing import Any

from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

TIME_SCALE_VARIABLE = "STEWARD_LOCAL_SFN_TIME_SCALE"
_wait_interval = WaitFunction._wait_interval


def time_scale() -> float:
    value = float(os.environ.get(TIME_SCALE_VARIABLE) or "1")
    if not 0 < value <= 1:
        raise ValueError(f"{TIME_SCALE_VARIABLE} must be in (0, 1], not {value}")
    return value


def install(scale: float) -> None:
    """Idempotent; a scale of 1 restores moto's own timing."""

    def scaled_sleep(seconds: float) -> None:
        time.sleep(seconds * scale)

    # The retrier module's only use of `time` is its sleep between attempts.
    retrier_decl.time = SimpleNamespace(sleep=scaled_sleep) if scale != 1 else time  # type: ignore[attr-defined,assignment]

    def scaled_wait(self: WaitFunction, env: Any, wait_seconds: int) -> None:
        # As moto's own: an unrelated wake-up waits on; a stopped execution ends the wait.
        deadline = time.monotonic() + max(wait_seconds, 0) * scale
        while (left := deadline - time.monotonic()) > 0 and env.is_running():
            env.program_state_event.wait(left)

    WaitFunction._wait_interval = scaled_wait if scale != 1 else _wait_interval  # type: ignore[method-assign]
