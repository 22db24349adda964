"""S3 and notification adapters of the audience use cases (built by the composition root)."""

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from steward.audiences.models import Audience, Failure
from steward.audiences.ports import ObjectChanged, ObjectUnreadable, OpenedObject

CHUNK_BYTES = 1024 * 1024
# How S3 (and botocore) name a failed If-Match.
PRECONDITION_FAILED = frozenset({"PreconditionFailed", "412"})
UPLOAD_URL_TTL = timedelta(minutes=15)
EVENT_SOURCE = "steward"
IMPORTED = "Audience Imported"
IMPORT_FAILED = "Audience Import Failed"


class S3Objects:
    """Reads imported files, and keeps each version's member list in the data bucket."""

    def __init__(self, s3: Any, data_bucket: str) -> None:
        self.s3 = s3
        self.data_bucket = data_bucket

    def open(self, bucket: str, key: str, etag: str) -> OpenedObject:
        answer = self._get_pinned(bucket, key, etag, {})
        return OpenedObject(int(answer["ContentLength"]), _streamed(answer["Body"]))

    def open_from(self, bucket: str, key: str, etag: str, start: int) -> Iterator[bytes]:
        return _streamed(self._get_pinned(bucket, key, etag, {"Range": f"bytes={start}-"})["Body"])

    def _get_pinned(self, bucket: str, key: str, etag: str, extra: dict[str, str]) -> dict[str, Any]:
        # If-Match pins the read to the event's object: a newer one at the key has its own event.
        try:
            answer: dict[str, Any] = self.s3.get_object(Bucket=bucket, Key=key, IfMatch=_quoted(etag), **extra)
        except self.s3.exceptions.NoSuchKey as exc:
            raise ObjectUnreadable("the object no longer exists") from exc
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in PRECONDITION_FAILED:
                raise ObjectChanged(key) from exc
            raise
        return answer

    def put(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.data_bucket, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        try:
            return bytes(self.s3.get_object(Bucket=self.data_bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return b""

    def delete_prefix(self, prefix: str) -> None:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.data_bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:  # a page holds at most 1,000 keys, DeleteObjects' limit
                self.s3.delete_objects(Bucket=self.data_bucket, Delete={"Objects": keys, "Quiet": True})

    def upload(self, key: str, path: str) -> None:
        # upload_file sends large files in parts: memory stays at a few parts.
        self.s3.upload_file(path, self.data_bucket, key, ExtraArgs={"ContentType": "text/plain; charset=utf-8"})

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.data_bucket, Key=key)

    def read(self, key: str, start: int, length: int) -> bytes | None:
        try:
            answer = self.s3.get_object(Bucket=self.data_bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
        except self.s3.exceptions.NoSuchKey:
            return None
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise
        return bytes(answer["Body"].read())


def _streamed(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK_BYTES)
    finally:
        body.close()


def _quoted(etag: str) -> str:
    """S3 event records carry the ETag without its quotes; If-Match takes it quoted."""
    return etag if etag.startswith('"') else f'"{etag}"'


class UploadLinks:
    """Presigned PUTs for exactly one key of the imports bucket."""

    def __init__(self, s3: Any, imports_bucket: str) -> None:
        self.s3 = s3
        self.imports_bucket = imports_bucket

    def presign_put(self, key: str, now: datetime) -> tuple[str, datetime]:
        url = self.s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.imports_bucket, "Key": key},
            ExpiresIn=int(UPLOAD_URL_TTL.total_seconds()),
            HttpMethod="PUT",
        )
        return str(url), now + UPLOAD_URL_TTL


class AudienceNotifier:
    """Failures go to the SNS topic (with an ``app_id`` attribute to filter on) and the bus; successes to the bus."""

    def __init__(self, sns: Any, topic_arn: str, events: Any, bus: str) -> None:
        self.sns = sns
        self.topic_arn = topic_arn
        self.events = events
        self.bus = bus

    def imported(self, app_id: str, audience: Audience) -> None:
        detail = {
            "app_id": app_id,
            "name": audience.name,
            "version": audience.version,
            "key": audience.source_key,
            "sequencer": audience.sequencer,
            "counts": None if audience.counts is None else audience.counts.model_dump(),
            "imported_at": None if audience.imported_at is None else audience.imported_at.isoformat(),
        }
        self._put_event(IMPORTED, detail)

    def failed(self, app_id: str, name: str, failure: Failure, sequencer: str | None) -> None:
        detail = {
            "app_id": app_id,
            "name": name,
            "code": failure.code,
            "reason": failure.reason,
            "key": failure.key,
            "sequencer": sequencer,
            "at": failure.at.isoformat(),
        }
        self.sns.publish(
            TopicArn=self.topic_arn,
            Subject=f"Steward: audience import failed ({failure.code})"[:100],
            Message=json.dumps(detail, ensure_ascii=False),
            MessageAttributes={"app_id": {"DataType": "String", "StringValue": app_id}},
        )
        self._put_event(IMPORT_FAILED, detail)

    def _put_event(self, detail_type: str, detail: dict[str, Any]) -> None:
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": detail_type,
            "Detail": json.dumps(detail),
            "EventBusName": self.bus,
        }
        answer = self.events.put_events(Entries=[entry])
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused the {detail_type!r} event: {answer['Entries']}")
