"""Local-only fault injection: the emulated DynamoDB refuses (or holds) calls of one function, to prove retries.

A test (or a curious operator) writes ``faults.json`` next to the stack's
state file, for example::

    {"function": "JobsFunction", "operation": "BatchWriteItem", "table": "ProfilesTable", "skip": 1, "times": 1}

The next calls of that operation made by that function (its logical id is
part of its physical name), on that table if one is named (in any part of
the request), and holding the text ``contains`` if one is given (a key, say
``"retention-apps#03"``, to refuse the calls of one partition only), get
``ProvisionedThroughputExceededException``,
after ``skip`` calls have passed, ``times`` times; DynamoDB answers a
throttled request the same way. With ``"delay_seconds": n`` those calls are
held that long and then made instead (a step that is still running when a
test acts). The runner writes how many it refused or held to
``faults.fired.json``. Nothing of this exists outside the local stack.
"""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.connection.base import Connection

THROTTLED = "ProvisionedThroughputExceededException"

_current = threading.local()


@contextmanager
def running(function_name: str) -> Iterator[None]:
    """Mark the calls made in this thread as the function's (the in-process Lambda runtime calls this)."""
    previous = getattr(_current, "function", None)
    _current.function = function_name
    try:
        yield
    finally:
        _current.function = previous


class FaultInjector:
    def __init__(self, directory: Path) -> None:
        self.faults_file = directory / "faults.json"
        self.fired_file = directory / "faults.fired.json"
        self._lock = threading.Lock()
        self._armed: dict[str, Any] | None = None
        self._armed_at = 0
        self._seen = 0
        self._fired = 0

    def install(self) -> None:
        original = Connection._make_api_call
        injector = self

        def make_api_call(connection: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> Any:
            injector.check(operation_name, operation_kwargs)
            return original(connection, operation_name, operation_kwargs)

        Connection._make_api_call = make_api_call  # type: ignore[method-assign,assignment]

    def check(self, operation: str, request: dict[str, Any]) -> None:
        function = getattr(_current, "function", None)
        if function is None:
            return
        with self._lock:
            fault = self._fault()
            # Physical names are <stack>-<logical id>-<suffix>.
            if fault is None or operation != fault["operation"] or f"-{fault['function']}-" not in function:
                return
            text = json.dumps(request, default=repr)  # binary attributes (packed buckets) as their repr
            if "table" in fault and f"-{fault['table']}-" not in text:
                return
            if "contains" in fault and fault["contains"] not in text:
                return
            self._seen += 1
            if self._seen <= int(fault.get("skip", 0)) or self._fired >= int(fault.get("times", 1)):
                return
            self._fired += 1
            self.fired_file.write_text(json.dumps({"fired": self._fired}))
            delay = float(fault.get("delay_seconds", 0))
        if delay:
            time.sleep(delay)
            return
        error = {"Error": {"Code": THROTTLED, "Message": "Injected by the local stack's faults.json"}}
        raise ClientError(error, operation)  # type: ignore[arg-type]

    def _fault(self) -> dict[str, Any] | None:
        """The armed fault; a new or changed file re-arms it from zero."""
        try:
            changed = self.faults_file.stat().st_mtime_ns
        except FileNotFoundError:
            self._armed = None
            return None
        if self._armed is None or changed != self._armed_at:
            self._armed = json.loads(self.faults_file.read_text())
            self._armed_at = changed
            self._seen = self._fired = 0
        return self._armed
