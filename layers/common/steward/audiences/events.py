"""The events the audience functions receive: S3 ObjectCreated notifications, the API's removals of versions, and
Lambda's OnFailure records."""

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from steward.audiences.importer import ObjectCreated
from steward.audiences.models import Layout
from steward.schema import Schema
from steward.tables import audience_members_key

MAX_ERROR_CHARS = 300


class S3Bucket(Schema):
    name: str


class S3Object(Schema):
    key: str
    size: int = Field(ge=0)
    # Real S3 always sends one on ObjectCreated; the local stack adds it as S3 would.
    sequencer: str = Field(pattern=r"^[0-9A-Fa-f]{1,64}$")
    # Pins the read to this object: a newer one at the same key is its own event's to import.
    eTag: str = Field(min_length=1)  # noqa: N815 (S3's field name)


class S3Entity(Schema):
    bucket: S3Bucket
    object: S3Object


class S3Record(Schema):
    eventName: str  # noqa: N815 (S3's field name)
    s3: S3Entity


class S3Notification(Schema):
    Records: list[S3Record]

    def created(self) -> list[ObjectCreated]:
        return [
            ObjectCreated(
                record.s3.bucket.name,
                record.s3.object.key,
                record.s3.object.size,
                record.s3.object.sequencer,
                record.s3.object.eTag,
            )
            for record in self.Records
            if record.eventName.startswith("ObjectCreated")
        ]


class Cleanup(Layout):
    """A version no reader looks at any more (a deleted audience's), with its app and the audience's name (its
    tombstone names the version until it is removed)."""

    model_config = ConfigDict(frozen=True)

    app_id: str
    name: str | None = None  # absent from requests sent before they named the audience

    @model_validator(mode="after")
    def _own_members_key(self) -> "Cleanup":
        # A version's member list is always at its own key under its app: a payload naming any other is refused.
        if self.members_key != audience_members_key(self.app_id, self.version):
            raise ValueError("members_key is not the member list of this app's version")
        return self


class CleanupRequest(Schema):
    """The API's asynchronous invocation of the importer to remove a version (see composition.py)."""

    cleanup: Cleanup


class FailedRequest(Schema):
    condition: str = Field(description="RetriesExhausted or EventAgeExceeded.")
    approximateInvokeCount: int = 0  # noqa: N815 (Lambda's field name)


class FailedInvocation(Schema):
    """What Lambda sends an OnFailure destination: the original event (a file's notification, or a removal the
    API asked for) and the last attempt's error."""

    requestContext: FailedRequest  # noqa: N815 (Lambda's field name)
    requestPayload: S3Notification | CleanupRequest  # noqa: N815
    responsePayload: Any = None  # noqa: N815 (the error; absent when the event expired unprocessed)

    def reason(self) -> str:
        context = self.requestContext
        error = self.responsePayload if isinstance(self.responsePayload, dict) else {}
        kind = str(error.get("errorType") or "no error type")
        message = str(error.get("errorMessage") or "no error message")[:MAX_ERROR_CHARS]
        return f"{context.condition} after {context.approximateInvokeCount} attempts ({kind}: {message})."
