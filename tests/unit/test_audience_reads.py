"""Membership reads on moto: lookups read the small pointer, and member pages answer 400 or a consistent page."""

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from steward.apps.repository import AppRepository
from steward.audiences.importer import AudienceImporter, Invocation, ObjectCreated
from steward.audiences.models import Audience, Layout
from steward.audiences.repository import AudienceRepository
from steward.audiences.service import AudienceService
from steward.audiences.storage import S3Objects, UploadLinks
from steward.errors import InvalidInput
from steward.jobs.pricing import item_size
from steward.pagination import decode_cursor, encode_cursor
from steward.settings import StoreSettings
from steward.tables import AudiencePointerRecord, AudienceRecord, audience_pointer_pk, audiences_pk
from tests.unit.test_audience_importer import Heard, Users

APP = "acme"
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
RUN = Invocation("request-1", lambda: 900.0)
USERS = ["ünï-1", "ünï-2", "ünï-3", "plain"]


class Subject:
    def __init__(self) -> None:
        AppRepository().create(APP, "Acme", "hash", None, NOW)
        self.s3 = boto3.client("s3")
        self.s3.create_bucket(Bucket="imports")
        self.s3.create_bucket(Bucket="data")
        self.objects = S3Objects(self.s3, "data")
        self.repository = AudienceRepository()
        users = Users(USERS)
        self.importer = AudienceImporter(
            self.repository, self.objects, self.objects, users.registered, users.read_ids, lambda app_id: True,
            Heard(), lambda name: None, lambda: NOW, None, None,
        )  # fmt: skip
        links = UploadLinks(self.s3, "imports")
        self.service = AudienceService(
            self.repository, self.objects, links, self.importer.remove_deleted, lambda: NOW, lambda name: None
        )
        self.sequence = 0

    def put(self, name: str, body: bytes) -> None:
        key = f"imports/{APP}/{name}.csv"
        etag = self.s3.put_object(Bucket="imports", Key=key, Body=body)["ETag"].strip('"')
        self.sequence += 1
        outcome = self.importer.handle(ObjectCreated("imports", key, len(body), f"{self.sequence:04X}", etag), RUN)
        assert outcome.outcome == "imported", outcome


def raw_item(model: Any, pk: str, sk: str) -> dict[str, Any]:
    found: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=model.Meta.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}}
    )["Item"]
    return found


def test_a_lookup_reads_the_pointer_under_4_kb_when_the_record_passes_it(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = Subject()
    name = "\U0001d538" * 200  # 200 characters of 4 bytes
    invalid = b"\n".join(("\U0001d539" * 70 + ",").encode() for _ in range(5))
    subject.put(name, b"plain\n" + invalid + b"\n")
    record = raw_item(AudienceRecord, audiences_pk(APP), name)
    pointer = raw_item(AudiencePointerRecord, audience_pointer_pk(APP), name)
    assert item_size(record) > 4096 >= item_size(pointer)

    def no_record(*args: object, **kwargs: object) -> None:
        raise AssertionError("a lookup read the audience record")

    monkeypatch.setattr(subject.repository, "get", no_record)
    assert subject.service.is_member(APP, name, "plain").member
    assert subject.service.check(APP, name, ["plain", "nobody"]).not_members == ["nobody"]


def test_a_forged_cursor_inside_a_multi_byte_id_is_refused(store: StoreSettings) -> None:
    subject = Subject()
    subject.put("paged", "\n".join(USERS).encode())
    first = subject.service.members_page(APP, "paged", None, 1)
    assert first.next_cursor is not None
    position = decode_cursor(first.next_cursor)
    assert position is not None

    for offset in (position["o"] + 1, position["o"] + 2, position["o"] - 1):
        forged = encode_cursor({"v": position["v"], "o": offset})
        with pytest.raises(InvalidInput) as refused:
            subject.service.members_page(APP, "paged", forged, 2)
        assert refused.value.code == "invalid_cursor"


def test_a_page_read_just_after_a_replace_answers_from_the_new_version(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = Subject()
    subject.put("replaced", b"plain\n")
    old = subject.repository.pointer(APP, "replaced", consistent=True)
    old_record = subject.repository.get(APP, "replaced", consistent=True)
    subject.put("replaced", "ünï-1\nünï-2\n".encode())
    fresh, fresh_record = subject.repository.pointer, subject.repository.get

    # Eventually consistent reads that still see the version the replace removed.
    def lagging(app_id: str, name: str, *, consistent: bool = False) -> Layout | None:
        return fresh(app_id, name, consistent=True) if consistent else old

    def lagging_record(app_id: str, name: str, *, consistent: bool = False) -> Audience | None:
        return fresh_record(app_id, name, consistent=True) if consistent else old_record

    monkeypatch.setattr(subject.repository, "pointer", lagging)
    monkeypatch.setattr(subject.repository, "get", lagging_record)

    page = subject.service.members_page(APP, "replaced", None, 10)

    assert sorted(page.items) == ["ünï-1", "ünï-2"]
