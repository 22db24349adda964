"""Deleting an audience on moto: the tombstone keeps the removed version until the importer has removed it, and a
lifted tombstone lets no file imported before the deletion back in."""

from datetime import timedelta

import pytest

from steward.audiences.importer import ObjectCreated
from steward.audiences.lost import LostImports
from steward.audiences.models import AudienceStatus, Layout
from steward.audiences.service import CLEANUP_NOT_STARTED, AudienceService
from steward.audiences.storage import UploadLinks
from steward.errors import Conflict, ServiceUnavailable
from steward.settings import StoreSettings
from steward.tables import AUDIENCE_COUNT_SK, AudienceCountRecord, audience_count_pk
from tests.unit.test_audience_importer import Heard, Killed, killed_once_removing
from tests.unit.test_audience_reads import APP, NOW, RUN, Subject


class Importer:
    """The importer as the API reaches it: an asynchronous request that may fail to be sent."""

    def __init__(self, subject: Subject, failures: int) -> None:
        self.subject = subject
        self.failures = failures
        self.asked: list[str] = []

    def __call__(self, app_id: str, name: str, layout: Layout) -> None:
        self.asked.append(layout.version)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("Lambda refused the asynchronous invoke (TooManyRequestsException)")
        self.subject.importer.remove_deleted(app_id, name, layout)


def deleting(subject: Subject, failures: int) -> tuple[AudienceService, Importer, list[str]]:
    importer = Importer(subject, failures)
    counted: list[str] = []
    links = UploadLinks(subject.s3, "imports")
    service = AudienceService(subject.repository, subject.objects, links, importer, lambda: NOW, counted.append)
    return service, importer, counted


def stored(subject: Subject, layout: Layout) -> tuple[int, bool]:
    """How many of the version's buckets, and whether its member list, are still stored."""
    numbers = range(layout.bucket_total)
    found = subject.repository.read_buckets(APP, layout.version, numbers, consistent=True)
    return sum(value is not None for value in found.values()), subject.objects.read(
        layout.members_key, 0, 1
    ) is not None


def imported(subject: Subject, name: str) -> Layout:
    subject.put(name, "plain\nünï-1\n".encode())
    audience = subject.repository.get(APP, name, consistent=True)
    assert audience is not None
    assert audience.layout is not None
    return audience.layout


def test_a_delete_whose_removal_request_fails_answers_the_tombstone_and_deleting_again_asks_again(
    store: StoreSettings,
) -> None:
    subject = Subject()
    version = imported(subject, "doomed")
    service, importer, counted = deleting(subject, failures=1)

    tombstone = service.delete(APP, "doomed")  # the write is done: no 5xx for the failed request

    assert (tombstone.status, tombstone.deleted_at, tombstone.version) == (AudienceStatus.DELETED, NOW, None)
    assert counted == [CLEANUP_NOT_STARTED]
    assert stored(subject, version) == (version.bucket_total, True)
    kept = subject.repository.get(APP, "doomed", consistent=True)
    assert kept is not None
    assert (kept.status, kept.removing) == (AudienceStatus.DELETED, version)

    again = service.delete(APP, "doomed")

    assert again.status is AudienceStatus.DELETED
    assert importer.asked == [version.version] * 2
    assert stored(subject, version) == (0, False)
    removed = subject.repository.get(APP, "doomed", consistent=True)
    assert removed is not None
    assert (removed.status, removed.removing) == (AudienceStatus.DELETED, None)
    # Once removed, deleting again asks nothing more.
    service.delete(APP, "doomed")
    assert importer.asked == [version.version] * 2
    assert counted == [CLEANUP_NOT_STARTED]


def test_the_first_removal_request_clears_the_tombstones_version(store: StoreSettings) -> None:
    subject = Subject()
    version = imported(subject, "clean")
    service, importer, counted = deleting(subject, failures=0)

    service.delete(APP, "clean")

    assert importer.asked == [version.version]
    assert stored(subject, version) == (0, False)
    tombstone = subject.repository.get(APP, "clean", consistent=True)
    assert tombstone is not None
    assert tombstone.removing is None
    assert counted == []


def test_a_lift_whose_removal_request_fails_answers_503_and_keeps_the_tombstone(store: StoreSettings) -> None:
    """The tombstone is the only record of its unremoved version: a lift that could not hand it over keeps it."""
    subject = Subject()
    version = imported(subject, "kept")
    service, importer, counted = deleting(subject, failures=2)
    service.delete(APP, "kept")

    with pytest.raises(ServiceUnavailable):
        service.lift_tombstone(APP, "kept")

    tombstone = subject.repository.get(APP, "kept", consistent=True)
    assert tombstone is not None
    assert (tombstone.status, tombstone.removing) == (AudienceStatus.DELETED, version)
    assert counted == [CLEANUP_NOT_STARTED] * 2
    # The next lift hands it over, and the record goes; the importer noting the removal creates nothing.
    service.lift_tombstone(APP, "kept")
    assert importer.asked == [version.version] * 3
    assert stored(subject, version) == (0, False)
    assert subject.repository.get(APP, "kept", consistent=True) is None


def test_the_removal_is_noted_only_on_a_tombstone_that_names_that_version(store: StoreSettings) -> None:
    subject = Subject()
    version = imported(subject, "named")
    service, _, _ = deleting(subject, failures=1)
    service.delete(APP, "named")

    assert not subject.repository.removed(APP, "named", "another-version")
    assert not subject.repository.removed(APP, "nobody", version.version)
    assert subject.repository.get(APP, "nobody", consistent=True) is None
    assert subject.repository.removed(APP, "named", version.version)
    assert not subject.repository.removed(APP, "named", version.version)  # noted once; a retry changes nothing
    tombstone = subject.repository.get(APP, "named", consistent=True)
    assert tombstone is not None
    assert (tombstone.status, tombstone.removing) == (AudienceStatus.DELETED, None)


def test_a_delete_asks_for_the_versions_imports_replaced_whose_removal_never_finished(store: StoreSettings) -> None:
    """File 2's import flipped the audience and died removing version 1, and no retry finished it: the record notes
    version 1. Deleting the audience asks for its removal too, and that request leaves the tombstone's own version
    named until its own request is done."""
    subject = Subject()
    first = imported(subject, "noted")
    killed_once_removing(subject.repository)
    with pytest.raises(Killed):
        subject.put("noted", b"plain\n")
    flipped = subject.repository.get(APP, "noted", consistent=True)
    assert flipped is not None
    assert flipped.layout is not None
    second = flipped.layout
    service, importer, counted = deleting(subject, failures=2)

    service.delete(APP, "noted")  # both requests fail: the tombstone is answered, and counted twice

    assert importer.asked == [first.version, second.version]
    assert counted == [CLEANUP_NOT_STARTED] * 2
    kept = subject.repository.get(APP, "noted", consistent=True)
    assert kept is not None
    assert (kept.removing, kept.unremoved) == (second, {"0002".ljust(64, "0"): first})
    # The request for version 1 (as a repeated DELETE sends it) drops its note, not the tombstone's own version.
    subject.importer.remove_deleted(APP, "noted", first)
    assert stored(subject, first) == (0, False)
    kept = subject.repository.get(APP, "noted", consistent=True)
    assert kept is not None
    assert (kept.removing, kept.unremoved) == (second, {})
    service.delete(APP, "noted")
    assert importer.asked == [first.version, second.version, second.version]
    assert stored(subject, second) == (0, False)
    removed = subject.repository.get(APP, "noted", consistent=True)
    assert removed is not None
    assert (removed.status, removed.removing, removed.unremoved) == (AudienceStatus.DELETED, None, {})


def put_event(subject: Subject, name: str, body: bytes, sequencer: str) -> ObjectCreated:
    """The file put at the name's key, and its S3 event (not handled yet)."""
    key = f"imports/{APP}/{name}.csv"
    etag = subject.s3.put_object(Bucket="imports", Key=key, Body=body)["ETag"].strip('"')
    return ObjectCreated("imports", key, len(body), sequencer, etag)


@pytest.mark.parametrize("late", ["Lambda's retry", "the recorder"])
def test_a_file_imported_before_a_lifted_deletion_is_neither_imported_again_nor_told_as_failed(
    store: StoreSettings, late: str
) -> None:
    """File 0001's import flipped the audience, then its announcement threw: Lambda retries the event (hours later,
    at worst), and after its retries hands it to the recorder. Meanwhile the app deleted the audience and lifted the
    tombstone, so the record is gone."""
    subject = Subject()
    heard = subject.importer.notifier
    assert isinstance(heard, Heard)
    created = put_event(subject, "lifted", "plain\nünï-1\n".encode(), "0001")
    heard.broken = True
    with pytest.raises(RuntimeError, match="EventBridge"):
        subject.importer.handle(created, RUN)
    heard.broken = False
    service, _, _ = deleting(subject, failures=0)
    service.delete(APP, "lifted")
    service.lift_tombstone(APP, "lifted")

    if late == "Lambda's retry":
        outcome = subject.importer.handle(created, RUN)  # the same request id
    else:
        outcome = LostImports(subject.importer).record(created, "RetriesExhausted after 3 attempts.")

    # Skipped: no fresh audience of the deleted members, nor a failure of a file that was imported.
    assert (outcome.outcome, outcome.reason) == ("skipped", "superseded")
    assert subject.repository.get(APP, "lifted", consistent=True) is None
    assert AudienceCountRecord.get(audience_count_pk(APP), AUDIENCE_COUNT_SK).audiences == 0
    assert heard.events == []
    # A file put after the lift imports.
    newer = subject.importer.handle(put_event(subject, "lifted", b"plain\n", "0002"), RUN)
    assert newer.outcome == "imported"
    audience = subject.repository.get(APP, "lifted", consistent=True)
    assert audience is not None
    assert (audience.status, audience.sequencer) == (AudienceStatus.READY, "0002".ljust(64, "0"))
    assert subject.service.check(APP, "lifted", ["plain", "ünï-1"]).members == ["plain"]
    assert heard.events == [("imported", "lifted")]


def test_a_lift_that_raced_a_lift_an_import_and_a_delete_leaves_the_newer_tombstone(store: StoreSettings) -> None:
    """While this lift asked for the removal of the tombstone's version, another lift of the same tombstone went
    through, a newer file was imported and the audience was deleted again: this lift must not take the newer
    tombstone away (its deletion time is not the one this lift read)."""
    subject = Subject()
    imported(subject, "raced")
    service, importer, _ = deleting(subject, failures=1)
    service.delete(APP, "raced")  # its removal request failed: the tombstone names the version
    later = NOW + timedelta(minutes=5)
    other = AudienceService(
        subject.repository, subject.objects, UploadLinks(subject.s3, "imports"), importer, lambda: later,
        lambda name: None,
    )  # fmt: skip
    asked = importer.__call__

    def meanwhile(app_id: str, name: str, layout: Layout) -> None:
        asked(app_id, name, layout)
        other.lift_tombstone(APP, "raced")
        assert subject.importer.handle(put_event(subject, "raced", b"plain\n", "0002"), RUN).outcome == "imported"
        assert other.delete(APP, "raced").deleted_at == later

    service.cleanup = meanwhile

    with pytest.raises(Conflict) as refused:
        service.lift_tombstone(APP, "raced")

    assert refused.value.code == "concurrent_update"
    tombstone = subject.repository.get(APP, "raced", consistent=True)
    assert tombstone is not None
    assert (tombstone.status, tombstone.deleted_at, tombstone.sequencer) == (
        AudienceStatus.DELETED, later, "0002".ljust(64, "0"),
    )  # fmt: skip
