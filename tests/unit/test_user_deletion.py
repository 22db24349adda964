"""Deleting a user (DELETE /v1/users/{id}, and a retention purge with delete_user_data) takes its devices along."""

import json
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import pytest

from steward.clock import utc_now
from steward.composition import Services
from steward.conditions import MAX_ATTEMPTS
from steward.devices.models import Device, IdentifyDevice, Transport
from steward.errors import Conflict
from steward.segments import repository as segments_repository
from steward.settings import StoreSettings
from steward.usecases.user_deletion import DeletionUnfinished, UserDeletion
from steward.users.models import User
from steward.users.repository import UserRepository
from tests.support.reach import static_segment
from tests.support.service import SHARD_COUNT, call, context, load_event, new_users
from tests.support.spies import billed

APP = "app-a"
JOB, OTHER_JOB = "job_a", "job_b"  # bulk deletions (a job's id marks the users it started deleting)


def test_the_users_devices_go_with_it_and_no_one_elses(store: StoreSettings) -> None:
    services = Services(store.shard_count)
    new_users(APP, "leaver", "stayer")
    for device_id, user_id in (("fcm:1", "leaver"), ("fcm:2", "leaver"), ("fcm:3", "stayer")):
        services.devices.identify(APP, device_id, IdentifyDevice(user_id=user_id, transport=Transport.FCM))
    services.tags.tag(APP, "fcm:1", "vip")

    services.user_deletion.delete(APP, "leaver")

    assert services.user_repository.get(APP, "leaver") is None
    assert services.device_repository.get(APP, "fcm:1") is None
    assert services.device_repository.get(APP, "fcm:2") is None
    assert services.device_repository.get(APP, "fcm:3") is not None
    tag = services.tag_repository.get(APP, "vip")
    assert tag is not None
    assert tag.device_count == 0  # the device's tag was released with it


class ChangedAt:
    """A UserRepository whose user is marked ``keep`` right after read number ``at`` (1-based), as if in the gap."""

    def __init__(self, users: UserRepository, at: int) -> None:
        self.users = users
        self.at = at
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.users, name)

    def _read(self, found: Any, app_id: str, user_id: str) -> Any:
        self.reads += 1
        if self.reads == self.at:
            assert (
                not Services(self.users.shard_count)
                .users.upsert_batch(app_id, [{"user_id": user_id, "fields": {"keep": True}}])
                .failed
            )
        return found

    def get(self, app_id: str, user_id: str) -> User | None:
        return cast(User | None, self._read(self.users.get(app_id, user_id), app_id, user_id))

    def get_with_version(self, app_id: str, user_id: str) -> tuple[User, int] | None:
        found = self.users.get_with_version(app_id, user_id)
        return cast(tuple[User, int] | None, self._read(found, app_id, user_id))


def unmarked(user: User) -> str | None:
    """The test's rule (a bulk deletion's is no interaction since a cutoff): no ``keep`` field, or kept as marked."""
    return "marked" if "keep" in user.fields else None


def holdings(services: Services) -> tuple[User | None, list[str], list[str], list[str]]:
    """The user, its devices, its codes and its segments' members, as stored."""
    found = services.user_repository.get(APP, "leaver")
    devices = [device_id for device_id in ("fcm:1", "fcm:2") if services.device_repository.get(APP, device_id)]
    codes = [] if found is None else [promo.code for promo in found.promo_codes]
    return found, devices, codes, [] if found is None else sorted(found.segments)


@pytest.mark.parametrize("read", [1, 2])
def test_a_user_kept_by_its_rule_keeps_everything_and_a_deleted_one_loses_everything(
    store: StoreSettings, read: int
) -> None:
    services = Services(store.shard_count)
    new_users(APP, "leaver")
    for device_id in ("fcm:1", "fcm:2"):
        services.devices.identify(APP, device_id, IdentifyDevice(user_id="leaver", transport=Transport.FCM))
    program = services.loyalty.create_program(APP, "gold").program_id
    services.loyalty.add_codes(APP, program, ["GOLD-1"])
    services.loyalty.attach(APP, "leaver", "GOLD-1")
    segment_id = static_segment(APP, "vip", "leaver")
    users = ChangedAt(services.user_repository, read)
    deletion = UserDeletion(cast(UserRepository, users), services.loyalty_repository, services.segment_repository,
                            services.device_repository)  # fmt: skip

    kept = deletion.delete_if(APP, "leaver", unmarked, by=JOB)

    found, devices, codes, segments = holdings(services)
    if read == 1:  # changed right after the read that qualified it: kept, with all it held
        assert kept == "marked"
        assert found is not None
        assert found.fields == {"keep": True}
        assert (devices, codes, segments) == (["fcm:1", "fcm:2"], ["GOLD-1"], [segment_id])
    else:  # changed once its items were being released: the deletion was decided, and goes through
        assert kept is None
        assert (found, devices) == (None, [])
        assert services.segments.get(APP, segment_id).member_count == 0
        assert services.loyalty_repository.get_code(APP, "GOLD-1").attached_user_id is None


def _leaver_with_device_and_segment(services: Services) -> str:
    new_users(APP, "leaver")
    services.devices.identify(APP, "fcm:1", IdentifyDevice(user_id="leaver", transport=Transport.FCM))
    return static_segment(APP, "vip", "leaver")


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The segments' backoff, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(segments_repository, "time", SimpleNamespace(sleep=slept.append))
    return slept


@pytest.mark.parametrize("call", ["delete_if", "delete"])  # a job's deletion, and a retention sweep's
def test_a_segment_held_by_a_bulk_change_is_waited_out_not_left_half_deleted(
    store: StoreSettings, conflicts: list[int], no_backoff: list[float], call: str
) -> None:
    services = Services(store.shard_count)
    segment_id = _leaver_with_device_and_segment(services)
    conflicts[0] = MAX_ATTEMPTS  # the segment's counts are held for as many tries as a deletion has rounds

    if call == "delete_if":
        assert services.user_deletion.delete_if(APP, "leaver", unmarked, by=JOB) is None
    else:
        services.user_deletion.delete(APP, "leaver")

    assert services.user_repository.get(APP, "leaver") is None
    assert services.segments.get(APP, segment_id).member_count == 0
    assert no_backoff  # it waited between tries


def _started_by_job(services: Services, conflicts: list[int]) -> str:
    """JOB decides on the user and starts (marked, its device gone), then finds its segment held all along."""
    segment_id = _leaver_with_device_and_segment(services)
    conflicts[0] = 10 * MAX_ATTEMPTS * MAX_ATTEMPTS

    with pytest.raises(DeletionUnfinished) as unfinished:
        services.user_deletion.delete_if(APP, "leaver", unmarked, by=JOB)
    assert isinstance(unfinished.value, Conflict)  # as concurrent_update: the job runs the page again
    found, devices, _, _ = holdings(services)
    assert found is not None
    assert (found.deletion_started_at is not None, found.deletion_started_by) == (True, JOB)
    assert devices == []
    conflicts[0] = 0
    return segment_id


def test_a_started_deletion_is_finished_by_its_next_attempt_whatever_the_user_did_meanwhile(
    store: StoreSettings, conflicts: list[int], no_backoff: list[float]
) -> None:
    services = Services(store.shard_count)
    segment_id = _started_by_job(services, conflicts)
    # Activity after the mark (a retried page reads the user again): the deletion goes on regardless.
    assert not services.users.upsert_batch(APP, [{"user_id": "leaver", "fields": {"keep": True}}]).failed

    assert services.user_deletion.delete_if(APP, "leaver", unmarked, by=JOB) is None

    assert services.user_repository.get(APP, "leaver") is None
    assert services.segments.get(APP, segment_id).member_count == 0


@pytest.mark.parametrize("kept", [True, False])
def test_another_deleters_mark_decides_nothing_the_rule_is_checked_again(
    store: StoreSettings, conflicts: list[int], no_backoff: list[float], kept: bool
) -> None:
    services = Services(store.shard_count)
    segment_id = _started_by_job(services, conflicts)  # and JOB ended there (cancelled, or out of retries)
    if kept:
        assert not services.users.upsert_batch(APP, [{"user_id": "leaver", "fields": {"keep": True}}]).failed

    reason = services.user_deletion.delete_if(APP, "leaver", unmarked, by=OTHER_JOB)

    found = services.user_repository.get(APP, "leaver")
    if kept:  # kept with what JOB left of it, and JOB's mark removed
        assert reason == "marked"
        assert found is not None
        assert (found.deletion_started_at, found.deletion_started_by) == (None, None)
        assert found.segments == [segment_id]
        assert services.segments.get(APP, segment_id).member_count == 1
    else:  # still to delete: OTHER_JOB deletes it
        assert (reason, found) == (None, None)
        assert services.segments.get(APP, segment_id).member_count == 0


def test_a_users_own_delete_request_deletes_it_whoever_started_deleting_it(
    store: StoreSettings, conflicts: list[int], no_backoff: list[float]
) -> None:
    services = Services(store.shard_count)
    segment_id = _started_by_job(services, conflicts)
    assert not services.users.upsert_batch(APP, [{"user_id": "leaver", "fields": {"keep": True}}]).failed

    services.user_deletion.delete_on_request(APP, "leaver")

    assert services.user_repository.get(APP, "leaver") is None
    assert services.segments.get(APP, segment_id).member_count == 0


def test_the_deletion_mark_is_not_in_the_users_representation(store: StoreSettings) -> None:
    services = Services(store.shard_count)
    new_users(APP, "leaver")
    user, version = services.user_repository.get_with_version(APP, "leaver") or (None, 0)
    assert user is not None
    assert services.user_repository.hold(APP, user, version, user.updated_at, JOB)
    marked = services.user_repository.get(APP, "leaver")
    assert marked is not None
    assert (marked.deletion_started_at, marked.deletion_started_by) == (user.updated_at, JOB)
    assert not {"deletion_started_at", "deletion_started_by"} & set(marked.model_dump())


def _leaver_with_tagged_device(store: StoreSettings) -> Services:
    services = Services(store.shard_count)
    new_users(APP, "leaver")
    services.devices.identify(APP, "fcm:1", IdentifyDevice(user_id="leaver", transport=Transport.FCM))
    services.tags.tag(APP, "fcm:1", "vip")
    return services


def test_a_tagged_device_goes_in_one_transaction_on_the_version_the_deletion_read(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _leaver_with_tagged_device(store)
    usage = billed(monkeypatch)

    services.user_deletion.delete(APP, "leaver")

    calls, refused = dict(usage.calls), usage.refused
    assert services.device_repository.get(APP, "fcm:1") is None
    assert services.tag_repository.get(APP, "vip").device_count == 0  # type: ignore[union-attr]
    # The user read, its devices (index, then a consistent BatchGetItem), the device and its tag released in one
    # transaction, the user read again and deleted: no DeleteItem refused for the tags, no second device read.
    assert refused == 0
    assert calls == {
        "GetItem": 2,
        "Query": 1,
        "BatchGetItem": 1,
        "TransactWriteItems": 1,
        "DeleteItem": 1,
    }


def test_a_device_tagged_after_the_deletion_read_it_is_read_again_and_released_with_every_tag(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _leaver_with_tagged_device(store)
    read = services.device_repository.versioned_devices_of_users

    def then_tagged(*args: Any, **kwargs: Any) -> dict[str, list[tuple[Device, int]]]:
        found = read(*args, **kwargs)
        services.tags.tag(APP, "fcm:1", "late")  # between the deletion's read and its delete
        return found

    monkeypatch.setattr(services.device_repository, "versioned_devices_of_users", then_tagged)

    services.user_deletion.delete(APP, "leaver")

    assert services.device_repository.get(APP, "fcm:1") is None
    for tag in ("vip", "late"):
        assert services.tag_repository.get(APP, tag).device_count == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("rounds", [1, MAX_ATTEMPTS])  # how many of the deletion's rounds the device refuses
def test_a_device_that_keeps_refusing_its_delete_is_never_left_behind_by_its_deleted_user(
    store: StoreSettings, conflicts: list[int], rounds: int
) -> None:
    services = _leaver_with_tagged_device(store)
    conflicts[0] = rounds * MAX_ATTEMPTS  # each round tries the device's transaction MAX_ATTEMPTS times

    if rounds < MAX_ATTEMPTS:  # the next round deletes it, then the user
        assert services.user_deletion.delete_if(APP, "leaver", unmarked, by=JOB) is None
        assert services.user_repository.get(APP, "leaver") is None
        assert services.device_repository.get(APP, "fcm:1") is None
        assert services.tag_repository.get(APP, "vip").device_count == 0  # type: ignore[union-attr]
    else:  # refused all along: the user stays, for the page's next run to finish
        with pytest.raises(DeletionUnfinished):
            services.user_deletion.delete_if(APP, "leaver", unmarked, by=JOB)
        assert services.user_repository.get(APP, "leaver") is not None
        assert services.device_repository.get(APP, "fcm:1") is not None


def test_a_device_deleted_and_identified_again_after_the_deletion_read_it_is_released_with_its_new_tags(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _leaver_with_tagged_device(store)  # identified, then tagged: version 2
    read = services.device_repository.versioned_devices_of_users

    def then_recreated(*args: Any, **kwargs: Any) -> dict[str, list[tuple[Device, int]]]:
        found = read(*args, **kwargs)
        # Between the deletion's read and its delete: deleted, identified again and tagged, back at version 2.
        services.device_repository.delete(APP, "fcm:1", None, utc_now())
        services.devices.identify(APP, "fcm:1", IdentifyDevice(user_id="leaver", transport=Transport.FCM))
        services.tags.tag(APP, "fcm:1", "late")
        return found

    monkeypatch.setattr(services.device_repository, "versioned_devices_of_users", then_recreated)

    services.user_deletion.delete(APP, "leaver")

    assert services.device_repository.get(APP, "fcm:1") is None
    # Not the tags read (vip, released once already): the ones it had when deleted.
    assert {tag: services.tag_repository.get(APP, tag).device_count for tag in ("vip", "late")} == {  # type: ignore[union-attr]
        "vip": 0,
        "late": 0,
    }


@pytest.mark.parametrize(
    ("busy", "status", "code"),
    [
        pytest.param("conflicts", 409, "concurrent_update", id="contention"),
        pytest.param("throttled_transactions", 503, "unavailable", id="throttling"),
    ],
)
def test_delete_user_waits_a_few_short_jittered_pauses_in_all_then_answers_and_a_retry_finishes(
    api: ModuleType,
    no_backoff: list[float],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    busy: str,
    status: int,
    code: str,
) -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high  # the longest pause full jitter allows

    monkeypatch.setattr(segments_repository, "random", SimpleNamespace(uniform=uniform))
    app, user_id = "demo-shop", "user-42"  # the sample event's
    new_users(app, user_id)
    services = Services(SHARD_COUNT)
    services.devices.identify(app, "fcm:1", IdentifyDevice(user_id=user_id, transport=Transport.FCM))
    segments = [static_segment(app, name, user_id) for name in ("vip", "spring")]
    refused: list[int] = request.getfixturevalue(busy)
    held = 10 * MAX_ATTEMPTS * MAX_ATTEMPTS
    refused[0] = held  # other writes to the segments' counts (or throttling) all along

    response = api.lambda_handler(load_event("http-api-delete-user.json"), context())

    body = json.loads(response["body"])
    assert (response["statusCode"], body["error"]["code"]) == (status, code), body
    assert "retry" in body["error"]["message"].lower()
    assert (response.get("headers") or {}).get("Retry-After") == ("1" if status == 503 else None)
    # Three pauses in all, each at random up to a doubling ceiling, capped: 0.5 s at most, and four tries of the
    # first segment, however many segments and rounds there are.
    assert (drawn, no_backoff, held - refused[0]) == ([(0, 0.1), (0, 0.2), (0, 0.2)], [0.1, 0.2, 0.2], 4)
    assert services.device_repository.get(app, "fcm:1") is None  # done before the segments: stays done
    refused[0] = 0

    status, _ = call(api, load_event("http-api-delete-user.json"))

    assert status == 204
    assert services.user_repository.get(app, user_id) is None
    assert [services.segments.get(app, segment_id).member_count for segment_id in segments] == [0, 0]
