"""Spies: a method's calls go through unchanged, and what the test needs of each call is recorded; and stand-ins
that fail a call once, then call through."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bench.dynamodb import Usage


def spy[T](monkeypatch: pytest.MonkeyPatch, owner: type, name: str, note: Callable[..., T]) -> list[T]:
    """Every call of ``owner.name`` from now on, as ``note(*args, **kwargs)`` of its arguments (without self)."""
    seen: list[T] = []
    original = getattr(owner, name)

    def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(note(*args, **kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return seen


def billed(monkeypatch: pytest.MonkeyPatch) -> "Usage":
    """Every DynamoDB call from now on, counted and priced by DynamoDB's billing rules (the benchmarks' meter)."""
    from bench.dynamodb import Meter, install_pricing

    meter = Meter()
    install_pricing(meter.call, monkeypatch.setattr)
    return meter.usage


class FailsOnce:
    """Raises ``error(*args)`` on its first call, then calls ``call`` through: a step that dies at that point (a
    Lambda timeout, a refused request), or an answer the emulator cannot give."""

    def __init__(self, call: Callable[..., Any], error: Callable[..., BaseException]) -> None:
        self.call = call
        self.error = error
        self.failed = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise self.error(*args)
        return self.call(*args, **kwargs)
