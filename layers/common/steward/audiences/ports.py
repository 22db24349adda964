"""What the audience use cases need from the outside world, as protocols the composition root fills."""

from collections.abc import Iterator
from typing import Protocol

from steward.audiences.models import Audience, Failure


class ObjectSource(Protocol):
    def chunks(self, bucket: str, key: str) -> Iterator[bytes]:
        """The object's bytes, streamed in chunks; raises ObjectUnreadable when it cannot be read."""
        ...


class MemberLists(Protocol):
    """Each version's member ids, one per line, in an S3 object."""

    def upload(self, key: str, path: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def read(self, key: str, start: int, length: int) -> bytes:
        """Bytes ``start`` .. ``start + length`` (fewer at the end, none past it)."""
        ...


class Notifier(Protocol):
    def imported(self, app_id: str, audience: Audience) -> None: ...

    def failed(self, app_id: str, name: str, failure: Failure, sequencer: str | None) -> None: ...


class ObjectUnreadable(Exception):
    """The object is gone or cannot be read."""
