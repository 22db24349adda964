"""Membership reads on moto: lookups read the small pointer, and member pages answer 400 or a consistent page."""

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from steward.apps.repository import AppRepository
from steward.audiences.importer import AudienceImporter, Invocation, ObjectCreated
from steward.audiences.models import Audience, Layout
from steward.audiences.ports import OpenedObject
from steward.audiences.repository import AudienceRepository, Flip, Published
from steward.audiences.service import AudienceService
from steward.audiences.storage import S3Objects, UploadLinks
from steward.errors import InvalidInput
from steward.jobs.pricing import item_size
from steward.pagination import decode_cursor, encode_cursor
from steward.settings import StoreSettings
from steward.tables import AudiencePointerRecord, AudienceRecord, audience_pointer_pk, audiences_pk
from tests.unit.test_audience_importer import Heard, Killed, Users

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


def buckets_left(subject: Subject, layout: Layout) -> int:
    found = subject.repository.read_buckets(APP, layout.version, range(layout.bucket_total), consistent=True)
    return sum(1 for packed in found.values() if packed is not None)


def test_members_stay_members_while_two_replaces_overlap(store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """File 2's import flips the audience; file 3's flips it next, before file 2's run moves the pointer; file 2's
    run then completes (pointer, event, removal of version 1), and a lookup comes before file 3's run does (it may
    be a minute late, or die first). The interleaving needs a paused run, which the local stack cannot stage."""
    subject = Subject()
    subject.put("overlap", "plain\nünï-1\n".encode())
    first = subject.repository.get(APP, "overlap", consistent=True)
    assert first is not None
    assert first.layout is not None
    # File 3's version, built while file 2's import runs.
    body = "plain\nünï-3\n".encode()
    third = subject.importer.build_version(APP, OpenedObject(len(body), iter([body])), lambda: None)
    flips = subject.repository.publish

    def then_file_3_flips(flip: Flip, replacing: Layout | None) -> Published | None:
        published = flips(flip, replacing)
        assert published is not None
        later = Flip(APP, "overlap", third.layout, third.counts, [], flip.key, "0003".ljust(64, "0"), NOW)
        assert flips(later, flip.layout) is not None
        return published

    monkeypatch.setattr(subject.repository, "publish", then_file_3_flips)
    subject.put("overlap", "plain\nünï-2\n".encode())  # file 2: its run completes now
    monkeypatch.undo()

    found = subject.service.check(APP, "overlap", ["plain", "ünï-1", "ünï-2", "ünï-3"])

    assert (found.members, found.not_members) == (["plain", "ünï-3"], ["ünï-1", "ünï-2"])  # file 3's members
    assert subject.service.is_member(APP, "overlap", "ünï-3").member
    assert buckets_left(subject, first.layout) == 0  # version 1 is removed
    assert subject.objects.read(first.layout.members_key, 0, 10) is None
    # File 3's run completes later: version 2 goes, and file 3's stays.
    current = subject.repository.get(APP, "overlap", consistent=True)
    assert current is not None
    subject.importer.finish_flip(APP, current, "0003".ljust(64, "0"))
    assert subject.repository.pointer(APP, "overlap", consistent=True) == third.layout
    assert buckets_left(subject, third.layout) == third.layout.bucket_total
    assert subject.service.check(APP, "overlap", ["plain", "ünï-3"]).members == ["plain", "ünï-3"]


def test_lifting_a_tombstone_removes_the_versions_whose_removal_was_still_pending(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File 2's import flipped the audience and died removing version 1 (the function's time ran out); the app
    deleted the audience (Lambda refused the requests for the removals), then lifted its tombstone before Lambda's
    retry came: the tombstone noted version 1."""
    subject = Subject()
    subject.put("lifted", b"plain\n")
    first = subject.repository.get(APP, "lifted", consistent=True)
    assert first is not None
    assert first.layout is not None
    removals = subject.repository.delete_buckets

    def killed_removing(app_id: str, layout: Layout) -> None:
        monkeypatch.setattr(subject.repository, "delete_buckets", removals)
        raise Killed()

    monkeypatch.setattr(subject.repository, "delete_buckets", killed_removing)
    with pytest.raises(Killed):
        subject.put("lifted", "plain\nünï-1\n".encode())
    cleanup = subject.service.cleanup

    def refused(app_id: str, name: str, layout: Layout) -> None:
        raise RuntimeError("Lambda refused the asynchronous invoke (TooManyRequestsException)")

    monkeypatch.setattr(subject.service, "cleanup", refused)
    second = subject.service.delete(APP, "lifted")
    monkeypatch.setattr(subject.service, "cleanup", cleanup)
    assert second.unremoved == {"0002".ljust(64, "0"): first.layout}
    assert buckets_left(subject, first.layout) == 1

    subject.service.lift_tombstone(APP, "lifted")

    assert subject.repository.get(APP, "lifted", consistent=True) is None
    assert buckets_left(subject, first.layout) == 0
    assert subject.objects.read(first.layout.members_key, 0, 10) is None


def test_a_retry_removing_the_version_its_flip_replaced_first_points_lookups_at_the_newer_flip(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File 2's import flips the audience and dies before it moves the pointer; file 3's does the same. Lambda's
    retry of file 2 removes version 1, which the pointer still names: it points lookups at file 3's version first.
    The overlap needs killed runs, which the local stack cannot stage."""
    subject = Subject()
    subject.put("overlap", "plain\nünï-1\n".encode())
    first = subject.repository.get(APP, "overlap", consistent=True)
    assert first is not None
    assert first.layout is not None
    moves = subject.repository.point_to

    def killed_pointing(app_id: str, name: str, layout: Layout) -> bool:
        raise Killed()

    monkeypatch.setattr(subject.repository, "point_to", killed_pointing)
    for body in ("plain\nünï-2\n", "plain\nünï-3\n"):
        with pytest.raises(Killed):
            subject.put("overlap", body.encode())
    monkeypatch.setattr(subject.repository, "point_to", moves)
    assert subject.repository.pointer(APP, "overlap", consistent=True) == first.layout
    key = f"imports/{APP}/overlap.csv"

    retry = subject.importer.handle(ObjectCreated("imports", key, 1, "0002", "etag"), RUN)

    assert (retry.outcome, retry.reason) == ("skipped", "superseded")
    assert buckets_left(subject, first.layout) == 0
    found = subject.service.check(APP, "overlap", ["plain", "ünï-1", "ünï-2", "ünï-3"])
    assert (found.members, found.not_members) == (["plain", "ünï-3"], ["ünï-1", "ünï-2"])
