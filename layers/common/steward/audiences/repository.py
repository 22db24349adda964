"""Data access for audiences: the audience records, the per-app count, and the packed member buckets."""

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from steward.audiences import buckets
from steward.audiences.models import Audience, AudienceStatus, Counts, Failure, InvalidLine, Layout
from steward.batch_writes import BATCH_WRITE_SIZE, write_chunk
from steward.conditions import condition_failed, update_if
from steward.pagination import Page
from steward.sharded_query import query_partition
from steward.tables import (
    APP_PROFILE_SK,
    AUDIENCE_BUCKET_SK,
    AUDIENCE_COUNT_SK,
    AppRecord,
    AudienceBucketRecord,
    AudienceCountRecord,
    AudienceLiftedRecord,
    AudiencePointerRecord,
    AudienceRecord,
    app_pk,
    audience_bucket_pk,
    audience_count_pk,
    audience_lifted_pk,
    audience_members_key,
    audience_pointer_pk,
    audiences_pk,
)
from steward.transactions import Transaction, applied

BATCH_WRITE_ATTEMPTS = 5
BATCH_BACKOFF_SECONDS = 0.05
BATCH_GET_SIZE = 100
# How long a lifted tombstone's floor is kept: past every late event of a file imported before the deletion (up to
# 6 hours in Lambda's queue with the importer's retries, then as long again with the recorder's). DynamoDB's TTL
# removes it some time after; kept longer, it changes nothing (it only refuses files older than the deletion).
LIFTED_FLOOR_TTL = timedelta(days=7)
logger = logging.getLogger(__name__)


# What became of a failure: recorded on the audience; superseded (a newer file's failure is recorded and
# stays); moot (a newer file was imported).
Recorded = Literal["recorded", "superseded", "moot"]
# Which announcement a marker notes as told.
Told = Literal["imported", "failure", "refusal"]


@dataclass(frozen=True)
class Published:
    """The audience as the flip left it, and the version the flip replaced (to remove)."""

    audience: Audience
    replaced: Layout | None


@dataclass(frozen=True)
class Flip:
    """A built version to flip an audience to: the file it came from and what it found."""

    app_id: str
    name: str
    layout: Layout
    counts: Counts
    samples: list[InvalidLine]
    key: str
    sequencer: str
    now: datetime


@dataclass(frozen=True)
class Attempt:
    """One import's claim of a file: which audience and file, which Lambda request, and when."""

    app_id: str
    name: str
    key: str
    sequencer: str
    request_id: str
    now: datetime


class AudienceRepository:
    # --- Records -------------------------------------------------------------

    def get(self, app_id: str, name: str, *, consistent: bool = False) -> Audience | None:
        try:
            record = AudienceRecord.get(audiences_pk(app_id), name, consistent_read=consistent)
        except AudienceRecord.DoesNotExist:
            return None
        return to_audience(record)

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[Audience]:
        records, next_cursor = query_partition(AudienceRecord, audiences_pk(app_id), cursor, limit)
        return Page[Audience](items=[to_audience(record) for record in records], next_cursor=next_cursor)

    def max_audiences(self, app_id: str) -> int | None:
        try:
            record = AppRecord.get(app_pk(app_id), APP_PROFILE_SK, attributes_to_get=["max_audiences"])
        except AppRecord.DoesNotExist:
            return None
        return None if record.max_audiences is None else int(record.max_audiences)

    def set_max_audiences(self, app_id: str, maximum: int) -> bool:
        """False when the app does not exist."""
        record = AppRecord(pk=app_pk(app_id), sk=APP_PROFILE_SK)
        try:
            record.update(actions=[AppRecord.max_audiences.set(maximum)], condition=AppRecord.pk.exists())
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def claim_new(self, attempt: Attempt, maximum: int, *, recount: bool) -> str:
        """Start importing into a new audience (or a refused one, ``recount``), counted against ``maximum``.

        Returns ``claimed``, ``limit`` (the count is at the maximum), ``raced`` (someone else wrote the record) or
        ``lifted`` (the file is not newer than the last one imported before a lifted tombstone: see ``lift``).
        The floor's condition check costs 2 write units (a ConditionCheck in a transaction is billed as a
        transactional write of the item it checks), on top of the 4 of the count's and the record's writes.
        """
        app_id, name, key, sequencer, now = attempt.app_id, attempt.name, attempt.key, attempt.sequencer, attempt.now
        transaction = Transaction()
        transaction.update("count", *_counted_in(app_id, maximum, now))
        record = AudienceRecord(pk=audiences_pk(app_id), sk=name)
        claim: list[Action] = [
            AudienceRecord.status.set(AudienceStatus.IMPORTING.value),
            AudienceRecord.counted.set(True),
            AudienceRecord.source_key.set(key),
            AudienceRecord.attempt_sequencer.set(sequencer),
            AudienceRecord.attempt_started_at.set(now),
            AudienceRecord.attempt_request.set(attempt.request_id),
            AudienceRecord.created_at.set(AudienceRecord.created_at | now),
            AudienceRecord.updated_at.set(now),
        ]
        condition = (
            (AudienceRecord.status == AudienceStatus.FAILED.value)
            & (AudienceRecord.counted == False)  # noqa: E712
            & _older_attempt(sequencer)
            if recount
            else AudienceRecord.pk.does_not_exist()
        )
        transaction.update("audience", record, claim, condition=condition)
        _above_floor(transaction, app_id, name, sequencer)
        refused = transaction.commit()
        if "lifted" in refused:
            return "lifted"
        if "audience" in refused:
            return "raced"
        return "limit" if refused else "claimed"

    def record_refused_new(
        self, app_id: str, name: str, failure: Failure, sequencer: str, now: datetime
    ) -> Literal["recorded", "raced", "lifted"]:
        """A new name refused: a failed record that does not count (``raced``: one exists, or a newer file's does;
        ``lifted``: the file is not newer than the last one imported before a lifted tombstone, see ``lift``).

        One transaction with the floor's condition check: 4 write units for a record under 1 KB (2 for the
        update, 2 for the check, billed as a transactional write), where the update alone was 1.
        """
        record = AudienceRecord(pk=audiences_pk(app_id), sk=name)
        actions: list[Action] = [
            *_failed_uncounted(failure, sequencer, now),
            AudienceRecord.attempt_sequencer.set(sequencer),
            AudienceRecord.created_at.set(AudienceRecord.created_at | now),
        ]
        condition = AudienceRecord.pk.does_not_exist() | (
            (AudienceRecord.status == AudienceStatus.FAILED.value)
            & (AudienceRecord.counted == False)  # noqa: E712
            & _older_attempt(sequencer)
        )
        transaction = Transaction()
        transaction.update("audience", record, actions, condition=condition)
        _above_floor(transaction, app_id, name, sequencer)
        refused = transaction.commit()
        if "lifted" in refused:
            return "lifted"
        return "raced" if refused else "recorded"

    def claim_existing(self, attempt: Attempt, stale_before: datetime) -> bool:
        """Start importing a newer file into an existing audience; False when a newer (or the same) one is in hand.

        The same sequencer is claimed again by Lambda's retry of the attempt (the same request id: the
        function crashed or ran out of time or memory), or when its attempt started before ``stale_before``.
        """
        app_id, name, sequencer, request_id = attempt.app_id, attempt.name, attempt.sequencer, attempt.request_id
        record = AudienceRecord(pk=audiences_pk(app_id), sk=name)
        newer = (
            AudienceRecord.attempt_sequencer.does_not_exist()
            | (AudienceRecord.attempt_sequencer < sequencer)
            | (
                (AudienceRecord.attempt_sequencer == sequencer)
                & ((AudienceRecord.attempt_started_at < stale_before) | (AudienceRecord.attempt_request == request_id))
            )
        )
        applied_older = AudienceRecord.sequencer.does_not_exist() | (AudienceRecord.sequencer < sequencer)
        condition = (
            AudienceRecord.pk.exists()
            & (AudienceRecord.status != AudienceStatus.DELETED.value)
            & (AudienceRecord.counted == True)  # noqa: E712
            & newer
            & applied_older
        )
        actions: list[Action] = [
            AudienceRecord.attempt_sequencer.set(sequencer),
            AudienceRecord.attempt_started_at.set(attempt.now),
            AudienceRecord.attempt_request.set(request_id),
            AudienceRecord.updated_at.set(attempt.now),
        ]
        return update_if(record, actions, condition)

    def mark_notified(self, app_id: str, name: str, sequencer: str, *, told: Told = "imported") -> bool:
        """Note that the import, failure or refusal of ``sequencer`` was told (False: a newer one already was)."""
        marker = {
            "imported": AudienceRecord.notified_sequencer,
            "failure": AudienceRecord.failure_notified_sequencer,
            "refusal": AudienceRecord.refusal_notified_sequencer,
        }[told]
        record = AudienceRecord(pk=audiences_pk(app_id), sk=name)
        condition = AudienceRecord.pk.exists() & (marker.does_not_exist() | (marker < sequencer))
        return update_if(record, [marker.set(sequencer)], condition)

    def publish(self, flip: Flip, replacing: Layout | None) -> Published | None:
        """Flip a counted audience from ``replacing`` (its version as just read; None: it has none) to the
        flip's version in one conditional write; None when a newer file got there first, the version moved
        meanwhile (read the record again), or the audience does not count (its slot was given back: see
        ``publish_recounted``).

        The same write notes the version it replaces under the file's sequencer (``unremoved``), so that
        whatever finishes this flip (its run, Lambda's retry, the lost-import recorder) removes it, even
        after newer files flipped the audience again.
        """
        changes = _flip_changes(flip.layout, flip.counts, flip.samples, flip.key, flip.sequencer, flip.now)
        actions: list[Action] = [getattr(AudienceRecord, attribute).set(value) for attribute, value in changes.items()]
        if replacing is not None:
            actions.append(AudienceRecord.unremoved.add({_unremoved_entry(flip.sequencer, replacing)}))
        at_version = (
            AudienceRecord.version.does_not_exist()
            if replacing is None
            else AudienceRecord.version == replacing.version
        )
        condition = (
            AudienceRecord.pk.exists()
            & (AudienceRecord.status != AudienceStatus.DELETED.value)
            & (AudienceRecord.counted == True)  # noqa: E712
            & _older_import(flip.sequencer)
            & at_version
        )
        record = AudienceRecord(pk=audiences_pk(flip.app_id), sk=flip.name)
        if not update_if(record, actions, condition):
            return None
        return Published(to_audience(record), replacing)

    def forget_replaced(self, app_id: str, name: str, sequencer: str, replaced: Layout) -> None:
        """Drop the note of a version the flip of ``sequencer`` replaced, once that version is removed."""
        record = AudienceRecord(pk=audiences_pk(app_id), sk=name)
        entry = AudienceRecord.unremoved.delete({_unremoved_entry(sequencer, replaced)})
        update_if(record, [entry], AudienceRecord.pk.exists())

    def publish_recounted(self, publish: "Flip", maximum: int) -> Published | str:
        """Flip an audience that does not count (a newer file's failed first attempt gave its slot back)
        and count it again, in one transaction.

        Returns the published audience, ``limit`` (the app is at its ``maximum``), ``raced``, or ``lifted``: the
        record was refused anew after a lifted tombstone, and this file came before the deletion (see ``lift``).
        """
        app_id, name, now = publish.app_id, publish.name, publish.now
        changes = _flip_changes(
            publish.layout, publish.counts, publish.samples, publish.key, publish.sequencer, now
        )  # fmt: skip
        actions: list[Action] = [getattr(AudienceRecord, attribute).set(value) for attribute, value in changes.items()]
        actions.append(AudienceRecord.counted.set(True))
        condition = (
            (AudienceRecord.counted == False)  # noqa: E712
            & (AudienceRecord.status == AudienceStatus.FAILED.value)
            & AudienceRecord.version.does_not_exist()
            & _older_import(publish.sequencer)
        )
        transaction = Transaction()
        transaction.update("count", *_counted_in(app_id, maximum, now))
        transaction.update("audience", AudienceRecord(pk=audiences_pk(app_id), sk=name), actions, condition=condition)
        _above_floor(transaction, app_id, name, publish.sequencer)
        refused = transaction.commit()
        if "lifted" in refused:
            return "lifted"
        if "audience" in refused:
            return "raced"
        if refused:
            return "limit"
        audience = self.get(app_id, name, consistent=True)
        return "raced" if audience is None else Published(audience, None)

    def point_to(self, app_id: str, name: str, layout: Layout) -> bool:
        """Point lookups at ``layout``, if the audience is still at that version. False: it moved on, or the
        transaction was refused for the moment (another one held the record, or throttling): read it again."""
        transaction = Transaction()
        at_version = AudienceRecord.version == layout.version
        transaction.condition_check("audience", AudienceRecord, audiences_pk(app_id), name, at_version)
        pointer = AudiencePointerRecord(
            pk=audience_pointer_pk(app_id),
            sk=name,
            version=layout.version,
            partitions=layout.partitions,
            buckets_per_partition=layout.buckets_per_partition,
            members_key=layout.members_key,
        )
        transaction.put("pointer", pointer)
        return applied(transaction)

    def pointer(self, app_id: str, name: str, *, consistent: bool = False) -> Layout | None:
        """The layout lookups read (half a unit: the item stays under 4 KB); None when there is no pointer."""
        try:
            record = AudiencePointerRecord.get(audience_pointer_pk(app_id), name, consistent_read=consistent)
        except AudiencePointerRecord.DoesNotExist:
            return None
        return Layout(
            version=record.version,
            partitions=int(record.partitions),
            buckets_per_partition=int(record.buckets_per_partition),
            members_key=record.members_key,
        )

    def record_failure(
        self, app_id: str, name: str, failure: Failure, sequencer: str, now: datetime
    ) -> Recorded | Audience:
        """Record a failed import on the audience; members stay. ``recorded``; ``superseded`` when a newer
        file's failure is recorded (it stays: an older failure never replaces a newer one); ``moot`` when a
        newer file was imported already; the tombstone, untouched, when the audience was deleted meanwhile
        (the file then goes as a tombstone has files go: see ``AudienceImporter.on_tombstone``).

        A new audience whose first file failed in its own attempt becomes ``failed`` and stops counting
        against the maximum, in the same transaction that gives its slot back.
        """
        released = self._release_first(app_id, name, failure, sequencer, now)
        if released is not None:
            return released
        record = AudienceRecord(pk=audiences_pk(app_id), sk=name)
        actions: list[Action] = [
            AudienceRecord.last_failure.set(_failure_text(failure)),
            AudienceRecord.failed_sequencer.set(sequencer),
            AudienceRecord.updated_at.set(now),
        ]
        condition = (
            AudienceRecord.pk.exists()
            & (AudienceRecord.status != AudienceStatus.DELETED.value)
            & _older_import(sequencer)
            & _older_failure(sequencer)
        )
        if update_if(record, actions, condition):
            return "recorded"
        current = self.get(app_id, name, consistent=True)
        if current is not None and current.status is AudienceStatus.DELETED:
            return current
        newer_import = current is None or (current.sequencer is not None and current.sequencer >= sequencer)
        return "moot" if newer_import else "superseded"

    def release_unstarted(self, app_id: str, name: str, sequencer: str, now: datetime) -> bool:
        """A new name's first attempt that imported nothing and failed nothing (its object was replaced): its
        slot comes back. The record goes, as if the name had never been claimed, only when it holds no failure
        or refusal; else it keeps them, ``failed`` and not counted (a newer file's failure noted on the attempt,
        or the failure of a name counted again after it)."""
        return self._release_first(app_id, name, None, sequencer, now) is not None

    def _release_first(
        self, app_id: str, name: str, failure: Failure | None, sequencer: str, now: datetime
    ) -> Recorded | None:
        """Give a new name's slot back if ``sequencer`` holds its own first attempt (None: it does not).

        The record becomes ``failed`` with ``failure``, unless a newer file's failure is recorded on it: that
        one stays (``superseded``). With no failure, the record goes unless it holds one (or a refusal).
        """
        own_first_attempt = (
            (AudienceRecord.status == AudienceStatus.IMPORTING.value)
            & (AudienceRecord.counted == True)  # noqa: E712
            & (AudienceRecord.attempt_sequencer == sequencer)
        )
        if failure is not None:
            recorded = _failed_uncounted(failure, sequencer, now)
            if self._release(app_id, name, now, recorded, own_first_attempt & _older_failure(sequencer)):
                return "recorded"
        elif self._release(app_id, name, now, None, own_first_attempt & _holds_no_failure()):
            return "recorded"
        uncounted: list[Action] = [
            AudienceRecord.status.set(AudienceStatus.FAILED.value),
            AudienceRecord.counted.set(False),
            AudienceRecord.updated_at.set(now),
        ]
        # A newer file's failure, noted on this attempt, stays; that file is the attempt now, as
        # ``record_refused_new`` would have left it: a duplicate event of it is skipped, not refused and told again.
        newer_failure = own_first_attempt & (AudienceRecord.failed_sequencer > sequencer)
        taken_over = [*uncounted, AudienceRecord.attempt_sequencer.set(AudienceRecord.failed_sequencer)]
        if self._release(app_id, name, now, taken_over, newer_failure):
            return "superseded" if failure is not None else "recorded"
        # An older file's failure or a refusal (a name counted again after it) stays too, with this file as the
        # attempt: a late event of it, or of an older file, is skipped rather than claimed and refused again.
        if failure is None and self._release(app_id, name, now, uncounted, own_first_attempt):
            return "recorded"
        return None

    def _release(
        self, app_id: str, name: str, now: datetime, actions: list[Action] | None, condition: Condition
    ) -> bool:
        """Update (or, with no ``actions``, delete) the audience record under ``condition``, and give its slot
        back, in one transaction."""
        transaction = Transaction()
        record = AudienceRecord(pk=audiences_pk(app_id), sk=name)
        if actions is None:
            transaction.delete("audience", record, condition=condition)
        else:
            transaction.update("audience", record, actions, condition=condition)
        counter = AudienceCountRecord(pk=audience_count_pk(app_id), sk=AUDIENCE_COUNT_SK)
        transaction.update(
            "count", counter, [AudienceCountRecord.audiences.add(-1), AudienceCountRecord.updated_at.set(now)]
        )
        return not transaction.commit()

    def record_refusal(self, app_id: str, name: str, key: str, sequencer: str, failure: Failure, now: datetime) -> bool:
        """A file for a tombstoned name: the tombstone notes it (False: this file or a newer one was noted)."""
        record = AudienceRecord(pk=audiences_pk(app_id), sk=name)
        actions: list[Action] = [
            AudienceRecord.refused_key.set(key),
            AudienceRecord.refused_at.set(now),
            AudienceRecord.refused_sequencer.set(sequencer),
            AudienceRecord.last_failure.set(_failure_text(failure)),
            AudienceRecord.updated_at.set(now),
        ]
        newer = AudienceRecord.refused_sequencer.does_not_exist() | (AudienceRecord.refused_sequencer < sequencer)
        return update_if(record, actions, (AudienceRecord.status == AudienceStatus.DELETED.value) & newer)

    def tombstone(self, app_id: str, audience: Audience, now: datetime) -> Audience | None:
        """Delete the audience, leaving a tombstone; it stops counting. None when it changed meanwhile.

        The tombstone keeps the removed version (``removing``) until the importer has removed it (``removed``):
        a repeated DELETE asks for the removal again while it is there. Returns the tombstone as written.
        """
        transaction = Transaction()
        record = AudienceRecord(pk=audiences_pk(app_id), sk=audience.name)
        actions: list[Action] = [
            AudienceRecord.status.set(AudienceStatus.DELETED.value),
            AudienceRecord.counted.set(False),
            AudienceRecord.deleted_at.set(now),
            AudienceRecord.updated_at.set(now),
            AudienceRecord.version.remove(),
            AudienceRecord.partitions.remove(),
            AudienceRecord.buckets_per_partition.remove(),
            AudienceRecord.members_key.remove(),
        ]
        if audience.layout is not None:
            actions += [
                AudienceRecord.removing_version.set(audience.layout.version),
                AudienceRecord.removing_partitions.set(audience.layout.partitions),
                AudienceRecord.removing_buckets_per_partition.set(audience.layout.buckets_per_partition),
            ]
        version = audience.layout.version if audience.layout else None
        unchanged = AudienceRecord.updated_at == audience.updated_at
        same_version = AudienceRecord.version.does_not_exist() if version is None else AudienceRecord.version == version
        transaction.update("audience", record, actions, condition=unchanged & same_version)
        transaction.delete("pointer", AudiencePointerRecord(pk=audience_pointer_pk(app_id), sk=audience.name))
        if audience.counted:
            counter = AudienceCountRecord(pk=audience_count_pk(app_id), sk=AUDIENCE_COUNT_SK)
            transaction.update(
                "count", counter, [AudienceCountRecord.audiences.add(-1), AudienceCountRecord.updated_at.set(now)]
            )
        if transaction.commit():
            return None
        written = {"status": AudienceStatus.DELETED, "counted": False, "deleted_at": now, "updated_at": now}
        cleared = {"version": None, "layout": None, "removing": audience.layout}
        return audience.model_copy(update=written | cleared)

    def removed(self, app_id: str, name: str, version: str) -> bool:
        """The importer removed a tombstone's ``version``: the tombstone stops naming it (False: it names no such
        version, e.g. it was lifted, or the removal was noted already)."""
        record = AudienceRecord(pk=audiences_pk(app_id), sk=name)
        actions: list[Action] = [
            AudienceRecord.removing_version.remove(),
            AudienceRecord.removing_partitions.remove(),
            AudienceRecord.removing_buckets_per_partition.remove(),
        ]
        return update_if(record, actions, AudienceRecord.removing_version == version)

    def lift(self, app_id: str, tombstone: Audience, now: datetime) -> bool:
        """Lift a tombstone: its record goes, if it is still the one read (the same deletion: a lift, an import and
        another DELETE meanwhile leave a newer tombstone, which stays). False when it changed.

        A file imported before the deletion may still come back once the record is gone: Lambda's retry of its
        import, or the lost-import recorder, up to hours later. It must neither be imported again (its members were
        deleted) nor recorded and told as failed (it was imported). So the same transaction leaves a floor, the
        last imported file's sequencer (``<app>#audience-lifted``, the name), kept ``LIFTED_FLOOR_TTL``: a new
        record's claim, a refused new name's record and a file counting a refused name again check it. 4 write
        units with the floor, where the delete alone was 1 (each item of a transaction is billed twice).
        """
        transaction = Transaction()
        record = AudienceRecord(pk=audiences_pk(app_id), sk=tombstone.name)
        same_deletion = (
            AudienceRecord.deleted_at.does_not_exist()
            if tombstone.deleted_at is None
            else AudienceRecord.deleted_at == tombstone.deleted_at
        )
        transaction.delete(
            "audience", record, condition=(AudienceRecord.status == AudienceStatus.DELETED.value) & same_deletion
        )
        if tombstone.sequencer is not None:
            expires_at = int((now + LIFTED_FLOOR_TTL).timestamp())
            floor = AudienceLiftedRecord(
                pk=audience_lifted_pk(app_id), sk=tombstone.name, sequencer=tombstone.sequencer,
                expires_at=expires_at, created_at=now, updated_at=now,
            )  # fmt: skip
            # Any floor there is older: every file since the last lift was claimed above it.
            transaction.put("floor", floor)
        return not transaction.commit()

    # --- Member buckets -------------------------------------------------------

    def write_buckets(self, app_id: str, version: str, packed: Iterable[tuple[int, bytes]]) -> None:
        """Write buckets (number, packed hashes) of a version that no reader sees yet."""
        chunk: list[AudienceBucketRecord] = []
        for bucket, hashes in packed:
            chunk.append(
                AudienceBucketRecord(
                    pk=audience_bucket_pk(app_id, version, bucket), sk=AUDIENCE_BUCKET_SK, hashes=hashes or None
                )
            )
            if len(chunk) == BATCH_WRITE_SIZE:
                _write_chunk(chunk)
                chunk = []
        if chunk:
            _write_chunk(chunk)

    def delete_buckets(self, app_id: str, layout: Layout) -> None:
        """Delete a version's buckets, 25 a call. Every chunk is tried, even after one that BatchWriteItem left
        undeleted (what removes the version again then finds only those left); raises once all were tried, when
        any bucket was left."""
        total, left = layout.bucket_total, 0
        failure: PutError | None = None
        for start in range(0, total, BATCH_WRITE_SIZE):
            chunk = [
                AudienceBucketRecord(pk=audience_bucket_pk(app_id, layout.version, bucket), sk=AUDIENCE_BUCKET_SK)
                for bucket in range(start, min(start + BATCH_WRITE_SIZE, total))
            ]
            pending, error = _pending(chunk, delete=True)
            left += len(pending)
            failure = failure or error
        if left:
            raise RuntimeError(f"BatchWriteItem left {left} of {total} audience buckets undeleted") from failure

    def read_buckets(
        self, app_id: str, version: str, numbers: Iterable[int], *, consistent: bool = False
    ) -> dict[int, bytes | None]:
        """The packed hashes of these buckets (None: not there, e.g. removed by a newer import)."""
        wanted = sorted(set(numbers))
        found: dict[int, bytes | None] = dict.fromkeys(wanted)
        if len(wanted) == 1:
            try:
                record = AudienceBucketRecord.get(
                    audience_bucket_pk(app_id, version, wanted[0]), AUDIENCE_BUCKET_SK, consistent_read=consistent
                )
            except AudienceBucketRecord.DoesNotExist:
                return found
            found[wanted[0]] = bytes(record.hashes) if record.hashes is not None else b""
            return found
        keys = [(audience_bucket_pk(app_id, version, number), AUDIENCE_BUCKET_SK) for number in wanted]
        by_pk = {audience_bucket_pk(app_id, version, number): number for number in wanted}
        for record in AudienceBucketRecord.batch_get(keys, consistent_read=consistent):
            found[by_pk[record.pk]] = bytes(record.hashes) if record.hashes is not None else b""
        return found


def _write_chunk(chunk: list[AudienceBucketRecord]) -> None:
    pending, failure = _pending(chunk, delete=False)
    if pending:
        raise RuntimeError(f"BatchWriteItem left {len(pending)} audience buckets unwritten") from failure


def _pending(chunk: list[AudienceBucketRecord], *, delete: bool) -> tuple[list[AudienceBucketRecord], PutError | None]:
    """Write (or delete) a chunk of buckets: what BatchWriteItem left after its attempts, and its last error."""
    return write_chunk(
        AudienceBucketRecord, chunk, delete=delete, attempts=BATCH_WRITE_ATTEMPTS, backoff_seconds=BATCH_BACKOFF_SECONDS
    )


def _failed_uncounted(failure: Failure, sequencer: str, now: datetime) -> list[Action]:
    """A name with no members that does not count against the app's maximum."""
    return [
        AudienceRecord.status.set(AudienceStatus.FAILED.value),
        AudienceRecord.counted.set(False),
        AudienceRecord.last_failure.set(_failure_text(failure)),
        AudienceRecord.failed_sequencer.set(sequencer),
        AudienceRecord.updated_at.set(now),
    ]


def _holds_no_failure() -> Condition:
    """Nothing failed or was refused on the record: it holds no failure, no refusal, nor a sequencer of one."""
    none: Condition = (
        AudienceRecord.last_failure.does_not_exist()
        & AudienceRecord.failed_sequencer.does_not_exist()
        & AudienceRecord.refused_sequencer.does_not_exist()
    )
    return none


def _above_floor(transaction: Transaction, app_id: str, name: str, sequencer: str) -> None:
    """Check, in ``transaction`` (label ``lifted``), that the file ``sequencer`` is newer than the last one imported
    before the name's tombstone was lifted, if it was (see ``AudienceRepository.lift``)."""
    floor = AudienceLiftedRecord.sequencer
    newer = floor.does_not_exist() | (floor < sequencer)
    transaction.condition_check("lifted", AudienceLiftedRecord, audience_lifted_pk(app_id), name, newer)


def _older_attempt(sequencer: str) -> Condition:
    attempt = AudienceRecord.attempt_sequencer
    older: Condition = attempt.does_not_exist() | (attempt < sequencer)
    return older


def _older_failure(sequencer: str) -> Condition:
    """No failure recorded, or an older file's (the same file's again, for a retry)."""
    failed = AudienceRecord.failed_sequencer
    older: Condition = failed.does_not_exist() | (failed <= sequencer)
    return older


def _older_import(sequencer: str) -> Condition:
    older: Condition = AudienceRecord.sequencer.does_not_exist() | (AudienceRecord.sequencer < sequencer)
    return older


def _counted_in(app_id: str, maximum: int, now: datetime) -> tuple[AudienceCountRecord, list[Action], Condition]:
    """The app's audience count plus one, unless it is at ``maximum``: (record, actions, condition)."""
    counter = AudienceCountRecord(pk=audience_count_pk(app_id), sk=AUDIENCE_COUNT_SK, created_at=now, updated_at=now)
    actions: list[Action] = [
        AudienceCountRecord.audiences.add(1),
        AudienceCountRecord.created_at.set(AudienceCountRecord.created_at | now),
        AudienceCountRecord.updated_at.set(now),
    ]
    return counter, actions, AudienceCountRecord.audiences.does_not_exist() | (AudienceCountRecord.audiences < maximum)


def _flip_changes(
    layout: Layout, counts: Counts, samples: list[InvalidLine], key: str, sequencer: str, now: datetime
) -> dict[str, object]:
    return {
        "status": AudienceStatus.READY.value,
        "version": layout.version,
        "partitions": layout.partitions,
        "buckets_per_partition": layout.buckets_per_partition,
        "members_key": layout.members_key,
        "counts": counts.model_dump_json(),
        "invalid_samples": json.dumps([sample.model_dump(mode="json") for sample in samples]),
        "source_key": key,
        "sequencer": sequencer,
        "imported_at": now,
        "updated_at": now,
    }


def _unremoved_entry(sequencer: str, layout: Layout) -> str:
    """How ``unremoved`` notes a replaced version: the members key follows from the app and the version."""
    return f"{sequencer} {layout.version} {layout.partitions} {layout.buckets_per_partition}"


def _unremoved(app_id: str, entry: str) -> tuple[str, Layout]:
    sequencer, version, partitions, buckets_per_partition = entry.split(" ")
    layout = Layout(
        version=version,
        partitions=int(partitions),
        buckets_per_partition=int(buckets_per_partition),
        members_key=audience_members_key(app_id, version),
    )
    return sequencer, layout


def _failure_text(failure: Failure) -> str:
    return failure.model_dump_json()


def to_audience(record: AudienceRecord) -> Audience:
    layout = None
    if record.version and record.partitions and record.buckets_per_partition and record.members_key:
        layout = Layout(
            version=record.version,
            partitions=int(record.partitions),
            buckets_per_partition=int(record.buckets_per_partition),
            members_key=record.members_key,
        )
    app_id = record.pk.removesuffix(audiences_pk(""))
    removing = _kept_layout(
        app_id, record.removing_version, record.removing_partitions, record.removing_buckets_per_partition
    )
    unremoved = dict(_unremoved(app_id, entry) for entry in record.unremoved or ())
    return Audience(
        name=record.sk,
        status=AudienceStatus(record.status),
        version=record.version,
        counts=None if record.counts is None else Counts.model_validate_json(record.counts),
        invalid_samples=[InvalidLine.model_validate(item) for item in json.loads(record.invalid_samples or "[]")],
        source_key=record.source_key,
        sequencer=record.sequencer,
        import_started_at=record.attempt_started_at,
        imported_at=record.imported_at,
        last_failure=None if record.last_failure is None else Failure.model_validate_json(record.last_failure),
        deleted_at=record.deleted_at,
        refused_key=record.refused_key,
        refused_at=record.refused_at,
        created_at=record.created_at,
        updated_at=record.updated_at,
        layout=layout,
        counted=bool(record.counted),
        attempt_sequencer=record.attempt_sequencer,
        attempt_request=record.attempt_request,
        notified_sequencer=record.notified_sequencer,
        failed_sequencer=record.failed_sequencer,
        failure_notified_sequencer=record.failure_notified_sequencer,
        refused_sequencer=record.refused_sequencer,
        refusal_notified_sequencer=record.refusal_notified_sequencer,
        removing=removing,
        unremoved=unremoved,
    )


def _kept_layout(
    app_id: str, version: str | None, partitions: float | None, per_partition: float | None
) -> Layout | None:
    """A version the record keeps to remove (its member list's key follows from the version)."""
    if not (version and partitions and per_partition):
        return None
    return Layout(
        version=version,
        partitions=int(partitions),
        buckets_per_partition=int(per_partition),
        members_key=audience_members_key(app_id, version),
    )


def bucket_numbers(layout: Layout, user_ids: Iterable[str]) -> dict[str, tuple[int, bytes]]:
    return {
        user_id: buckets.bucket_of(user_id.encode("utf-8"), layout.partitions, layout.buckets_per_partition)
        for user_id in user_ids
    }
