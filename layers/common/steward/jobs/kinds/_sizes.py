"""Item sizes for the deletion types' cost estimates: items as stored, measured by DynamoDB's rules.

Repositories return domain objects, not raw items, so a type rebuilds the
attributes it knows (keys, names, counts, polygons) and prices those; items
it never reads (users, devices) get a nominal size.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from steward.jobs.pricing import item_size

# A stored timestamp: "2026-01-31T08:00:00.000000+0000".
TIMESTAMP = "0000-00-00T00:00:00.000000+0000"
# Items a job writes without reading them whole: a user with a few fields and contacts, a device.
NOMINAL_PROFILE_BYTES = 1024
NOMINAL_DEVICE_BYTES = 300
# A member item (segment member, tagged device) holds its keys and two timestamps; ids up to 64 characters.
NOMINAL_MEMBER_BYTES = 160

Value = str | bool | int | float | Sequence[Any] | Mapping[str, Any] | None


def stored_bytes(**attributes: Value) -> int:
    """The billed size of an item with these attributes (None: absent) and the two timestamps every item has."""
    item = {name: _attribute(value) for name, value in attributes.items() if value is not None}
    item["created_at"] = item["updated_at"] = {"S": TIMESTAMP}
    return item_size(item)


def _attribute(value: Value) -> dict[str, Any]:
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value)}
    if isinstance(value, Mapping):
        return {"M": {name: _attribute(element) for name, element in value.items()}}
    if isinstance(value, Sequence):
        return {"L": [_attribute(element) for element in value]}
    raise TypeError(f"no DynamoDB type for {type(value).__name__}")
