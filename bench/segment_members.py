"""DynamoDB calls and units per 1,000 members added to and removed from a static segment.

One POST /v1/segments/{id}/members request with 1,000 ids, through SegmentService.

.venv/bin/python -m bench.segment_members
"""

import math

from moto import mock_aws

from bench.dynamodb import counting, create_tables, write_units
from steward.composition import Services
from steward.segments.models import ChangeMembers, CreateSegment, SegmentKind
from steward.sharding import partition_for
from steward.tables import ProfileRecord, SegmentMemberRecord, SegmentRecord, segment_members_collection, segments_pk
from steward.transactions import MEMBERSHIPS_PER_TRANSACTION

APP = "bench-app"
SHARDS = 16
MEMBERS = 1000
# Transactional writes cost twice the units of plain ones.
TRANSACTION_FACTOR = 2


def main() -> None:
    with mock_aws():
        create_tables(SHARDS)
        user_ids = [f"user-{index:06d}" for index in range(MEMBERS)]
        users = Services(SHARDS).users
        for start in range(0, MEMBERS, 100):
            users.upsert_batch(
                APP, [{"user_id": user_id, "fields": {"plan": "pro"}} for user_id in user_ids[start : start + 100]]
            )
        service = Services(SHARDS).segments
        segment_id = service.create(APP, CreateSegment(name="bench", kind=SegmentKind.STATIC)).segment_id

        print(f"{'1,000 members':16} {'DynamoDB calls':52} {'WCU':>6} {'RCU':>6}")
        for label, request in (
            ("added", ChangeMembers(add=list(user_ids))),
            ("removed", ChangeMembers(remove=list(user_ids))),
        ):
            with counting() as counted:
                outcome = service.change_members(APP, segment_id, request)
                made = dict(counted)
            if outcome.failed or outcome.added + outcome.removed != MEMBERS:
                raise RuntimeError(f"unexpected outcome: {outcome.model_dump(exclude={'segment'})}")
            sample_user = ProfileRecord.get(partition_for(APP, user_ids[1], SHARDS), user_ids[1])
            sample_user.segments = {segment_id}  # an update is billed on the larger of the item before and after
            member = SegmentMemberRecord(
                pk=partition_for(segment_members_collection(APP, segment_id), user_ids[1], SHARDS),
                sk=user_ids[1],
                created_at=sample_user.created_at,
                updated_at=sample_user.created_at,
            )
            segment = SegmentRecord.get(segments_pk(APP), segment_id)
            transactions = math.ceil(MEMBERS / MEMBERSHIPS_PER_TRANSACTION)
            writes = TRANSACTION_FACTOR * (
                MEMBERS * (write_units(sample_user) + write_units(member)) + transactions * write_units(segment)
            )
            # BatchGetItem reads each user strongly consistently: a unit per 4 KB; then one segment read.
            reads = MEMBERS * math.ceil(write_units(sample_user) / 4) + 1
            calls = ", ".join(f"{count} {name}" for name, count in sorted(made.items()))
            print(f"{label:16} {calls:52} {writes:>6} {reads:>6.0f}")


if __name__ == "__main__":
    main()
