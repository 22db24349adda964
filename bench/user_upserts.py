"""DynamoDB calls and units per 1,000 users upserted through POST /v1/users/batch (10 batches of 100).

.venv/bin/python -m bench.user_upserts
"""

import math
from typing import Any

from moto import mock_aws

from bench.dynamodb import counting, create_tables, write_units
from steward.composition import Services
from steward.sharding import partition_for
from steward.tables import ProfileRecord

APP = "bench-app"
SHARDS = 16
USERS = 1000
BATCH = 100


def batches(round_number: int) -> list[list[Any]]:
    users: list[Any] = [
        {
            "user_id": f"user-{index:06d}",
            "fields": {"plan": "pro", "age": 30 + index % 40, "signup": "2024-05-01", "round": round_number},
        }
        for index in range(USERS)
    ]
    return [users[start : start + BATCH] for start in range(0, USERS, BATCH)]


def main() -> None:
    with mock_aws():
        create_tables(SHARDS)
        service = Services(SHARDS).users
        print(f"{'1,000 users':22} {'DynamoDB calls':46} {'WCU':>6} {'RCU':>6}")
        # Every upsert records activity (last_activity_at), so even an unchanged profile is written.
        for label, round_number in (("all new", 1), ("all existing", 2)):
            with counting() as counted:
                for batch in batches(round_number):
                    outcome = service.upsert_batch(APP, batch)
                    if outcome.failed:
                        raise RuntimeError(f"{outcome.failed} upserts failed: {outcome.results[0]}")
                made = dict(counted)
            sample = ProfileRecord.get(partition_for(APP, "user-000001", SHARDS), "user-000001")
            writes = made.get("PutItem", 0) * write_units(sample)
            # BatchGetItem reads each key eventually consistently: half a unit per 4 KB item.
            reads = USERS * 0.5 * math.ceil(max(1, write_units(sample)) / 4)
            calls = ", ".join(f"{count} {name}" for name, count in sorted(made.items()))
            print(f"{label:22} {calls:46} {writes:>6} {reads:>6.0f}")


if __name__ == "__main__":
    main()
