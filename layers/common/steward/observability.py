"""Tracing that costs nothing when it is off.

Powertools' Tracer imports the X-Ray SDK when it is built, even when
tracing is disabled: about a third of an API cold start. Functions take
their tracer from here, which builds the real one only when Powertools
would trace (inside Lambda, not disabled by POWERTOOLS_TRACE_DISABLED).
"""

from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools.tracing.tracer import Tracer

type Handler = Callable[..., Any]


class HandlerTracer(Protocol):
    def capture_lambda_handler(
        self, lambda_handler: Handler | None = None, capture_response: bool | None = None
    ) -> Any: ...


class _NoTracer:
    def capture_lambda_handler(
        self, lambda_handler: Handler | None = None, capture_response: bool | None = None
    ) -> Any:
        if lambda_handler is not None:
            return lambda_handler
        return lambda handler: handler


def build_tracer() -> HandlerTracer:
    return _NoTracer() if Tracer._is_tracer_disabled() else Tracer()


tracer = build_tracer()
