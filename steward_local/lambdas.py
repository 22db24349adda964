"""Run Lambda handlers in this process, behind moto's Lambda API.

moto runs function code only in Docker. Invoke, Step Functions tasks and S3
notifications all end in ``LambdaFunction.invoke``; patching that one method
sends them to the real handler modules here instead.

Environment variables are process-wide. Functions read theirs once, at cold
start (the typed settings objects), so the runner sets a function's
environment only around the import of its module, under a lock.

Each function has one execution environment here, so its invocations run one
at a time: on AWS, concurrent invocations get environments of their own, and
sharing one module would let them overwrite each other's state (Powertools'
resolver keeps the current event and route on the app object). Different
functions run concurrently, and a handler may trigger another one (an S3
write, a Step Functions task) without deadlocking.
"""

import importlib.util
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from moto.awslambda.models import LambdaBackend, LambdaFunction
from moto.awslambda_simple.models import LambdaSimpleBackend

from steward_local import faults

# Powertools' Tracer needs an X-Ray daemon; locally it stays off.
LOCAL_ENVIRONMENT = {"POWERTOOLS_TRACE_DISABLED": "true"}


@dataclass
class LambdaContext:
    """The parts of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class InProcessLambdas:
    def __init__(self) -> None:
        self._code_dirs: dict[str, Path] = {}
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()
        # Re-entrant: a handler whose work invokes its own function in the same thread must not deadlock.
        self._environments: dict[str, threading.RLock] = {}

    def register(self, function_name: str, code_dir: Path) -> None:
        self._code_dirs[function_name] = code_dir

    def install(self) -> None:
        """Patch moto so every invocation of a registered function runs here."""
        runtime = self

        def invoke(function: LambdaFunction, body: Any, request_headers: Any, response_headers: Any) -> bytes:
            return runtime.invoke(function, body, request_headers, response_headers)

        LambdaFunction.invoke = invoke  # type: ignore[method-assign,assignment]
        LambdaSimpleBackend.invoke = LambdaBackend.invoke  # type: ignore[method-assign]

    def invoke(self, function: LambdaFunction, body: Any, request_headers: Any, response_headers: Any) -> bytes:
        event = json.loads(body) if body else {}
        name = function.function_name
        if name not in self._code_dirs:
            raise RuntimeError(f"Function {name} has no local code registered")
        environment = {
            **LOCAL_ENVIRONMENT,
            **{key: str(value) for key, value in (function.environment_vars or {}).items()},
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        }
        context = LambdaContext(
            function_name=name,
            memory_limit_in_mb=int(function.memory_size),
            invoked_function_arn=function.function_arn,
            timeout_seconds=int(function.timeout),
        )
        try:
            handler = self._handler(name, str(function.handler), environment)
            with self._environments[name], faults.running(name):
                result = handler(event, context)
        except Exception as exc:  # the Lambda service reports handler errors, it does not crash
            traceback.print_exc()
            response_headers["x-amz-function-error"] = "Unhandled"
            error = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            return json.dumps(error).encode("utf-8")
        return json.dumps(result).encode("utf-8")

    def _handler(self, name: str, handler_path: str, environment: dict[str, str]) -> Any:
        module_file, _, attribute = handler_path.rpartition(".")
        with self._lock:
            self._environments.setdefault(name, threading.RLock())
            if name not in self._modules:
                # The import is the cold start: it runs under the function's environment.
                with _environment(environment):
                    self._modules[name] = import_handler_module(name, self._code_dirs[name], module_file)
        return getattr(self._modules[name], attribute)


def import_handler_module(function_name: str, code_dir: Path, module_file: str) -> ModuleType:
    if str(code_dir) not in sys.path:
        # Function-local packages (e.g. api_routes) must have names unique across functions.
        sys.path.append(str(code_dir))
    path = code_dir / (module_file.replace(".", "/") + ".py")
    spec = importlib.util.spec_from_file_location(f"_lambda_{function_name.replace('-', '_')}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"Cannot load handler module {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
