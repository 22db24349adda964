"""Spies: a method's calls go through unchanged, and what the test needs of each call is recorded."""

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
