"""A sweep's report in S3: one CSV object per page while the run goes, joined into one file at the end.

Layout under ``retention/<app_id>/<run_id>/``: ``pages/<shard>/<page>.csv``
(zero-padded, so a listing returns them in order; finalize adds the user rows under
``pages/users/``), ``held/<shard>/<page>-<attempt>.jsonl``
(a page's decisions, recorded before any of them is applied, so that a
retried step re-applies them instead of deciding again) and ``report.csv`` with
the header ``entity,id,user_id,action,detail``. Joining streams the pages
through boto3's managed upload, so memory stays at one part whatever the
report's size. The files go through the jobs' ``ReportStore`` (its bucket, listing and
presigned links), which the composition root hands in: this package does not import jobs.
"""

import csv
import io
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

REPORT_HEADER = "entity,id,user_id,action,detail\n"


@dataclass(frozen=True)
class ReportLine:
    entity: str  # conversation or user
    entity_id: str
    user_id: str
    action: str  # the transition (open->archive), or deleted / kept for a user
    detail: str  # the channel, or why a user was kept


class Link(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def expires_at(self) -> datetime: ...


class ReportFiles(Protocol):
    """What a sweep's report needs of the reports bucket (``steward.jobs.reports.ReportStore`` has it)."""

    s3: Any
    bucket: str

    def page_keys(self, prefix: str, after: str | None = None) -> Iterator[str]: ...

    def link(self, key: str, now: datetime) -> Link: ...


def run_prefix(app_id: str, run_id: str) -> str:
    return f"retention/{app_id}/{run_id}/"


def report_key(app_id: str, run_id: str) -> str:
    return f"{run_prefix(app_id, run_id)}report.csv"


class RunReports:
    def __init__(self, store: ReportFiles) -> None:
        self.store = store

    def write_page(self, app_id: str, run_id: str, shard: int, seq: int, lines: Sequence[ReportLine]) -> None:
        """One page's lines; a retried page overwrites its own object, so nothing is listed twice."""
        self._write_lines(f"{run_prefix(app_id, run_id)}pages/{shard:03d}/{seq:08d}.csv", lines)

    def write_users_page(self, app_id: str, run_id: str, seq: int, lines: Sequence[ReportLine]) -> None:
        """One page of the run's user rows, written by finalize; ``users`` sorts after every shard's pages."""
        self._write_lines(f"{run_prefix(app_id, run_id)}pages/users/{seq:08d}.csv", lines)

    def _write_lines(self, key: str, lines: Sequence[ReportLine]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for line in lines:
            writer.writerow([line.entity, line.entity_id, line.user_id, line.action, line.detail])
        self.store.s3.put_object(
            Bucket=self.store.bucket, Key=key, Body=buffer.getvalue().encode(), ContentType="text/csv"
        )

    def write_held(self, app_id: str, run_id: str, shard: int, seq: int, decisions: Sequence[dict[str, Any]]) -> str:
        """Record a page's decisions under this attempt's own key (two attempts never overwrite each other)."""
        key = f"{run_prefix(app_id, run_id)}held/{shard:03d}/{seq:08d}-{uuid.uuid4().hex[:16]}.jsonl"
        body = "".join(json.dumps(decision, separators=(",", ":")) + "\n" for decision in decisions)
        self.store.s3.put_object(Bucket=self.store.bucket, Key=key, Body=body.encode(), ContentType="application/jsonl")
        return key

    def read_held(self, key: str) -> list[dict[str, Any]]:
        body = self.store.s3.get_object(Bucket=self.store.bucket, Key=key)["Body"].read().decode()
        return [json.loads(line) for line in body.splitlines() if line]

    def delete_held(self, key: str) -> None:
        self.store.s3.delete_object(Bucket=self.store.bucket, Key=key)

    def join(self, app_id: str, run_id: str) -> str:
        key = report_key(app_id, run_id)
        pages = self.store.page_keys(f"{run_prefix(app_id, run_id)}pages/")
        stream = _Concatenated(self._chunks(pages))
        self.store.s3.upload_fileobj(stream, self.store.bucket, key, ExtraArgs={"ContentType": "text/csv"})
        return key

    def _chunks(self, pages: Iterator[str]) -> Iterator[bytes]:
        yield REPORT_HEADER.encode()
        for page in pages:
            body: Any = self.store.s3.get_object(Bucket=self.store.bucket, Key=page)["Body"]
            yield from body.iter_chunks()


class _Concatenated(io.RawIOBase):
    """A read-only stream over chunks of bytes, for boto3's upload_fileobj."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size
