"""Integration tests run `python -m steward_local run` (what `make run` runs) in a child process.

Everything goes over real HTTP: requests to the local API gateway, boto3 to
the emulator. Each stack gets free ports, so tests never collide with a
developer's running `make run`.
"""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 90


@dataclass
class RunningStack:
    state: dict[str, Any]
    state_file: Path

    @property
    def api_url(self) -> str:
        return str(self.state["api_url"])

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.state["aws_endpoint_url"],
            region_name=self.state["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def key(self, app_index: int) -> str:
        return str(self.state["apps"][app_index]["api_key"])

    def api(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return requests.request(method, self.api_url + path, headers=headers, timeout=30, **kwargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_local_stack(tmp: Path, *arguments: str) -> Iterator[RunningStack]:
    state_file = tmp / "stack.json"
    log = (tmp / "runner.log").open("w")
    environment = {**os.environ, "STEWARD_API_PORT": str(_free_port()), "STEWARD_AWS_PORT": str(_free_port())}
    process = subprocess.Popen(
        [sys.executable, "-m", "steward_local", "run", "--state-file", str(state_file), *arguments],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not state_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"The local stack did not start:\n{(tmp / 'runner.log').read_text()}")
            time.sleep(0.2)
        yield RunningStack(json.loads(state_file.read_text()), state_file)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The real template with its two demo apps, for the whole session."""
    yield from start_local_stack(tmp_path_factory.mktemp("steward"))


def device_path(device_id: str, suffix: str = "") -> str:
    """Clients URL-encode device ids: FCM tokens hold ':' and WebPush ids are URLs."""
    return f"/v1/devices/{quote(device_id, safe='')}{suffix}"


_UNCHECKED = object()


def assert_error(response: requests.Response, status: int, code: str, field: object = _UNCHECKED) -> dict[str, Any]:
    """The response is Steward's error shape with this status and code (and field, when given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "field"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str), error
    assert error["message"].strip(), error
    if field is not _UNCHECKED:
        assert error["field"] == field, error
    return error
