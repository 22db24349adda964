"""The hash chain of an app's audit log: entry ids, entry hashes and a link-by-link check.

Pure functions over plain mappings, so the same check runs on stored items
(``AuditLog.verify_chain``) and on what ``GET /v1/audit`` returned.
"""

import hashlib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from steward.audit.canonical import NotCanonical, canonical_json
from steward.audit.models import ENTRY_FIELDS, SEQUENCE_DIGITS, AuditEntry, ChainBreak, ChainProblem

# The largest position an entry id can hold.
LAST_SEQUENCE = 10**SEQUENCE_DIGITS - 1


def entry_id_of(sequence: int) -> str:
    """The id (and sort key) of the entry at this position of the log, from 1."""
    return f"{sequence:0{SEQUENCE_DIGITS}d}"


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of every field of the entry but ``hash``."""
    body = {name: value for name, value in entry.items() if name != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


class ChainWalk:
    """Checks entries oldest first, each against the one before: the first broken link stops the walk."""

    def __init__(self) -> None:
        self.checked = 0
        self.last_hash: str | None = None

    def check(self, entry: Mapping[str, Any]) -> ChainBreak | None:
        """None when the entry links to the previous one and its hash covers its content."""
        raw_id = entry.get("entry_id")
        entry_id = raw_id if isinstance(raw_id, str) else None
        if set(entry) != set(ENTRY_FIELDS):
            return ChainBreak(
                entry_id=entry_id, problem=ChainProblem.UNREADABLE, message="The fields are not an entry's."
            )
        try:
            AuditEntry.model_validate(entry)
            recomputed = entry_hash(entry)
        except (ValidationError, NotCanonical) as exc:
            return ChainBreak(entry_id=entry_id, problem=ChainProblem.UNREADABLE, message=f"Unreadable entry: {exc}")
        expected_id = entry_id_of(self.checked + 1)
        if entry_id != expected_id:
            message = f"Entry {expected_id} is missing: the next one is {entry_id}."
            return ChainBreak(entry_id=entry_id, problem=ChainProblem.SEQUENCE_GAP, message=message)
        if entry["prev_hash"] != self.last_hash:
            message = "prev_hash is not the previous entry's hash."
            return ChainBreak(entry_id=entry_id, problem=ChainProblem.PREV_HASH_MISMATCH, message=message)
        if entry["hash"] != recomputed:
            message = "The entry's content is not what its hash covers."
            return ChainBreak(entry_id=entry_id, problem=ChainProblem.HASH_MISMATCH, message=message)
        self.checked += 1
        self.last_hash = recomputed
        return None
