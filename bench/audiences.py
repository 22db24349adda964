"""Audience import: peak memory, parse rate, DynamoDB units and calls per 1M ids, and put-to-ready time.

    .venv/bin/python -m bench.audiences            # 1M and 16M ids (about 500 MB on disk), then 100k locally
    .venv/bin/python -m bench.audiences --sizes 1000000 --no-local

Each size runs in a fresh interpreter, so its peak RSS is its own. Files hold
random 30-character ids, one per line, half of them registered users. The
import runs the importer's real code (parse, spill, deduplicate, check,
pack) with the DynamoDB layer metered: bucket writes are counted and priced
by DynamoDB's billing rules from the real items; the registered-user check is
priced as the BatchGetItem calls it makes (100 keys, half a unit per profile
of up to 4 KB, eventually consistent). The last figure is the local stack's:
a real PutObject of a 100,000-id file until the audience is ready, with the
stack in this process and bench/emulator.py's partition-scoped queries.
"""

import argparse
import csv
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ID_CHARS = 30
CHUNK = 1024 * 1024
BENCH_APP = "bench-app"
# A profile item of a typical app: the size a scan of the app's users pays for, per user.
PROFILE_BYTES = 600


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


def run_size(count: int) -> dict[str, Any]:
    """One size, in this interpreter: generate, time the parsers, import with the DynamoDB layer metered."""
    from bench.dynamodb import item_size
    from steward.audiences.importer import AudienceImporter
    from steward.audiences.models import Audience, Failure, Layout
    from steward.audiences.ports import OpenedObject
    from steward.audiences.repository import AudienceRepository
    from steward.tables import AUDIENCE_BUCKET_SK, AudienceBucketRecord, audience_bucket_pk
    from steward.users.reading import read_if_few

    meter: dict[str, int] = {
        "bucket_items": 0, "write_units": 0, "batch_write_calls": 0, "batch_get_calls": 0,
        "lookups": 0, "member_list_bytes": 0, "users_read": 0, "query_calls": 0,
    }  # fmt: skip

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
            return OpenedObject(Path(key).stat().st_size, file_chunks(Path(key)))

    class MemberLists:
        def upload(self, key: str, path: str) -> None:
            meter["member_list_bytes"] += Path(path).stat().st_size

        def delete(self, key: str) -> None:
            return None

        def read(self, key: str, start: int, length: int) -> bytes:
            return b""

    def registered(app_id: str, user_ids: list[str]) -> set[str]:
        meter["batch_get_calls"] += math.ceil(len(user_ids) / 100)
        meter["lookups"] += len(user_ids)
        return {user_id for user_id in user_ids if user_id[0] in "01234567"}  # half of random hex ids

    decisions: list[Any] = []

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

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audience.csv"
        generate(path, count)
        shard_users(path, Path(folder))
        size = path.stat().st_size
        csv_per_second = csv_rate(path)
        parse_per_second = scanner_rate(path)
        importer = AudienceImporter(
            MeteredRepository(), FileSource(), MemberLists(), registered, read_users, lambda app_id: True, Silent(),
            lambda name: None, lambda: datetime.now(UTC), folder, None,
        )  # fmt: skip
        started = time.perf_counter()
        parsed = importer.build_version(BENCH_APP, FileSource().open("bench", str(path), ""), lambda: None)
        seconds = time.perf_counter() - started
    layout: Layout = parsed.layout
    per_million = 1_000_000 / count
    lookup_units = meter["lookups"] * 0.5
    # Reading the app's users: each PROFILE_BYTES, Query pages summed and rounded per 4 KB, eventually consistent.
    scan_units = meter["users_read"] * PROFILE_BYTES / 8192 if not meter["lookups"] else 0.0
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
        "read_units_per_1m_ids": round((lookup_units + scan_units) * per_million),
        "batch_write_calls_per_1m_ids": round(meter["batch_write_calls"] * per_million),
        "batch_get_calls_per_1m_ids": round(meter["batch_get_calls"] * per_million),
        "query_calls_per_1m_ids": round(meter["query_calls"] * per_million),
        "one_item_per_member_write_units_per_1m_ids": round(parsed.counts.members * per_million),
        "registered_check_read_units": round(lookup_units + scan_units),
        "registered_check_units_by_lookups_instead": round(lookups_instead),
        "member_list_bytes": meter["member_list_bytes"],
    }


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
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a single size, in this interpreter
    parser.add_argument("--no-local", action="store_true", help="skip the local stack's put-to-ready run")
    parser.add_argument("--local-only", action="store_true", help="only the local stack's put-to-ready run")
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(run_size(arguments.one)))
        return
    results = []
    for count in [] if arguments.local_only else (int(size) for size in arguments.sizes.split(",")):
        completed = subprocess.run(
            [sys.executable, "-m", "bench.audiences", "--one", str(count)], capture_output=True, text=True, check=True
        )
        results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
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
