"""The fan-out's steps on moto's S3 and DynamoDB: the replace, sequencer and tombstone rules hold on this path."""

import json
import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from pydantic import ValidationError

from steward.apps.repository import AppRepository
from steward.audiences.buckets import MEMBERS_PER_BUCKET
from steward.audiences.fanout import FanOutStep, FanOutSteps, PackedLayoutMismatch, UnknownBucketRule
from steward.audiences.importer import AudienceImporter, Invocation, ObjectCreated, VersionNotRemoved
from steward.audiences.models import MAX_OBJECT_BYTES, AudienceStatus, Layout, MembersCheck
from steward.audiences.ports import ObjectUnreadable, OpenedObject
from steward.audiences.ranges import MAX_RANGES, ByteRange, Checked, Deduplicated, FanOutJob, RangeResult, plan
from steward.audiences.repository import Attempt, AudienceRepository
from steward.audiences.service import AudienceService
from steward.audiences.storage import S3Objects, UploadLinks
from steward.settings import StoreSettings
from steward.step_functions import ExecutionEnded
from steward.tables import AudienceBucketRecord, audience_bucket_pk
from tests.unit.test_audience_importer import (
    DeletesLeftUnprocessed,
    Files,
    Heard,
    Killed,
    Users,
    failed_uncounted,
    importer,
    killed_once_removing,
    largest_bucket_bytes,
)

APP = "acme"
KEY = f"imports/{APP}/fan.csv"
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
BODY = b"user_id\nu1\nu2\nstranger\nu1\na,b\nu3\n"


def steps(heard: Heard, users: Users | None = None) -> tuple[FanOutSteps, AudienceRepository, S3Objects]:
    AppRepository().create(APP, "Acme", "hash", None, NOW)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="imports")
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="imports", Key=KEY, Body=BODY)
    objects, repository = S3Objects(s3, "data"), AudienceRepository()
    users = users or Users(["u1", "u2", "u3"])
    importer = AudienceImporter(
        repository, objects, objects, users.registered, users.read_ids, lambda app_id: True, heard,
        lambda name: None, lambda: NOW, None, None,
    )  # fmt: skip
    return FanOutSteps(importer, objects, None), repository, objects


def job_of(sequencer: str) -> tuple[FanOutJob, list[ByteRange]]:
    etag = boto3.client("s3").head_object(Bucket="imports", Key=KEY)["ETag"].strip('"')
    return plan(APP, "fan", KEY, "imports", etag, sequencer.ljust(64, "0"), len(BODY), 8)


def up_to_flip(subject: FanOutSteps, job: FanOutJob, byte_ranges: list[ByteRange]) -> FanOutStep:
    """The state machine's steps in its order up to Pack, as its Map states would call them: the Flip step next."""
    parsed = [subject.parse_range(job, byte_range) for byte_range in byte_ranges]
    checked = checked_partitions(subject, job, parsed)
    for partition in range(job.partitions):
        subject.pack(job, partition, checked)
    return FanOutStep(step="flip", job=job, parsed=parsed, checked=checked)


def run_all(subject: FanOutSteps, job: FanOutJob, byte_ranges: list[ByteRange]) -> dict[str, object]:
    """The state machine's steps in its order, as its Map states would call them."""
    return subject.run(up_to_flip(subject, job, byte_ranges))


def checked_partitions(subject: FanOutSteps, job: FanOutJob, parsed: list[RangeResult]) -> list[Checked]:
    """The Distinct map, Prepare and the Check map, on the payloads the state machine sends them."""
    distinct = [
        Deduplicated.model_validate(
            subject.run(FanOutStep(step="distinct", job=job, partition=partition, parsed=parsed))
        )
        for partition in range(job.partitions)
    ]
    prepared = subject.run(FanOutStep(step="prepare", job=job, parsed=parsed, distinct=distinct))
    return [
        Checked.model_validate(
            subject.run(
                FanOutStep(
                    step="check", job=job, partition=partition, range_count=len(parsed),
                    users_read=prepared["users_read"], header_range=prepared["header_range"], distinct_staged=True,
                )
            )
        )
        for partition in range(job.partitions)
    ]  # fmt: skip


def claimed(repository: AudienceRepository, job: FanOutJob) -> None:
    attempt = Attempt(APP, "fan", KEY, job.sequencer, "request-1", NOW)
    current = repository.get(APP, "fan", consistent=True)
    if current is None:
        assert repository.claim_new(attempt, 100, recount=False) == "claimed"
    else:
        assert repository.claim_existing(attempt, NOW)


def bucket_items(job: FanOutJob) -> int:
    return len(list(AudienceBucketRecord.query(audience_bucket_pk(APP, job.version, 0))))


def packed(heard: Heard) -> tuple[FanOutSteps, AudienceRepository, S3Objects, FanOutStep]:
    """A new name's file claimed and run up to Pack, as the state machine runs the steps: the steps, where they
    write, and the Flip step that comes next (its ``job`` is the file's)."""
    subject, repository, objects = steps(heard)
    job, byte_ranges = job_of("0A")
    claimed(repository, job)
    parsed = [subject.parse_range(job, byte_range) for byte_range in byte_ranges]
    checked = checked_partitions(subject, job, parsed)
    subject.pack(job, 0, checked)
    return subject, repository, objects, FanOutStep(step="flip", job=job, parsed=parsed, checked=checked)


def test_the_steps_import_the_file_and_a_retried_flip_keeps_the_version(store: StoreSettings) -> None:
    heard = Heard()
    subject, repository, objects = steps(heard)
    job, byte_ranges = job_of("0A")
    claimed(repository, job)

    first = run_all(subject, job, byte_ranges)
    again = subject.run(FanOutStep(step="flip", job=job, parsed=[], checked=[]))  # Step Functions retried it

    assert (first["outcome"], again["outcome"]) == ("imported", "imported")
    assert first["counts"] == {"rows": 6, "invalid": 1, "valid": 5, "duplicates": 1, "unknown": 1, "members": 3}
    audience = repository.get(APP, "fan", consistent=True)
    assert audience is not None
    assert audience.layout is not None
    assert audience.version == job.version
    assert [sample.line for sample in audience.invalid_samples] == [6]
    assert objects.get(audience.layout.members_key).split() == [b"u1", b"u2", b"u3"]
    assert bucket_items(job) == 1  # the retried flip did not remove the version it had flipped to
    assert heard.events == [("imported", "fan")]
    assert objects.s3.list_objects_v2(Bucket="data", Prefix="staging/").get("KeyCount", 0) == 0


def test_an_older_file_or_a_tombstone_wins_over_a_slow_fan_out(store: StoreSettings) -> None:
    heard = Heard()
    subject, repository, _ = steps(heard)
    older, older_ranges = job_of("0A")
    claimed(repository, older)
    newer, newer_ranges = job_of("0B")
    claimed(repository, newer)
    run_all(subject, newer, newer_ranges)

    # The older file's fan-out finishes last: its version is never seen, and is removed.
    late = run_all(subject, older, older_ranges)

    assert (late["outcome"], late["reason"]) == ("skipped", "superseded")
    assert bucket_items(older) == 0
    # A failed step of the older file is moot too: nothing recorded, nothing told.
    failed = subject.run(FanOutStep(step="fail", job=older, error={"Error": "Lambda.Unknown", "Cause": "boom"}))
    assert (failed["outcome"], failed["reason"]) == ("skipped", "superseded")
    assert heard.events == [("imported", "fan")]
    current = repository.get(APP, "fan", consistent=True)
    assert current is not None
    assert (current.version, current.last_failure) == (newer.version, None)
    # A tombstone refuses the flip of a file whose fan-out was under way.
    assert repository.tombstone(APP, current, NOW)
    newest, newest_ranges = job_of("0C")
    refused = run_all(subject, newest, newest_ranges)
    assert refused["outcome"] == "skipped"
    deleted = repository.get(APP, "fan", consistent=True)
    assert deleted is not None
    assert deleted.status is AudienceStatus.DELETED
    assert bucket_items(newest) == 0


def test_a_failed_step_records_the_failure_and_a_replaced_file_records_nothing(store: StoreSettings) -> None:
    heard = Heard()
    subject, repository, objects, flip = packed(heard)
    job = flip.job

    replaced = subject.run(FanOutStep(step="fail", job=job, error={"Error": "ObjectChanged", "Cause": "412"}))

    assert (replaced["outcome"], replaced["reason"]) == ("skipped", "object_replaced")
    assert bucket_items(job) == 0  # the packed buckets and the staged work are removed
    assert objects.s3.list_objects_v2(Bucket="data", Prefix="staging/").get("KeyCount", 0) == 0
    assert heard.events == []
    assert repository.get(APP, "fan", consistent=True) is None  # the new name's first attempt gave its slot back
    claimed(repository, job)
    failed = subject.run(FanOutStep(step="fail", job=job, error={"Error": "Lambda.Unknown", "Cause": "boom"}))
    assert (failed["outcome"], failed["reason"]) == ("failed", "import_error")
    audience = repository.get(APP, "fan", consistent=True)
    assert audience is not None
    assert audience.last_failure is not None
    assert (audience.status, audience.counted) == (AudienceStatus.FAILED, False)
    assert "Lambda.Unknown" in audience.last_failure.reason
    assert heard.events == [("failed", "import_error")]


@dataclass(frozen=True)
class Replacing:
    """File 0A imported by the steps, and file 0B claimed to replace it: the steps, where they write, both jobs."""

    subject: FanOutSteps
    repository: AudienceRepository
    objects: S3Objects
    first: FanOutJob
    job: FanOutJob
    byte_ranges: list[ByteRange]


def replacing(heard: Heard) -> Replacing:
    subject, repository, objects = steps(heard)
    first, first_ranges = job_of("0A")
    claimed(repository, first)
    run_all(subject, first, first_ranges)
    job, byte_ranges = job_of("0B")
    claimed(repository, job)
    return Replacing(subject, repository, objects, first, job, byte_ranges)


def test_a_flip_that_failed_after_its_write_is_finished_by_the_fail_step(store: StoreSettings) -> None:
    heard = Heard()
    files = replacing(heard)
    subject, repository, job = files.subject, files.repository, files.job

    def broken_pointer(app_id: str, name: str, layout: Layout) -> bool:
        raise RuntimeError("DynamoDB throttled the pointer's write")

    moves = repository.point_to
    repository.point_to = broken_pointer  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="throttled"):
        run_all(subject, job, files.byte_ranges)  # flipped, then failed: Step Functions catches it
    repository.point_to = moves  # type: ignore[method-assign]

    finished = subject.run(FanOutStep(step="fail", job=job, error={"Error": "RuntimeError", "Cause": "throttled"}))

    assert finished["outcome"] == "imported"
    pointer = repository.pointer(APP, "fan", consistent=True)
    assert pointer is not None
    assert pointer.version == job.version
    assert bucket_items(files.first) == 0  # the version the flip replaced is removed
    assert heard.events == [("imported", "fan"), ("imported", "fan")]


@pytest.mark.parametrize("finisher", ["flip", "fail"])
def test_a_flip_step_retried_after_a_newer_file_flipped_removes_the_version_its_write_replaced(
    store: StoreSettings, finisher: str
) -> None:
    """File 0B's Flip writes, then its function dies removing file 0A's version; file 0C's Flip writes next, and
    dies too before it removes anything (else it would remove every version the record notes). Step Functions'
    retry of 0B's Flip, or the fail step, removes file 0A's version, and nothing of file 0C's. The overlap needs
    killed tasks, which the local stack cannot stage."""
    heard = Heard()
    files = replacing(heard)
    subject, repository, first, job = files.subject, files.repository, files.first, files.job
    flip = up_to_flip(subject, job, files.byte_ranges)
    killed_once_removing(repository)
    with pytest.raises(Killed):
        subject.run(flip)
    newest, newest_ranges = job_of("0C")
    claimed(repository, newest)
    newest_flip = up_to_flip(subject, newest, newest_ranges)
    killed_once_removing(repository)
    with pytest.raises(Killed):
        subject.run(newest_flip)
    assert bucket_items(first) == 1

    error = {"Error": "Lambda.Unknown", "Cause": "Runtime.ExitError"}
    step = flip if finisher == "flip" else FanOutStep(step="fail", job=job, error=error)
    finished = subject.run(step)

    assert (finished["outcome"], finished["reason"]) == ("skipped", "superseded")
    assert bucket_items(first) == 0
    assert bucket_items(job) == 1  # file 0C's flip noted it: that flip's finisher removes it
    assert subject.run(newest_flip)["outcome"] == "imported"  # Step Functions' retry of 0C's Flip
    assert bucket_items(job) == 0
    current = repository.get(APP, "fan", consistent=True)
    assert current is not None
    assert current.layout is not None
    assert (current.version, current.unremoved, bucket_items(newest)) == (newest.version, {}, 1)
    listed = files.objects.s3.list_objects_v2(Bucket="data", Prefix="members/").get("Contents", [])
    assert [item["Key"] for item in listed] == [current.layout.members_key]
    assert heard.events == [("imported", "fan")] * 3


def test_the_fail_step_tells_a_recorded_failure_once_however_often_it_runs(store: StoreSettings) -> None:
    heard = Heard()
    subject, repository, _ = steps(heard)
    job, _ = job_of("0A")
    claimed(repository, job)
    step = FanOutStep(step="fail", job=job, error={"Error": "Lambda.Unknown", "Cause": "boom"})
    heard.failures_broken = True
    with pytest.raises(RuntimeError, match="SNS"):
        subject.run(step)
    heard.failures_broken = False

    # Step Functions retries the step; the failed execution's rule runs it once more.
    outcomes = [subject.run(step) for _ in range(2)]

    assert [(item["outcome"], item["reason"]) for item in outcomes] == [("failed", "import_error")] * 2
    assert heard.events == [("failed", "import_error")]


def test_the_idempotent_steps_retry_on_any_error() -> None:
    machine = json.loads((Path(__file__).parents[2] / "statemachines" / "audience_import.asl.json").read_text())

    for state in ("Flip", "RecordFailure"):
        assert machine["States"][state]["Retry"][-1]["ErrorEquals"] == ["States.ALL"]


def attempts_after(retriers: list[dict[str, object]], error: str) -> int:
    """How many times Step Functions retries a task failed with ``error``: its first retrier that matches decides
    (States.ALL matches any error; States.TaskFailed any but States.Timeout); none, no retry."""
    for retrier in retriers:
        names = retrier["ErrorEquals"]
        assert isinstance(names, list)
        wildcard = "States.ALL" in names or ("States.TaskFailed" in names and error != "States.Timeout")
        if error in names or wildcard:
            attempts = retrier.get("MaxAttempts", 3)
            assert isinstance(attempts, int)
            return attempts
    return 0


def test_a_layout_that_cannot_be_published_is_recorded_at_once_and_not_retried() -> None:
    """Lambda names the error by the exception's class. A Flip of a partition packed with another layout, or a
    Pack or Flip of a job whose bucket rule the code does not know, fails the same way however often it runs."""
    machine = json.loads((Path(__file__).parents[2] / "statemachines" / "audience_import.asl.json").read_text())
    flip = machine["States"]["Flip"]["Retry"]
    pack = machine["States"]["Pack"]["ItemProcessor"]["States"]["Step"]["Retry"]

    for error in (PackedLayoutMismatch.__name__, UnknownBucketRule.__name__):
        assert attempts_after(flip, error) == 0
    assert attempts_after(pack, UnknownBucketRule.__name__) == 0
    assert attempts_after(flip, "Lambda.Unknown") == 3  # any other error is still retried
    assert machine["States"]["Flip"]["Catch"][0]["Next"] == "RecordFailure"
    assert machine["States"]["Pack"]["Catch"][0]["Next"] == "RecordFailure"


def test_a_file_deleted_before_its_range_was_read_is_recorded_as_unreadable(store: StoreSettings) -> None:
    heard = Heard()
    subject, repository, objects = steps(heard)
    job, byte_ranges = job_of("0A")
    claimed(repository, job)
    objects.s3.delete_object(Bucket="imports", Key=KEY)
    with pytest.raises(ObjectUnreadable) as raised:
        subject.parse_range(job, byte_ranges[0])
    # What Step Functions' Catch holds of the function's error.
    cause = json.dumps({"errorMessage": str(raised.value), "errorType": "ObjectUnreadable", "stackTrace": []})

    failed = subject.run(FanOutStep(step="fail", job=job, error={"Error": "ObjectUnreadable", "Cause": cause}))

    assert (failed["outcome"], failed["reason"]) == ("failed", "unreadable")
    audience = repository.get(APP, "fan", consistent=True)
    assert audience is not None
    assert audience.last_failure is not None
    assert audience.last_failure.reason == "The file could not be read: the object no longer exists"


def test_the_state_stays_under_256_kb_for_the_largest_file_cut_in_the_smallest_ranges(store: StoreSettings) -> None:
    heard = Heard()
    subject, _repository, objects = steps(heard)
    # Every line invalid, each sample as long as it gets: the worst a range can answer.
    worst = "\n".join(f'"{n:03d}' + "\u00e9" * 300 for n in range(10)).encode()
    objects.s3.put_object(Bucket="imports", Key=KEY, Body=worst)
    etag = objects.s3.head_object(Bucket="imports", Key=KEY)["ETag"].strip('"')
    job, byte_ranges = plan(APP, "fan", KEY, "imports", etag, "0A".ljust(64, "0"), len(worst), 10**9)
    result = subject.parse_range(job, byte_ranges[0])
    assert result.invalid == 10
    largest, ranges = plan(APP, "fan", KEY, "imports", etag, "0B".ljust(64, "0"), MAX_OBJECT_BYTES, 1024 * 1024)

    # The state after the Ranges map: the execution's input and one such result per range; then the Distinct
    # map's (each of its items gets the ranges' results), Prepare's and the Check map's, each at its largest.
    state: dict[str, object] = {
        "job": largest.model_dump(),
        "ranges": [byte_range.model_dump() for byte_range in ranges],
        "range_count": len(ranges),
        "partition_numbers": list(range(largest.partitions)),
        "parsed": [result.model_dump(mode="json")] * len(ranges),
    }
    distinct_item = {"job": state["job"], "partition": largest.partitions - 1, "parsed": state["parsed"]}
    state["distinct"] = [{"distinct": 10**9}] * largest.partitions
    state["prepared"] = {"users_read": False, "header_range": MAX_RANGES - 1}
    state["checked"] = [{"distinct": 10**9, "members": 10**9}] * largest.partitions

    assert len(ranges) == MAX_RANGES
    assert len(json.dumps(distinct_item).encode()) < 200 * 1024
    assert len(json.dumps(state).encode()) < 200 * 1024  # Step Functions' limit is 256 KB
    # The samples are not lost: the flip reads them from where the range left them.
    samples = subject._samples(job, [result])
    assert [sample.line for sample in samples] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("after_blanks", [b"user_id\nu1\nu2\n", b"user_id\nu1\nuser_id\nu1\n", b"u1\nuser_id\n"])
def test_a_header_after_a_ranges_worth_of_blank_lines_counts_as_the_inline_import_counts_it(
    store: StoreSettings, after_blanks: bytes
) -> None:
    subject, repository, objects = steps(Heard())
    body = b"\r\n" * 20 + after_blanks  # the first five 8-byte ranges hold only blank lines
    objects.s3.put_object(Bucket="imports", Key=KEY, Body=body)
    etag = objects.s3.head_object(Bucket="imports", Key=KEY)["ETag"].strip('"')
    job, byte_ranges = plan(APP, "fan", KEY, "imports", etag, "0A".ljust(64, "0"), len(body), 8)
    claimed(repository, job)
    inline = subject.importer.build_version(APP, OpenedObject(len(body), iter([body])), lambda: None)

    fanned = run_all(subject, job, byte_ranges)

    assert fanned["counts"] == inline.counts.model_dump()


@pytest.mark.parametrize("fail_step_runs", ["before the flip", "after the flip"])
def test_the_fail_step_of_a_stopped_execution_is_safe_only_once_a_flip_still_running_has_ended(
    store: StoreSettings, fail_step_runs: str
) -> None:
    """Why the fail step of a timed-out or stopped execution waits past the fan-out function's timeout: Step
    Functions does not stop a Lambda task that is running when its execution ends. A fail step run between Pack
    and a Flip still running removes the version the Flip then publishes: an audience without members."""
    heard = Heard()
    subject, repository, objects, flip = packed(heard)
    job = flip.job
    fail = FanOutStep(step="fail", job=job, error={"Error": "ExecutionAborted", "Cause": "Stopped"})

    if fail_step_runs == "before the flip":
        subject.run(fail)
        outcome = subject.run(flip)
    else:
        subject.run(flip)
        outcome = subject.run(fail)

    assert outcome["outcome"] == "imported"
    audience = repository.get(APP, "fan", consistent=True)
    assert audience is not None
    assert audience.layout is not None
    assert (audience.status, audience.version) == (AudienceStatus.READY, job.version)
    assert audience.counts is not None
    assert audience.counts.members == 3
    if fail_step_runs == "before the flip":
        # Published, counted with 3 members, announced: and its buckets and member list are gone.
        assert bucket_items(job) == 0
        assert objects.get(audience.layout.members_key) == b""
        assert heard.events == [("failed", "import_error"), ("imported", "fan")]
    else:
        assert bucket_items(job) == 1
        assert objects.get(audience.layout.members_key).split() == [b"u1", b"u2", b"u3"]
        assert heard.events == [("imported", "fan")]


def ended_event(job: FanOutJob, status: str, error: str) -> ExecutionEnded:
    """The status change of the job's execution, as Step Functions sends it (events/)."""
    sample = Path(__file__).parents[2] / "events" / "eventbridge-audience-fan-out-timed-out.json"
    event = json.loads(sample.read_text())
    event["detail"].update(status=status, error=error, input=json.dumps({"job": job.model_dump()}))
    return ExecutionEnded.model_validate(event)


def test_what_steps_still_running_wrote_after_the_fail_step_is_removed_after_the_delay(store: StoreSettings) -> None:
    """A failed Map iteration fails the Map, whose Catch runs the fail step, while its other iterations (Lambda
    tasks, which Step Functions does not stop) run on: a Pack among them writes its buckets, and the layout that
    names them, after the fail step removed the version. The failed execution's status change removes them again
    once no task of it can be running."""
    heard = Heard()
    subject, repository, objects, flip = packed(heard)
    job = flip.job
    failed = subject.run(FanOutStep(step="fail", job=job, error={"Error": "Lambda.Unknown", "Cause": "boom"}))
    assert (failed["outcome"], failed["reason"]) == ("failed", "import_error")
    assert flip.checked is not None
    subject.pack(job, 0, flip.checked)  # another iteration of the Pack map, still running
    assert bucket_items(job) == 1

    answer = subject.after_delay(ended_event(job, "FAILED", "AudienceImportFailed"))

    assert answer["outcome"] == "cleaned"
    assert bucket_items(job) == 0
    assert objects.s3.list_objects_v2(Bucket="data", Prefix="staging/").get("KeyCount", 0) == 0
    # The failure stays as recorded, told once.
    assert failed_uncounted(repository, APP, "fan")[1] == "import_error"
    assert heard.events == [("failed", "import_error")]


def test_after_the_delay_a_version_that_was_flipped_to_is_kept(store: StoreSettings) -> None:
    heard = Heard()
    subject, _repository, objects, flip = packed(heard)
    job = flip.job
    removes = objects.delete_prefix

    def refused(prefix: str) -> None:
        raise RuntimeError("S3 refused the deletes")

    # The Flip step publishes, then fails removing its staged work, as the fail step does: the execution fails.
    objects.delete_prefix = refused  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="S3"):
        subject.run(flip)
    with pytest.raises(RuntimeError, match="S3"):
        subject.run(FanOutStep(step="fail", job=job, error={"Error": "RuntimeError", "Cause": "S3"}))
    objects.delete_prefix = removes  # type: ignore[method-assign]

    answer = subject.after_delay(ended_event(job, "FAILED", "States.TaskFailed"))

    assert answer["outcome"] == "cleaned"
    assert bucket_items(job) == 1
    assert objects.s3.list_objects_v2(Bucket="data", Prefix="staging/").get("KeyCount", 0) == 0
    assert heard.events == [("imported", "fan")]


# Past a range's worth of blank lines, the file's header, then `user_id` as an id, and placeholders on most rows.
REPEATS = b"\r\n" * 40 + b"user_id\nuser_id\n" + b"null\n" * 3000 + b"0\n" * 2000 + b"u1\nstranger\nu2\nnull\na,b\nu1\n"


def expected_counts(body: bytes, users: set[bytes]) -> dict[str, int]:
    """The contract's counts, computed plainly (the file's lines are plain ASCII)."""
    rows = [line.strip() for line in body.split(b"\n") if line.strip()][1:]  # the first row is the header
    valid = [line for line in rows if b"," not in line]
    distinct = set(valid)
    members = len(distinct & users)
    duplicates, unknown = len(valid) - len(distinct), len(distinct) - members
    return {"rows": len(rows), "invalid": len(rows) - len(valid), "valid": len(valid), "duplicates": duplicates,
            "unknown": unknown, "members": members}  # fmt: skip


@pytest.mark.parametrize("range_bytes", [64, 10**6])
def test_heavy_repeats_count_as_before_inline_and_fanned_out_and_are_staged_once_a_chunk(
    store: StoreSettings, range_bytes: int
) -> None:
    subject, repository, objects = steps(Heard())
    objects.s3.put_object(Bucket="imports", Key=KEY, Body=REPEATS)
    etag = objects.s3.head_object(Bucket="imports", Key=KEY)["ETag"].strip('"')
    job, byte_ranges = plan(APP, "fan", KEY, "imports", etag, "0A".ljust(64, "0"), len(REPEATS), range_bytes)
    claimed(repository, job)
    inline = subject.importer.build_version(APP, OpenedObject(len(REPEATS), iter([REPEATS])), lambda: None)
    parsed = [subject.parse_range(job, byte_range) for byte_range in byte_ranges]
    staged = [objects.get(f"{job.staging}ids/0/{byte_range.index}") for byte_range in byte_ranges]

    fanned = run_all(subject, job, byte_ranges)

    counts = expected_counts(REPEATS, {b"u1", b"u2", b"u3"})
    assert counts == {"rows": 5007, "invalid": 1, "valid": 5006, "duplicates": 5000, "unknown": 4, "members": 2}
    assert fanned["counts"] == inline.counts.model_dump() == counts
    if len(byte_ranges) == 1:
        # One range read in one chunk: each id is staged once, not once a row.
        assert staged == [b"user_id\nnull\n0\nu1\nstranger\nu2\n"]
        assert sum(result.valid for result in parsed) == 5006
    else:
        assert byte_ranges[1].start < REPEATS.index(b"user_id") < byte_ranges[1].end  # the header starts range 1
        assert sum(map(len, staged)) < len(b"null\n") * 3000


@pytest.mark.parametrize("range_bytes", [64, 10**6])
def test_prepare_decides_on_the_files_distinct_ids_as_the_inline_import_does(
    store: StoreSettings, range_bytes: int
) -> None:
    # 51 valid rows of 2 distinct ids, in an app of 3 users: looking the 2 ids up is cheaper than reading 3 users.
    # In 64-byte ranges, `u1` is in all three and `u2` in the last: 4 ids spilled, and still 2 distinct.
    body = b"u1\n" * 50 + b"u2\n"
    inline_users, fanned_users = Users(["u1", "u2", "u3"]), Users(["u1", "u2", "u3"])
    subject, repository, objects = steps(Heard(), fanned_users)
    objects.s3.put_object(Bucket="imports", Key=KEY, Body=body)
    etag = objects.s3.head_object(Bucket="imports", Key=KEY)["ETag"].strip('"')
    job, byte_ranges = plan(APP, "fan", KEY, "imports", etag, "0A".ljust(64, "0"), len(body), range_bytes)
    claimed(repository, job)
    inline = importer(Files(), Heard(), repository, inline_users)
    inline.build_version(APP, OpenedObject(len(body), iter([body])), lambda: None)

    fanned = run_all(subject, job, byte_ranges)

    assert (inline_users.looked_up, inline_users.read) == (2, 3)  # stopped at the third user, past its limit of 2
    assert (fanned_users.looked_up, fanned_users.read) == (inline_users.looked_up, inline_users.read)
    assert fanned["counts"] == {"rows": 51, "invalid": 0, "valid": 51, "duplicates": 49, "unknown": 0, "members": 2}


def test_a_fail_step_whose_removal_fails_records_the_failure_then_fails_and_its_retry_removes_the_version(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard = Heard()
    subject, repository, objects, flip = packed(heard)
    job = flip.job
    left = DeletesLeftUnprocessed(monkeypatch)
    step = FanOutStep(step="fail", job=job, error={"Error": "Lambda.Unknown", "Cause": "boom"})

    # The failure is recorded and told first; then the step fails, for its Retry (and the execution's rules).
    with pytest.raises(VersionNotRemoved):
        subject.run(step)

    _, code = failed_uncounted(repository, APP, "fan")
    assert code == "import_error"
    assert heard.events == [("failed", "import_error")]
    assert bucket_items(job) == 1
    assert objects.get(f"{job.staging}layout.json")  # the staged layout stays, for whatever runs it again
    left.broken = False
    again = subject.run(step)
    assert (again["outcome"], again["reason"]) == ("failed", "import_error")
    assert bucket_items(job) == 0
    assert objects.s3.list_objects_v2(Bucket="data", Prefix="staging/").get("KeyCount", 0) == 0
    assert heard.events == [("failed", "import_error")]  # told once


def removal_failed(heard: Heard, monkeypatch: pytest.MonkeyPatch) -> tuple[Replacing, FanOutStep]:
    """File 0B's Flip wrote, moved the pointer and announced, then its removal of file 0A's version failed (the
    step failed, its staged work kept for the retry); BatchWriteItem deletes again since. The files, and the Flip."""
    files = replacing(heard)
    flip = up_to_flip(files.subject, files.job, files.byte_ranges)
    left = DeletesLeftUnprocessed(monkeypatch)
    with pytest.raises(VersionNotRemoved):
        files.subject.run(flip)
    left.broken = False
    return files, flip


@pytest.mark.parametrize("finisher", ["flip", "fail", "after the delay"])
def test_a_file_finished_again_after_a_newer_flip_died_before_its_pointer_move_leaves_the_version_lookups_read(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch, finisher: str
) -> None:
    """File 0B's Flip writes and moves the pointer, then its removal of file 0A's version fails; file 0C's Flip
    writes and dies before it moves the pointer, which still names file 0B's version. 0B's Flip retry, its fail
    step, or the delayed look at its failed execution then runs: none removes file 0B's version while lookups read
    it. 0C's finisher removes it, once it has moved the pointer. The overlap needs a killed task, which the local
    stack cannot stage."""
    heard = Heard()
    files, flip = removal_failed(heard, monkeypatch)
    subject, repository, job = files.subject, files.repository, files.job
    newest, newest_ranges = job_of("0C")
    claimed(repository, newest)
    newest_flip = up_to_flip(subject, newest, newest_ranges)
    moves = repository.point_to

    def killed_pointing(app_id: str, name: str, layout: Layout) -> bool:
        raise Killed()

    repository.point_to = killed_pointing  # type: ignore[method-assign]
    with pytest.raises(Killed):
        subject.run(newest_flip)
    repository.point_to = moves  # type: ignore[method-assign]
    pointer = repository.pointer(APP, "fan", consistent=True)
    assert pointer is not None
    assert pointer.version == job.version
    service = AudienceService(
        repository, files.objects, UploadLinks(files.objects.s3, "imports"), lambda *_: None, lambda: NOW,
        lambda name: None,
    )  # fmt: skip
    removals = repository.delete_buckets
    # Each version removed: where the pointer was at that moment, and the members a check found just after.
    removed: dict[str, tuple[str | None, list[str]]] = {}

    def noting_removals(app_id: str, layout: Layout) -> None:
        pointed = repository.pointer(APP, "fan", consistent=True)
        removals(app_id, layout)
        removed[layout.version] = (pointed and pointed.version, service.check(APP, "fan", ["u1", "u2", "u3"]).members)

    repository.delete_buckets = noting_removals  # type: ignore[method-assign]
    if finisher == "flip":
        subject.run(flip)
    elif finisher == "fail":
        subject.run(FanOutStep(step="fail", job=job, error={"Error": "VersionNotRemoved", "Cause": "left"}))
    else:
        subject.after_delay(ended_event(job, "FAILED", "States.TaskFailed"))

    assert job.version not in removed
    assert bucket_items(job) == 1
    assert service.check(APP, "fan", ["u1", "u2", "u3", "stranger"]).members == ["u1", "u2", "u3"]
    # File 0C's Flip retry finishes its flip: the pointer moves, then file 0B's version goes.
    subject.run(newest_flip)
    assert removed[job.version] == (newest.version, ["u1", "u2", "u3"])
    assert bucket_items(job) == 0
    assert bucket_items(newest) == 1
    assert files.objects.s3.list_objects_v2(Bucket="data", Prefix="staging/").get("KeyCount", 0) == 0


def test_a_flip_retried_after_its_removal_of_the_replaced_version_failed_removes_its_staged_work(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard = Heard()
    files, flip = removal_failed(heard, monkeypatch)
    subject, objects, job = files.subject, files.objects, files.job
    assert objects.s3.list_objects_v2(Bucket="data", Prefix=job.staging).get("KeyCount", 0) > 0

    retried = subject.run(flip)

    assert retried["outcome"] == "imported"
    assert bucket_items(files.first) == 0
    assert objects.s3.list_objects_v2(Bucket="data", Prefix="staging/").get("KeyCount", 0) == 0
    assert heard.events == [("imported", "fan")] * 2


def test_a_flip_retried_after_a_lifted_deletion_never_counts_a_name_refused_anew_with_the_deleted_members(
    store: StoreSettings,
) -> None:
    """File 0A's Flip writes and then fails moving the pointer; before Step Functions retries it, the app deletes
    the audience and lifts the tombstone, and a newer file, too large, is refused as a new name (a failed record
    that does not count). The retried Flip must not count that name again with file 0A's deleted version."""
    heard = Heard()
    subject, repository, objects, flip = packed(heard)
    moves = repository.point_to

    def broken_pointer(app_id: str, name: str, layout: Layout) -> bool:
        raise RuntimeError("DynamoDB throttled the pointer's write")

    repository.point_to = broken_pointer  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="throttled"):
        subject.run(flip)
    repository.point_to = moves  # type: ignore[method-assign]
    service = AudienceService(
        repository, objects, UploadLinks(objects.s3, "imports"), subject.importer.remove_deleted, lambda: NOW,
        lambda name: None,
    )  # fmt: skip
    service.delete(APP, "fan")
    service.lift_tombstone(APP, "fan")
    too_large = ObjectCreated("imports", KEY, MAX_OBJECT_BYTES + 1, "0C", "etag")
    assert subject.importer.handle(too_large, Invocation("request-0C", lambda: 900.0)).reason == "file_too_large"

    retried = subject.run(flip)

    assert (retried["outcome"], retried["reason"]) == ("skipped", "superseded")
    audience = repository.get(APP, "fan", consistent=True)
    assert audience is not None
    assert (audience.status, audience.counted, audience.version) == (AudienceStatus.FAILED, False, None)
    assert repository.pointer(APP, "fan", consistent=True) is None
    assert heard.events == [("failed", "file_too_large")]


# 2,000 ids that all fall in partition 0 of 2, after 150,000 rows of one placeholder id (4.6 MB: 2 partitions).
UNEVEN_MEMBERS = [user_id for n in range(10_000) if zlib.crc32(user_id := f"m{n}".encode()) % 2 == 0][:2000]
UNEVEN = (b"0" * 30 + b"\n") * 150_000 + b"".join(user_id + b"\n" for user_id in UNEVEN_MEMBERS)


def uneven_file(heard: Heard) -> tuple[FanOutSteps, AudienceRepository, FanOutJob, list[ByteRange]]:
    """UNEVEN put and claimed, its app's users its members, planned in 2 MiB ranges as the importer plans it."""
    subject, repository, objects = steps(heard, Users([user_id.decode() for user_id in UNEVEN_MEMBERS]))
    etag = objects.s3.put_object(Bucket="imports", Key=KEY, Body=UNEVEN)["ETag"].strip('"')
    job, byte_ranges = plan(APP, "fan", KEY, "imports", etag, "0A".ljust(64, "0"), len(UNEVEN), 2 * 1024 * 1024)
    claimed(repository, job)
    assert (job.partitions, len(byte_ranges)) == (2, 3)
    return subject, repository, job, byte_ranges


def found_members(subject: FanOutSteps, user_ids: list[bytes]) -> list[str]:
    """The members among ``user_ids``, as `POST /v1/audiences/fan/members/check` finds them (1,000 at a time)."""
    s3 = boto3.client("s3")
    service = AudienceService(
        subject.importer.repository, S3Objects(s3, "data"), UploadLinks(s3, "imports"),
        subject.importer.remove_deleted, lambda: NOW, lambda name: None,
    )  # fmt: skip
    ids = [user_id.decode() for user_id in user_ids]
    return [
        member
        for start in range(0, len(ids), 1000)
        for member in service.check(APP, "fan", ids[start : start + 1000]).members
    ]


@pytest.mark.parametrize(("bucket_rule", "per_partition"), [(None, 6), (2, 12)])
def test_a_job_packs_and_flips_with_the_bucket_rule_it_was_planned_with_and_every_member_is_found(
    store: StoreSettings, bucket_rule: int | None, per_partition: int
) -> None:
    """A job planned before the rule was recorded (its execution's input has no ``bucket_rule``) is packed by
    the code of then, from the average partition (2,000 members / (2 x 170)): the Flip of today's code
    publishes the same k. A job planned now sizes them from the largest partition (2,000 / 170)."""
    subject, repository, planned, byte_ranges = uneven_file(Heard())
    payload = planned.model_dump()
    assert payload["bucket_rule"] == 2  # what the importer plans now
    if bucket_rule is None:
        del payload["bucket_rule"]
    job = FanOutJob.model_validate(payload)

    fanned = run_all(subject, job, byte_ranges)

    assert fanned["outcome"] == "imported"
    audience = repository.get(APP, "fan", consistent=True)
    assert audience is not None
    assert audience.layout is not None
    assert (audience.layout.partitions, audience.layout.buckets_per_partition) == (2, per_partition)
    assert sorted(found_members(subject, [*UNEVEN_MEMBERS, b"0" * 30, b"not-a-member"])) == sorted(
        user_id.decode() for user_id in UNEVEN_MEMBERS
    )


def test_the_fan_out_sizes_buckets_from_the_largest_partition_so_a_lookup_stays_one_read_unit(
    store: StoreSettings,
) -> None:
    subject, repository, job, byte_ranges = uneven_file(Heard())

    run_all(subject, job, byte_ranges)

    audience = repository.get(APP, "fan", consistent=True)
    assert audience is not None
    layout = audience.layout
    assert layout is not None
    assert layout.buckets_per_partition == math.ceil(len(UNEVEN_MEMBERS) / MEMBERS_PER_BUCKET)
    assert largest_bucket_bytes(repository, layout) <= 4096  # an eventually consistent read: half a unit
    assert sorted(found_members(subject, UNEVEN_MEMBERS)) == sorted(user_id.decode() for user_id in UNEVEN_MEMBERS)


def test_a_partition_packed_with_another_layout_fails_the_flip_and_the_failure_is_recorded(
    store: StoreSettings,
) -> None:
    """Pack and Flip each compute the layout: should a Pack have computed another (code of another rule), the
    Flip refuses to publish an audience whose lookups would miss members, and the fail step records it. The
    partition packed with the larger k goes first, so the shared layout (the last Pack's) does not cover its
    buckets: only every partition's own layout names them all for removal."""
    heard = Heard()
    subject, repository, job, byte_ranges = uneven_file(heard)
    parsed = [subject.parse_range(job, byte_range) for byte_range in byte_ranges]
    checked = checked_partitions(subject, job, parsed)
    subject.pack(job, 1, checked)  # k = 12: buckets 12..23, every one written even when empty
    subject.pack(job.model_copy(update={"bucket_rule": 1}), 0, checked)  # k = 6, as a job of the earlier rule
    written = repository.read_buckets(APP, job.version, range(2 * 12), consistent=True)
    assert [bucket for bucket, hashes in written.items() if hashes is None] == list(range(6, 12))

    with pytest.raises(PackedLayoutMismatch, match="Partition 0"):
        subject.run(FanOutStep(step="flip", job=job, parsed=parsed, checked=checked))
    failed = subject.run(FanOutStep(step="fail", job=job, error={"Error": "PackedLayoutMismatch", "Cause": "k"}))

    assert (failed["outcome"], failed["reason"]) == ("failed", "import_error")
    assert failed_uncounted(repository, APP, "fan")[1] == "import_error"
    assert heard.events == [("failed", "import_error")]
    # Nothing was published, and the buckets of both layouts (an empty one too) are removed with the staged work.
    assert repository.pointer(APP, "fan", consistent=True) is None
    assert repository.read_buckets(APP, job.version, range(2 * 12), consistent=True) == dict.fromkeys(range(24))
    assert boto3.client("s3").list_objects_v2(Bucket="data", Prefix="staging/").get("KeyCount", 0) == 0


def test_a_job_of_a_bucket_rule_this_code_does_not_know_fails_its_pack_and_flip_and_is_recorded(
    store: StoreSettings,
) -> None:
    """A job planned by newer code (a rollback came before its Pack) may name a bucket rule this code does not
    know: every step still reads it, Pack and Flip fail on it by name, and the fail step records the failure."""
    heard = Heard()
    subject, repository, objects = steps(heard)
    planned, byte_ranges = job_of("0A")
    claimed(repository, planned)
    payload = {**planned.model_dump(), "bucket_rule": 3}
    parsed = [
        subject.run(FanOutStep.model_validate({"step": "range", "job": payload, "range": byte_range.model_dump()}))
        for byte_range in byte_ranges
    ]
    job = FanOutJob.model_validate(payload)
    checked = checked_partitions(subject, job, [RangeResult.model_validate(result) for result in parsed])

    for step in ({"step": "pack", "partition": 0}, {"step": "flip", "parsed": parsed}):
        with pytest.raises(UnknownBucketRule, match="rule 3"):
            subject.run(FanOutStep.model_validate({**step, "job": payload, "checked": checked}))
    failed = subject.run(
        FanOutStep.model_validate({"step": "fail", "job": payload, "error": {"Error": "UnknownBucketRule"}})
    )

    assert (failed["outcome"], failed["reason"]) == ("failed", "import_error")
    audience, code = failed_uncounted(repository, APP, "fan")
    assert code == "import_error"
    assert audience.last_failure is not None
    assert audience.last_failure.reason == "The import failed: UnknownBucketRule."
    assert heard.events == [("failed", "import_error")]
    assert repository.pointer(APP, "fan", consistent=True) is None
    assert objects.s3.list_objects_v2(Bucket="data", Prefix="staging/").get("KeyCount", 0) == 0


def test_an_execution_started_before_the_distinct_step_finishes_on_todays_code(store: StoreSettings) -> None:
    """An execution runs the definition it started with: one started before the deploy has no Distinct map, its
    job no bucket rule, and its Packs may have run on the code of then (which staged only the shared layout)."""
    subject, repository, planned, byte_ranges = uneven_file(Heard())
    payload = planned.model_dump()
    del payload["bucket_rule"]
    job = FanOutJob.model_validate(payload)
    parsed = [subject.parse_range(job, byte_range) for byte_range in byte_ranges]
    # The earlier definition's Prepare and Check payloads.
    prepared = subject.run(FanOutStep.model_validate({"step": "prepare", "job": payload, "parsed": parsed}))
    checked = [
        subject.run(FanOutStep.model_validate({
            "step": "check", "job": payload, "partition": partition, "range_count": len(byte_ranges),
            "users_read": prepared["users_read"], "header_range": prepared["header_range"],
        }))
        for partition in range(job.partitions)
    ]  # fmt: skip
    for partition in range(job.partitions):
        subject.pack(job, partition, [Checked.model_validate(result) for result in checked])
        boto3.client("s3").delete_object(Bucket="data", Key=f"{job.staging}layout-{partition}.json")

    fanned = subject.run(
        FanOutStep.model_validate({"step": "flip", "job": payload, "parsed": parsed, "checked": checked})
    )

    assert fanned["outcome"] == "imported"
    assert fanned["counts"] == {
        "rows": 152_000, "invalid": 0, "valid": 152_000, "duplicates": 149_999, "unknown": 1, "members": 2000,
    }  # fmt: skip
    audience = repository.get(APP, "fan", consistent=True)
    assert audience is not None
    assert audience.layout is not None
    assert audience.layout.buckets_per_partition == 6  # the rule of then
    assert sorted(found_members(subject, UNEVEN_MEMBERS)) == sorted(user_id.decode() for user_id in UNEVEN_MEMBERS)


def test_the_executions_state_ignores_fields_it_does_not_know_and_the_api_input_stays_strict() -> None:
    """A rollback runs older code on the state newer code wrote (and the reverse for executions under way):
    the models carried in an execution's state ignore a field they do not know. The API's input does not."""
    job, byte_ranges = plan(APP, "fan", KEY, "imports", "etag", "0A".ljust(64, "0"), 10**9, 10**8)
    newer = {"added_later": [1, 2]}
    result = {"rows": 3, "invalid": 0, "valid": 3, "lines": 3, **newer}

    step = FanOutStep.model_validate({
        "step": "flip", "job": {**job.model_dump(), **newer}, "range": {**byte_ranges[0].model_dump(), **newer},
        "parsed": [result], "distinct": [{"distinct": 3, **newer}], "checked": [{"distinct": 3, "members": 1, **newer}],
        **newer,
    })  # fmt: skip

    assert step.job == job
    assert step.range == byte_ranges[0]
    assert step.parsed == [RangeResult(rows=3, invalid=0, valid=3, lines=3)]
    assert (step.distinct, step.checked) == ([Deduplicated(distinct=3)], [Checked(distinct=3, members=1)])
    assert "added_later" not in step.model_dump_json()
    with pytest.raises(ValidationError):
        MembersCheck.model_validate({"user_ids": ["u1"], **newer})
