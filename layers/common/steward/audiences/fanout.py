"""The fan-out import of a file too big for one function: the steps of ``statemachines/audience_import.asl.json``.

1. ``range`` (a Map over byte ranges): parse the lines the range owns (see
   ``ranges.owned_lines``) and spill its valid ids to S3, one object per
   hash partition; answer its counts and first invalid lines.
2. ``distinct`` (a Map over partitions): deduplicate the partition's ids, a
   range's part at a time, stage them and answer how many there are.
3. ``prepare``: read the app's users once into the same partitions when that
   is cheaper than looking the file's distinct ids up (the importer's rule).
4. ``check`` (a Map over partitions): keep the partition's registered users.
5. ``pack`` (a Map over partitions): write the partition's packed buckets,
   and the layout it packed them with.
6. ``flip``: check every partition was packed with its layout, join the
   member list, flip the audience to the version with the same conditional
   write as an inline import (newer files win, tombstones refuse), announce
   it and remove the replaced version.
``fail`` (on any step's failure) records it, unless the file was replaced
meanwhile, and removes what the steps wrote. The version is named after the
file, so a retried step writes the same items again.

Step Functions does not stop a Lambda task that is running when its state or
execution ends: when one iteration of a Map fails, the others run on (up to
the function's timeout) and may write after the fail step removed the work.
So every execution that did not succeed is looked at again once no task of it
can be running (``after_delay``): a timed-out or stopped one gets its fail step
only then, and a failed one has what was written since removed.
"""

import io
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field

from steward.audiences import buckets
from steward.audiences.importer import (
    AudienceImporter,
    ImportOutcome,
    Parsed,
    Spill,
    VersionNotRemoved,
    distinct_ids,
    packed_buckets,
)
from steward.audiences.keys import ImportKey
from steward.audiences.models import Audience, Counts, InvalidLine, Layout
from steward.audiences.parse import HEADER, Scanner, scan
from steward.audiences.ports import Staging
from steward.audiences.ranges import (
    ByteRange,
    Checked,
    Deduplicated,
    FanOutJob,
    RangeResult,
    header_range,
    owned_lines,
)
from steward.schema import Schema
from steward.step_functions import ExecutionDetail, ExecutionEnded
from steward.tables import audience_members_key

logger = logging.getLogger(__name__)
SAMPLE_LIMIT = 5
MAX_CAUSE_CHARS = 300
# The Error of the state machine's Fail state: the execution failed after its fail step recorded the failure.
FAILED_STEP_ERROR = "AudienceImportFailed"
# A step that failed because a newer object replaced the file: the newer object's own event imports it.
OBJECT_CHANGED = "ObjectChanged"
# A step that could not read the file (deleted meanwhile: S3 answers NoSuchKey, as the functions may list imports/).
OBJECT_UNREADABLE = "ObjectUnreadable"


class PackedLayoutMismatch(Exception):
    """A partition's buckets were packed with another layout than the one Flip would publish."""


class UnknownBucketRule(Exception):
    """The job names a bucket rule this code does not know (planned by later code, then rolled back)."""


class FanOutStep(Schema):
    """What the state machine sends each step (an execution's state: see ranges.py on unknown fields)."""

    model_config = ConfigDict(extra="ignore")

    step: Literal["range", "distinct", "prepare", "check", "pack", "flip", "fail"]
    job: FanOutJob
    range: ByteRange | None = None
    partition: int | None = Field(default=None, ge=0)
    range_count: int | None = Field(default=None, ge=1)
    users_read: bool | None = None
    header_range: int | None = Field(default=None, ge=0)
    parsed: list[RangeResult] | None = None
    distinct: list[Deduplicated] | None = Field(
        default=None, description="The Distinct map's results (absent in an execution started before it existed)."
    )
    distinct_staged: bool = Field(default=False, description="Check reads the ids the Distinct step staged.")
    checked: list[Checked] | None = None
    error: dict[str, Any] | None = Field(default=None, description="The Catch's {Error, Cause}.")


class AfterDelay(Schema):
    """What the delay state machine (``audience_import_stopped.asl.json``) hands the function: the status
    change, once no task of that execution can still be running."""

    after_delay: Literal[True]
    event: ExecutionEnded


class FanOutSteps:
    def __init__(self, importer: AudienceImporter, staging: Staging, work_dir: str | None) -> None:
        self.importer = importer
        self.staging = staging
        self.work_dir = work_dir

    def run(self, step: FanOutStep) -> dict[str, Any]:
        job = step.job
        if step.step == "range" and step.range is not None:
            return self.parse_range(job, step.range).model_dump(mode="json")
        if step.step == "distinct" and step.partition is not None and step.parsed is not None:
            return self.deduplicate(job, step.partition, step.parsed).model_dump()
        if step.step == "prepare" and step.parsed is not None:
            users_read = self.prepare(job, step.parsed, step.distinct)
            return {"users_read": users_read, "header_range": header_range(step.parsed)}
        if step.step == "check" and step.partition is not None and step.users_read is not None:
            if step.distinct_staged:
                return self.check_staged(job, step.partition, step.users_read).model_dump()
            if step.range_count:  # an execution started before the Distinct step existed
                checked = self.check(job, step.partition, step.range_count, step.users_read, step.header_range)
                return checked.model_dump()
        if step.step == "pack" and step.partition is not None and step.checked is not None:
            self.pack(job, step.partition, step.checked)
            return {}
        if step.step == "flip" and step.parsed is not None and step.checked is not None:
            return _outcome(self.flip(job, step.parsed, step.checked))
        if step.step == "fail":
            return _outcome(self.fail(job, step.error or {}))
        raise ValueError(f"The {step.step!r} step lacks its inputs.")

    def execution_ended(self, ended: ExecutionEnded) -> dict[str, Any]:
        """An execution that failed, timed out or was aborted: its own fail step ran, unless it ended so."""
        detail = ended.detail
        if detail.status == "FAILED" and detail.error == FAILED_STEP_ERROR:
            return {"outcome": "recorded", "execution": detail.executionArn}
        job = _job_of(detail)
        if job is None:
            return {"outcome": "unknown", "execution": detail.executionArn}
        kind = detail.error or f"Execution{detail.status.title().replace('_', '')}"
        return _outcome(self.fail(job, {"Error": kind, "Cause": detail.cause}))

    def after_delay(self, ended: ExecutionEnded) -> dict[str, Any]:
        """An execution that did not succeed, once no task of it can still be running. One that timed out or was
        stopped gets its fail step now. One that failed had its failure recorded at once (by its fail step, or
        by the status rule): only what the Map's other iterations wrote after that is removed."""
        detail = ended.detail
        if detail.status != "FAILED":
            return self.execution_ended(ended)
        job = _job_of(detail)
        if job is None:
            return {"outcome": "unknown", "execution": detail.executionArn}
        self.remove_work(job)
        return {"outcome": "cleaned", "execution": detail.executionArn}

    def parse_range(self, job: FanOutJob, byte_range: ByteRange) -> RangeResult:
        chunks = self.staging.open_from(job.bucket, job.key, job.etag, max(byte_range.start - 1, 0))
        scanner = Scanner(at_file_start=byte_range.start == 0)
        valid = 0
        with tempfile.TemporaryDirectory(dir=self.work_dir) as folder:
            spill = Spill(Path(folder), "ids", job.partitions)
            try:
                for ids in scan(owned_lines(chunks, byte_range.start, byte_range.end), scanner):
                    if not valid and scanner.header_first and byte_range.start > 0:
                        # The range's first row `user_id`, which may be the file's header, goes on a line of its
                        # own: Check drops that line then, and an id `user_id` later in the chunk is kept.
                        spill.add(ids[:1])
                        spill.add(ids[1:])
                    else:
                        spill.add(ids)
                    valid += len(ids)
            finally:
                spill.close()
            for partition in range(job.partitions):
                path = spill.path(partition)
                if path.stat().st_size:
                    self.staging.upload(f"{job.staging}ids/{partition}/{byte_range.index}", str(path))
        if scanner.samples:
            samples = json.dumps([sample.model_dump(mode="json") for sample in scanner.samples]).encode()
            self.staging.put(f"{job.staging}samples/{byte_range.index}", samples)
        return RangeResult(
            rows=scanner.rows, invalid=scanner.invalid, valid=valid, spilled=spill.spilled, lines=scanner.lines,
            seen_row=scanner.seen_row, header_first=scanner.header_first,
        )  # fmt: skip

    def deduplicate(self, job: FanOutJob, partition: int, parsed: list[RangeResult]) -> Deduplicated:
        """Stage the partition's distinct ids, sorted, for Check; answer how many there are, for Prepare."""
        distinct = distinct_ids(self._parts(job, partition, len(parsed), header_range(parsed)))
        self.staging.put(f"{job.staging}distinct/{partition}", b"".join(user_id + b"\n" for user_id in distinct))
        return Deduplicated(distinct=len(distinct))

    def prepare(self, job: FanOutJob, parsed: list[RangeResult], distinct: list[Deduplicated] | None = None) -> bool:
        """Read the app's users into the partitions when the app has no more users than the file has distinct ids,
        as the inline import decides. An execution started before the Distinct step existed has no ``distinct``:
        its ranges' valid rows count instead, as for the code that parsed them (which answers no ``spilled``),
        or the ids a range spilled when this code parsed it (at least the distinct ids either way)."""
        if distinct is not None:
            limit = sum(result.distinct for result in distinct)
        else:
            limit = sum(result.spilled or result.valid for result in parsed)
        with tempfile.TemporaryDirectory(dir=self.work_dir) as folder:
            users = Spill(Path(folder), "users", job.partitions)
            try:
                read_all = self.importer.user_ids(job.app_id, limit, users.add)
            finally:
                users.close()
            if read_all:
                for partition in range(job.partitions):
                    self.staging.upload(f"{job.staging}users/{partition}", str(users.path(partition)))
        return read_all

    def check_staged(self, job: FanOutJob, partition: int, users_read: bool) -> Checked:
        """Keep the registered users among the partition's distinct ids, as the Distinct step staged them."""
        staged = self.staging.get(f"{job.staging}distinct/{partition}")
        return self._keep_registered(
            job, partition, [user_id for user_id in staged.split(b"\n") if user_id], users_read
        )

    def check(
        self, job: FanOutJob, partition: int, range_count: int, users_read: bool, header_at: int | None = None
    ) -> Checked:
        """Deduplicate the partition's ids and keep the registered users: the Check of an execution started
        before the Distinct step existed. ``header_at``: the range whose first row, spilled as an id, is the
        file's header (see ``header_range``)."""
        distinct = distinct_ids(self._parts(job, partition, range_count, header_at))
        return self._keep_registered(job, partition, distinct, users_read)

    def _keep_registered(self, job: FanOutJob, partition: int, distinct: list[bytes], users_read: bool) -> Checked:
        registered = set(self.staging.get(f"{job.staging}users/{partition}").split(b"\n")) if users_read else None
        members = self.importer.members_among(job.app_id, distinct, registered)
        self.staging.put(f"{job.staging}members/{partition}", b"".join(user_id + b"\n" for user_id in members))
        return Checked(distinct=len(distinct), members=len(members))

    def _parts(self, job: FanOutJob, partition: int, range_count: int, header_at: int | None) -> Iterator[bytes]:
        """The ranges' parts of a partition, read one at a time."""
        for index in range(range_count):
            part = self.staging.get(f"{job.staging}ids/{partition}/{index}")
            if index == header_at and part.startswith(HEADER + b"\n"):
                # The range's first row is the first line it spilled to its partition.
                part = part[len(HEADER) + 1 :]
            yield part

    def _merged(self, job: FanOutJob, parsed: list[RangeResult], checked: list[Checked]) -> Parsed:
        return _merged(parsed, checked, _layout(job, checked), self._samples(job, parsed))

    def _samples(self, job: FanOutJob, parsed: list[RangeResult]) -> list[InvalidLine]:
        """The file's first invalid lines, numbered within the file: read from the first ranges that have any
        (at most SAMPLE_LIMIT reads, as each such range staged at least one)."""
        samples: list[InvalidLine] = []
        lines_before = 0
        for index, result in enumerate(parsed):
            if result.invalid and len(samples) < SAMPLE_LIMIT:
                staged = self.staging.get(f"{job.staging}samples/{index}") or b"[]"
                for item in json.loads(staged)[: SAMPLE_LIMIT - len(samples)]:
                    sample = InvalidLine.model_validate(item)
                    samples.append(sample.model_copy(update={"line": lines_before + sample.line}))
            lines_before += result.lines
        return samples

    def pack(self, job: FanOutJob, partition: int, checked: list[Checked]) -> None:
        layout = _layout(job, checked)
        # The layout is kept with the work, so that a failure later can remove the buckets written, and the
        # partition's own, so that Flip publishes only the layout every partition was packed with.
        self.staging.put(f"{job.staging}layout.json", layout.model_dump_json().encode())
        self.staging.put(f"{job.staging}layout-{partition}.json", layout.model_dump_json().encode())
        members = self.staging.get(f"{job.staging}members/{partition}")
        packed = packed_buckets(members, partition, layout.buckets_per_partition, io.BytesIO())
        self.importer.repository.write_buckets(job.app_id, job.version, packed)

    def flip(self, job: FanOutJob, parsed: list[RangeResult], checked: list[Checked]) -> ImportOutcome:
        layout = _layout(job, checked)
        current = self.importer.repository.get(job.app_id, job.name, consistent=True)
        if current is not None and current.version == job.version:
            # A retry of a flip that went through: the member list is live (its staged work stays when the removal
            # of the replaced version failed, and goes as on the first run).
            return self._publish(job, parsed, checked)
        self._packed_with(job, layout)
        with tempfile.TemporaryDirectory(dir=self.work_dir) as folder:
            member_list = Path(folder) / "members.txt"
            with member_list.open("wb") as out:
                for partition in range(job.partitions):
                    out.write(self.staging.get(f"{job.staging}members/{partition}"))
            self.importer.member_lists.upload(layout.members_key, str(member_list))
        return self._publish(job, parsed, checked)

    def _publish(self, job: FanOutJob, parsed: list[RangeResult], checked: list[Checked]) -> ImportOutcome:
        outcome = self.importer.publish_version(_target(job), job.sequencer, self._merged(job, parsed, checked))
        self.staging.delete_prefix(job.staging)
        return outcome

    def _packed_with(self, job: FanOutJob, layout: Layout) -> None:
        """Raise PackedLayoutMismatch unless every partition's buckets were packed with ``layout``: lookups find
        an id's bucket with the published layout's k, and would miss members packed with another."""
        for partition, stored in enumerate(self._packed_layouts(job)):
            if stored is not None and stored != layout:
                raise PackedLayoutMismatch(
                    f"Partition {partition} of version {job.version} was packed with {stored.model_dump_json()},"
                    f" not {layout.model_dump_json()}."
                )

    def _packed_layouts(self, job: FanOutJob) -> list[Layout | None]:
        """The layout each partition was packed with: its own, else the shared one that a Pack of earlier code
        wrote (every Pack of the job computed it by the same rule); None when the staged work was removed."""
        shared: bytes | None = None  # read once, if a partition has no layout of its own
        found: list[Layout | None] = []
        for partition in range(job.partitions):
            stored = self.staging.get(f"{job.staging}layout-{partition}.json")
            if not stored:
                if shared is None:
                    shared = self.staging.get(f"{job.staging}layout.json")
                stored = shared
            found.append(Layout.model_validate_json(stored) if stored else None)
        return found

    def remove_work(self, job: FanOutJob) -> Audience | None:
        """Remove what the steps wrote: the staged work, and the version's buckets unless the audience is at it
        or a newer flip noted it (see ``remove_own_version``). Answers the audience as it was read. When the
        version's removal fails (VersionNotRemoved), the staged work stays, its layout with it, for whatever runs
        this again."""
        current = self.importer.repository.get(job.app_id, job.name, consistent=True)
        stored = self.staging.get(f"{job.staging}layout.json")
        if stored:
            # Every layout the partitions were packed with: more than one when they differed (see _packed_with).
            packed = {Layout.model_validate_json(stored), *filter(None, self._packed_layouts(job))}
            for layout in packed:
                self.importer.remove_own_version(job.app_id, current, layout, quietly=False)
        self.staging.delete_prefix(job.staging)
        return current

    def fail(self, job: FanOutJob, error: dict[str, Any]) -> ImportOutcome:
        try:
            current = self.remove_work(job)
        except VersionNotRemoved:
            # The failure is recorded and told (or the flip finished) first, as this step is for; then it fails,
            # so that its Retry, the failed execution's status rule and the delayed look remove the version again.
            self._settle(job, error, self.importer.repository.get(job.app_id, job.name, consistent=True))
            raise
        return self._settle(job, error, current)

    def _settle(self, job: FanOutJob, error: dict[str, Any], current: Audience | None) -> ImportOutcome:
        kind = str(error.get("Error") or "States.TaskFailed")
        target = _target(job)
        # The flip went through and a later part of its step failed: it is finished (pointer, event, removal).
        # Or this step's retry, or the failed execution's rule after it ran: the failure is told if not yet.
        settled = self.importer.settle_recorded(target, current, job.sequencer)
        if settled is not None:
            return settled
        if kind == OBJECT_CHANGED:
            return self.importer.object_replaced(target, job.sequencer)
        logger.error("Fan-out import of %r failed: %s %s", job.key, kind, error.get("Cause"))
        if kind == OBJECT_UNREADABLE:
            reason = f"The file could not be read: {_error_message(error)}"
            return self.importer.fail_claimed(target, job.sequencer, "unreadable", reason)
        return self.importer.fail_claimed(target, job.sequencer, "import_error", f"The import failed: {kind}.")


def _layout(job: FanOutJob, checked: list[Checked]) -> Layout:
    """The job's layout, by the bucket rule it was planned with (Pack and Flip may run on different code)."""
    if job.bucket_rule == 1:
        members = sum(result.members for result in checked)
        per_partition = buckets.buckets_per_partition_of_average(members, job.partitions)
    elif job.bucket_rule == 2:
        per_partition = buckets.buckets_per_partition(max((result.members for result in checked), default=0))
    else:
        raise UnknownBucketRule(f"Version {job.version} was planned with bucket rule {job.bucket_rule}.")
    return Layout(
        version=job.version,
        partitions=job.partitions,
        buckets_per_partition=per_partition,
        members_key=audience_members_key(job.app_id, job.version),
    )


def _merged(parsed: list[RangeResult], checked: list[Checked], layout: Layout, samples: list[InvalidLine]) -> Parsed:
    """The ranges' counts summed, with the file's first invalid lines."""
    header = 1 if header_range(parsed) is not None else 0  # counted as a row and an id by its range
    valid = sum(result.valid for result in parsed) - header
    distinct = sum(result.distinct for result in checked)
    members = sum(result.members for result in checked)
    counts = Counts(
        rows=sum(result.rows for result in parsed) - header,
        invalid=sum(result.invalid for result in parsed),
        valid=valid,
        duplicates=valid - distinct,
        unknown=distinct - members,
        members=members,
    )
    return Parsed(counts, samples, layout)


def _error_message(error: dict[str, Any]) -> str:
    """The function's error message from a Catch's Cause (Lambda's JSON error), else the Cause itself."""
    cause = str(error.get("Cause") or "")
    try:
        message = json.loads(cause).get("errorMessage")
    except (ValueError, AttributeError):
        return cause[:MAX_CAUSE_CHARS]
    return str(message or cause)[:MAX_CAUSE_CHARS]


def _job_of(detail: ExecutionDetail) -> FanOutJob | None:
    if detail.input is None:
        # Step Functions leaves out an input over its event size: there is nothing to record it on.
        logger.error("Fan-out execution %s ended %s without its input", detail.executionArn, detail.status)
        return None
    return FanOutJob.model_validate(json.loads(detail.input)["job"])


def _target(job: FanOutJob) -> ImportKey:
    return ImportKey(job.app_id, job.name, job.key)


def _outcome(outcome: ImportOutcome) -> dict[str, Any]:
    answer: dict[str, Any] = dict(outcome.__dict__)
    answer["counts"] = outcome.counts and outcome.counts.model_dump()
    return answer
