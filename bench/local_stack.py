"""The local stack inside the benchmark's own process, with bench/emulator.py's partition-scoped queries.

`make run` runs moto as it is, and moto answers every Query by reading the
whole table: a benchmark that reads an app of 100,000 users page by page
would time the emulator, not the code. Running the stack in this process
lets ``emulator.speed_up()`` patch the same moto that serves the handlers.
"""

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import emulator
from steward import tables
from steward_local.gateway import HttpApiGateway
from steward_local.stack import Stack, StackConfig, start_stack

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# Under a loaded machine, moto can take longer than the 5 s the models allow a read.
EMULATOR_READ_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class LocalStack:
    stack: Stack
    api_url: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def local_stack() -> Iterator[LocalStack]:
    """The template's stack in moto and its HTTP API, stopped on exit."""
    # Inherited by every model's Meta, and read when a model first connects (the handlers' too: same process).
    tables._Connection.read_timeout_seconds = EMULATOR_READ_TIMEOUT_SECONDS
    stack = start_stack(StackConfig(template=ROOT / "template.yaml", host=HOST, aws_port=free_port()))
    emulator.speed_up()  # after the stack's own patches of the same methods, so that it sees every write
    api_port = free_port()
    gateway = HttpApiGateway(stack, HOST, api_port)
    gateway.start()
    try:
        yield LocalStack(stack, f"http://{HOST}:{api_port}")
    finally:
        gateway.stop()
        stack.stop()
