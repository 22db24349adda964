"""Reads of the items a residual reaches from another table: users' devices and devices' owners.

Only done when the residual needs them. Devices of many users cost one
keys-only index query per user (run side by side) and one BatchGetItem per
100 devices for all of them together.
"""

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from steward.devices.models import Device
from steward.devices.repository import to_device, user_key
from steward.tables import DeviceRecord
from steward.users.models import User
from steward.users.repository import UserRepository

LOOKUP_WORKERS = 16  # DeviceRecord's connection pool size


def devices_of_users(app_id: str, user_ids: Iterable[str]) -> dict[str, list[Device]]:
    """Each user's devices, sorted by device id (users without devices map to [])."""
    users = list(dict.fromkeys(user_ids))
    if not users:
        return {}
    with ThreadPoolExecutor(max_workers=min(LOOKUP_WORKERS, len(users))) as pool:
        keys_by_user = dict(zip(users, pool.map(lambda user_id: _device_keys(app_id, user_id), users), strict=True))
    keys = [key for user_keys in keys_by_user.values() for key in user_keys]
    records = {record.sk: record for record in DeviceRecord.batch_get(keys)} if keys else {}
    devices: dict[str, list[Device]] = {}
    for user_id, user_keys in keys_by_user.items():
        # The index is eventually consistent: a device that just moved to another user is left out.
        owned = [records[sk] for _, sk in user_keys if sk in records and records[sk].user_id == user_id]
        devices[user_id] = [to_device(record) for record in sorted(owned, key=lambda record: record.sk)]
    return devices


def owners(app_id: str, user_ids: Iterable[str], shard_count: int) -> dict[str, User]:
    """The users with these ids that exist (BatchGetItem, 100 keys a call)."""
    found = UserRepository(shard_count).get_many(app_id, user_ids)
    return {user_id: user for user_id, (user, _) in found.items()}


def _device_keys(app_id: str, user_id: str) -> list[tuple[str, str]]:
    return [(record.pk, record.sk) for record in DeviceRecord.by_user.query(user_key(app_id, user_id))]
