"""BatchWriteItem with backoff: items DynamoDB hands back unprocessed are sent again, matched by their whole key."""

import pytest

from steward import batch_writes
from steward.batch_writes import BatchNotWritten, write_all
from steward.clock import utc_now
from steward.retryable import refused_for_now
from steward.settings import StoreSettings
from steward.tables import SegmentMemberRecord
from tests.support.batch_writes import HandsBack

# The same user in two segments: the keys differ only by their partition.
ITEMS = [
    ("acme#segment#vip#0", "u1"),
    ("acme#segment#spring#0", "u1"),
    *((f"acme#segment#big#{n % 3}", f"u{n}") for n in range(30)),
]
REFUSED = ("acme#segment#spring#0", "u1")


def hands_back(monkeypatch: pytest.MonkeyPatch, times: int | None) -> HandsBack[tuple[str, str]]:
    """BatchWriteItem leaves the REFUSED item unprocessed ``times`` times (forever when None)."""
    return HandsBack(monkeypatch, lambda item: (str(item["pk"]["S"]), str(item["sk"]["S"])), {REFUSED}, times)


def records() -> list[SegmentMemberRecord]:
    now = utc_now()
    return [SegmentMemberRecord(pk=pk, sk=sk, created_at=now, updated_at=now) for pk, sk in ITEMS]


def stored() -> set[tuple[str, str]]:
    return {(pk, sk) for pk, sk in ITEMS if SegmentMemberRecord.count(pk, SegmentMemberRecord.sk == sk) == 1}


def test_an_item_handed_back_is_sent_again_after_a_pause_and_only_it(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pynamodb resends at once, twice; five refusals need a round of ours after a pause.
    handed = hands_back(monkeypatch, times=5)

    write_all(SegmentMemberRecord, records())

    assert stored() == set(ITEMS)
    assert len(handed.sleeps) == 1
    assert handed.sent[REFUSED] == 6
    assert handed.sent[("acme#segment#vip#0", "u1")] == 1  # the same sk in another segment: written once


def test_items_handed_back_after_every_attempt_raise_a_refusal_for_now_after_the_other_chunks(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed = hands_back(monkeypatch, times=None)

    with pytest.raises(BatchNotWritten) as raised:
        write_all(SegmentMemberRecord, records())

    assert stored() == set(ITEMS) - {REFUSED}  # every chunk was tried
    assert len(handed.sleeps) == batch_writes.BATCH_WRITE_ATTEMPTS - 1
    assert refused_for_now(raised.value)  # the API answers 503, the jobs engine retries the page


def test_a_delete_handed_back_is_sent_again_and_only_it(store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    write_all(SegmentMemberRecord, records())
    handed = hands_back(monkeypatch, times=5)
    keys_only = [SegmentMemberRecord(pk=pk, sk=sk) for pk, sk in ITEMS]  # as a drain deletes them

    write_all(SegmentMemberRecord, keys_only, delete=True)

    assert stored() == set()
    assert handed.sent[REFUSED] == 6
    assert handed.sent[("acme#segment#vip#0", "u1")] == 1


def test_a_chunk_holds_at_most_25_records(store: StoreSettings) -> None:
    with pytest.raises(ValueError, match="at most 25"):
        batch_writes.write_chunk(SegmentMemberRecord, records(), delete=False)
