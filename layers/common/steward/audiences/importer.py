"""The audience import: an S3 object becomes a new member version, swapped in atomically.

Memory stays bounded whatever the file's size: ids are spilled to
``partitions`` files on local disk by a stable hash of the id (each chunk's
repeats once), then each partition (about 4 MB) is deduplicated, checked
against the app's users and packed into buckets on its own. Every import
writes a new version; one conditional write flips the audience to it, so
readers see the old members or the new ones, never a mix, and the older
version is removed afterwards.
"""

import contextlib
import logging
import secrets
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Literal

from steward.audiences import buckets, ranges
from steward.audiences.failures import (
    RecordContended,
    record_failed,
    tell_failure,
    tell_recorded,
    untold_failure,
    untold_refusal,
)
from steward.audiences.keys import ImportKey, app_of_csv, event_key, padded_sequencer, parse_key
from steward.audiences.models import (
    DEFAULT_MAX_AUDIENCES,
    MAX_NAME_CHARS,
    MAX_OBJECT_BYTES,
    Audience,
    AudienceStatus,
    Counts,
    Failure,
    InvalidLine,
    Layout,
)
from steward.audiences.parse import Scanner, scan
from steward.audiences.ports import (
    MemberLists,
    Notifier,
    ObjectChanged,
    ObjectSource,
    ObjectUnreadable,
    OpenedObject,
)
from steward.audiences.repository import Attempt, AudienceRepository, Flip, Published, Recorded
from steward.tables import audience_members_key

logger = logging.getLogger(__name__)
# An attempt older than the importer's timeout is over: the same event may claim the file again.
ATTEMPT_LEASE = timedelta(minutes=16)
LOOKUP_BATCH = 100
# Reads and conditional writes of one claim before giving up (each retry follows another writer's success).
CLAIM_ATTEMPTS = 5
# The import stops with this much of the function's time left, to record the failure and clean up.
TIME_MARGIN_SECONDS = 60.0
LOOKUP_THREADS = 8
# Counted each time a version's removal leaves some of it (an alarm can watch it).
REMOVAL_FAILED_METRIC = "AudienceVersionRemovalFailed"
# Counted when a claim or a flip kept losing its conditional write (the file fails as `contended`).
CONTENDED_METRIC = "AudienceImportContended"

RegisteredIds = Callable[[str, list[str]], set[str]]
# (app, at most this many users, where their ids go) -> whether every user was read within the limit.
UserIds = Callable[[str, int, Callable[[list[bytes]], None]], bool]
AppExists = Callable[[str], bool]
Metric = Callable[[str], None]
# How an import took its file: a record of its own (created, or a refused one counted again), or one that counts.
Claimed = Literal["new", "existing"]


@dataclass(frozen=True)
class ObjectCreated:
    """One S3 ObjectCreated record, as the importer needs it."""

    bucket: str
    raw_key: str
    size: int
    sequencer: str
    etag: str


@dataclass(frozen=True)
class FanOut:
    """Files over ``threshold_bytes`` go to the fan-out state machine, cut in ranges of ``range_bytes``.

    ``start(name, input)`` starts the execution; False when one of that name exists (a duplicate event).
    """

    threshold_bytes: int
    range_bytes: int
    start: Callable[[str, dict[str, Any]], bool]


@dataclass(frozen=True)
class Invocation:
    """The Lambda invocation handling the event: its request id (a retry keeps it) and the time it has left."""

    request_id: str
    remaining_seconds: Callable[[], float]


class VersionNotRemoved(Exception):
    """A version's removal left some of it (buckets, or its member list), every part tried. Raised after what the
    invocation had to do first (a flip's pointer and announcement, a failure's record), so that it fails: Lambda's
    retries, then the OnFailure destination (or the fan-out step's Retry, then its fail step), remove it again."""


class ImportTimedOut(Exception):
    """The import stopped before the function's time ran out, to record the failure.

    ``partial`` is the version it had begun to write, removed once the failure is recorded.
    """

    def __init__(self, partial: Layout | None = None) -> None:
        super().__init__("out of time")
        self.partial = partial


@dataclass(frozen=True)
class ImportOutcome:
    """What became of one record: imported, failed, refused, skipped (stale or duplicate), stray or unknown_app."""

    outcome: str
    key: str
    app_id: str | None = None
    name: str | None = None
    counts: Counts | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Parsed:
    counts: Counts
    samples: list[InvalidLine]
    layout: Layout


class AudienceImporter:
    def __init__(
        self,
        repository: AudienceRepository,
        source: ObjectSource,
        member_lists: MemberLists,
        registered_ids: RegisteredIds,
        user_ids: UserIds,
        app_exists: AppExists,
        notifier: Notifier,
        metric: Metric,
        clock: Callable[[], datetime],
        work_dir: str | None,
        fan_out: FanOut | None,
    ) -> None:
        self.repository = repository
        self.source = source
        self.member_lists = member_lists
        self.registered_ids = registered_ids
        self.user_ids = user_ids
        self.app_exists = app_exists
        self.notifier = notifier
        self.metric = metric
        self.clock = clock
        self.work_dir = work_dir
        self.fan_out = fan_out

    def handle(self, record: ObjectCreated, invocation: Invocation) -> ImportOutcome:
        key = event_key(record.raw_key)
        target = parse_key(key)
        if target is None:
            return self._stray(key, record.sequencer)
        if not self.app_exists(target.app_id):
            logger.warning("Ignored a file for an app that does not exist: %r", key)
            self.metric("AudienceImportUnknownApp")
            return ImportOutcome("unknown_app", key, target.app_id)
        sequencer = padded_sequencer(record.sequencer)
        return self._import(target, record, sequencer, invocation)

    def _stray(self, key: str, sequencer: str) -> ImportOutcome:
        """A key outside the contract. A ``.csv`` in an existing app's folder with a bad name is the app's
        mistake to hear of: it is published as a failure (there is no audience to record it on)."""
        folder = app_of_csv(key)
        if folder is None or not self.app_exists(folder[0]):
            logger.warning("Ignored an object outside imports/<app_id>/<name>.csv: %r", key)
            self.metric("AudienceImportStrayKey")
            return ImportOutcome("stray", key)
        app_id, name = folder
        logger.warning("Refused a file whose audience name is not valid: %r", key)
        self.metric("AudienceImportInvalidName")
        reason = f"{name!r} is not an audience name: 1-{MAX_NAME_CHARS} characters, without '/' or control characters."
        failure = Failure(code="invalid_name", reason=reason, key=key, at=self.clock())
        self.notifier.failed(app_id, name, failure, padded_sequencer(sequencer))
        return ImportOutcome("refused", key, app_id, name, reason=failure.code)

    def _import(
        self, target: ImportKey, record: ObjectCreated, sequencer: str, invocation: Invocation
    ) -> ImportOutcome:
        app_id, key = target.app_id, target.key
        claim = self._claim(target, record.size, sequencer, invocation.request_id)
        if isinstance(claim, ImportOutcome):
            return claim
        if self.fan_out is not None and record.size > self.fan_out.threshold_bytes:
            if _start_fan_out(self.fan_out, target, record, sequencer):
                return ImportOutcome("started", key, app_id, target.name)
            if claim == "new":
                # The file's execution ran already (its name comes from the key and the sequencer), and its record
                # went since (a lifted tombstone, a first attempt let go of): this claim starts nothing, so the name
                # goes back as it was. A claim taken over (Lambda's retry of the invocation that started it) keeps
                # the record, which the execution still running finishes.
                self.repository.release_unstarted(app_id, target.name, sequencer, self.clock())
            return ImportOutcome("skipped", key, app_id, target.name)
        try:
            source = self.source.open(record.bucket, key, record.etag)
            parsed = self.build_version(app_id, source, _deadline(invocation.remaining_seconds))
        except ImportTimedOut as exc:
            failed = self.fail_claimed(
                target, sequencer, "timeout", "The import ran out of the function's time; put the file again."
            )
            if exc.partial is not None:
                # Lambda's retry would import the file again (its attempt is this request's) only to remove this.
                self.discard_version(app_id, exc.partial)
            return failed
        except ObjectChanged:
            return self.object_replaced(target, sequencer)
        except ObjectUnreadable as exc:
            return self.fail_claimed(target, sequencer, "unreadable", f"The file could not be read: {exc}")
        except Exception as exc:
            logger.exception("Import of %r failed", key)
            return self.fail_claimed(target, sequencer, "import_error", f"The import failed: {type(exc).__name__}.")
        return self.publish_version(target, sequencer, parsed)

    def object_replaced(self, target: ImportKey, sequencer: str) -> ImportOutcome:
        """A newer object replaced this one at the key: its own, newer event imports it. Nothing failed,
        and a new name's first attempt gives its slot back (the newer file may be refused before any claim)."""
        logger.info("The object at %r changed since this event; its newer event imports it", target.key)
        self.repository.release_unstarted(target.app_id, target.name, sequencer, self.clock())
        return ImportOutcome("skipped", target.key, target.app_id, target.name, reason="object_replaced")

    def publish_version(self, target: ImportKey, sequencer: str, parsed: Parsed) -> ImportOutcome:
        """Flip the audience to the built version, announce it, and remove the one it replaced.

        The flip is conditional on the version read just before it, and notes that version on the record:
        when another flip got in between (an older file's import finishing late), the record is read again,
        so the version removed is the one this flip actually replaced.
        """
        app_id, name, key = target.app_id, target.name, target.key
        flip = Flip(app_id, name, parsed.layout, parsed.counts, parsed.samples, key, sequencer, self.clock())
        current: Audience | None = None
        for _ in range(CLAIM_ATTEMPTS):
            current = self.repository.get(app_id, name, consistent=True)
            if current is not None and current.version == parsed.layout.version:
                # This very version was flipped already (a step retried after its write went through).
                self.finish_flip(app_id, current, sequencer)
                return ImportOutcome("imported", key, app_id, name, parsed.counts)
            published: Published | None = None
            if _uncounted(current, sequencer):
                # A newer file's failed first attempt gave the slot back: this file counts it again.
                maximum = self.repository.max_audiences(app_id) or DEFAULT_MAX_AUDIENCES
                recounted = self.repository.publish_recounted(flip, maximum)
                if recounted == "lifted":
                    break  # the file came before a deletion whose tombstone was lifted since
                if recounted == "limit":
                    self.discard_version(app_id, parsed.layout)
                    failure = _limit_failure(maximum, key, flip.now)
                    return self.fail_claimed(target, sequencer, failure.code, failure.reason)
                published = recounted if isinstance(recounted, Published) else None
            elif current is not None and _flippable(current, sequencer):
                published = self.repository.publish(flip, current.layout)
            else:
                break
            if published is not None:
                self._complete(app_id, published.audience, published.replaced, sequencer)
                return ImportOutcome("imported", key, app_id, name, parsed.counts)
        else:
            # Every flip lost, and the last read showed the file could still flip (else the loop broke off): no newer
            # file superseded it. Say so, as a claim refused as often does, never skip it quietly.
            return self._contended_flip(target, sequencer, parsed)
        # A newer file was imported meanwhile (or the audience was deleted): this version is never seen, and the
        # file is superseded, not failed (failing would have a retry or the fan-out's fail step refuse or fail it).
        # Or it was (a step retried after its flip went through, and a newer file flipped since): what it replaced
        # goes too, and that removal fails the invocation when it fails (its note stays, for the retry).
        self.remove_own_version(app_id, current, parsed.layout, quietly=True)
        if current is not None:
            self.finish_superseded(app_id, current, sequencer)
        return ImportOutcome("skipped", key, app_id, name, parsed.counts, reason="superseded")

    def _contended_flip(self, target: ImportKey, sequencer: str, parsed: Parsed) -> ImportOutcome:
        logger.error("Gave up flipping %r after %d refused flips", target.key, CLAIM_ATTEMPTS)
        self.metric(CONTENDED_METRIC)
        self.discard_version(target.app_id, parsed.layout)
        reason = "The audience record kept changing while this file's version was flipped; put the file again."
        return self.fail_claimed(target, sequencer, "contended", reason)

    def settle_recorded(self, target: ImportKey, current: Audience | None, sequencer: str) -> ImportOutcome | None:
        """What the record already shows of the file ``sequencer``, finished and told (once, for runs that do
        not overlap): its flip (the pointer, its event unless announced, and the removal of the version it
        replaced, done again as a run may have died in it; only that removal once a newer file flipped since,
        see ``finish_superseded``) or its failure (published unless it was). None when it shows neither.

        For the fail step and the lost-import recorder, which run once the file's own invocations are over:
        none of them is finishing it meanwhile.
        """
        if current is None:
            return None
        app_id, name, key = target.app_id, target.name, target.key
        if flipped_to(current, sequencer):
            self.finish_flip(app_id, current, sequencer)
            return ImportOutcome("imported", key, app_id, name, current.counts)
        if self.finish_superseded(app_id, current, sequencer):
            return ImportOutcome("skipped", key, app_id, name, reason="superseded")
        if current.failed_sequencer == sequencer and current.last_failure is not None:
            untold = untold_failure(current, sequencer)
            if untold is not None:
                tell_failure(self.repository, self.notifier, app_id, name, untold, sequencer)
            return ImportOutcome("failed", key, app_id, name, reason=current.last_failure.code)
        return None

    def finish_flip(self, app_id: str, audience: Audience, sequencer: str) -> None:
        """What follows a flip to ``sequencer``, for a retry after a crash: move the pointer, announce the
        import unless that was done, and remove the version the flip replaced (noted on the record)."""
        self._complete(app_id, audience, audience.unremoved.get(sequencer), sequencer)

    def finish_superseded(self, app_id: str, current: Audience, sequencer: str) -> bool:
        """The flip to ``sequencer`` went through and its run died before it removed the version it replaced;
        since, a newer file flipped the audience, or it was deleted (``current``). That removal is done now, as on
        the normal path (then the note goes); nothing else is: the pointer and the event are the newer file's
        (its counts are on the record), and a deleted audience is announced nothing. False when the record
        notes no such removal (the flip's run finished it, or the file never flipped the audience)."""
        replaced = current.unremoved.get(sequencer)
        if replaced is None:
            return False
        if current.layout is not None:
            # The newer file's run may have died before it moved the pointer, which may still name this version.
            self._point(app_id, current.name, current.layout)
        self._remove_replaced(app_id, current, sequencer, replaced)
        return True

    def _complete(self, app_id: str, audience: Audience, replaced: Layout | None, sequencer: str) -> None:
        """Lookups follow the pointer, moved before the replaced version goes. The event goes before the
        removal, which for a large audience is tens of thousands of buckets and may outlast the run: a run
        that dies in it has announced the import, and whatever finishes the flip again removes the rest
        (deleting what is gone already changes nothing).

        Every other version the record notes as not removed goes too: an older flip's whose removal failed on
        every retry (Lambda's, then the recorder's), which nothing else would find again. Each is older than
        the version the pointer now names (it never goes backwards). All are tried; the first failure raises
        once they were, and its note stays."""
        if audience.layout is not None:
            self._point(app_id, audience.name, audience.layout)
        if audience.notified_sequencer != sequencer:
            self._announce(app_id, audience, sequencer)
        pending = dict(audience.unremoved)
        if replaced is not None:
            pending[sequencer] = replaced
        failed: VersionNotRemoved | None = None
        for noted_by, version in sorted(pending.items()):
            try:
                self._remove_replaced(app_id, audience, noted_by, version)
            except VersionNotRemoved as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    def _point(self, app_id: str, name: str, layout: Layout) -> None:
        """Point lookups at ``layout``, or, when a newer flip moved the record on meanwhile, at the record's
        version (under the same condition: the record at that version), before a removal follows. The newer
        flip's own run moves the pointer too, but may be a minute late (or die first): meanwhile the pointer would
        name the version about to be removed, and lookups would answer "not a member" for members. A move refused
        for the moment (another transaction held the record, or throttling) is a lost try too: the flip is done,
        so it must not fail the invocation by itself. A deleted audience has no pointer (its deletion removed it in
        the same transaction): nothing to point at."""
        for _ in range(CLAIM_ATTEMPTS):
            if self.repository.point_to(app_id, name, layout):
                return
            current = self.repository.get(app_id, name, consistent=True)
            if current is None or current.layout is None:
                return
            layout = current.layout
        # Each lost try follows a newer flip or a conflict: so many in a row is no race. Nothing is removed; the
        # retry points.
        raise RecordContended(f"The audience {name!r} kept changing while its pointer was moved")

    def _remove_replaced(self, app_id: str, audience: Audience, sequencer: str, replaced: Layout) -> None:
        """Remove the version the flip to ``sequencer`` replaced, never the audience's current one, then drop its
        note. A removal that fails keeps the note and raises VersionNotRemoved: whatever finishes the flip again
        (Lambda's retry, the OnFailure destination, the fan-out's Flip retry or fail step) removes it."""
        current = audience.layout.version if audience.layout is not None else None
        if replaced.version != current:
            self.remove_version(app_id, replaced)
        self.repository.forget_replaced(app_id, audience.name, sequencer, replaced)

    def _announce(self, app_id: str, audience: Audience, sequencer: str) -> None:
        # The marker follows the event: a crash between the two sends it again, never not at all.
        self.notifier.imported(app_id, audience)
        self.repository.mark_notified(app_id, audience.name, sequencer)

    def _claim(self, target: ImportKey, size: int, sequencer: str, request_id: str) -> ImportOutcome | Claimed:
        """Take the import of this file (``new``: a record created, or a refused one counted again; ``existing``:
        an audience's, or a claim taken over), or say why not: skipped, refused (tombstone) or failed (a limit).

        Another event of the same name can write the record between our read and our conditional
        write; then the record is read again and the claim decided again, so that the newer of two
        files delivered together is never skipped for losing the race.
        """
        for _ in range(CLAIM_ATTEMPTS):
            now = self.clock()
            current = self.repository.get(target.app_id, target.name, consistent=True)
            if current is not None and current.status is AudienceStatus.DELETED:
                return self.on_tombstone(target, current, sequencer)
            if current is not None and _flipped_by(current, sequencer, request_id):
                # Lambda's retry of an import that flipped the audience, then died announcing it or removing
                # the version it replaced: a retry follows a crash only, so the flip is finished again.
                self.finish_flip(target.app_id, current, sequencer)
                return ImportOutcome("imported", target.key, target.app_id, target.name, current.counts)
            # The same, when a newer file flipped the audience since: only the removal is left to do (a
            # duplicate event does it as well: removing a version twice changes nothing).
            newer = current is not None and current.sequencer != sequencer
            if newer and current is not None and self.finish_superseded(target.app_id, current, sequencer):
                return ImportOutcome("skipped", target.key, target.app_id, target.name, reason="superseded")
            untold = None if current is None else untold_failure(current, sequencer)
            if untold is not None:
                # Lambda's retry (or a duplicate event) of an import whose failure was recorded but not told.
                tell_failure(self.repository, self.notifier, target.app_id, target.name, untold, sequencer)
                return ImportOutcome("failed", target.key, target.app_id, target.name, reason=untold.code)
            if _settled(current, sequencer, request_id, now):
                return ImportOutcome("skipped", target.key, target.app_id, target.name)
            if size > MAX_OBJECT_BYTES:
                # Refused before any claim: a new name never takes a slot for a file it cannot import.
                reason = f"The file has {size} bytes; the limit is {MAX_OBJECT_BYTES} (500 MiB)."
                return self.fail_unclaimed(target, current, sequencer, Failure(
                    code="file_too_large", reason=reason, key=target.key, at=now
                ))  # fmt: skip
            claim = self._claim_once(target, current, sequencer, request_id, now)
            if claim != "raced":
                return claim
        # Five lost races in a row is no race: a condition that keeps failing. Say so, never skip quietly.
        logger.error("Gave up claiming %r after %d refused claims", target.key, CLAIM_ATTEMPTS)
        self.metric(CONTENDED_METRIC)
        reason = "The audience record kept changing while this file was claimed; put the file again."
        return self.fail_unclaimed(target, current, sequencer, Failure(
            code="contended", reason=reason, key=target.key, at=self.clock()
        ))  # fmt: skip

    def _claim_once(
        self, target: ImportKey, current: Audience | None, sequencer: str, request_id: str, now: datetime
    ) -> ImportOutcome | Claimed | Literal["raced"]:
        """Claimed (``new`` or ``existing``, see ``_claim``); ``raced``: someone wrote the record meanwhile; else
        why not."""
        app_id, key = target.app_id, target.key
        attempt = Attempt(app_id, target.name, key, sequencer, request_id, now)
        if current is not None and current.counted:
            return "existing" if self.repository.claim_existing(attempt, now - ATTEMPT_LEASE) else "raced"
        maximum = self.repository.max_audiences(app_id) or DEFAULT_MAX_AUDIENCES
        claim = self.repository.claim_new(attempt, maximum, recount=current is not None)
        if claim == "limit":
            return self.fail_unclaimed(target, current, sequencer, _limit_failure(maximum, key, now))
        if claim == "lifted":
            # Imported before the audience was deleted (Lambda's retry, a late duplicate): not again, and quietly.
            return ImportOutcome("skipped", key, app_id, target.name, reason="superseded")
        return "new" if claim == "claimed" else "raced"

    def on_tombstone(self, target: ImportKey, tombstone: Audience, sequencer: str) -> ImportOutcome:
        """A file of a deleted audience. Only a file later than the deletion is refused: one the audience was
        imported from before it was deleted (or that a newer import superseded) is skipped, quietly, and the
        version its flip replaced goes if its run never removed it. For the importer, its retries, its failures
        and the lost-import recorder alike."""
        if imported_before_deletion(tombstone, sequencer):
            self.finish_superseded(target.app_id, tombstone, sequencer)
            return ImportOutcome("skipped", target.key, target.app_id, target.name, reason="superseded")
        return self.refuse_deleted(target, tombstone, sequencer, self.clock())

    def refuse_deleted(self, target: ImportKey, tombstone: Audience, sequencer: str, now: datetime) -> ImportOutcome:
        failure = Failure(
            code="audience_deleted",
            reason=f"The audience {target.name!r} was deleted; lift its tombstone to import it again.",
            key=target.key,
            at=now,
        )
        # Told once per file: a duplicate (or older) event of a refused file is refused quietly, except a
        # retry (or duplicate) of a refusal noted but never told, which tells it. Noted, told, then marked.
        app_id, name = target.app_id, target.name
        untold = untold_refusal(tombstone, sequencer)
        if self.repository.record_refusal(app_id, name, target.key, sequencer, failure, now) or untold:
            self.notifier.failed(app_id, name, failure, sequencer)
            self.repository.mark_notified(app_id, name, sequencer, told="refusal")
        return ImportOutcome("refused", target.key, target.app_id, target.name, reason=failure.code)

    def fail_unclaimed(
        self, target: ImportKey, current: Audience | None, sequencer: str, failure: Failure
    ) -> ImportOutcome:
        """A file refused before it was claimed (or lost before it recorded anything): a new name gets a failed
        record that does not count; a name deleted meanwhile refuses the file; a newer file's import or attempt
        makes it moot (skipped)."""
        app_id, name = target.app_id, target.name
        recorded = record_failed(self.repository, self.notifier, app_id, name, current, sequencer, failure)
        if isinstance(recorded, Audience):
            return self.on_tombstone(target, recorded, sequencer)
        return _failed(target, failure, recorded)

    def fail_claimed(self, target: ImportKey, sequencer: str, code: str, reason: str) -> ImportOutcome:
        """Record the failure of a claimed file and tell it; skipped when a newer file's import made it moot.
        When the audience was deleted meanwhile, the tombstone stays as it is: the file goes as its rule says."""
        now = self.clock()
        failure = Failure(code=code, reason=reason, key=target.key, at=now)
        recorded = self.repository.record_failure(target.app_id, target.name, failure, sequencer, now)
        if isinstance(recorded, Audience):
            return self.on_tombstone(target, recorded, sequencer)
        tell_recorded(self.repository, self.notifier, target.app_id, target.name, failure, sequencer, recorded)
        return _failed(target, failure, recorded)

    def remove_version(self, app_id: str, layout: Layout) -> None:
        """Remove a version no reader will look at again: its buckets (every chunk), then its member list, even
        when the buckets' removal failed. VersionNotRemoved once both were tried, when either left something
        (logged, and counted in AudienceVersionRemovalFailed); removing what is gone changes nothing."""
        errors: list[Exception] = []
        for remove in (
            lambda: self.repository.delete_buckets(app_id, layout),
            lambda: self.member_lists.delete(layout.members_key),
        ):
            try:
                remove()
            except Exception as exc:  # the other part is removed all the same; this one is raised below
                errors.append(exc)
        if errors:
            logger.error("Could not remove version %s of app %s: %r", layout.version, app_id, errors)
            self.metric(REMOVAL_FAILED_METRIC)
            raise VersionNotRemoved(f"Version {layout.version} of app {app_id} was not removed") from errors[0]

    def discard_version(self, app_id: str, layout: Layout) -> None:
        """Remove a version that no record names (it was never flipped to), on a path where failing the invocation
        would do worse than leave it: skip recording a failure, import the file again, or fail (or refuse) a file
        that was only superseded. A removal that fails leaves it, logged and counted (see ``remove_version``)."""
        with contextlib.suppress(VersionNotRemoved):
            self.remove_version(app_id, layout)

    def remove_own_version(self, app_id: str, current: Audience | None, layout: Layout, *, quietly: bool) -> None:
        """Remove the version a file's import built, which the audience (``current``, as just read) is not at.

        A fan-out file's version is named after the file, so a retry of its Flip, its fail step or the delayed look
        at its execution may come after the file flipped the audience and a newer file's flip replaced it: that
        flip noted it (``unremoved``) and its finisher removes it after moving the pointer, which until then may
        still name it (the newer flip's run may have died before its pointer move). So a noted version is left to
        that finisher. Otherwise lookups are pointed at the record's version first, then the version goes.
        ``quietly``: a removal that fails is left, counted (``discard_version``); else it raises VersionNotRemoved.
        """
        if current is not None:
            noted = {replaced.version for replaced in current.unremoved.values()}
            if current.version == layout.version or layout.version in noted:
                return
            if current.layout is not None:
                self._point(app_id, current.name, current.layout)
        if quietly:
            self.discard_version(app_id, layout)
        else:
            self.remove_version(app_id, layout)

    def remove_deleted(self, app_id: str, name: str | None, layout: Layout) -> None:
        """Remove a deleted audience's version (the API asks), then the tombstone stops naming it; until then a
        repeated DELETE asks again, and a removal that left something raises (see ``remove_version``). Without a
        name (a request sent before requests named the audience), only the removal.

        The version is the tombstone's own (``removing``), or one a flip replaced that is still noted
        (``unremoved``): only the note of that very version goes (the tombstone is read again to find it)."""
        self.remove_version(app_id, layout)
        if name is None or self.repository.removed(app_id, name, layout.version):
            return
        tombstone = self.repository.get(app_id, name, consistent=True)
        for noted_by, replaced in (tombstone.unremoved if tombstone is not None else {}).items():
            if replaced.version == layout.version:
                self.repository.forget_replaced(app_id, name, noted_by, replaced)

    # --- The work --------------------------------------------------------------

    def build_version(self, app_id: str, source: OpenedObject, in_time: Callable[[], None]) -> Parsed:
        """Parse the object and write a new version that no reader sees until ``publish`` flips to it.

        ``in_time`` raises ImportTimedOut when the function must stop to record the failure.
        """
        partitions = buckets.partitions_for(source.size)
        version = secrets.token_hex(8)
        scanner = Scanner()
        with tempfile.TemporaryDirectory(dir=self.work_dir) as folder:
            work = Path(folder)
            spill = Spill(work, "ids", partitions)
            valid = 0
            try:
                for ids in scan(source.chunks, scanner):
                    in_time()
                    valid += len(ids)
                    spill.add(ids)
            finally:
                spill.close()
            distinct, members, largest = self._keep_registered(app_id, spill, work, in_time)
            per_partition = buckets.buckets_per_partition(largest)
            layout = Layout(
                version=version,
                partitions=partitions,
                buckets_per_partition=per_partition,
                members_key=audience_members_key(app_id, version),
            )
            member_list = work / "members.txt"
            try:
                with member_list.open("wb") as out:
                    for partition in range(partitions):
                        in_time()
                        self.repository.write_buckets(
                            app_id, version, _packed(work / f"members-{partition}", partition, per_partition, out)
                        )
                self.member_lists.upload(layout.members_key, str(member_list))
            except ImportTimedOut as exc:
                raise ImportTimedOut(layout) from exc
            except Exception:
                self.discard_version(app_id, layout)  # the import's own error is what fails it
                raise
        counts = Counts(
            rows=scanner.rows,
            invalid=scanner.invalid,
            valid=valid,
            duplicates=valid - distinct,
            unknown=distinct - members,
            members=members,
        )
        return Parsed(counts, scanner.samples, layout)

    def _keep_registered(
        self, app_id: str, spill: "Spill", work: Path, in_time: Callable[[], None]
    ) -> tuple[int, int, int]:
        """Deduplicate each partition and keep the registered users, in ``members-<p>``; (distinct, members, the
        largest partition's members).

        Which users are registered is read the cheaper way. A lookup costs half a unit per distinct
        id; reading the app's users once costs their bytes / 8 KB, at most half a unit per user. So
        the users are read when the app has at most as many users as the file has distinct ids (the
        read stops, and lookups are used, at the first user past that): never more than the lookups.
        """
        distinct_total = 0
        for partition in range(spill.partitions):
            path = spill.path(partition)
            distinct = distinct_ids([path.read_bytes()])
            path.write_bytes(b"".join(user_id + b"\n" for user_id in distinct))
            distinct_total += len(distinct)
        users = Spill(work, "users", spill.partitions)
        try:
            read_all = self.user_ids(app_id, distinct_total, users.add)
        finally:
            users.close()
        members_total = largest = 0
        for partition in range(spill.partitions):
            in_time()
            path = spill.path(partition)
            distinct = [user_id for user_id in path.read_bytes().split(b"\n") if user_id]
            path.unlink()
            registered = set(users.path(partition).read_bytes().split(b"\n")) if read_all else None
            members = self.members_among(app_id, distinct, registered)
            users.path(partition).unlink()
            (work / f"members-{partition}").write_bytes(b"".join(user_id + b"\n" for user_id in members))
            members_total += len(members)
            largest = max(largest, len(members))
        return distinct_total, members_total, largest

    def members_among(self, app_id: str, distinct: list[bytes], registered: set[bytes] | None) -> list[bytes]:
        """The registered users among ``distinct`` ids: from the app's users read once, else looked up."""
        if registered is not None:
            return [user_id for user_id in distinct if user_id in registered]
        found = self._registered(app_id, [user_id.decode("utf-8") for user_id in distinct])
        return [user_id for user_id in distinct if user_id.decode("utf-8") in found]

    def _registered(self, app_id: str, user_ids: list[str]) -> set[str]:
        batches = [user_ids[start : start + LOOKUP_BATCH] for start in range(0, len(user_ids), LOOKUP_BATCH)]
        if len(batches) <= 1:
            return self.registered_ids(app_id, user_ids) if user_ids else set()
        found: set[str] = set()
        with ThreadPoolExecutor(LOOKUP_THREADS) as pool:
            for part in pool.map(lambda batch: self.registered_ids(app_id, batch), batches):
                found |= part
        return found


def _start_fan_out(fan_out: FanOut, target: ImportKey, record: ObjectCreated, sequencer: str) -> bool:
    """A file too big for one function: the state machine imports it over byte ranges (see fanout.py). False
    when the file's execution exists already."""
    job, byte_ranges = ranges.plan(
        target.app_id, target.name, target.key, record.bucket, record.etag, sequencer, record.size,
        fan_out.range_bytes,
    )  # fmt: skip
    payload = {
        "job": job.model_dump(),
        "ranges": [byte_range.model_dump() for byte_range in byte_ranges],
        "range_count": len(byte_ranges),
        "partition_numbers": list(range(job.partitions)),
    }
    return fan_out.start(ranges.execution_name(target.key, sequencer), payload)


def _failed(target: ImportKey, failure: Failure, recorded: Recorded) -> ImportOutcome:
    """What became of a failure: failed (told), or skipped when a newer file's import or attempt made it moot."""
    if recorded == "moot":
        return ImportOutcome("skipped", target.key, target.app_id, target.name, reason="superseded")
    return ImportOutcome("failed", target.key, target.app_id, target.name, reason=failure.code)


def _limit_failure(maximum: int, key: str, now: datetime) -> Failure:
    reason = f"The app already has its maximum of {maximum} audiences; delete one or ask to raise it."
    return Failure(code="audience_limit", reason=reason, key=key, at=now)


def _uncounted(current: Audience | None, sequencer: str) -> bool:
    """Whether ``current`` is a name whose slot was given back, that an import of ``sequencer`` may still flip."""
    if current is None or current.counted or current.status is not AudienceStatus.FAILED:
        return False
    return current.version is None and (current.sequencer is None or current.sequencer < sequencer)


def _deadline(remaining_seconds: Callable[[], float]) -> Callable[[], None]:
    def in_time() -> None:
        if remaining_seconds() < TIME_MARGIN_SECONDS:
            raise ImportTimedOut()

    return in_time


def _flippable(current: Audience, sequencer: str) -> bool:
    """Whether an import of ``sequencer`` may flip ``current``: it counts, stands, and holds an older file."""
    if not current.counted or current.status is AudienceStatus.DELETED:
        return False
    return current.sequencer is None or current.sequencer < sequencer


def imported_before_deletion(tombstone: Audience, sequencer: str) -> bool:
    """Whether the file ``sequencer`` came before the deletion: the audience was flipped to it (or to a newer
    file, which superseded it), and the tombstone did not refuse it (a refusal is noted, and told, again)."""
    refused = tombstone.refused_sequencer == sequencer
    return not refused and tombstone.sequencer is not None and tombstone.sequencer >= sequencer


def flipped_to(audience: Audience | None, sequencer: str) -> bool:
    """Whether the audience was flipped to the file ``sequencer`` (and not deleted since)."""
    return audience is not None and audience.layout is not None and audience.sequencer == sequencer


def _flipped_by(current: Audience, sequencer: str, request_id: str) -> bool:
    """Whether this is Lambda's retry of the import that flipped the audience to ``sequencer``."""
    flipped = current.sequencer == sequencer
    return flipped and current.attempt_sequencer == sequencer and current.attempt_request == request_id


def _settled(current: Audience | None, sequencer: str, request_id: str, now: datetime) -> bool:
    """Whether this file (or a newer one) is already imported, being imported, or refused."""
    if current is None:
        return False
    if current.sequencer is not None and current.sequencer >= sequencer:
        return True
    attempt = current.attempt_sequencer
    if attempt is None or attempt < sequencer:
        return False
    if attempt > sequencer or not current.counted:
        return True
    # The same file: Lambda's retry of the attempt (a crash, or out of time or memory) takes it again,
    # and so does anyone once the attempt's lease ran out; a duplicate event meanwhile does not.
    if current.attempt_request == request_id:
        return False
    started = current.import_started_at
    return started is None or started >= now - ATTEMPT_LEASE


def distinct_ids(parts: Iterable[bytes]) -> list[bytes]:
    """The distinct ids of newline-separated ``parts``, sorted; a part at a time (its repeats go as it is read)."""
    distinct: set[bytes] = set()
    for part in parts:
        distinct.update(part.split(b"\n"))
    distinct.discard(b"")
    return sorted(distinct)


def _packed(path: Path, partition: int, per_partition: int, member_list: BinaryIO) -> Iterator[tuple[int, bytes]]:
    members = path.read_bytes()
    path.unlink()
    return packed_buckets(members, partition, per_partition, member_list)


def packed_buckets(
    members: bytes, partition: int, per_partition: int, member_list: BinaryIO
) -> Iterator[tuple[int, bytes]]:
    """The partition's buckets, every one even when empty, writing its ids to the member list first.

    The ids go in byte order: bulk_update's total_limit merges the partitions' runs of the list.
    """
    grouped: list[list[bytes]] = [[] for _ in range(per_partition)]
    ids = sorted(user_id for user_id in members.split(b"\n") if user_id)
    member_list.write(b"".join(user_id + b"\n" for user_id in ids))
    for user_id in ids:
        hashed = buckets.member_hash(user_id)
        grouped[buckets.bucket_in_partition(hashed, per_partition)].append(hashed)
    for index in range(per_partition):
        yield partition * per_partition + index, buckets.pack(grouped[index])


class Spill:
    """Ids appended to one file per partition (by a stable hash), so each partition fits in memory on its own.

    Each group added is written without its repeats: an id on most rows of a file (a CDP's `null` or `0`) costs
    a line per chunk, not the rows' bytes in one partition. ``spilled`` counts the ids written.
    """

    def __init__(self, folder: Path, prefix: str, partitions: int) -> None:
        self.folder = folder
        self.prefix = prefix
        self.partitions = partitions
        self.spilled = 0
        self._files = [self.path(partition).open("wb") for partition in range(partitions)]

    def path(self, partition: int) -> Path:
        return self.folder / f"{self.prefix}-{partition}"

    def add(self, ids: list[bytes]) -> None:
        unique = dict.fromkeys(ids)  # in their order: a step's retry stages the same bytes
        self.spilled += len(unique)
        if not unique:
            return
        if self.partitions == 1:
            self._files[0].write(b"\n".join(unique) + b"\n")
            return
        grouped: list[list[bytes]] = [[] for _ in range(self.partitions)]
        partitions = self.partitions
        crc32 = zlib.crc32
        for user_id in unique:
            grouped[crc32(user_id) % partitions].append(user_id)
        for partition, group in enumerate(grouped):
            if group:
                self._files[partition].write(b"\n".join(group) + b"\n")

    def close(self) -> None:
        for handle in self._files:
            handle.close()
