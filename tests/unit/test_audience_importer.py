"""The importer's ordering rules on moto's DynamoDB: a slower import of an older file never replaces a newer one."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from steward.apps.repository import AppRepository
from steward.audiences.importer import AudienceImporter, ObjectCreated
from steward.audiences.models import Audience, Failure
from steward.audiences.repository import AudienceRepository
from steward.settings import StoreSettings
from steward.tables import AudienceBucketRecord, audience_bucket_pk

APP = "acme"
KEY = f"imports/{APP}/race.csv"
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


class Files:
    def __init__(self) -> None:
        self.body = b""
        self.lists: dict[str, bytes] = {}

    def chunks(self, bucket: str, key: str) -> Iterator[bytes]:
        yield self.body

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

    def imported(self, app_id: str, audience: Audience) -> None:
        self.events.append(("imported", audience.name))

    def failed(self, app_id: str, name: str, failure: Failure, sequencer: str | None) -> None:
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
        lambda name: None, lambda: NOW, None,
    )  # fmt: skip


def an_app() -> tuple[Files, Heard, AudienceRepository, AudienceImporter]:
    AppRepository().create(APP, "Acme", "hash", None, NOW)
    files, heard, repository = Files(), Heard(), AudienceRepository()
    return files, heard, repository, importer(files, heard, repository)


def test_an_older_import_that_finishes_last_is_discarded(store: StoreSettings) -> None:
    files, heard, repository, subject = an_app()
    # The older file's import claims first and builds its version slowly...
    files.body = b"u-old\n"
    subject.handle(ObjectCreated("bucket", KEY, 6, "00A1"))
    files.body = b"u-older\n"
    slow = subject.build_version(APP, "bucket", KEY, 8)
    # ...while the newer file is imported, and only then does the older one try to flip.
    files.body = b"u-new\n"
    assert subject.handle(ObjectCreated("bucket", KEY, 6, "00A3")).outcome == "imported"

    flipped = repository.publish(APP, "race", slow.layout, slow.counts, [], KEY, "00A2".ljust(64, "0"), NOW)

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
    subject.handle(ObjectCreated("bucket", KEY, 3, "0055AED6DCD90281E5"))

    # Shorter but larger once padded: newer. Longer but smaller once padded: older.
    files.body = b"u2\n"
    newer = subject.handle(ObjectCreated("bucket", KEY, 3, "0055AED6DCD90281F"))
    older = subject.handle(ObjectCreated("bucket", KEY, 3, "0055AED6DCD90281E4FF"))

    assert (newer.outcome, older.outcome) == ("imported", "skipped")


def test_the_registered_check_reads_the_apps_users_only_when_that_is_cheaper(store: StoreSettings) -> None:
    files, heard, repository, _ = an_app()
    few = Users(["u1", "u2"])
    many = Users([f"u{n}" for n in range(10)])
    files.body = b"u1\nu2\nu3\nstranger\n"

    read_once = importer(files, heard, repository, few).handle(ObjectCreated("bucket", KEY, 16, "01"))
    looked_up = importer(files, heard, repository, many).handle(ObjectCreated("bucket", KEY, 16, "02"))

    # 2 users for 4 distinct ids: read once, no lookup. 10 users: the read stops at the 5th, then 4 lookups.
    assert (few.read, few.looked_up) == (2, 0)
    assert (many.read, many.looked_up) == (5, 4)
    assert read_once.counts is not None
    assert looked_up.counts is not None
    assert (read_once.counts.members, looked_up.counts.members) == (2, 3)
