"""Job reports in S3: one object per page of rows while a job runs, joined into one CSV when it ends.

Layout under ``jobs/<app_id>/<job_id>/``:
- ``pages/<phase>/<item>/<page>.csv``: a page's rows, written before the page
  is applied (the rows are the job's intent) and again with their outcomes;
  numbers are zero-padded, so a listing returns them in job order;
- ``held/<phase>/<item>/<page>-<attempt>.csv``: a real run's page of changes
  as one attempt selected it, before it holds the page. Each attempt writes
  its own object, and the held page names the one it applies, so a
  concurrent attempt of the same page can never swap the rows a retry
  re-applies;
- ``report.csv``: the report, header ``entity,id,user_id,action,detail``.

Page objects carry a sixth column (``1`` for a consequence row) that the
report leaves out. Joining streams the pages through a bounded buffer into a
multipart upload and hashes the bytes on the way: the audit entry records the
report's SHA-256, so every byte is read once anyway, and memory stays at one
part (8 MiB) whatever the report's size.
"""

import csv
import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from steward.jobs.engine import REPORT_COLUMNS, Entity, ReportRow

REPORT_TTL = timedelta(minutes=15)
PART_BYTES = 8 * 1024 * 1024  # S3 parts are at least 5 MiB, except the last
_LIST_PAGE = 1000


def job_prefix(app_id: str, job_id: str) -> str:
    return f"jobs/{app_id}/{job_id}/"


def page_key(app_id: str, job_id: str, phase: int, index: int, seq: int) -> str:
    return f"{job_prefix(app_id, job_id)}pages/{phase:02d}/{index:05d}/{seq:08d}.csv"


def held_key(app_id: str, job_id: str, phase: int, index: int, seq: int, attempt: str) -> str:
    return f"{job_prefix(app_id, job_id)}held/{phase:02d}/{index:05d}/{seq:08d}-{attempt}.csv"


def item_prefix(app_id: str, job_id: str, phase: int, index: int) -> str:
    return f"{job_prefix(app_id, job_id)}pages/{phase:02d}/{index:05d}/"


def report_key(app_id: str, job_id: str) -> str:
    return f"{job_prefix(app_id, job_id)}report.csv"


@dataclass(frozen=True)
class Report:
    key: str
    sha256: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class ReportLink:
    url: str
    expires_at: datetime


class ReportStore:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def write_page(self, key: str, rows: Sequence[ReportRow]) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=_csv(rows, with_consequence=True), ContentType="text/csv")

    def read_page(self, key: str) -> list[ReportRow]:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("utf-8")
        return [_row(fields) for fields in csv.reader(io.StringIO(body))]

    def delete_page(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def page_keys(self, prefix: str, after: str | None = None) -> Iterator[str]:
        """The keys under ``prefix`` in order, after ``after``."""
        paginator = self.s3.get_paginator("list_objects_v2")
        arguments: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "PaginationConfig": {"PageSize": _LIST_PAGE},
        }
        if after is not None:
            arguments["StartAfter"] = after
        for listing in paginator.paginate(**arguments):
            for item in listing.get("Contents", []):
                yield str(item["Key"])

    def join(self, app_id: str, job_id: str) -> Report:
        """Stream every page of the job, in order, into its report."""
        key = report_key(app_id, job_id)
        digest = hashlib.sha256()
        upload = _Upload(self.s3, self.bucket, key)
        header = (",".join(REPORT_COLUMNS) + "\n").encode("utf-8")
        digest.update(header)
        upload.write(header)
        rows = 0
        try:
            for page in self.page_keys(f"{job_prefix(app_id, job_id)}pages/"):
                # A page object holds one page of rows: bounded by the page size, not by the report.
                page_rows = self.read_page(page)
                rows += len(page_rows)
                data = _csv(page_rows, with_consequence=False)
                digest.update(data)
                upload.write(data)
            size = upload.finish()
        except BaseException:
            upload.abort()
            raise
        return Report(key=key, sha256=digest.hexdigest(), rows=rows, bytes=size)

    def link(self, key: str, now: datetime) -> ReportLink:
        url = self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=int(REPORT_TTL.total_seconds())
        )
        return ReportLink(url=str(url), expires_at=now + REPORT_TTL)

    def delete_job(self, app_id: str, job_id: str) -> None:
        """Remove the job's pages and report."""
        batch: list[dict[str, str]] = []
        for key in self.page_keys(job_prefix(app_id, job_id)):
            batch.append({"Key": key})
            if len(batch) == _LIST_PAGE:
                self._delete(batch)
                batch = []
        if batch:
            self._delete(batch)

    def _delete(self, keys: list[dict[str, str]]) -> None:
        self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})


class _Upload:
    """A multipart upload fed in chunks; a report under one part is a single put."""

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        self.s3, self.bucket, self.key = s3, bucket, key
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.buffer.extend(data)
        self.size += len(data)
        if len(self.buffer) >= PART_BYTES:
            self._flush()

    def finish(self) -> int:
        if self.upload_id is None:
            self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer), ContentType="text/csv")
            return self.size
        if self.buffer:
            self._flush()
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )
        return self.size

    def abort(self) -> None:
        if self.upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)

    def _flush(self) -> None:
        if self.upload_id is None:
            created = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key, ContentType="text/csv")
            self.upload_id = str(created["UploadId"])
        number = len(self.parts) + 1
        answer = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=bytes(self.buffer)
        )
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self.buffer.clear()


def _csv(rows: Sequence[ReportRow], *, with_consequence: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([*row.as_csv(), "1" if row.consequence else ""] if with_consequence else row.as_csv())
    return buffer.getvalue().encode("utf-8")


def _row(fields: list[str]) -> ReportRow:
    entity, entity_id, user_id, action, detail, *rest = fields
    return ReportRow(Entity(entity), entity_id, action, user_id, detail, consequence=bool(rest and rest[0] == "1"))
