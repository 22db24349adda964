"""A sweep's report in S3: one CSV object per page while the run goes, joined into one file at the end.

Layout under ``retention/<app_id>/<run_id>/``: ``pages/<shard>/<page>.csv``
(zero-padded, so a listing returns them in order; finalize adds the user rows under
``pages/users/``), ``held/<shard>/<page>-<attempt>.jsonl``
(a page's decisions, recorded before any of them is applied, so that a
retried step re-applies them instead of deciding again) and ``report.csv`` with
the header ``entity,id,user_id,action,detail``. Joining copies the pages, in
order, into a multipart upload, a part of at least 8 MiB at a time, so memory
stays at one part whatever the report's size; and a join may span
invocations: each part says which page it ends with, and the next part goes
on after it (a part uploaded again replaces itself). The files go through
the jobs' ``ReportStore`` (its bucket, listing and presigned links), which
the composition root hands in: this package does not import jobs.
"""

import contextlib
import csv
import io
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

REPORT_HEADER = "entity,id,user_id,action,detail\n"
PART_BYTES = 8 * 1024 * 1024  # S3 parts are at least 5 MiB, except the last


class UploadGone(Exception):
    """The report's multipart upload is no more: completed (by another attempt) or aborted (by the bucket's
    lifecycle rule, a day after it began)."""


@dataclass(frozen=True)
class JoinedPart:
    """A part of the report uploaded: the last page it holds (None: none), and whether it was the last part."""

    after: str | None
    last: bool


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

    def start_join(self, app_id: str, run_id: str) -> str:
        """Begin the report's multipart upload; its id."""
        created = self.store.s3.create_multipart_upload(
            Bucket=self.store.bucket, Key=report_key(app_id, run_id), ContentType="text/csv"
        )
        return str(created["UploadId"])

    def join_part(self, app_id: str, run_id: str, upload: str, part: int, after: str | None) -> JoinedPart:
        """Upload part ``part`` of the report: the pages after the page ``after`` (the header first, in the
        first part), up to ``PART_BYTES`` or to the last page. The same arguments upload the same part again."""
        buffer = bytearray(REPORT_HEADER.encode() if part == 1 else b"")
        last = after
        for page in self.store.page_keys(f"{run_prefix(app_id, run_id)}pages/", after):
            if len(buffer) >= PART_BYTES:
                self._upload_part(app_id, run_id, upload, part, buffer)
                return JoinedPart(last, last=False)  # a page is left: this part is not the last
            buffer += self.store.s3.get_object(Bucket=self.store.bucket, Key=page)["Body"].read()
            last = page
        self._upload_part(app_id, run_id, upload, part, buffer)
        return JoinedPart(last, last=True)

    def complete_join(self, app_id: str, run_id: str, upload: str) -> str:
        """Complete the report's upload from the parts S3 holds; the report's key."""
        key = report_key(app_id, run_id)
        parts: list[dict[str, Any]] = []
        try:
            paginator = self.store.s3.get_paginator("list_parts")
            for listing in paginator.paginate(Bucket=self.store.bucket, Key=key, UploadId=upload):
                parts += [{"PartNumber": item["PartNumber"], "ETag": item["ETag"]} for item in listing.get("Parts", [])]
            self.store.s3.complete_multipart_upload(
                Bucket=self.store.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except self.store.s3.exceptions.NoSuchUpload as exc:
            raise UploadGone(upload) from exc
        return key

    def abort_join(self, app_id: str, run_id: str, upload: str) -> None:
        """Drop an upload another attempt of the finalize made redundant."""
        with contextlib.suppress(self.store.s3.exceptions.NoSuchUpload):
            self.store.s3.abort_multipart_upload(
                Bucket=self.store.bucket, Key=report_key(app_id, run_id), UploadId=upload
            )

    def joined(self, app_id: str, run_id: str) -> bool:
        """Whether the report exists (its upload was completed).

        Listed rather than HeadObject: with ListBucket granted only under ``retention/`` (an ``s3:prefix``
        condition), S3 answers a HeadObject of a missing key with 403, not 404."""
        key = report_key(app_id, run_id)
        listing = self.store.s3.list_objects_v2(Bucket=self.store.bucket, Prefix=key, MaxKeys=1)
        return any(item["Key"] == key for item in listing.get("Contents", []))

    def _upload_part(self, app_id: str, run_id: str, upload: str, part: int, body: bytearray) -> None:
        try:
            self.store.s3.upload_part(
                Bucket=self.store.bucket,
                Key=report_key(app_id, run_id),
                UploadId=upload,
                PartNumber=part,
                Body=bytes(body),
            )
        except self.store.s3.exceptions.NoSuchUpload as exc:
            raise UploadGone(upload) from exc
