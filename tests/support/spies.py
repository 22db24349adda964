"""Spies: a method's calls go through unchanged, and what the test needs of each call is recorded."""

from collections.abc import Callable
from typing import Any

import pytest


def spy[T](monkeypatch: pytest.MonkeyPatch, owner: type, name: str, note: Callable[..., T]) -> list[T]:
    """Every call of ``owner.name`` from now on, as ``note(*args, **kwargs)`` of its arguments (without self)."""
    seen: list[T] = []
    original = getattr(owner, name)

    def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(note(*args, **kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return seen
