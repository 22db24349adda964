"""Reading an app's users once only when it is small: the first shard decides, and a big app costs a shard's share."""

import zlib
from collections.abc import Iterator

from steward.settings import StoreSettings
from steward.users.reading import read_if_few
from steward.users.repository import UserRepository
from tests.support.service import SHARD_COUNT, new_users

SHARDS = 16


def app_of(users: int) -> dict[int, list[bytes]]:
    shards: dict[int, list[bytes]] = {shard: [] for shard in range(SHARDS)}
    for n in range(users):
        user_id = f"user-{n}".encode()
        shards[zlib.crc32(user_id) % SHARDS].append(user_id)
    return shards


def test_a_big_app_is_estimated_from_its_first_shard_and_not_read() -> None:
    shards = app_of(160_000)
    read: list[int] = []

    def read_shard(shard: int) -> Iterator[bytes]:
        read.append(shard)
        yield from shards[shard]

    decision = read_if_few(SHARDS, 20_000, read_shard, lambda page: None)

    # Reading until 20,000 users (the old rule) read 20,001; the first shard is read to 1,252 at most.
    assert (decision.read_all, read) == (False, [0])
    assert decision.read == 20_000 // SHARDS + 2
    assert decision.estimate > 20_000


def test_a_small_app_is_read_whole() -> None:
    shards = app_of(5_000)
    pages: list[list[bytes]] = []

    decision = read_if_few(SHARDS, 20_000, lambda shard: iter(shards[shard]), pages.append)

    assert decision.read_all
    assert decision.read == decision.estimate == sum(len(page) for page in pages) == 5_000


def test_the_repository_reads_the_apps_users_through_the_same_rule(store: StoreSettings) -> None:
    new_users("acme", *[f"u{n}" for n in range(40)])
    repository = UserRepository(SHARD_COUNT)
    pages: list[list[bytes]] = []

    assert repository.read_ids("acme", 40, pages.append)
    assert not repository.read_ids("acme", 4, lambda page: None)
    assert sorted(user_id for page in pages for user_id in page) == sorted(f"u{n}".encode() for n in range(40))
