"""Data access for the audit log (CatalogTable): appends in one transaction, reads, and a walk for verification.

There is no update and no delete here, on purpose: an entry is written once,
by ``append``, with a condition that it does not exist yet.
"""

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pynamodb.expressions.update import Action

from steward.audit.canonical import canonical_json
from steward.audit.chain import entry_id_of
from steward.audit.models import AT_FORMAT, ENTRY_ID_PATTERN, AuditEntry, AuditHead
from steward.pagination import Page, decode_cursor, encode_cursor, fit_page, invalid_cursor
from steward.tables import (
    AUDIT_HEAD_SK,
    AuditEntryRecord,
    AuditHeadRecord,
    AuditJobRecord,
    audit_entries_pk,
    audit_head_pk,
    audit_jobs_pk,
)
from steward.transactions import Transaction

# Labels of the writes of an append, as Transaction.commit names the refused ones.
ENTRY, HEAD, JOB = "entry", "head", "job"
_ENTRY_ID = re.compile(ENTRY_ID_PATTERN)


class AuditRepository:
    def head(self, app_id: str) -> AuditHead | None:
        """The app's last entry (read consistently); None before the first append."""
        try:
            record = AuditHeadRecord.get(audit_head_pk(app_id), AUDIT_HEAD_SK, consistent_read=True)
        except AuditHeadRecord.DoesNotExist:
            return None
        return AuditHead(sequence=int(record.sequence), hash=record.entry_hash)

    def append(self, app_id: str, entry: AuditEntry, previous: AuditHead | None, now: datetime) -> set[str]:
        """Put the entry, claim its job and move the head from ``previous`` to it, in one transaction.

        Returns the labels of the refused writes (nothing was written then):
        ``JOB`` when the job already has an entry, ``HEAD`` or ``ENTRY`` when
        another append went first. Other failures raise.
        """
        transaction = Transaction()
        transaction.put(ENTRY, entry_record(app_id, entry), AuditEntryRecord.sk.does_not_exist())
        claim = AuditJobRecord(
            pk=audit_jobs_pk(app_id), sk=entry.job_id, entry_id=entry.entry_id, created_at=now, updated_at=now
        )
        transaction.put(JOB, claim, AuditJobRecord.sk.does_not_exist())
        if previous is None:
            head = AuditHeadRecord(
                pk=audit_head_pk(app_id),
                sk=AUDIT_HEAD_SK,
                sequence=1,
                entry_hash=entry.hash,
                created_at=now,
                updated_at=now,
            )
            transaction.put(HEAD, head, AuditHeadRecord.sk.does_not_exist())
        else:
            moved: list[Action] = [
                AuditHeadRecord.sequence.set(previous.sequence + 1),
                AuditHeadRecord.entry_hash.set(entry.hash),
                AuditHeadRecord.updated_at.set(now),
            ]
            head = AuditHeadRecord(pk=audit_head_pk(app_id), sk=AUDIT_HEAD_SK)
            transaction.update(HEAD, head, moved, AuditHeadRecord.sequence == previous.sequence)
        return {label for label in transaction.commit() if isinstance(label, str)}

    def entry_of_job(self, app_id: str, job_id: str) -> AuditEntry | None:
        """The entry recorded for a job (read consistently); None when it has none."""
        try:
            claim = AuditJobRecord.get(audit_jobs_pk(app_id), job_id, consistent_read=True)
            record = AuditEntryRecord.get(audit_entries_pk(app_id), claim.entry_id, consistent_read=True)
        except (AuditJobRecord.DoesNotExist, AuditEntryRecord.DoesNotExist):
            return None
        return to_entry(record)

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[AuditEntry]:
        """Newest first. The cursor holds only the id of the page's last entry, never a partition key."""
        position = decode_cursor(cursor)
        condition = None
        if position is not None:
            before = position.get("before")
            if not isinstance(before, str) or not _ENTRY_ID.match(before):
                raise invalid_cursor()
            condition = AuditEntryRecord.sk < before
        # One more than the page, so the last page never hands out a cursor to an empty one.
        results = AuditEntryRecord.query(audit_entries_pk(app_id), condition, scan_index_forward=False, limit=limit + 1)
        records = list(results)
        entries = [to_entry(record) for record in records[:limit]]
        next_cursor = encode_cursor({"before": entries[-1].entry_id}) if len(records) > limit else None
        # Entries with large params (up to 96 KB each) make a shorter page, never an answer over 6 MB.
        return fit_page(((entry, encode_cursor({"before": entry.entry_id})) for entry in entries), next_cursor)

    def walk(self, app_id: str, through: int) -> Iterator[dict[str, Any]]:
        """Every stored entry up to position ``through``, oldest first, as raw fields (read consistently).

        Fields are not validated: a tampered item must reach the chain check, not fail here.
        """
        if through < 1:
            return
        records = AuditEntryRecord.query(
            audit_entries_pk(app_id),
            AuditEntryRecord.sk <= entry_id_of(through),
            consistent_read=True,
            page_size=100,
        )
        for record in records:
            yield entry_fields(record)


def entry_record(app_id: str, entry: AuditEntry) -> AuditEntryRecord:
    """The item that stores an entry."""
    at = datetime.strptime(entry.at, AT_FORMAT).replace(tzinfo=UTC)
    return AuditEntryRecord(
        pk=audit_entries_pk(app_id),
        sk=entry.entry_id,
        at=entry.at,
        key_id=entry.key_id,
        job_id=entry.job_id,
        job_type=entry.type,
        params=canonical_json(entry.params).decode("utf-8"),
        reauth=entry.reauth.value,
        status=entry.status.value,
        counts=canonical_json(entry.counts).decode("utf-8"),
        report_sha256=entry.report_sha256,
        prev_hash=entry.prev_hash,
        entry_hash=entry.hash,
        created_at=at,
        updated_at=at,
    )


def entry_fields(record: AuditEntryRecord) -> dict[str, Any]:
    """An item's fields as an entry shows them, unvalidated (text that is not JSON stays text)."""
    return {
        "entry_id": record.sk,
        "at": record.at,
        "key_id": record.key_id,
        "job_id": record.job_id,
        "type": record.job_type,
        "params": _json(record.params),
        "reauth": record.reauth,
        "status": record.status,
        "counts": _json(record.counts),
        "report_sha256": record.report_sha256,
        "prev_hash": record.prev_hash,
        "hash": record.entry_hash,
    }


def to_entry(record: AuditEntryRecord) -> AuditEntry:
    return AuditEntry.model_validate(entry_fields(record))


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
