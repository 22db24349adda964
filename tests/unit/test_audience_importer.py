"""The importer's ordering rules on moto's DynamoDB: a slower import of an older file never replaces a newer one."""

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import boto3
import pytest
from pynamodb.connection.base import Connection

from steward.apps.repository import AppRepository
from steward.audiences import buckets
from steward.audiences import repository as audience_repository
from steward.audiences.failures import RecordContended
from steward.audiences.importer import (
    AudienceImporter,
    FanOut,
    Invocation,
    ObjectCreated,
    Parsed,
    Spill,
    VersionNotRemoved,
)
from steward.audiences.keys import ImportKey
from steward.audiences.models import MAX_OBJECT_BYTES, Audience, AudienceStatus, Counts, Failure, Layout
from steward.audiences.ports import ObjectChanged, ObjectUnreadable, OpenedObject
from steward.audiences.repository import Attempt, AudienceRepository, Flip, Published
from steward.audiences.storage import CHUNK_BYTES, S3Objects
from steward.jobs.pricing import item_size
from steward.settings import StoreSettings
from steward.tables import (
    AUDIENCE_BUCKET_SK,
    AUDIENCE_COUNT_SK,
    AudienceBucketRecord,
    AudienceCountRecord,
    audience_bucket_pk,
    audience_count_pk,
)

APP = "acme"
KEY = f"imports/{APP}/race.csv"
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
RUN = Invocation("request-1", lambda: 900.0)  # one Lambda invocation with its whole time left


def in_time() -> None:
    return None


def etag_of(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324 (S3's ETag of a single-part object)


class Files:
    """The object at the key (its ETag is its MD5, as S3's for one part) and the member lists."""

    def __init__(self) -> None:
        self.body = b""
        self.lists: dict[str, bytes] = {}
        self.on_open: Callable[[], None] | None = None  # what happens elsewhere while this import reads

    def event(self, sequencer: str, key: str = KEY) -> ObjectCreated:
        """The event S3 sends for the object now at the key."""
        return ObjectCreated("bucket", key, len(self.body), sequencer, etag_of(self.body))

    def open(self, bucket: str, key: str, etag: str) -> OpenedObject:
        hook, self.on_open = self.on_open, None
        if hook is not None:
            hook()  # before the GetObject is answered
        if etag != etag_of(self.body):
            raise ObjectChanged(key)
        return OpenedObject(len(self.body), iter([self.body]))

    def upload(self, key: str, path: str) -> None:
        with open(path, "rb") as source:
            self.lists[key] = source.read()

    def delete(self, key: str) -> None:
        self.lists.pop(key, None)

    def read(self, key: str, start: int, length: int) -> bytes:
        return self.lists[key][start : start + length]


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.broken = False
        self.failures_broken = False

    def imported(self, app_id: str, audience: Audience) -> None:
        if self.broken:
            raise RuntimeError("EventBridge refused the event")
        self.events.append(("imported", audience.name))

    def failed(self, app_id: str, name: str, failure: Failure, sequencer: str | None) -> None:
        if self.failures_broken:
            raise RuntimeError("SNS refused the message")
        self.events.append(("failed", failure.code))


class Users:
    """The app's users, found by lookups or read once; records which way was taken."""

    def __init__(self, user_ids: list[str]) -> None:
        self.user_ids = user_ids
        self.looked_up = 0
        self.read = 0

    def registered(self, app_id: str, user_ids: list[str]) -> set[str]:
        self.looked_up += len(user_ids)
        return set(user_ids) & set(self.user_ids)

    def read_ids(self, app_id: str, limit: int, sink: Callable[[list[bytes]], None]) -> bool:
        for user_id in self.user_ids:
            self.read += 1
            if self.read > limit:
                return False
            sink([user_id.encode()])
        return True


def importer(
    files: Files, heard: Heard, repository: AudienceRepository, users: Users | None = None
) -> AudienceImporter:
    found = users or Users(["u-old", "u-older", "u-new", "u1", "u2"])
    return AudienceImporter(
        repository, files, files, found.registered, found.read_ids, lambda app_id: app_id == APP, heard,
        lambda name: None, lambda: NOW, None, None,
    )  # fmt: skip


def an_app() -> tuple[Files, Heard, AudienceRepository, AudienceImporter]:
    AppRepository().create(APP, "Acme", "hash", None, NOW)
    files, heard, repository = Files(), Heard(), AudienceRepository()
    return files, heard, repository, importer(files, heard, repository)


def test_an_older_import_that_finishes_last_is_discarded(store: StoreSettings) -> None:
    files, heard, repository, subject = an_app()
    # The older file's import claims first and builds its version slowly...
    files.body = b"u-old\n"
    subject.handle(files.event("00A1"), RUN)
    files.body = b"u-older\n"
    slow = subject.build_version(APP, files.open("bucket", KEY, etag_of(files.body)), in_time)
    # ...while the newer file is imported, and only then does the older one try to flip.
    files.body = b"u-new\n"
    assert subject.handle(files.event("00A3"), RUN).outcome == "imported"

    current = repository.get(APP, "race", consistent=True)
    assert current is not None
    flipped = repository.publish(
        Flip(APP, "race", slow.layout, slow.counts, [], KEY, "00A2".ljust(64, "0"), NOW), current.layout
    )

    assert flipped is None
    current = repository.get(APP, "race", consistent=True)
    assert current is not None
    assert current.layout is not None
    assert files.lists[current.layout.members_key] == b"u-new\n"
    subject.remove_version(APP, slow.layout)
    assert slow.layout.members_key not in files.lists
    assert not list(AudienceBucketRecord.query(audience_bucket_pk(APP, slow.layout.version, 0)))
    assert heard.events == [("imported", "race"), ("imported", "race")]


def test_sequencers_compare_after_right_padding(store: StoreSettings) -> None:
    files, _, _, subject = an_app()
    files.body = b"u1\n"
    subject.handle(files.event("0055AED6DCD90281E5"), RUN)

    # Shorter but larger once padded: newer. Longer but smaller once padded: older.
    files.body = b"u2\n"
    newer = subject.handle(files.event("0055AED6DCD90281F"), RUN)
    older = subject.handle(files.event("0055AED6DCD90281E4FF"), RUN)

    assert (newer.outcome, older.outcome) == ("imported", "skipped")


def test_the_registered_check_reads_the_apps_users_only_when_that_is_cheaper(store: StoreSettings) -> None:
    files, heard, repository, _ = an_app()
    few = Users(["u1", "u2"])
    many = Users([f"u{n}" for n in range(10)])
    files.body = b"u1\nu2\nu3\nstranger\n"

    read_once = importer(files, heard, repository, few).handle(files.event("01"), RUN)
    looked_up = importer(files, heard, repository, many).handle(files.event("02"), RUN)

    # 2 users for 4 distinct ids: read once, no lookup. 10 users: the read stops at the 5th, then 4 lookups.
    assert (few.read, few.looked_up) == (2, 0)
    assert (many.read, many.looked_up) == (5, 4)
    assert read_once.counts is not None
    assert looked_up.counts is not None
    assert (read_once.counts.members, looked_up.counts.members) == (2, 3)


def test_an_event_imports_the_object_it_names_not_a_newer_one_at_the_key(store: StoreSettings) -> None:
    AppRepository().create(APP, "Acme", "hash", None, NOW)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="imports")
    s3.create_bucket(Bucket="data")
    objects = S3Objects(s3, "data")
    heard, repository, users = Heard(), AudienceRepository(), Users(["u1", "u2"])
    subject = AudienceImporter(
        repository, objects, objects, users.registered, users.read_ids, lambda app_id: app_id == APP, heard,
        lambda name: None, lambda: NOW, None, None,
    )  # fmt: skip
    first = s3.put_object(Bucket="imports", Key=KEY, Body=b"u1\n")
    s3.put_object(Bucket="imports", Key=KEY, Body=b"u1\nu2\n")  # replaces it before the first event is handled

    late = subject.handle(ObjectCreated("imports", KEY, 3, "00A1", first["ETag"].strip('"')), RUN)

    # The first event's object is gone: nothing is imported under its sequencer, and nothing failed.
    assert (late.outcome, late.reason) == ("skipped", "object_replaced")
    assert heard.events == []
    current = repository.get(APP, "race", consistent=True)
    assert current is None or (current.version is None and current.last_failure is None)
    newest = s3.head_object(Bucket="imports", Key=KEY)
    imported = subject.handle(ObjectCreated("imports", KEY, 6, "00A2", newest["ETag"].strip('"')), RUN)
    assert imported.counts is not None
    assert (imported.outcome, imported.counts.members) == ("imported", 2)


class RacingRepository(AudienceRepository):
    """Another event of the same name claims first, between our read of the record and our claim."""

    def __init__(self, rival: str) -> None:
        self.rival: str | None = rival

    def claim_new(self, attempt: Attempt, maximum: int, *, recount: bool) -> str:
        if self.rival is not None:
            rival = replace(attempt, sequencer=self.rival, request_id="rival")
            self.rival = None
            assert super().claim_new(rival, maximum, recount=recount) == "claimed"
        return super().claim_new(attempt, maximum, recount=recount)


def test_the_newer_of_two_files_delivered_together_wins_the_claim_race(store: StoreSettings) -> None:
    AppRepository().create(APP, "Acme", "hash", None, NOW)
    files, heard = Files(), Heard()
    repository = RacingRepository("00A1".ljust(64, "0"))
    subject = importer(files, heard, repository)
    files.body = b"u-old\n"
    older = files.event("00A1")
    files.body = b"u-new\n"

    # The older file's event claimed the new name a moment before the newer's conditional write.
    newer = subject.handle(files.event("00A2"), RUN)

    assert newer.outcome == "imported"
    # The older import, still running, can no longer flip the audience to its file.
    assert subject.handle(older, RUN).outcome == "skipped"
    current = repository.get(APP, "race", consistent=True)
    assert current is not None
    assert current.layout is not None
    assert files.lists[current.layout.members_key] == b"u-new\n"


def imported_once() -> tuple[Files, Heard, AudienceRepository, AudienceImporter, Audience]:
    """An app whose audience ``race`` holds the file 01."""
    files, heard, repository, subject = an_app()
    files.body = b"u1\n"
    subject.handle(files.event("01"), RUN)
    current = repository.get(APP, "race", consistent=True)
    assert current is not None
    return files, heard, repository, subject, current


def test_the_version_a_flip_replaced_is_removed_when_imports_overlap(store: StoreSettings) -> None:
    files, _heard, repository, subject, first = imported_once()
    assert first.layout is not None
    # An import of file 02 claims and builds; file 03's import starts while it runs...
    assert repository.claim_existing(Attempt(APP, "race", KEY, "02".ljust(64, "0"), "request-02", NOW), NOW)
    files.body = b"u2\n"
    middle = subject.build_version(APP, files.open("bucket", KEY, etag_of(files.body)), in_time)

    def file_02_flips() -> None:
        # ...and file 02's import flips the audience (removing version 01) before file 03's does.
        flip = Flip(APP, "race", middle.layout, middle.counts, [], KEY, "02".ljust(64, "0"), NOW)
        flipped = repository.publish(flip, first.layout)
        assert flipped is not None
        assert flipped.replaced == first.layout
        subject.remove_version(APP, first.layout)  # type: ignore[arg-type]

    files.body = b"u1\nu2\n"
    files.on_open = file_02_flips
    assert subject.handle(files.event("03"), RUN).outcome == "imported"

    current = repository.get(APP, "race", consistent=True)
    assert current is not None
    assert current.layout is not None
    # Only the newest version is left: file 02's, which file 03's flip replaced, is removed too.
    assert list(files.lists) == [current.layout.members_key]
    assert not list(AudienceBucketRecord.query(audience_bucket_pk(APP, middle.layout.version, 0)))


def test_a_new_name_whose_first_file_fails_gives_its_slot_back(store: StoreSettings) -> None:
    files, heard, repository, subject = an_app()
    repository.set_max_audiences(APP, 1)
    files.body = b"u1\n"
    too_large = ObjectCreated("bucket", f"imports/{APP}/big.csv", MAX_OBJECT_BYTES + 1, "01", etag_of(files.body))
    files.on_open = lambda: (_ for _ in ()).throw(ObjectUnreadable("gone"))

    refused = subject.handle(too_large, RUN)
    unreadable = subject.handle(files.event("01", f"imports/{APP}/gone.csv"), RUN)

    assert (refused.outcome, refused.reason) == ("failed", "file_too_large")
    assert (unreadable.outcome, unreadable.reason) == ("failed", "unreadable")
    for name in ("big", "gone"):
        audience = repository.get(APP, name, consistent=True)
        assert audience is not None
        assert (audience.status, audience.counted) == (AudienceStatus.FAILED, False)
    # Neither holds the app's only slot: a good file for a third name imports.
    assert subject.handle(files.event("01", f"imports/{APP}/kept.csv"), RUN).outcome == "imported"
    assert [event for event in heard.events if event[0] == "failed"] == [
        ("failed", "file_too_large"),
        ("failed", "unreadable"),
    ]


class Killed(BaseException):
    """The function dies (out of memory, a hard timeout): nothing after this runs, nothing is recorded."""


def kill() -> None:
    raise Killed()


def test_lambdas_retry_of_a_killed_import_takes_the_attempt_over_and_a_duplicate_event_does_not(
    store: StoreSettings,
) -> None:
    files, heard, _repository, subject = an_app()
    files.body = b"u1\n"
    event = files.event("01")
    files.on_open = kill
    with pytest.raises(Killed):
        subject.handle(event, RUN)

    duplicate = subject.handle(event, Invocation("request-2", lambda: 900.0))
    retry = subject.handle(event, RUN)  # Lambda retries under the same request id

    assert (duplicate.outcome, retry.outcome) == ("skipped", "imported")
    assert heard.events == [("imported", "race")]


def test_a_retry_after_the_flip_announces_the_import_exactly_when_it_was_not(store: StoreSettings) -> None:
    files, heard, _, subject = an_app()
    files.body = b"u1\n"
    event = files.event("01")
    heard.broken = True
    with pytest.raises(RuntimeError, match="EventBridge"):
        subject.handle(event, RUN)  # flipped, but the announcement failed
    heard.broken = False

    retry = subject.handle(event, RUN)
    again = subject.handle(event, RUN)  # Lambda's retry once more: the flip is finished again, not announced
    duplicate = subject.handle(event, Invocation("request-2", lambda: 900.0))

    assert (retry.outcome, again.outcome, duplicate.outcome) == ("imported", "imported", "skipped")
    assert heard.events == [("imported", "race")]


def test_an_import_running_out_of_time_stops_and_records_the_failure(store: StoreSettings) -> None:
    files, heard, repository, subject = an_app()
    repository.set_max_audiences(APP, 1)
    files.body = b"u1\nu2\n"
    left = iter([900.0, 900.0])  # the parse and the registered check fit; the writes do not

    timed_out = subject.handle(files.event("01"), Invocation("request-1", lambda: next(left, 59.0)))

    assert (timed_out.outcome, timed_out.reason) == ("failed", "timeout")
    audience = repository.get(APP, "race", consistent=True)
    assert audience is not None
    assert audience.last_failure is not None
    assert (audience.status, audience.counted, audience.last_failure.code) == (AudienceStatus.FAILED, False, "timeout")
    assert files.lists == {}
    assert heard.events == [("failed", "timeout")]
    # The app's only slot is free again.
    assert subject.handle(files.event("01", f"imports/{APP}/next.csv"), RUN).outcome == "imported"


def test_a_tombstone_tells_of_each_refused_file_once(store: StoreSettings) -> None:
    files, heard, repository, subject, current = imported_once()
    assert repository.tombstone(APP, current, NOW)
    files.body = b"u2\n"

    refused = [subject.handle(files.event(sequencer), RUN).outcome for sequencer in ("02", "02", "01A", "03")]

    assert refused == ["refused"] * 4
    # The file 02, its duplicate event (not again), an older one (not at all), then the newer file 03.
    assert heard.events[1:] == [("failed", "audience_deleted"), ("failed", "audience_deleted")]


def test_a_tombstones_refusal_whose_notification_threw_is_told_by_the_retry_once(store: StoreSettings) -> None:
    files, heard, repository, subject, current = imported_once()
    assert repository.tombstone(APP, current, NOW)
    files.body = b"u2\n"
    event = files.event("02")
    heard.failures_broken = True
    with pytest.raises(RuntimeError, match="SNS"):
        subject.handle(event, RUN)  # the refusal is noted on the tombstone, but telling it failed
    heard.failures_broken = False

    retry = subject.handle(event, RUN)
    again = subject.handle(event, RUN)

    assert [(item.outcome, item.reason) for item in (retry, again)] == [("refused", "audience_deleted")] * 2
    assert heard.events[1:] == [("failed", "audience_deleted")]
    tombstone = repository.get(APP, "race", consistent=True)
    assert tombstone is not None
    assert (tombstone.status, tombstone.refused_key) == (AudienceStatus.DELETED, KEY)


def test_a_bad_name_in_an_apps_folder_is_told_to_the_app_and_a_stray_key_is_not(store: StoreSettings) -> None:
    files, heard, repository, subject = an_app()
    files.body = b"u1\n"

    nested = subject.handle(files.event("01", f"imports/{APP}/spring/sale.csv"), RUN)
    too_long = subject.handle(files.event("01", f"imports/{APP}/{'x' * 201}.csv"), RUN)
    unknown_app = subject.handle(files.event("01", "imports/nobody/a/b.csv"), RUN)

    assert [(item.outcome, item.reason) for item in (nested, too_long)] == [("refused", "invalid_name")] * 2
    assert unknown_app.outcome == "stray"
    assert heard.events == [("failed", "invalid_name"), ("failed", "invalid_name")]
    assert repository.list_page(APP, None, 10).items == []


def unreadable() -> None:
    raise ObjectUnreadable("gone")


def audiences_counted() -> int:
    return int(AudienceCountRecord.get(audience_count_pk(APP), AUDIENCE_COUNT_SK).audiences)


def failed_uncounted(repository: AudienceRepository, app_id: str = APP, name: str = "race") -> tuple[Audience, str]:
    """The name's record, which must be ``failed`` and not count against the maximum, and its failure's code."""
    audience = repository.get(app_id, name, consistent=True)
    assert audience is not None
    assert audience.last_failure is not None
    assert (audience.status, audience.counted) == (AudienceStatus.FAILED, False)
    return audience, audience.last_failure.code


def released_by_a_newer_file(
    files: Files, subject: AudienceImporter, repository: AudienceRepository, maximum: int
) -> Parsed:
    """File 01 claims the new name and builds; meanwhile file 02 claims it, fails, and gives the slot back."""
    sequencer = "01".ljust(64, "0")
    assert repository.claim_new(Attempt(APP, "race", KEY, sequencer, "request-A", NOW), maximum, recount=False) == (
        "claimed"
    )
    files.body = b"u1\n"
    slow = subject.build_version(APP, files.open("bucket", KEY, etag_of(files.body)), in_time)
    files.body = b"u2\n"
    files.on_open = unreadable
    assert subject.handle(files.event("02"), RUN).reason == "unreadable"
    return slow


def test_an_older_file_flipping_onto_a_name_a_newer_failure_released_counts_it_again(store: StoreSettings) -> None:
    files, _heard, repository, subject = an_app()
    slow = released_by_a_newer_file(files, subject, repository, 100)

    flipped = subject.publish_version(ImportKey(APP, "race", KEY), "01".ljust(64, "0"), slow)

    assert flipped.outcome == "imported"
    audience = repository.get(APP, "race", consistent=True)
    assert audience is not None
    assert (audience.status, audience.counted, audience.version) == (AudienceStatus.READY, True, slow.layout.version)
    assert audiences_counted() == 1
    # A later file replaces it as any file does: its claim is not refused over and over.
    files.body = b"u1\nu2\n"
    assert subject.handle(files.event("03"), RUN).outcome == "imported"
    assert audiences_counted() == 1


def test_an_older_file_flipping_onto_a_released_name_of_a_full_app_records_the_limit(store: StoreSettings) -> None:
    files, heard, repository, subject = an_app()
    repository.set_max_audiences(APP, 1)
    slow = released_by_a_newer_file(files, subject, repository, 1)
    files.body = b"u1\n"
    assert subject.handle(files.event("01", f"imports/{APP}/other.csv"), RUN).outcome == "imported"  # takes the slot

    refused = subject.publish_version(ImportKey(APP, "race", KEY), "01".ljust(64, "0"), slow)

    assert (refused.outcome, refused.reason) == ("failed", "audience_limit")
    audience = repository.get(APP, "race", consistent=True)
    assert audience is not None
    assert audience.last_failure is not None
    assert (audience.status, audience.counted, audience.version) == (AudienceStatus.FAILED, False, None)
    # The newer file's failure stays on the record; the older file's is told for its own key.
    assert audience.last_failure.code == "unreadable"
    assert slow.layout.members_key not in files.lists
    assert audiences_counted() == 1
    assert heard.events[-1] == ("failed", "audience_limit")


@pytest.mark.parametrize("newer_first", [False, True], ids=["replaced-then-refused", "refused-then-replaced"])
def test_a_new_names_slot_comes_back_when_its_object_was_replaced_and_the_newer_one_is_refused(
    store: StoreSettings, newer_first: bool
) -> None:
    files, heard, repository, subject = an_app()
    repository.set_max_audiences(APP, 1)
    files.body = b"u1\n"
    first = files.event("01")
    files.body = b"u1\nu2\n"  # a newer object is at the key before the first import's GetObject is answered
    too_large = ObjectCreated("bucket", KEY, MAX_OBJECT_BYTES + 1, "02", etag_of(files.body))

    def refused() -> None:
        assert subject.handle(too_large, RUN).reason == "file_too_large"

    if newer_first:
        # The first file claimed the new name; the newer file's refusal is noted on that claim.
        files.on_open = refused
        assert subject.handle(first, RUN).reason == "object_replaced"
    else:
        assert subject.handle(first, RUN).reason == "object_replaced"
        refused()

    # A refused new audience keeps a failed record with its reason, that does not count.
    assert failed_uncounted(repository)[1] == "file_too_large"
    assert audiences_counted() == 0
    # A duplicate event of the refused file is skipped, not told again.
    assert subject.handle(too_large, RUN).outcome == "skipped"
    assert heard.events == [("failed", "file_too_large")]
    # The app's only slot is free again.
    assert subject.handle(files.event("03", f"imports/{APP}/next.csv"), RUN).outcome == "imported"


def test_an_older_failure_never_replaces_a_newer_one_whose_notification_the_retry_still_tells(
    store: StoreSettings,
) -> None:
    files, heard, repository, subject = an_app()
    files.body = b"u1\n"
    older, newer = files.event("01"), files.event("02")

    def newer_fails_untold_then_older_fails() -> None:
        # File 02 claims over file 01's first attempt and fails; telling it throws (Lambda retries it later).
        files.on_open = unreadable
        heard.failures_broken = True
        with pytest.raises(RuntimeError, match="SNS"):
            subject.handle(newer, RUN)
        heard.failures_broken = False
        raise RuntimeError("file 01's import breaks")

    files.on_open = newer_fails_untold_then_older_fails
    assert subject.handle(older, RUN).reason == "import_error"
    retry = subject.handle(newer, RUN)

    audience, code = failed_uncounted(repository)
    assert (code, audience.failed_sequencer) == ("unreadable", "02".ljust(64, "0"))
    assert audiences_counted() == 0
    # The older failure is told for its own file; the newer one by the retry, once.
    assert (retry.outcome, retry.reason) == ("failed", "unreadable")
    assert subject.handle(newer, RUN).outcome == "skipped"
    assert heard.events == [("failed", "import_error"), ("failed", "unreadable")]


def test_a_recorded_failure_whose_notification_threw_is_told_by_the_retry_once(store: StoreSettings) -> None:
    files, heard, _, subject = an_app()
    files.body = b"u1\n"
    event = files.event("01")
    files.on_open = unreadable
    heard.failures_broken = True
    with pytest.raises(RuntimeError, match="SNS"):
        subject.handle(event, RUN)  # the failure is recorded, but telling it failed
    heard.failures_broken = False

    retry = subject.handle(event, RUN)
    again = subject.handle(event, RUN)

    assert (retry.outcome, retry.reason, again.outcome) == ("failed", "unreadable", "skipped")
    assert heard.events == [("failed", "unreadable")]


def test_a_name_counted_again_whose_file_was_replaced_keeps_its_failure_and_skips_older_files(
    store: StoreSettings,
) -> None:
    files, heard, repository, subject = an_app()
    repository.set_max_audiences(APP, 1)
    files.body = b"u1\n"
    assert subject.handle(files.event("01", f"imports/{APP}/other.csv"), RUN).outcome == "imported"
    assert subject.handle(files.event("02"), RUN).reason == "audience_limit"  # a failed record that does not count
    repository.set_max_audiences(APP, 2)
    files.body = b"u2\n"
    older, counted_again = files.event("03"), files.event("04")
    files.body = b"u1\nu2\n"  # file 05 replaced file 04 before its import read it

    # File 04 counts the name again, then finds file 05 at the key and gives the slot back.
    assert subject.handle(counted_again, RUN).reason == "object_replaced"

    # The record stays, with file 02's failure, failed and not counted.
    audience, code = failed_uncounted(repository)
    assert (code, audience.failed_sequencer) == ("audience_limit", "02".ljust(64, "0"))
    assert audiences_counted() == 1
    # A late event of file 03, gone too, is skipped: not claimed, nor refused for the limit of a full app.
    repository.set_max_audiences(APP, 1)
    assert subject.handle(older, RUN).outcome == "skipped"
    assert heard.events == [("imported", "other"), ("failed", "audience_limit")]
    repository.set_max_audiences(APP, 2)
    assert subject.handle(files.event("05"), RUN).outcome == "imported"


class ClaimedMeanwhile(AudienceRepository):
    """An older file's event claims the new name between a newer file's read of the record and its refusal."""

    def __init__(self, rival: Attempt) -> None:
        self.rival: Attempt | None = rival

    def record_refused_new(
        self, app_id: str, name: str, failure: Failure, sequencer: str, now: datetime
    ) -> Literal["recorded", "raced", "lifted"]:
        if self.rival is not None:
            rival, self.rival = self.rival, None
            assert self.claim_new(rival, 100, recount=False) == "claimed"
        return super().record_refused_new(app_id, name, failure, sequencer, now)


def test_a_refusal_that_raced_a_first_claim_is_noted_on_it_and_kept_when_that_file_was_replaced(
    store: StoreSettings,
) -> None:
    AppRepository().create(APP, "Acme", "hash", None, NOW)
    files, heard = Files(), Heard()
    repository = ClaimedMeanwhile(Attempt(APP, "race", KEY, "01".ljust(64, "0"), "request-01", NOW))
    subject = importer(files, heard, repository)
    files.body = b"u1\n"
    first = files.event("01")
    files.body = b"u1\nu2\n"
    too_large = ObjectCreated("bucket", KEY, MAX_OBJECT_BYTES + 1, "02", etag_of(files.body))

    refused = subject.handle(too_large, RUN)
    # File 01's import, which claimed the name, finds file 02 at the key.
    replaced = subject.handle(first, Invocation("request-01", lambda: 900.0))

    assert (refused.reason, replaced.reason) == ("file_too_large", "object_replaced")
    assert failed_uncounted(repository)[1] == "file_too_large"
    assert audiences_counted() == 0
    assert heard.events == [("failed", "file_too_large")]
    # A duplicate event of the refused file is skipped, not told again.
    assert subject.handle(too_large, RUN).outcome == "skipped"
    assert heard.events == [("failed", "file_too_large")]


def test_an_import_announces_before_it_removes_the_replaced_version_and_its_retry_finishes_the_removal(
    store: StoreSettings,
) -> None:
    files, heard, repository, subject, first = imported_once()
    assert first.layout is not None
    removals = repository.delete_buckets

    def killed_removing(app_id: str, layout: Layout) -> None:
        # A large version is tens of thousands of buckets: the function's time can run out in the middle.
        repository.delete_buckets = removals  # type: ignore[method-assign]
        raise Killed()

    repository.delete_buckets = killed_removing  # type: ignore[method-assign]
    files.body = b"u2\n"
    event = files.event("02")
    with pytest.raises(Killed):
        subject.handle(event, RUN)
    # The import was announced before the removal began.
    assert heard.events == [("imported", "race"), ("imported", "race")]
    assert list(AudienceBucketRecord.query(audience_bucket_pk(APP, first.layout.version, 0)))

    retry = subject.handle(event, RUN)  # Lambda retries under the same request id
    duplicate = subject.handle(event, Invocation("request-2", lambda: 900.0))

    assert (retry.outcome, duplicate.outcome) == ("imported", "skipped")
    assert not list(AudienceBucketRecord.query(audience_bucket_pk(APP, first.layout.version, 0)))
    assert first.layout.members_key not in files.lists
    assert heard.events == [("imported", "race"), ("imported", "race")]  # not announced again


class ReleasedMeanwhile(AudienceRepository):
    """An older file's event counts a refused name again between a newer file's read of the record and its
    refusal, then (its object replaced, or the audience deleted) lets go of it before the newer file reads again."""

    def __init__(self, then: str) -> None:
        self.rival: Attempt | None = None
        self.then = then

    def record_refused_new(
        self, app_id: str, name: str, failure: Failure, sequencer: str, now: datetime
    ) -> Literal["recorded", "raced", "lifted"]:
        rival, self.rival = self.rival, None
        if rival is None:
            return super().record_refused_new(app_id, name, failure, sequencer, now)
        assert self.claim_new(rival, 100, recount=True) == "claimed"
        written = super().record_refused_new(app_id, name, failure, sequencer, now)
        assert written == "raced"  # the name counts: no refused record is written over it
        if self.then == "released":
            assert self.release_unstarted(app_id, name, rival.sequencer, now)
        else:
            claimed = self.get(app_id, name, consistent=True)
            assert claimed is not None
            assert self.tombstone(app_id, claimed, now)
        return written


@pytest.mark.parametrize(("then", "told"), [("released", "file_too_large"), ("deleted", "audience_deleted")])
def test_a_refusal_whose_write_raced_a_claim_let_go_of_meanwhile_is_recorded_and_told(
    store: StoreSettings, then: str, told: str
) -> None:
    AppRepository().create(APP, "Acme", "hash", None, NOW)
    files, heard = Files(), Heard()
    repository = ReleasedMeanwhile(then)
    subject = importer(files, heard, repository)
    # File 00 was refused for the app's limit: the name has a failed record that does not count.
    refused = Failure(code="audience_limit", reason="full", key=KEY, at=NOW)
    assert repository.record_refused_new(APP, "race", refused, "00".ljust(64, "0"), NOW) == "recorded"
    repository.rival = Attempt(APP, "race", KEY, "01".ljust(64, "0"), "request-01", NOW)
    files.body = b"u1\nu2\n"
    too_large = ObjectCreated("bucket", KEY, MAX_OBJECT_BYTES + 1, "02", etag_of(files.body))

    outcome = subject.handle(too_large, RUN)

    assert heard.events == [("failed", told)]
    audience = repository.get(APP, "race", consistent=True)
    assert audience is not None
    assert audience.last_failure is not None
    assert audience.last_failure.code == told
    if then == "released":
        assert (outcome.outcome, outcome.reason) == ("failed", "file_too_large")
        assert (audience.status, audience.counted, audience.failed_sequencer) == (
            AudienceStatus.FAILED, False, "02".ljust(64, "0"),
        )  # fmt: skip
    else:
        assert (outcome.outcome, outcome.reason) == ("refused", "audience_deleted")
        assert (audience.status, audience.refused_sequencer) == (AudienceStatus.DELETED, "02".ljust(64, "0"))
    assert audiences_counted() == 0


class MeasuredSpill(Spill):
    """The real spill, whose id partitions' bytes on disk are noted once written (before they are deduplicated)."""

    sizes: ClassVar[list[int]] = []

    def close(self) -> None:
        super().close()
        if self.prefix == "ids":
            MeasuredSpill.sizes += [self.path(partition).stat().st_size for partition in range(self.partitions)]


def streamed(body: bytes) -> OpenedObject:
    """The object in S3Objects' 1 MiB chunks."""
    chunks = [body[start : start + CHUNK_BYTES] for start in range(0, len(body), CHUNK_BYTES)]
    return OpenedObject(len(body), iter(chunks))


REPEATED = b"0" * 30  # a CDP's placeholder id, exported on most rows


def test_an_id_repeated_200k_times_costs_nothing_in_the_spill_and_the_counts_stay_exact(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    MeasuredSpill.sizes = []
    monkeypatch.setattr("steward.audiences.importer.Spill", MeasuredSpill)
    body = b"user_id\n" + (REPEATED + b"\n") * 200_000 + b"u1\nu2\nstranger\nu1\n"  # 6.2 MB: 2 partitions
    subject = importer(Files(), Heard(), AudienceRepository(), Users(["u1", "u2", REPEATED.decode()]))

    parsed = subject.build_version(APP, streamed(body), in_time)

    assert parsed.counts == Counts(rows=200_004, invalid=0, valid=200_004, duplicates=200_000, unknown=1, members=3)
    chunks = -(-len(body) // CHUNK_BYTES)
    # Each chunk spills the repeated id once: 6 lines, not the 6.2 MB of its rows.
    assert sum(MeasuredSpill.sizes) <= chunks * (len(REPEATED) + 1) + len(b"u1\nu2\nstranger\n")


def test_buckets_are_sized_from_the_largest_partition_so_a_lookup_stays_one_read_unit(store: StoreSettings) -> None:
    # 2,000 members, every one in partition 0 of the file's 2 (its repeated id makes it 6.2 MB).
    members = [user_id for n in range(10_000) if zlib.crc32(user_id := f"m{n}".encode()) % 2 == 0][:2000]
    body = (REPEATED + b"\n") * 200_000 + b"".join(user_id + b"\n" for user_id in members)
    subject = importer(Files(), Heard(), AudienceRepository(), Users([user_id.decode() for user_id in members]))

    parsed = subject.build_version(APP, streamed(body), in_time)

    layout = parsed.layout
    assert (layout.partitions, parsed.counts.members) == (2, 2000)
    assert largest_bucket_bytes(subject.repository, layout) <= 4096  # an eventually consistent read: half a unit


def largest_bucket_bytes(repository: AudienceRepository, layout: Layout) -> int:
    """The largest of the version's bucket items, by DynamoDB's item size (a lookup reads one, and the pointer)."""
    found = repository.read_buckets(APP, layout.version, range(layout.bucket_total))
    return max(
        item_size(AudienceBucketRecord(pk=audience_bucket_pk(APP, layout.version, number), sk=AUDIENCE_BUCKET_SK,
                                       hashes=hashes or None).serialize())
        for number, hashes in found.items()
    )  # fmt: skip


def killed_once_removing(repository: AudienceRepository) -> None:
    """The next removal of buckets dies (the function's time runs out in a large version's removal)."""
    removals = repository.delete_buckets

    def killed_removing(app_id: str, layout: Layout) -> None:
        repository.delete_buckets = removals  # type: ignore[method-assign]
        raise Killed()

    repository.delete_buckets = killed_removing  # type: ignore[method-assign]


def version_items(layout: Layout) -> int:
    return len(list(AudienceBucketRecord.query(audience_bucket_pk(APP, layout.version, 0))))


def test_a_retry_after_a_newer_file_flipped_removes_the_version_its_own_flip_replaced(store: StoreSettings) -> None:
    """File 02's import flips the audience and dies removing file 01's version; file 03's import flips it next
    and dies too before it removes anything (else it would remove every version the record notes). Lambda's retry
    of file 02 then removes file 01's version, as its run would have, and nothing of file 03's. The overlap needs
    killed runs, which the local stack cannot stage."""
    files, heard, repository, subject, first = imported_once()
    assert first.layout is not None
    killed_once_removing(repository)
    files.body = b"u2\n"
    event = files.event("02")
    with pytest.raises(Killed):
        subject.handle(event, RUN)
    second = repository.get(APP, "race", consistent=True)
    assert second is not None
    assert second.layout is not None
    files.body = b"u1\nu2\n"
    newest = files.event("03")
    killed_once_removing(repository)
    with pytest.raises(Killed):
        subject.handle(newest, Invocation("request-3", lambda: 900.0))
    assert version_items(first.layout) == 1

    retry = subject.handle(event, RUN)  # Lambda retries under the same request id
    again = subject.handle(event, RUN)  # and once more: nothing is left to do

    assert [(item.outcome, item.reason) for item in (retry, again)] == [("skipped", "superseded"), ("skipped", None)]
    assert version_items(first.layout) == 0
    current = repository.get(APP, "race", consistent=True)
    assert current is not None
    assert current.layout is not None
    # File 03's version is whole; file 02's is left to file 03's retry, which removes it.
    assert current.unremoved == {"03".ljust(64, "0"): second.layout}
    assert files.lists[current.layout.members_key] == b"u1\nu2\n"
    assert version_items(current.layout) == 1
    assert subject.handle(newest, Invocation("request-3", lambda: 900.0)).outcome == "imported"
    assert list(files.lists) == [current.layout.members_key]
    assert version_items(second.layout) == 0
    after = repository.get(APP, "race", consistent=True)
    assert after is not None
    assert after.unremoved == {}
    assert heard.events == [("imported", "race")] * 3  # the retries announce nothing


def test_a_late_event_of_a_file_imported_before_the_deletion_is_skipped_not_refused(store: StoreSettings) -> None:
    files, heard, repository, subject, current = imported_once()
    assert repository.tombstone(APP, current, NOW)

    # S3 delivers file 01's event again, and an older file's late: neither came after the deletion.
    duplicate = subject.handle(files.event("01"), Invocation("request-2", lambda: 900.0))
    older = subject.handle(files.event("00F"), Invocation("request-3", lambda: 900.0))

    assert [(item.outcome, item.reason) for item in (duplicate, older)] == [("skipped", "superseded")] * 2
    tombstone = repository.get(APP, "race", consistent=True)
    assert tombstone is not None
    assert (tombstone.status, tombstone.refused_key, tombstone.refused_sequencer, tombstone.last_failure) == (
        AudienceStatus.DELETED, None, None, None,
    )  # fmt: skip
    assert heard.events == [("imported", "race")]
    # A file later than the deletion is refused.
    files.body = b"u2\n"
    assert subject.handle(files.event("02"), RUN).outcome == "refused"
    assert heard.events == [("imported", "race"), ("failed", "audience_deleted")]


def test_a_claimed_file_failing_after_its_audience_was_deleted_leaves_the_tombstone_and_is_refused(
    store: StoreSettings,
) -> None:
    """The deletion lands between the claim of file 02 and its failure: a race the local stack cannot stage."""
    files, heard, repository, subject, _ = imported_once()

    def deleted_then_unreadable() -> None:
        claimed = repository.get(APP, "race", consistent=True)
        assert claimed is not None
        assert repository.tombstone(APP, claimed, NOW)  # DELETE /v1/audiences/race while file 02 is read
        raise ObjectUnreadable("gone")

    files.body = b"u2\n"
    files.on_open = deleted_then_unreadable
    outcome = subject.handle(files.event("02"), Invocation("request-2", lambda: 900.0))

    assert (outcome.outcome, outcome.reason) == ("refused", "audience_deleted")
    tombstone = repository.get(APP, "race", consistent=True)
    assert tombstone is not None
    assert tombstone.last_failure is not None
    # Still a tombstone, not counted, holding the refusal rather than the import's failure.
    assert (tombstone.status, tombstone.counted, tombstone.version) == (AudienceStatus.DELETED, False, None)
    assert (tombstone.last_failure.code, tombstone.failed_sequencer) == ("audience_deleted", None)
    assert (tombstone.refused_key, tombstone.refused_sequencer) == (KEY, "02".ljust(64, "0"))
    assert heard.events == [("imported", "race"), ("failed", "audience_deleted")]
    # Lambda's retry of file 02 refuses it again, quietly.
    assert subject.handle(files.event("02"), Invocation("request-2", lambda: 900.0)).outcome == "refused"
    assert heard.events == [("imported", "race"), ("failed", "audience_deleted")]


class RefusalAlwaysLoses(AudienceRepository):
    """Before each conditional write of a refused new name, an older file's event claims the name, and lets go of
    it (its object replaced) right after: the write loses every time, and every read again finds the name free.
    A race the local stack cannot stage."""

    def __init__(self) -> None:
        self.tries = 0

    def record_refused_new(
        self, app_id: str, name: str, failure: Failure, sequencer: str, now: datetime
    ) -> Literal["recorded", "raced", "lifted"]:
        self.tries += 1
        rival = Attempt(app_id, name, KEY, f"00{self.tries}".ljust(64, "0"), f"rival-{self.tries}", now)
        assert self.claim_new(rival, 100, recount=False) == "claimed"
        written = super().record_refused_new(app_id, name, failure, sequencer, now)
        assert self.release_unstarted(app_id, name, rival.sequencer, now)
        return written


def test_a_refusal_whose_write_keeps_losing_raises_after_three_tries_and_writes_nothing(
    store: StoreSettings,
) -> None:
    AppRepository().create(APP, "Acme", "hash", None, NOW)
    files, heard, repository = Files(), Heard(), RefusalAlwaysLoses()
    subject = importer(files, heard, repository)
    files.body = b"u1\n"
    too_large = ObjectCreated("bucket", KEY, MAX_OBJECT_BYTES + 1, "01", etag_of(files.body))

    # The invocation fails, so that Lambda runs it again.
    with pytest.raises(RecordContended, match="kept changing"):
        subject.handle(too_large, RUN)

    assert repository.tries == 3
    assert repository.get(APP, "race", consistent=True) is None
    assert audiences_counted() == 0
    assert heard.events == []


class DeletesLeftUnprocessed:
    """BatchWriteItem answers every delete it is sent as unprocessed (throttled on each attempt, retries included);
    every other call goes through. ``asked`` holds the keys of the buckets it was asked to delete."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asked: set[str] = set()
        self.broken = True
        dispatch = Connection.dispatch

        def dispatched(connection: Connection, operation: str, arguments: dict[str, Any]) -> dict[str, Any]:
            requests = [item for items in arguments.get("RequestItems", {}).values() for item in items]
            deletes = [item["DeleteRequest"]["Key"]["pk"]["S"] for item in requests if "DeleteRequest" in item]
            if self.broken and operation == "BatchWriteItem" and deletes:
                self.asked |= set(deletes)
                return {"UnprocessedItems": arguments["RequestItems"]}
            answer: dict[str, Any] = dispatch(connection, operation, arguments)
            return answer

        monkeypatch.setattr(Connection, "dispatch", dispatched)
        monkeypatch.setattr(audience_repository, "BATCH_BACKOFF_SECONDS", 0.0)


def bucket_keys(layout: Layout) -> set[str]:
    return {audience_bucket_pk(APP, layout.version, bucket) for bucket in range(layout.bucket_total)}


def stored_buckets(layout: Layout) -> int:
    return sum(1 for key in bucket_keys(layout) for _ in AudienceBucketRecord.query(key))


def test_a_replaced_version_whose_removal_fails_is_tried_whole_then_fails_the_invocation_and_keeps_its_note(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 60 buckets a version: BatchWriteItem deletes them in 3 chunks.
    monkeypatch.setattr(buckets, "buckets_per_partition", lambda largest_partition_members: 60)
    files, heard, repository, subject, first = imported_once()
    assert first.layout is not None
    counted: list[str] = []
    subject.metric = counted.append
    left = DeletesLeftUnprocessed(monkeypatch)
    files.body = b"u2\n"
    event = files.event("02")

    # The invocation fails, so that Lambda runs it again (and then hands it to the OnFailure destination).
    with pytest.raises(VersionNotRemoved):
        subject.handle(event, RUN)

    assert left.asked == bucket_keys(first.layout)  # every chunk was tried, past the first that failed
    assert stored_buckets(first.layout) == 60
    assert first.layout.members_key not in files.lists  # the member list was removed all the same
    assert counted == ["AudienceVersionRemovalFailed"]
    current = repository.get(APP, "race", consistent=True)
    assert current is not None
    assert current.layout is not None
    assert current.unremoved == {"02".ljust(64, "0"): first.layout}  # the note stays, for the retry
    # The flip was finished before the removal: the pointer moved, the import was announced.
    assert repository.pointer(APP, "race", consistent=True) == current.layout
    assert heard.events == [("imported", "race")] * 2

    # Lambda's retry, once BatchWriteItem deletes again: the removal is done, nothing is announced again.
    left.broken = False
    assert subject.handle(event, RUN).outcome == "imported"
    assert stored_buckets(first.layout) == 0
    after = repository.get(APP, "race", consistent=True)
    assert after is not None
    assert after.unremoved == {}
    assert heard.events == [("imported", "race")] * 2
    assert counted == ["AudienceVersionRemovalFailed"]


class Executions:
    """Step Functions' names of executions: a start with a name that exists answers False (ExecutionAlreadyExists)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def start(self, name: str, payload: dict[str, Any]) -> bool:
        if name in self.names:
            return False
        self.names.append(name)
        return True


def test_a_duplicate_of_a_fan_out_file_whose_record_went_gives_the_name_back_when_its_execution_exists(
    store: StoreSettings,
) -> None:
    """File 01 (over the fan-out's threshold) started its execution; the app deleted the audience meanwhile and
    lifted the tombstone. A late duplicate event of file 01 claims the name afresh, but its execution's name (the
    key and the sequencer's) exists: nothing runs for this claim, so the name is not left importing and counted."""
    AppRepository().create(APP, "Acme", "hash", None, NOW)
    files, heard, repository = Files(), Heard(), AudienceRepository()
    executions = Executions()
    subject = importer(files, heard, repository)
    subject.fan_out = FanOut(threshold_bytes=1, range_bytes=8, start=executions.start)
    files.body = b"u1\nu2\n"
    event = files.event("01")
    assert subject.handle(event, RUN).outcome == "started"
    # Lambda's retry of that invocation (it died after the start) keeps the claim: the execution runs it.
    assert subject.handle(event, RUN).outcome == "skipped"
    claimed = repository.get(APP, "race", consistent=True)
    assert claimed is not None
    assert (claimed.status, claimed.counted, audiences_counted()) == (AudienceStatus.IMPORTING, True, 1)
    tombstone = repository.tombstone(APP, claimed, NOW)
    assert tombstone is not None
    assert repository.lift(APP, tombstone, NOW)

    late = subject.handle(event, Invocation("request-2", lambda: 900.0))

    assert late.outcome == "skipped"
    assert len(executions.names) == 1
    assert repository.get(APP, "race", consistent=True) is None
    assert audiences_counted() == 0
    assert heard.events == []


def test_a_pointer_move_that_meets_a_transaction_conflict_is_tried_again_and_the_import_succeeds(
    store: StoreSettings, conflicts: list[int]
) -> None:
    """Another transaction holds the record when the pointer moves (DynamoDB cancels the move with
    TransactionConflict): the flip is done, so the move is read and tried again rather than failing the import."""
    files, heard, repository, subject, first = imported_once()
    files.body = b"u1\nu2\n"
    conflicts[0] = 1  # the pointer's move is the import's first transaction (the claim and the flip are updates)

    outcome = subject.handle(files.event("02"), RUN)

    assert outcome.outcome == "imported"
    assert conflicts[0] == 0
    current = repository.get(APP, "race", consistent=True)
    assert current is not None
    assert current.layout is not None
    assert repository.pointer(APP, "race", consistent=True) == current.layout
    assert first.layout is not None
    assert first.layout.members_key not in files.lists  # the replaced version went, after the pointer moved
    assert heard.events == [("imported", "race")] * 2


class FlipAlwaysLoses(AudienceRepository):
    """Before each flip of the file, a file older than it and newer than the audience's flips the audience first:
    the flip's condition (the version just read) fails every time, while every read shows a file it may replace.
    A race the local stack cannot stage."""

    def __init__(self) -> None:
        self.rivals = 0

    def publish(self, flip: Flip, replacing: Layout | None) -> Published | None:
        if flip.sequencer.startswith("09"):
            self.rivals += 1
            layout = Layout(version=f"rival{self.rivals}", partitions=1, buckets_per_partition=1, members_key="none")
            rival = replace(flip, layout=layout, sequencer=f"0{self.rivals + 1}".ljust(64, "0"))
            assert super().publish(rival, replacing) is not None
        return super().publish(flip, replacing)


def test_a_flip_that_keeps_losing_to_older_files_fails_as_contended_not_superseded(store: StoreSettings) -> None:
    AppRepository().create(APP, "Acme", "hash", None, NOW)
    files, heard, repository = Files(), Heard(), FlipAlwaysLoses()
    subject = importer(files, heard, repository)
    counted: list[str] = []
    subject.metric = counted.append
    files.body = b"u1\n"
    assert subject.handle(files.event("01"), RUN).outcome == "imported"
    first = repository.get(APP, "race", consistent=True)
    assert first is not None
    assert first.layout is not None
    files.body = b"u1\nu2\n"

    outcome = subject.handle(files.event("09"), RUN)

    assert (outcome.outcome, outcome.reason) == ("failed", "contended")
    assert repository.rivals == 5
    assert counted == ["AudienceImportContended"]
    audience = repository.get(APP, "race", consistent=True)
    assert audience is not None
    assert audience.last_failure is not None
    assert (audience.last_failure.code, audience.failed_sequencer) == ("contended", "09".ljust(64, "0"))
    assert audience.version == "rival5"  # the last rival's flip stands: the file's version was never flipped to
    assert list(files.lists) == [first.layout.members_key]  # the file's own version was removed
    assert heard.events == [("imported", "race"), ("failed", "contended")]
