"""Integration tests run `python -m steward_local run` (what `make run` runs) in a child process.

The helpers that call the stack live in tests/support/client.py.
"""

from collections.abc import Iterator

import pytest

from tests.support.client import RunningStack, start_local_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The real template with its two demo apps, for the whole session."""
    yield from start_local_stack(tmp_path_factory.mktemp("steward"))
