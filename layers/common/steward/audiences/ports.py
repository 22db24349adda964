"""What the audience use cases need from the outside world, as protocols the composition root fills."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from steward.audiences.models import Audience, Failure


@dataclass(frozen=True)
class OpenedObject:
    """The object an event named: its size as S3 answered, and its bytes, streamed in chunks."""

    size: int
    chunks: Iterator[bytes]


class ObjectSource(Protocol):
    def open(self, bucket: str, key: str, etag: str) -> OpenedObject:
        """The object at ``key`` if it is still the one with ``etag``.

        Raises ObjectChanged when a newer object replaced it (its own event will import it), and
        ObjectUnreadable when it cannot be read.
        """
        ...


class Staging(Protocol):
    """The fan-out's S3 objects: the file read from a byte on, and the steps' work for the next steps."""

    def open_from(self, bucket: str, key: str, etag: str, start: int) -> Iterator[bytes]:
        """The object's bytes from ``start`` on if it is still the one with ``etag`` (as ``ObjectSource.open``)."""
        ...

    def upload(self, key: str, path: str) -> None: ...

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes:
        """The object's bytes, or none when there is no such object."""
        ...

    def delete_prefix(self, prefix: str) -> None: ...


class MemberLists(Protocol):
    """Each version's member ids, one per line, in an S3 object."""

    def upload(self, key: str, path: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def read(self, key: str, start: int, length: int) -> bytes | None:
        """Bytes ``start`` .. ``start + length`` (fewer at the end, none past it); None when there is no list."""
        ...


class Notifier(Protocol):
    def imported(self, app_id: str, audience: Audience) -> None: ...

    def failed(self, app_id: str, name: str, failure: Failure, sequencer: str | None) -> None: ...


class ObjectUnreadable(Exception):
    """The object is gone or cannot be read."""


class ObjectChanged(Exception):
    """The key holds a newer object than the event named."""
