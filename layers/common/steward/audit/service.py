"""The audit log's use cases: append a finished job's entry, list the log, verify the chain.

The jobs engine calls ``AuditLog.append`` once per job, dry or real, when the
job finishes. Nothing changes or deletes an entry: there is no such code path.
"""

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pynamodb.exceptions import TransactWriteError

from steward.audit.canonical import NotCanonical, canonical_json, check_json_value
from steward.audit.chain import LAST_SEQUENCE, ChainWalk, entry_hash, entry_id_of
from steward.audit.models import (
    AT_FORMAT,
    MAX_PARAMS_BYTES,
    AuditEntry,
    AuditHead,
    ChainBreak,
    ChainProblem,
    ChainVerification,
    JobAudit,
)
from steward.audit.repository import JOB, AuditRepository
from steward.errors import Conflict, InvalidInput
from steward.pagination import Page
from steward.retryable import transient

# Appends of one app are serialised by the head's condition: a loser reads the head again and retries.
MAX_APPEND_ATTEMPTS = 12
BACKOFF_BASE_SECONDS = 0.02
BACKOFF_CAP_SECONDS = 1.0
logger = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, repository: AuditRepository, clock: Callable[[], datetime]) -> None:
        self.repository = repository
        self.clock = clock

    def append(self, app_id: str, record: JobAudit) -> AuditEntry:
        """Append the entry of a finished job to the app's log and return it.

        Idempotent per job: when the job already has an entry, that entry is
        returned if it records the same thing (a retried call), and 409
        ``audit_entry_exists`` is raised if it records something else. Raises
        422 ``invalid_audit_params`` for params without a stable canonical form,
        and 409 ``concurrent_update`` when other appends kept winning.
        """
        _check_params(record)
        for attempt in range(MAX_APPEND_ATTEMPTS):
            previous = self.repository.head(app_id)
            now = self.clock().astimezone(UTC)
            entry = _chained(record, previous, now)
            try:
                refused = self.repository.append(app_id, entry, previous, now)
            except TransactWriteError as exc:
                if not transient(exc):
                    raise
                refused = {"transient"}
            if not refused:
                return entry
            if JOB in refused:
                return self._recorded(app_id, record)
            time.sleep(random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)))  # noqa: S311 (not a secret)
        logger.warning("Appending to the audit log lost to other appends %d times", MAX_APPEND_ATTEMPTS)
        raise Conflict("The audit log changed concurrently too many times; retry.", code="concurrent_update")

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[AuditEntry]:
        """The app's entries, newest first."""
        return self.repository.list_page(app_id, cursor, limit)

    def verify_chain(self, app_id: str) -> ChainVerification:
        """Re-walk the app's log from its first entry and report the first broken link.

        Reads the head first, then every entry up to it (consistently), so
        appends made meanwhile are left for the next check. Memory does not
        grow with the log.
        """
        head = self.repository.head(app_id)
        walk = ChainWalk()
        broken: ChainBreak | None = None
        # Without a head, walk everything stored: a deleted head must not hide the entries behind it.
        through = LAST_SEQUENCE if head is None else head.sequence
        for fields in self.repository.walk(app_id, through):
            broken = walk.check(fields)
            if broken is not None:
                break
        if broken is None:
            broken = _head_mismatch(head, walk)
        return ChainVerification(app_id=app_id, entries=walk.checked, last_hash=walk.last_hash, broken=broken)

    def _recorded(self, app_id: str, record: JobAudit) -> AuditEntry:
        existing = self.repository.entry_of_job(app_id, record.job_id)
        if existing is None:  # the claim and its entry are written together; only tampering gets here
            raise Conflict(f"Job {record.job_id!r} has an audit claim but no entry.", code="audit_entry_exists")
        if _records(existing) != _records_of(record):
            raise Conflict(
                f"Job {record.job_id!r} already has an audit entry ({existing.entry_id}) that records something else.",
                code="audit_entry_exists",
                field="job_id",
            )
        return existing


def _check_params(record: JobAudit) -> None:
    try:
        check_json_value(record.params, "params")
        size = len(canonical_json(record.params))
    except NotCanonical as exc:
        raise InvalidInput(str(exc), code="invalid_audit_params", field="params") from exc
    if size > MAX_PARAMS_BYTES:
        raise InvalidInput(
            f"params take {size:,} bytes of canonical JSON; at most {MAX_PARAMS_BYTES:,}.",
            code="invalid_audit_params",
            field="params",
        )


def _chained(record: JobAudit, previous: AuditHead | None, now: datetime) -> AuditEntry:
    """The entry that follows ``previous``, with its hash."""
    fields = {
        "entry_id": entry_id_of(1 if previous is None else previous.sequence + 1),
        "at": now.strftime(AT_FORMAT),
        **_records_of(record),
        "prev_hash": None if previous is None else previous.hash,
    }
    return AuditEntry.model_validate({**fields, "hash": entry_hash(fields)})


def _records_of(record: JobAudit) -> dict[str, object]:
    """What an entry records about its job, as JSON values."""
    return record.model_dump(mode="json")


def _records(entry: AuditEntry) -> dict[str, object]:
    return entry.model_dump(mode="json", include=set(JobAudit.model_fields))


def _head_mismatch(head: AuditHead | None, walk: ChainWalk) -> ChainBreak | None:
    """After an intact walk: the head must name the last entry walked (else entries are gone from the end)."""
    if head is None:
        if not walk.checked:
            return None  # an app that never logged anything
        return ChainBreak(
            entry_id=None,
            problem=ChainProblem.HEAD_MISMATCH,
            message=f"The log holds {walk.checked} entries but its head is missing.",
        )
    if head.sequence == walk.checked and head.hash == walk.last_hash:
        return None
    return ChainBreak(
        entry_id=None,
        problem=ChainProblem.HEAD_MISMATCH,
        message=(
            f"The log's head names entry {entry_id_of(head.sequence)}, but the last intact entry is "
            f"{entry_id_of(walk.checked) if walk.checked else 'none'}."
        ),
    )
