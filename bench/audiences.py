"""Audience import: peak memory, parse rate, DynamoDB units and calls per 1M ids, and put-to-ready time.

    .venv/bin/python -m bench.audiences            # 1M and 16M ids (about 500 MB on disk), then 100k locally
    .venv/bin/python -m bench.audiences --sizes 1000000 --no-local
    .venv/bin/python -m bench.audiences --sizes 1000000 --no-local --fan-out-bytes 8000000 --range-bytes 8000000

Each size runs in a fresh interpreter, so its peak RSS is its own. Files hold
random 30-character ids, one per line, half of them registered users. The
import runs the importer's real code (parse, spill, deduplicate, check,
pack) with the DynamoDB layer metered: bucket writes are counted and priced
by DynamoDB's billing rules from the real items; the registered-user check is
priced as the BatchGetItem calls it makes (100 keys, half a unit per profile
of up to 4 KB, eventually consistent). The last figure is the local stack's:
a real PutObject of a 100,000-id file until the audience is ready, with the
stack in this process and bench/emulator.py's partition-scoped queries.

A deployed stack imports a file over ``AudienceFanOutBytes`` with the fan-out
state machine, not inline: for such a size the fan-out steps' real code
(``FanOutSteps``: range, distinct, prepare, check, pack, flip) runs too, on the same
file, each step kind in a fresh interpreter (its peak RSS is its own, over
its invocations run one after another, as a warm function would), with the
same DynamoDB meter, a directory in place of the data bucket's staged work
(counted as the S3 requests the steps would make), and, for the flip's
audience record, moto's DynamoDB (its record writes are priced on their own:
a few units per import, whatever its size). The thresholds default to the
template's parameters.
"""

import argparse
import csv
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steward.audiences.fanout import FanOutSteps
    from steward.audiences.importer import AudienceImporter
    from steward.audiences.ranges import FanOutJob

ID_CHARS = 30
CHUNK = 1024 * 1024
BENCH_APP = "bench-app"
# A profile item of a typical app: the size a scan of the app's users pays for, per user.
PROFILE_BYTES = 600
ROOT = Path(__file__).resolve().parent.parent
# boto3's upload_file sends a file of this size or more in parts of this size (its TransferConfig defaults).
MULTIPART_BYTES = 8 * 1024 * 1024
DELETE_BATCH = 1000  # keys a ListObjectsV2 page and a DeleteObjects call hold
FAN_OUT_SEQUENCER = "0A".ljust(64, "0")
STEP_KINDS = ("range", "distinct", "prepare", "check", "pack", "flip")


def generate(path: Path, count: int) -> None:
    """``count`` random 30-character hex ids, written a block at a time (memory stays flat)."""
    block = 100_000
    with path.open("wb") as out:
        for start in range(0, count, block):
            n = min(block, count - start)
            text = os.urandom(n * ID_CHARS // 2).hex()
            out.write("\n".join(text[i : i + ID_CHARS] for i in range(0, n * ID_CHARS, ID_CHARS)).encode() + b"\n")


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


def csv_rate(path: Path) -> float:
    started = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as source:
        rows = sum(1 for _ in csv.reader(source))
    return rows / (time.perf_counter() - started)


def scanner_rate(path: Path) -> float:
    from steward.audiences.parse import Scanner, scan

    scanner = Scanner()
    started = time.perf_counter()
    for _ in scan(file_chunks(path), scanner):
        pass
    return scanner.rows / (time.perf_counter() - started)


USER_SHARDS = 16


def shard_users(path: Path, folder: Path) -> None:
    """The file's registered half (ids starting 0-7) written to one file per user shard, by a stable hash."""
    outs = [(folder / f"users-{shard}").open("wb") for shard in range(USER_SHARDS)]
    try:
        for chunk in file_chunks(path):
            for user_id in chunk.split():
                if user_id[:1] in b"01234567":
                    outs[zlib.crc32(user_id) % USER_SHARDS].write(user_id + b"\n")
    finally:
        for out in outs:
            out.close()


def big_app_decision(count: int) -> dict[str, Any]:
    """The registered check for a file of ``count`` distinct ids in an app with 4x as many users."""
    from steward.users.reading import read_if_few

    per_shard = 4 * count // USER_SHARDS

    def read_shard(shard: int) -> Iterator[bytes]:
        return (f"{shard}-{n}".encode() for n in range(per_shard))

    decision = read_if_few(USER_SHARDS, count, read_shard, lambda page: None)
    return {
        "app_users": per_shard * USER_SHARDS,
        "decision": "read the app's users once" if decision.read_all else "lookups",
        "users_estimated_from_first_shard": decision.estimate,
        "users_read_to_decide": decision.read,
        "read_units_to_decide": round(decision.read * PROFILE_BYTES / 8192),
        "read_units_reading_to_the_limit_instead": round((count + 1) * PROFILE_BYTES / 8192),
        "lookup_read_units": round(count * 0.5),
    }


def new_meter() -> dict[str, int]:
    return {
        "bucket_items": 0, "write_units": 0, "batch_write_calls": 0, "batch_get_calls": 0,
        "lookups": 0, "member_list_bytes": 0, "users_read": 0, "query_calls": 0,
        "s3_get": 0, "s3_put": 0, "s3_list": 0, "s3_delete": 0,
    }  # fmt: skip


def put_requests(size: int) -> int:
    """The PUT-priced requests of one upload: a PutObject, or a multipart upload's create, parts and complete."""
    return 1 if size < MULTIPART_BYTES else 2 + math.ceil(size / MULTIPART_BYTES)


def metered_importer(folder: Path, meter: dict[str, int], decisions: list[Any]) -> "AudienceImporter":
    """The real importer with the DynamoDB layer metered: bucket writes priced from the real items, the
    registered check's lookups and Queries of the app's users (``folder``'s user shards) counted."""
    from bench.dynamodb import item_size
    from steward.audiences.importer import AudienceImporter
    from steward.audiences.models import Audience, Failure
    from steward.audiences.ports import OpenedObject
    from steward.audiences.repository import AudienceRepository
    from steward.tables import AUDIENCE_BUCKET_SK, AudienceBucketRecord, audience_bucket_pk
    from steward.users.reading import read_if_few

    class MeteredRepository(AudienceRepository):
        def write_buckets(self, app_id: str, version: str, packed: Any) -> None:
            written = 0
            for number, hashes in packed:
                record = AudienceBucketRecord(
                    pk=audience_bucket_pk(app_id, version, number), sk=AUDIENCE_BUCKET_SK, hashes=hashes or None
                )
                meter["write_units"] += max(1, math.ceil(item_size(record) / 1024))
                written += 1
            meter["bucket_items"] += written
            meter["batch_write_calls"] += math.ceil(written / 25)

    class FileSource:
        def open(self, bucket: str, key: str, etag: str) -> OpenedObject:
            meter["s3_get"] += 1
            return OpenedObject(Path(key).stat().st_size, file_chunks(Path(key)))

    class MemberLists:
        def upload(self, key: str, path: str) -> None:
            meter["member_list_bytes"] += Path(path).stat().st_size
            meter["s3_put"] += put_requests(Path(path).stat().st_size)

        def delete(self, key: str) -> None:
            return None

        def read(self, key: str, start: int, length: int) -> bytes:
            return b""

    def registered(app_id: str, user_ids: list[str]) -> set[str]:
        meter["batch_get_calls"] += math.ceil(len(user_ids) / 100)
        meter["lookups"] += len(user_ids)
        return {user_id for user_id in user_ids if user_id[0] in "01234567"}  # half of random hex ids

    def read_shard(shard: int) -> Iterator[bytes]:
        """A Query of one user shard, keys only, as pages of 1,000 would give them."""
        for n, user_id in enumerate(Path(folder, f"users-{shard}").read_bytes().split()):
            meter["users_read"] += 1
            if n % 1000 == 0:
                meter["query_calls"] += 1
            yield user_id

    def read_users(app_id: str, limit: int, sink: Any) -> bool:
        """The app's users are the file's registered half, in USER_SHARDS shards; the real rule decides."""
        decision = read_if_few(USER_SHARDS, limit, read_shard, sink)
        decisions.append(decision)
        return decision.read_all

    class Silent:
        def imported(self, app_id: str, audience: Audience) -> None:
            return None

        def failed(self, app_id: str, name: str, failure: Failure, sequencer: str | None) -> None:
            return None

    return AudienceImporter(
        MeteredRepository(), FileSource(), MemberLists(), registered, read_users, lambda app_id: True, Silent(),
        lambda name: None, lambda: datetime.now(UTC), str(folder), None,
    )  # fmt: skip


def run_size(count: int, folder: Path) -> dict[str, Any]:
    """One size, in this interpreter: generate (in ``folder``, kept for the fan-out steps), time the parsers,
    import inline with the DynamoDB layer metered."""
    from steward.audiences.models import Layout

    meter = new_meter()
    decisions: list[Any] = []
    path = folder / "audience.csv"
    generate(path, count)
    shard_users(path, folder)
    size = path.stat().st_size
    csv_per_second = csv_rate(path)
    parse_per_second = scanner_rate(path)
    importer = metered_importer(folder, meter, decisions)
    started = time.perf_counter()
    parsed = importer.build_version(BENCH_APP, importer.source.open("bench", str(path), ""), lambda: None)
    seconds = time.perf_counter() - started
    layout: Layout = parsed.layout
    per_million = 1_000_000 / count
    check_units = registered_check_units(meter)
    lookups_instead = parsed.counts.valid * 0.5
    return {
        "ids": count,
        "bytes": size,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "csv_reader_rows_per_s": round(csv_per_second),
        "parser_rows_per_s": round(parse_per_second),
        "parse_ratio_vs_csv": round(parse_per_second / csv_per_second, 2),
        "import_seconds": round(seconds, 1),
        "counts": parsed.counts.model_dump(),
        "partitions": layout.partitions,
        "buckets": layout.bucket_total,
        "write_units_per_1m_ids": round(meter["write_units"] * per_million),
        "registered_check": "read the app's users once" if meter["users_read"] and not meter["lookups"] else "lookups",
        "registered_check_decision": {
            "limit_distinct_ids": count,
            "users_estimated_from_first_shard": decisions[0].estimate,
            "users_sampled": decisions[0].sampled,
            "read_all": decisions[0].read_all,
        },
        "big_app_decision": big_app_decision(count),
        "read_units_per_1m_ids": round(check_units * per_million),
        "batch_write_calls_per_1m_ids": round(meter["batch_write_calls"] * per_million),
        "batch_get_calls_per_1m_ids": round(meter["batch_get_calls"] * per_million),
        "query_calls_per_1m_ids": round(meter["query_calls"] * per_million),
        "one_item_per_member_write_units_per_1m_ids": round(parsed.counts.members * per_million),
        "registered_check_read_units": round(check_units),
        "registered_check_units_by_lookups_instead": round(lookups_instead),
        "member_list_bytes": meter["member_list_bytes"],
        "s3_requests_per_1m_ids": s3_requests(meter, per_million),
    }


def registered_check_units(meter: dict[str, int]) -> float:
    """The registered check's read units: half a unit a lookup, and every user read (each PROFILE_BYTES, Query
    pages summed and rounded per 4 KB, eventually consistent), whether read to check or only to decide."""
    return meter["lookups"] * 0.5 + meter["users_read"] * PROFILE_BYTES / 8192


# S3's request kinds as billed: a DeleteObjects call (up to 1,000 keys) is priced as a PUT.
S3_REQUESTS = {"get": "GET", "put": "PUT", "list": "LIST", "delete": "DeleteObjects (billed as a PUT)"}


def s3_requests(meter: dict[str, int], per_million: float) -> dict[str, float]:
    return {label: round(meter[f"s3_{kind}"] * per_million, 1) for kind, label in S3_REQUESTS.items()}


class DirectoryStaging:
    """The data bucket's staged work in a directory (the ``Staging`` port the fan-out steps use), and the
    imported file; every call counted as the S3 requests it would make."""

    def __init__(self, root: Path, source: Path, meter: dict[str, int]) -> None:
        self.root = root
        self.source = source
        self.meter = meter

    def open_from(self, bucket: str, key: str, etag: str, start: int) -> Iterator[bytes]:
        self.meter["s3_get"] += 1
        with self.source.open("rb") as source:
            source.seek(start)
            while chunk := source.read(CHUNK):
                yield chunk

    def upload(self, key: str, path: str) -> None:
        self.meter["s3_put"] += put_requests(Path(path).stat().st_size)
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)

    def put(self, key: str, data: bytes) -> None:
        self.meter["s3_put"] += 1
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def get(self, key: str) -> bytes:
        self.meter["s3_get"] += 1  # a GET of a missing key (a 404) is billed too
        target = self.root / key
        return target.read_bytes() if target.is_file() else b""

    def delete_prefix(self, prefix: str) -> None:
        keys = [path for path in sorted((self.root / prefix).rglob("*")) if path.is_file()]
        pages = max(1, math.ceil(len(keys) / DELETE_BATCH))
        self.meter["s3_list"] += pages
        self.meter["s3_delete"] += math.ceil(len(keys) / DELETE_BATCH)  # DeleteObjects calls
        shutil.rmtree(self.root / prefix, ignore_errors=True)


def rss_now_mb() -> float:
    """The resident set size now (after imports and setup), to tell a step's own growth from the interpreter's."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def run_steps(kind: str, folder: Path) -> dict[str, Any]:
    """Every invocation of one step kind, in this interpreter, on the state ``folder/state.json`` holds: the
    state machine's input and the results of the steps before. This kind's results are added to it."""
    from steward.audiences.fanout import FanOutStep, FanOutSteps
    from steward.audiences.ranges import ByteRange, Checked, Deduplicated, FanOutJob, RangeResult

    state = json.loads((folder / "state.json").read_text())
    job = FanOutJob.model_validate(state["job"])
    meter = new_meter()
    decisions: list[Any] = []
    importer = metered_importer(folder, meter, decisions)
    staging = DirectoryStaging(folder / "bucket", folder / "audience.csv", meter)
    steps = FanOutSteps(importer, staging, str(folder))
    if kind == "flip":
        import bench.dynamodb  # noqa: F401 (with moto: loaded before the step's own memory is measured)
    before = rss_now_mb()
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if kind == "range":
        parsed = [steps.parse_range(job, ByteRange.model_validate(item)) for item in state["ranges"]]
        state["parsed"] = [result.model_dump(mode="json") for result in parsed]
        invocations = len(parsed)
    elif kind == "distinct":
        parsed = [RangeResult.model_validate(item) for item in state["parsed"]]
        deduplicated = [steps.deduplicate(job, partition, parsed) for partition in range(job.partitions)]
        state["distinct"] = [result.model_dump() for result in deduplicated]
        invocations = len(deduplicated)
    elif kind == "prepare":
        parsed = [RangeResult.model_validate(item) for item in state["parsed"]]
        distinct = [Deduplicated.model_validate(item) for item in state["distinct"]]
        state["prepared"] = steps.run(FanOutStep(step="prepare", job=job, parsed=parsed, distinct=distinct))
        extra["read_all"] = decisions[0].read_all if decisions else None
        invocations = 1
    elif kind == "check":
        users_read = state["prepared"]["users_read"]
        checked = [steps.check_staged(job, partition, users_read) for partition in range(job.partitions)]
        state["checked"] = [result.model_dump() for result in checked]
        invocations = len(checked)
    elif kind == "pack":
        checked = [Checked.model_validate(item) for item in state["checked"]]
        for partition in range(job.partitions):
            steps.pack(job, partition, checked)
        invocations = job.partitions
    else:
        extra = flip(steps, job, state)
        invocations = 1
    seconds = time.perf_counter() - started
    (folder / "state.json").write_text(json.dumps(state))
    return {
        "step": kind,
        "invocations": invocations,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mb": before,
        "seconds": round(seconds, 1),
        "meter": meter,
        **extra,
    }


def flip(steps: "FanOutSteps", job: "FanOutJob", state: dict[str, Any]) -> dict[str, Any]:
    """The flip step, the audience claimed as the importer claims it, its record in moto's DynamoDB (metered)."""
    from moto import mock_aws

    from bench.dynamodb import create_tables, metering
    from steward.audiences.fanout import FanOutStep
    from steward.audiences.ranges import Checked, RangeResult
    from steward.audiences.repository import Attempt

    with mock_aws():
        create_tables(USER_SHARDS)
        attempt = Attempt(job.app_id, job.name, job.key, job.sequencer, "bench", datetime.now(UTC))
        assert steps.importer.repository.claim_new(attempt, 100, recount=False) == "claimed"
        before = rss_now_mb()  # the step's own memory, past moto's and its tables'
        parsed = [RangeResult.model_validate(item) for item in state["parsed"]]
        checked = [Checked.model_validate(item) for item in state["checked"]]
        with metering() as record_meter:
            outcome = steps.run(FanOutStep(step="flip", job=job, parsed=parsed, checked=checked))
    usage = record_meter.usage
    return {
        "outcome": outcome["outcome"],
        "counts": outcome["counts"],
        "record_write_units": usage.write_units,
        "record_read_units": float(usage.read_units),
        "record_calls": sum(usage.calls.values()),
        "rss_before_mb": before,
    }


def run_fan_out(count: int, folder: Path, range_bytes: int) -> dict[str, Any]:
    """The fan-out steps on the file ``run_size`` left in ``folder``, each step kind in a fresh interpreter."""
    from steward.audiences.ranges import plan

    path = folder / "audience.csv"
    size = path.stat().st_size
    job, byte_ranges = plan(BENCH_APP, "bench", str(path), "bench", "", FAN_OUT_SEQUENCER, size, range_bytes)
    state = {"job": job.model_dump(), "ranges": [byte_range.model_dump() for byte_range in byte_ranges]}
    (folder / "state.json").write_text(json.dumps(state))
    steps: dict[str, Any] = {}
    meter = new_meter()
    flipped: dict[str, Any] = {}
    for kind in STEP_KINDS:
        completed = subprocess.run(
            [sys.executable, "-m", "bench.audiences", "--step", kind, "--work", str(folder)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        for name, value in result.pop("meter").items():
            meter[name] += value
        if kind == "flip":
            flipped = result
        steps[kind] = {
            name: result[name] for name in ("invocations", "peak_rss_mb", "rss_before_mb", "seconds", "read_all")
            if name in result
        }  # fmt: skip
    per_million = 1_000_000 / count
    return {
        "range_bytes": byte_ranges[0].end - byte_ranges[0].start,
        "ranges": len(byte_ranges),
        "partitions": job.partitions,
        "steps": steps,
        "peak_rss_mb_of_any_step": max(step["peak_rss_mb"] for step in steps.values()),
        "outcome": flipped["outcome"],
        "counts": flipped["counts"],
        "s3_requests_per_1m_ids": s3_requests(meter, per_million),
        "write_units_per_1m_ids": round(meter["write_units"] * per_million),
        "read_units_per_1m_ids": round(registered_check_units(meter) * per_million),
        "batch_write_calls_per_1m_ids": round(meter["batch_write_calls"] * per_million),
        "batch_get_calls_per_1m_ids": round(meter["batch_get_calls"] * per_million),
        "query_calls_per_1m_ids": round(meter["query_calls"] * per_million),
        "flip_record": {
            "write_units": flipped["record_write_units"],
            "read_units": flipped["record_read_units"],
            "calls": flipped["record_calls"],
        },
    }


def template_default(parameter: str) -> int:
    from samtranslator.yaml_helper import yaml_parse

    return int(yaml_parse((ROOT / "template.yaml").read_text())["Parameters"][parameter]["Default"])


def local_put_to_ready(count: int) -> dict[str, Any]:
    """The local stack, in this process: seed half the ids as users, put the file, wait until the audience is ready.

    The stack runs here rather than as `make run` does, so that bench/emulator.py's partition-scoped queries
    serve the import's reads of the app's users (moto alone reads the whole table for each Query).
    """
    # The handlers log to stdout in this process: keep the benchmark's output to its figures.
    with open(os.devnull, "w") as quiet, redirect_stdout(quiet), tempfile.TemporaryDirectory() as folder:
        return _put_to_ready(count, Path(folder))


def _put_to_ready(count: int, folder: Path) -> dict[str, Any]:
    import boto3
    import requests
    from botocore.config import Config

    from bench.local_stack import local_stack
    from steward.sharding import partition_for
    from steward.tables import ProfileRecord
    from steward_local.demo import seed

    with local_stack() as local:
        stack = local.stack
        app = seed(stack)[0]
        session: dict[str, Any] = {
            "endpoint_url": stack.endpoint_url,
            "region_name": stack.config.region,
            "aws_access_key_id": "local",
            "aws_secret_access_key": "local",  # the emulator accepts any credentials
        }
        path = folder / "audience.csv"
        generate(path, count)
        ids = path.read_text().split()
        dynamodb = boto3.client("dynamodb", **session)
        table = stack.physical_ids("AWS::DynamoDB::Table")["ProfilesTable"]
        shards = int(stack.resolver.parameters["ShardCount"])
        now = datetime.now(UTC)
        seeded = [user_id for user_id in ids if user_id[0] in "01234567"]
        for start in range(0, len(seeded), 25):
            items: list[Any] = [
                {"PutRequest": {"Item": ProfileRecord(pk=partition_for(app.id, user_id, shards), sk=user_id,
                                                      created_at=now, updated_at=now).serialize()}}
                for user_id in seeded[start : start + 25]
            ]  # fmt: skip
            while items:
                items = (
                    dynamodb.batch_write_item(RequestItems={table: items}).get("UnprocessedItems", {}).get(table, [])
                )
        # The emulator runs the import inside the PutObject call: wait for it past botocore's 60 s.
        s3 = boto3.client("s3", config=Config(read_timeout=900, retries={"max_attempts": 1}), **session)
        bucket = stack.physical_ids("AWS::S3::Bucket")["ImportsBucket"]
        started = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=f"imports/{app.id}/bench.csv", Body=path.read_bytes())
        put_seconds = time.perf_counter() - started
        audience: dict[str, Any] = {}
        while time.perf_counter() - started < 900:
            answer = requests.get(f"{local.api_url}/v1/audiences/bench", timeout=30,
                                  headers={"Authorization": f"Bearer {app.api_key}"})  # fmt: skip
            audience = answer.json()
            if answer.status_code == 200 and audience.get("status") == "ready":
                break
            time.sleep(0.1)
        seconds = time.perf_counter() - started
    return {"ids": count, "registered": len(seeded), "put_seconds": round(put_seconds, 1),
            "put_to_ready_seconds": round(seconds, 1), "status": audience.get("status"),
            "counts": audience.get("counts")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,16000000", help="comma-separated id counts")
    parser.add_argument(
        "--fan-out-bytes", type=int, help="files over this many bytes also run the fan-out steps (the template's "
        "AudienceFanOutBytes by default)",
    )  # fmt: skip
    parser.add_argument("--range-bytes", type=int, help="the fan-out's byte ranges (AudienceRangeBytes by default)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a single size, in this interpreter
    parser.add_argument("--step", choices=STEP_KINDS, help=argparse.SUPPRESS)  # one fan-out step kind, in this one
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)  # where the size's file and state are
    parser.add_argument("--no-local", action="store_true", help="skip the local stack's put-to-ready run")
    parser.add_argument("--local-only", action="store_true", help="only the local stack's put-to-ready run")
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(run_size(arguments.one, arguments.work)))
        return
    if arguments.step:
        print(json.dumps(run_steps(arguments.step, arguments.work)))
        return
    fan_out_bytes = arguments.fan_out_bytes or template_default("AudienceFanOutBytes")
    range_bytes = arguments.range_bytes or template_default("AudienceRangeBytes")
    results = []
    for count in [] if arguments.local_only else (int(size) for size in arguments.sizes.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            completed = subprocess.run(
                [sys.executable, "-m", "bench.audiences", "--one", str(count), "--work", folder],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
            results[-1]["path"] = "inline (importer.build_version)"
            if results[-1]["bytes"] > fan_out_bytes:
                fanned = run_fan_out(count, Path(folder), range_bytes)
                fanned["counts_as_inline"] = fanned["counts"] == results[-1]["counts"]
                results[-1]["fan_out"] = {"threshold_bytes": fan_out_bytes, **fanned}
        print(json.dumps(results[-1], indent=2), flush=True)
    if len(results) > 1:
        growth = results[-1]["peak_rss_mb"] - results[0]["peak_rss_mb"]
        print(
            f"peak RSS growth from {results[0]['ids']:,} to {results[-1]['ids']:,} ids: {growth:.1f} MB (target <= 64)"
        )
    if not arguments.no_local:
        print(json.dumps({"local_stack": local_put_to_ready(100_000)}, indent=2), flush=True)


if __name__ == "__main__":
    main()
