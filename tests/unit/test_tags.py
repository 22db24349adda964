"""Device tags against moto: single and bulk changes, exact counts, listings, device deletion, races, isolation."""

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest
from pynamodb.connection.base import Connection
from pynamodb.exceptions import TransactWriteError

from steward.composition import Services
from steward.devices.models import Device, IdentifyDevice, Transport
from steward.devices.repository import DeviceRepository
from steward.devices.service import DeviceService
from steward.errors import Conflict, InvalidInput, NotFound
from steward.pagination import Page, encode_cursor
from steward.settings import StoreSettings
from steward.sharding import partition_for, shard_key, shard_of
from steward.tables import DeviceRecord, TagMemberRecord, TagRecord, tag_members_collection, tags_pk
from steward.tags.models import MAX_TAGS_PER_DEVICE, Tag
from steward.tags.repository import TagChange, TagRepository
from steward.tags.service import TagService
from steward.transactions import MEMBERSHIPS_PER_TRANSACTION
from tests.support.service import SHARD_COUNT, call, collect_pages, load_event, refusal, sort_keys_in_shards

A, B = "app-a", "app-b"


@pytest.fixture
def devices(store: StoreSettings) -> DeviceService:
    return Services(SHARD_COUNT).devices


@pytest.fixture
def tags(store: StoreSettings) -> TagService:
    return Services(SHARD_COUNT).tags


def identify(devices: DeviceService, device_id: str, app_id: str = A, **changes: Any) -> Device:
    request = IdentifyDevice(user_id=changes.pop("user_id", "u1"), transport=Transport.FCM, **changes)
    return devices.identify(app_id, device_id, request)


def identify_many(devices: DeviceService, count: int, app_id: str = A, prefix: str = "d") -> list[str]:
    ids = [f"{prefix}{number:04d}" for number in range(count)]
    for device_id in ids:
        identify(devices, device_id, app_id)
    return ids


def stored_count(app_id: str, tag: str) -> int | None:
    try:
        return int(TagRecord.get(tags_pk(app_id), tag, consistent_read=True).device_count)
    except TagRecord.DoesNotExist:
        return None


def member_ids(app_id: str, tag: str) -> set[str]:
    found = sort_keys_in_shards(TagMemberRecord, tag_members_collection(app_id, tag))
    assert len(found) == len(set(found))
    return set(found)


def tagged_ids(app_id: str, tag: str) -> set[str]:
    """Devices of the app whose tags set holds the tag, read from the devices themselves."""
    found = set()
    for shard in range(SHARD_COUNT):
        for record in DeviceRecord.query(shard_key(app_id, shard), consistent_read=True):
            if tag in (record.tags or ()):
                found.add(record.sk)
    return found


def assert_consistent(app_id: str, tag: str, expected: set[str]) -> None:
    """The tag's count, its member items and the devices' tags sets all say ``expected``."""
    assert tagged_ids(app_id, tag) == expected
    assert member_ids(app_id, tag) == expected
    assert stored_count(app_id, tag) == len(expected)


def version(app_id: str, device_id: str) -> int:
    return int(DeviceRecord.get(partition_for(app_id, device_id, SHARD_COUNT), device_id, consistent_read=True).version)


def after_first_device_read(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], object]) -> list[int]:
    """Run ``meanwhile`` as soon as the next device read returns: another request between a read and its write.

    Returns the count of device reads, kept up to date.
    """
    original = DeviceRepository._get_record
    reads = [0]

    def get_record(self: DeviceRepository, app_id: str, device_id: str) -> DeviceRecord | None:
        record = original(self, app_id, device_id)
        reads[0] += 1
        if reads[0] == 1:
            meanwhile()
        return record

    monkeypatch.setattr(DeviceRepository, "_get_record", get_record)
    return reads


# One device.


def test_tag_and_untag_one_device(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "d1")
    before = version(A, "d1")

    tagged = tags.tag(A, "d1", "vip")

    assert tagged.tags == ["vip"]
    assert devices.get(A, "d1") == tagged
    assert version(A, "d1") == before + 1
    assert_consistent(A, "vip", {"d1"})

    untagged = tags.untag(A, "d1", "vip")

    assert untagged.tags == []
    assert devices.get(A, "d1") == untagged
    assert version(A, "d1") == before + 2
    assert_consistent(A, "vip", set())
    assert stored_count(A, "vip") == 0
    assert [(tag.tag, tag.device_count) for tag in tags.list_tags(A, None, 10).items] == [("vip", 0)]


def test_tagging_again_changes_nothing(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "d1")
    first = tags.tag(A, "d1", "vip")
    written = version(A, "d1")

    again = tags.tag(A, "d1", "vip")

    assert again == first
    assert version(A, "d1") == written
    assert_consistent(A, "vip", {"d1"})


def test_unknown_device_or_missing_tag(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "d1")
    tags.tag(A, "d1", "other")

    unknown_tag = refusal(NotFound, tags.tag, A, "ghost", "vip")
    unknown_untag = refusal(NotFound, tags.untag, A, "ghost", "vip")
    not_carried = refusal(NotFound, tags.untag, A, "d1", "vip")

    assert (unknown_tag.code, unknown_tag.field) == ("device_not_found", "device_id")
    assert unknown_untag.code == "device_not_found"
    assert (not_carried.code, not_carried.field) == ("tag_not_on_device", "tag")
    assert stored_count(A, "vip") is None  # the refused transactions created no tag
    assert devices.repository.get(A, "ghost") is None
    assert devices.get(A, "d1").tags == ["other"]


def test_a_device_carries_at_most_twenty_tags(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "full")
    identify(devices, "roomy")
    for number in range(MAX_TAGS_PER_DEVICE):
        tags.tag(A, "full", f"t{number:02d}")
    written = version(A, "full")

    with pytest.raises(Conflict) as refused:
        tags.tag(A, "full", "one-more")
    outcome = tags.change_devices(A, "one-more", ["full", "roomy"], [])

    assert (refused.value.code, refused.value.field) == ("too_many_tags", "tag")
    assert (outcome.added, outcome.too_many_tags, outcome.device_count) == (1, ["full"], 1)
    assert len(devices.get(A, "full").tags) == MAX_TAGS_PER_DEVICE
    assert version(A, "full") == written
    assert tags.tag(A, "full", "t00").tags == devices.get(A, "full").tags  # re-tagging a full device is fine
    assert_consistent(A, "one-more", {"roomy"})
    tags.untag(A, "full", "t00")
    assert "one-more" in tags.tag(A, "full", "one-more").tags


# Bulk.


def test_bulk_changes_keep_counts_exact(devices: DeviceService, tags: TagService) -> None:
    ids = identify_many(devices, 150)  # several transactions of at most 49 devices

    first = tags.change_devices(A, "vip", ids[:120], [])

    assert (first.added, first.removed, first.unchanged, first.device_count) == (120, 0, 0, 120)
    assert (first.not_found, first.too_many_tags, first.invalid, first.failed) == ([], [], [], [])
    assert_consistent(A, "vip", set(ids[:120]))

    add = [*ids[100:150], "ghost-1", ids[140], 42, ""]  # 20 already tagged, 30 new, one repeat
    remove = [*ids[0:70], "ghost-2", None]  # all tagged
    mixed = tags.change_devices(A, "vip", add, remove)

    assert (mixed.added, mixed.removed, mixed.unchanged) == (30, 70, 21)
    assert sorted(mixed.not_found) == ["ghost-1", "ghost-2"]
    assert mixed.invalid == ["42", "", "null"]
    assert mixed.failed == []
    expected = set(ids[70:150])
    assert mixed.device_count == len(expected) == 80
    assert_consistent(A, "vip", expected)

    undo = tags.change_devices(A, "vip", [], ids)

    assert (undo.removed, undo.unchanged, undo.device_count) == (80, 70, 0)
    assert_consistent(A, "vip", set())
    assert [tag.tag for tag in tags.list_tags(A, None, 10).items] == ["vip"]  # kept with 0 for the cleanup job


def test_bulk_writes_one_transaction_per_49_devices(
    devices: DeviceService, tags: TagService, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = identify_many(devices, 100)
    sizes: list[int] = []
    original = TagRepository.change

    def change(self: TagRepository, app_id: str, tag: str, changes: list[TagChange], now: Any) -> set[str]:
        sizes.append(len(changes))
        return original(self, app_id, tag, changes, now)

    monkeypatch.setattr(TagRepository, "change", change)

    tags.change_devices(A, "vip", ids, [])

    assert MEMBERSHIPS_PER_TRANSACTION == 49
    assert sizes == [49, 49, 2]
    assert_consistent(A, "vip", set(ids))


def test_bulk_input_limits(devices: DeviceService, tags: TagService) -> None:
    ids = identify_many(devices, 3)

    cases = [(["x"] * 1001, [], "add"), ([], ["x"] * 1001, "remove"), (["x"] * 600, ["y"] * 401, None)]
    for add, remove, field in cases:
        with pytest.raises(InvalidInput) as too_large:
            tags.change_devices(A, "vip", add, remove)
        assert (too_large.value.code, too_large.value.field) == ("batch_too_large", field)
    with pytest.raises(InvalidInput) as both:
        tags.change_devices(A, "vip", [ids[0], ids[1]], [ids[1]])

    assert (both.value.code, both.value.field) == ("id_in_add_and_remove", "remove")
    assert stored_count(A, "vip") is None  # nothing was written
    limit = tags.change_devices(A, "vip", [*ids, *(f"ghost-{n}" for n in range(997))], [])
    assert (limit.added, len(limit.not_found)) == (3, 997)


def test_bulk_reports_invalid_items_as_sent(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "ok")

    outcome = tags.change_devices(A, "vip", ["ok", "", "bad\nid", "é" * 513, 7, 1.5, True, {"id": "x"}, ["x"]], [])

    assert outcome.added == 1
    # Quoted as sent, long ones clipped (an answer never grows with the request).
    assert outcome.invalid == ["", "bad\nid", "é" * 255 + "…", "7", "1.5", "true", '{"id": "x"}', '["x"]']


def test_bulk_remove_from_unknown_tag_creates_nothing(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "d1")

    outcome = tags.change_devices(A, "never", [], ["d1", "ghost"])

    assert (outcome.removed, outcome.unchanged, outcome.not_found, outcome.device_count) == (0, 1, ["ghost"], 0)
    assert stored_count(A, "never") is None
    assert tags.list_tags(A, None, 10).items == []


def test_bulk_rereads_devices_changed_meanwhile(
    devices: DeviceService, tags: TagService, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = identify_many(devices, 10)
    original = TagRepository.device_tags
    reads: list[int] = []

    def device_tags(self: TagRepository, app_id: str, device_ids: Any) -> dict[str, frozenset[str]]:
        stored = original(self, app_id, device_ids)
        reads.append(len(device_ids))
        if len(reads) == 1:  # other requests, between our read and our transaction
            tags.tag(A, ids[3], "vip")
            devices.logout(A, ids[4], None)
            for number in range(MAX_TAGS_PER_DEVICE):
                tags.tag(A, ids[5], f"f{number}")
            tags.untag(A, ids[9], "vip")  # was tagged before the request
        return stored

    tags.tag(A, ids[9], "vip")
    monkeypatch.setattr(TagRepository, "device_tags", device_tags)

    outcome = tags.change_devices(A, "vip", ids[:9], [ids[9]])

    assert reads == [10, 4]  # then only the refused devices again
    assert (outcome.added, outcome.removed, outcome.unchanged) == (6, 0, 2)
    assert (outcome.not_found, outcome.too_many_tags, outcome.failed) == ([ids[4]], [ids[5]], [])
    expected = {ids[n] for n in (0, 1, 2, 3, 6, 7, 8)}
    assert outcome.device_count == len(expected)
    assert_consistent(A, "vip", expected)


def test_a_failed_chunk_is_reported_and_the_others_kept(
    devices: DeviceService, tags: TagService, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = identify_many(devices, 120)
    original = TagRepository.change
    calls: list[list[str]] = []

    def change(self: TagRepository, app_id: str, tag: str, changes: list[TagChange], now: Any) -> set[str]:
        calls.append([change.device_id for change in changes])
        if len(calls) == 2:
            raise TransactWriteError("Failed to write transaction items", RuntimeError("throttled"))
        return original(self, app_id, tag, changes, now)

    monkeypatch.setattr(TagRepository, "change", change)

    outcome = tags.change_devices(A, "vip", ids, [])

    assert outcome.failed == calls[1]
    assert len(outcome.failed) == 49
    assert (outcome.added, outcome.device_count) == (71, 71)
    assert_consistent(A, "vip", set(ids) - set(outcome.failed))
    monkeypatch.setattr(TagRepository, "change", original)
    again = tags.change_devices(A, "vip", ids, [])
    assert (again.added, again.unchanged, again.failed) == (49, 71, [])
    assert_consistent(A, "vip", set(ids))


def test_devices_refused_every_time_end_up_failed(
    devices: DeviceService, tags: TagService, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = identify_many(devices, 3)
    monkeypatch.setattr(TagRepository, "change", lambda *_: {ids[1]})  # always a newer concurrent change

    outcome = tags.change_devices(A, "vip", ids, [])

    assert (outcome.added, outcome.failed, outcome.device_count) == (0, ids, 0)


# Transient refusals: another transaction held the tag's count.


def test_single_changes_retry_a_transaction_conflict(
    devices: DeviceService, tags: TagService, conflicts: list[int]
) -> None:
    identify(devices, "d1")
    conflicts[0] = 1
    assert tags.tag(A, "d1", "vip").tags == ["vip"]
    conflicts[0] = 1
    assert tags.untag(A, "d1", "vip").tags == []
    conflicts[0] = 10

    with pytest.raises(Conflict) as gave_up:
        tags.tag(A, "d1", "vip")

    assert gave_up.value.code == "concurrent_update"
    assert_consistent(A, "vip", set())


def test_bulk_conflict_reports_the_chunk_as_failed(
    devices: DeviceService, tags: TagService, conflicts: list[int]
) -> None:
    ids = identify_many(devices, 60)
    conflicts[0] = 1

    outcome = tags.change_devices(A, "vip", ids, [])

    assert (outcome.failed, outcome.added, outcome.device_count) == (ids[:49], 11, 11)
    assert_consistent(A, "vip", set(ids[49:]))


def test_device_delete_retries_a_transaction_conflict(
    devices: DeviceService, tags: TagService, conflicts: list[int]
) -> None:
    identify(devices, "d1")
    tags.tag(A, "d1", "vip")
    conflicts[0] = 2

    devices.logout(A, "d1", None)

    assert devices.repository.get(A, "d1") is None
    assert_consistent(A, "vip", set())


# Listings.


def test_list_tags_paginates_with_counts(devices: DeviceService, tags: TagService) -> None:
    ids = identify_many(devices, 7)
    for number in range(len(ids)):
        tags.change_devices(A, f"tag-{number}", ids[: number + 1], [])

    found = collect_pages(lambda cursor: tags.list_tags(A, cursor, 3), 3)

    assert [(tag.tag, tag.device_count) for tag in found] == [(f"tag-{n}", n + 1) for n in range(7)]
    assert all(isinstance(tag, Tag) and tag.created_at <= tag.updated_at for tag in found)
    for bad in ("!!", encode_cursor({"after": ""}), encode_cursor({"shard": 1})):
        with pytest.raises(InvalidInput) as tampered:
            tags.list_tags(A, bad, 3)
        assert tampered.value.code == "invalid_cursor"


def test_list_tag_devices_across_shards(devices: DeviceService, tags: TagService) -> None:
    ids = identify_many(devices, 17)
    tagged = ids[:13]
    tags.change_devices(A, "vip", tagged, [])
    assert len({shard_of(device_id, SHARD_COUNT) for device_id in tagged}) == SHARD_COUNT

    found = collect_pages(lambda cursor: tags.list_devices(A, "vip", cursor, 4), 4)

    assert sorted(device.device_id for device in found) == tagged
    assert all(device == devices.get(A, device.device_id) for device in found)
    for bad in ("!!", encode_cursor({"shard": SHARD_COUNT}), encode_cursor({"shard": 0, "after": 5})):
        with pytest.raises(InvalidInput) as tampered:
            tags.list_devices(A, "vip", bad, 4)
        assert tampered.value.code == "invalid_cursor"


def test_list_tag_devices_of_unknown_or_empty_tag(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "d1")
    tags.tag(A, "d1", "was")
    tags.untag(A, "d1", "was")

    with pytest.raises(NotFound) as unknown:
        tags.list_devices(A, "never", None, 10)

    assert (unknown.value.code, unknown.value.field) == ("tag_not_found", "tag")
    assert tags.list_devices(A, "was", None, 10) == Page[Device](items=[], next_cursor=None)


def test_list_tag_devices_drops_devices_without_the_tag(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "d1")
    identify(devices, "stale")
    tags.tag(A, "d1", "vip")
    # A member item whose device does not carry the tag (as an eventually consistent read may see it).
    record = TagMemberRecord(pk=partition_for(tag_members_collection(A, "vip"), "stale", SHARD_COUNT), sk="stale")
    record.created_at = record.updated_at = devices.get(A, "d1").created_at
    record.save()

    assert [device.device_id for device in tags.list_devices(A, "vip", None, 10).items] == ["d1"]


# Other device operations.


def test_deleting_a_device_releases_its_tags(devices: DeviceService, tags: TagService) -> None:
    for device_id in ("leaver", "stayer"):
        identify(devices, device_id)
    tags.change_devices(A, "vip", ["leaver", "stayer"], [])
    tags.tag(A, "leaver", "solo")

    devices.logout(A, "leaver", "u1")

    assert devices.repository.get(A, "leaver") is None
    assert_consistent(A, "vip", {"stayer"})
    assert_consistent(A, "solo", set())
    assert stored_count(A, "solo") == 0
    assert [(tag.tag, tag.device_count) for tag in tags.list_tags(A, None, 10).items] == [("solo", 0), ("vip", 1)]


def test_deleting_a_tagged_device_keeps_the_ownership_errors(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "d1", user_id="owner")
    tags.tag(A, "d1", "vip")

    with pytest.raises(Conflict) as other_user:
        devices.logout(A, "d1", "someone-else")
    devices.logout(A, "d1", "owner")
    with pytest.raises(NotFound) as gone:
        devices.logout(A, "d1", "owner")

    assert other_user.value.code == "device_owned_by_other_user"
    assert gone.value.code == "device_not_found"
    assert_consistent(A, "vip", set())


def test_deleting_an_untagged_device_is_one_delete_item(
    devices: DeviceService, tags: TagService, monkeypatch: pytest.MonkeyPatch
) -> None:
    identify(devices, "d1")
    tags.tag(A, "d1", "vip")
    tags.untag(A, "d1", "vip")
    calls: list[str] = []
    original = Connection._make_api_call

    def counted(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> dict[str, Any]:
        calls.append(operation_name)
        return original(self, operation_name, operation_kwargs)

    monkeypatch.setattr(Connection, "_make_api_call", counted)

    devices.logout(A, "d1", "u1")

    assert calls == ["DeleteItem"]
    assert stored_count(A, "vip") == 0


def test_delete_rereads_a_device_tagged_meanwhile(
    devices: DeviceService, tags: TagService, monkeypatch: pytest.MonkeyPatch
) -> None:
    identify(devices, "d1")
    tags.tag(A, "d1", "first")
    # After delete's read, before its transaction.
    reads = after_first_device_read(monkeypatch, lambda: tags.tag(A, "d1", "second"))

    devices.logout(A, "d1", None)

    assert reads[0] == 3  # the first read (stale), the re-read, and tags.tag's own read of the device
    assert devices.repository.get(A, "d1") is None
    assert_consistent(A, "first", set())
    assert_consistent(A, "second", set())


def test_dissociating_keeps_the_tags(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "d1")
    tags.tag(A, "d1", "vip")

    device = devices.dissociate(A, "d1", "u1")

    assert (device.user_id, device.tags) == (None, ["vip"])
    assert tags.list_devices(A, "vip", None, 10).items == [device]
    assert_consistent(A, "vip", {"d1"})


def test_identify_after_tagging_keeps_the_tags(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "d1")
    tags.tag(A, "d1", "vip")

    device = identify(devices, "d1", user_id="u2", attributes={"locale": "fr"})

    assert (device.user_id, device.attributes, device.tags) == ("u2", {"locale": "fr"}, ["vip"])
    assert devices.get(A, "d1") == device
    assert_consistent(A, "vip", {"d1"})


def test_identify_racing_a_tag_add_loses_neither(
    devices: DeviceService, tags: TagService, monkeypatch: pytest.MonkeyPatch
) -> None:
    identify(devices, "d1")
    # Lands between identify's read and its write.
    after_first_device_read(monkeypatch, lambda: tags.tag(A, "d1", "vip"))

    device = identify(devices, "d1", attributes={"app_version": "2.0"})

    assert (device.attributes, device.tags) == ({"app_version": "2.0"}, ["vip"])
    assert devices.get(A, "d1") == device
    assert_consistent(A, "vip", {"d1"})


@pytest.mark.usefixtures("atomic_moto")
def test_concurrent_identify_and_tags_lose_no_update(devices: DeviceService, tags: TagService) -> None:
    identify(devices, "d1")
    start = threading.Barrier(16)

    def work(number: int) -> str:
        start.wait()
        if number % 2 == 0:
            tags.tag(A, "d1", f"t{number}")
            return "tagged"
        try:
            identify(devices, "d1", attributes={"k": str(number)})
        except Conflict:  # identify's optimistic lock gave up: refused, so nothing to lose
            return "refused"
        return "identified"

    with ThreadPoolExecutor(max_workers=16) as pool:
        done = Counter(pool.map(work, range(16)))

    assert done["tagged"] == 8
    assert done["identified"] >= 1
    device = devices.get(A, "d1")
    assert device.tags == sorted(f"t{number}" for number in range(0, 16, 2))
    assert device.attributes["k"] in {str(number) for number in range(1, 16, 2)}
    for number in range(0, 16, 2):
        assert_consistent(A, f"t{number}", {"d1"})


@pytest.mark.usefixtures("atomic_moto")
def test_concurrent_single_and_bulk_changes_keep_counts_exact(devices: DeviceService, tags: TagService) -> None:
    ids = identify_many(devices, 60)
    start = threading.Barrier(8)
    failed: list[str] = []

    def work(number: int) -> None:
        start.wait()
        if number == 0:
            failed.extend(tags.change_devices(A, "vip", ids[0:40], []).failed)
        elif number == 1:
            failed.extend(tags.change_devices(A, "vip", ids[20:45], ids[50:55]).failed)
        elif number < 4:
            devices.logout(A, ids[number], None)
        else:
            for device_id in ids[number * 5 : number * 5 + 5]:  # ids[20:40]
                tags.tag(A, device_id, "vip")
                if number % 2:
                    tags.untag(A, device_id, "vip")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))

    tagged = tagged_ids(A, "vip")
    assert_consistent(A, "vip", tagged)
    assert not {ids[2], ids[3]} & tagged
    assert set(ids[0:2] + ids[4:20] + ids[40:45]) - set(failed) <= tagged
    assert not set(ids[45:]) & tagged


# The real handler, fed the sample events (an API Gateway path with ':' in the device id and the tag).


def test_tag_events_through_the_handler(api: ModuleType) -> None:
    call(api, load_event("http-api-identify-device.json"))

    tagged = call(api, load_event("tags_tag-device.json"))
    outcome = call(api, load_event("tags_bulk.json"))

    assert tagged[0] == 200
    assert (tagged[1]["device_id"], tagged[1]["tags"]) == ("fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH", ["plan:gold"])
    assert outcome == (
        200,
        {
            "added": 0,
            "removed": 0,
            "unchanged": 1,
            "not_found": ["fcm:unknown-token"],
            "too_many_tags": [],
            "invalid": ["42"],
            "failed": [],
            "device_count": 1,
        },
    )
    assert_consistent("demo-shop", "plan:gold", {"fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH"})


# Isolation.


def test_another_apps_same_named_tag_and_device_are_untouched(devices: DeviceService, tags: TagService) -> None:
    for app_id in (A, B):
        identify(devices, "shared", app_id)
        identify_many(devices, 6, app_id)
    identify(devices, "a-only", A)
    tags.change_devices(A, "vip", ["shared", "d0000", "d0001", "d0002", "d0003"], [])
    tags.tag(A, "a-only", "only-a")
    tags.tag(B, "shared", "vip")
    a_cursor = tags.list_devices(A, "vip", None, 1).next_cursor
    assert a_cursor is not None

    changed = tags.change_devices(B, "vip", ["d0004", "a-only"], ["shared", "d0000"])
    tags.untag(B, "d0004", "vip")
    devices.logout(B, "shared", None)
    foreign_device = refusal(NotFound, tags.tag, B, "a-only", "vip")
    foreign_untag = refusal(NotFound, tags.untag, B, "a-only", "only-a")
    foreign_tag = refusal(NotFound, tags.list_devices, B, "only-a", None, 10)

    assert (changed.added, changed.removed, changed.unchanged, changed.not_found) == (1, 1, 1, ["a-only"])
    assert changed.device_count == 1
    assert (foreign_device.code, foreign_untag.code) == ("device_not_found", "device_not_found")
    assert foreign_tag.code == "tag_not_found"
    assert_consistent(A, "vip", {"shared", "d0000", "d0001", "d0002", "d0003"})
    assert_consistent(A, "only-a", {"a-only"})
    assert_consistent(B, "vip", set())
    assert stored_count(B, "only-a") is None
    assert devices.get(A, "shared").tags == ["vip"]
    assert collect_pages(lambda cursor: tags.list_devices(B, "vip", cursor or a_cursor, 2), 2) == []
    assert [(tag.tag, tag.device_count) for tag in tags.list_tags(B, None, 10).items] == [("vip", 0)]
    assert [(tag.tag, tag.device_count) for tag in tags.list_tags(A, None, 10).items] == [("only-a", 1), ("vip", 5)]
