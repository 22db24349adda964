"""The audit log against moto: canonical JSON, appends and their chain, one entry per job, races, pages, tampering."""

import hashlib
import json
import re
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
import rfc8785
from pydantic import ValidationError

from steward.audit.canonical import NotCanonical, canonical_json, check_json_value
from steward.audit.chain import entry_hash
from steward.audit.models import ENTRY_FIELDS, AuditEntry, ChainProblem, JobAudit, JobStatus, ReauthMethod
from steward.audit.repository import AuditRepository
from steward.audit.service import MAX_APPEND_ATTEMPTS, AuditLog
from steward.composition import Services
from steward.errors import Conflict, InvalidInput
from steward.pagination import encode_cursor
from steward.settings import StoreSettings
from steward.tables import AuditEntryRecord, AuditHeadRecord, audit_entries_pk, audit_head_pk
from tests.support.service import ROOT, SHARD_COUNT, call, collect_pages, load_event, refusal

A, B = "app-a", "app-b"
KEY_ID = "0123456789abcdef"
START = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


class Clock:
    """A clock that moves one second per reading."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def log(store: StoreSettings) -> AuditLog:
    return Services(SHARD_COUNT, clock=Clock()).audit_log


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("steward.audit.service.time.sleep", lambda _: None)


def job(job_id: str = "job_1", **changes: Any) -> JobAudit:
    fields: dict[str, Any] = {
        "key_id": KEY_ID,
        "job_id": job_id,
        "type": "delete_inactive_devices",
        "params": {"dry_run": False, "inactive_days": 90, "criteria": {"all": [{"field": "device.active"}]}},
        "reauth": ReauthMethod.PASSWORD_TOTP,
        "status": JobStatus.SUCCEEDED,
        "counts": {"selected": 120, "deleted": 118, "failed": 2},
        "report_sha256": hashlib.sha256(b"report").hexdigest(),
        **changes,
    }
    return JobAudit.model_validate(fields)


def append_jobs(log: AuditLog, count: int, app_id: str = A) -> list[AuditEntry]:
    return [log.append(app_id, job(f"job_{number}")) for number in range(1, count + 1)]


def stored_ids(app_id: str) -> list[str]:
    client = boto3.client("dynamodb")
    items = client.query(
        TableName=_catalog_table(),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": audit_entries_pk(app_id)}},
        ConsistentRead=True,
    )["Items"]
    return [item["sk"]["S"] for item in items]


def _catalog_table() -> str:
    return str(AuditEntryRecord.Meta.table_name)


def raw_update(app_id: str, entry_id: str, **attributes: dict[str, Any] | None) -> None:
    """Set (or, with None, remove) attributes of a stored entry behind the service's back, as table access allows."""
    names = {f"#a{index}": name for index, name in enumerate(attributes)}
    sets = [f"#a{index} = :v{index}" for index, value in enumerate(attributes.values()) if value is not None]
    removes = [f"#a{index}" for index, value in enumerate(attributes.values()) if value is None]
    expression = " ".join(
        part for part in (sets and "SET " + ", ".join(sets), removes and "REMOVE " + ", ".join(removes)) if part
    )
    request: dict[str, Any] = {
        "TableName": _catalog_table(),
        "Key": {"pk": {"S": audit_entries_pk(app_id)}, "sk": {"S": entry_id}},
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
    }
    values = {f":v{index}": value for index, value in enumerate(attributes.values()) if value is not None}
    if values:
        request["ExpressionAttributeValues"] = values
    boto3.client("dynamodb").update_item(**request)


def raw_delete(app_id: str, entry_id: str) -> None:
    key = {"pk": {"S": audit_entries_pk(app_id)}, "sk": {"S": entry_id}}
    boto3.client("dynamodb").delete_item(TableName=_catalog_table(), Key=key)


# Canonical JSON (RFC 8785).

# RFC 8785, appendix B: IEEE-754 doubles and how they print.
RFC_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af6", "1e+23"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "printed"), RFC_NUMBERS)
def test_numbers_print_as_rfc_8785_prints_them(bits: str, printed: str) -> None:
    assert rfc8785.dumps(struct.unpack(">d", bytes.fromhex(bits))[0]) == printed.encode()


def test_the_rfc_8785_example_object() -> None:
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], '
        '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )

    assert rfc8785.dumps(json.loads(source)) == expected.encode("utf-8")


def test_members_sort_as_utf16_code_units() -> None:
    names = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]

    order = list(json.loads(canonical_json(dict.fromkeys(names, 0))))

    # The emoji's surrogates (0xD83D...) come before U+FB33, unlike in code point order.
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        2**53,
        -(2**53),
        1e20,  # would print as an integer that JavaScript rounds
        "\ud800",
        {1: "a"},
        {"\udc00": 1},
        {"a": {1, 2}},
        b"bytes",
        json.loads("[" * 40 + "]" * 40),
    ],
)
def test_values_without_a_stable_canonical_form_are_refused(value: Any) -> None:
    with pytest.raises(NotCanonical):
        check_json_value(value)


def test_safe_values_read_back_as_the_same_canonical_json() -> None:
    value = {"a": [1, -2.5, 3.0, 1e-7, 2**53 - 1, "é\n\u2028", None, True], "b": {"": ""}}
    check_json_value(value)

    text = canonical_json(value)

    assert canonical_json(json.loads(text)) == text


# Appends.


def test_the_first_entry_starts_the_chain(log: AuditLog) -> None:
    entry = log.append(A, job())

    assert entry.entry_id == "000000000001"
    assert entry.at == "2026-03-01T12:00:01.250000Z"
    assert entry.prev_hash is None
    assert tuple(entry.model_dump()) == ENTRY_FIELDS
    assert (entry.key_id, entry.job_id, entry.type) == (KEY_ID, "job_1", "delete_inactive_devices")
    assert (entry.reauth, entry.status) == (ReauthMethod.PASSWORD_TOTP, JobStatus.SUCCEEDED)
    assert entry.counts == {"selected": 120, "deleted": 118, "failed": 2}


def test_the_hash_is_the_sha256_of_the_canonical_json_without_hash(log: AuditLog) -> None:
    entry = log.append(A, job(params={"dry_run": True, "ratio": 0.5, "name": "Zoë"}))
    body = {name: value for name, value in entry.model_dump(mode="json").items() if name != "hash"}

    assert entry.hash == hashlib.sha256(rfc8785.dumps(body)).hexdigest()
    # The form the README documents, spelled out: sorted names, no spaces, UTF-8, integers as integers.
    assert (
        rfc8785.dumps(body)
        .decode("utf-8")
        .startswith(
            '{"at":"2026-03-01T12:00:01.250000Z","counts":{"deleted":118,"failed":2,"selected":120},'
            '"entry_id":"000000000001","job_id":"job_1","key_id":"0123456789abcdef",'
            '"params":{"dry_run":true,"name":"Zoë","ratio":0.5},"prev_hash":null,"reauth":"password+totp",'
        )
    )


def test_each_entry_links_to_the_previous_one(log: AuditLog) -> None:
    entries = append_jobs(log, 4)

    assert [entry.entry_id for entry in entries] == [f"{number:012d}" for number in range(1, 5)]
    assert [entry.prev_hash for entry in entries] == [None] + [entry.hash for entry in entries[:-1]]
    assert len({entry.hash for entry in entries}) == 4
    assert log.verify_chain(A).intact


def test_a_dry_run_without_a_report_is_recorded_too(log: AuditLog) -> None:
    dry = job(params={"dry_run": True}, reauth=ReauthMethod.NONE, report_sha256=None, counts={})

    entry = log.append(A, dry)

    assert (entry.reauth, entry.report_sha256, entry.counts, entry.params) == ("none", None, {}, {"dry_run": True})
    assert log.verify_chain(A).intact


def test_a_retried_append_returns_the_jobs_entry_and_writes_nothing(log: AuditLog) -> None:
    first = log.append(A, job())

    again = log.append(A, job(params={**job().params, "inactive_days": 90.0}))  # the same value

    assert again == first
    assert stored_ids(A) == ["000000000001"]


def test_a_job_cannot_get_a_second_different_entry(log: AuditLog) -> None:
    log.append(A, job())

    error = refusal(Conflict, log.append, A, job(status=JobStatus.FAILED))

    assert (error.code, error.field) == ("audit_entry_exists", "job_id")
    assert stored_ids(A) == ["000000000001"]


def test_the_same_job_id_in_another_app_is_another_entry(log: AuditLog) -> None:
    in_a = log.append(A, job())
    in_b = log.append(B, job())

    assert (in_b.entry_id, in_b.prev_hash) == ("000000000001", None)
    assert in_a.hash != in_b.hash  # `at` differs


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": float("nan")}, "finite"),
        ({"big": 2**60}, "2^53"),
        ({"text": "\ud800"}, "surrogates"),
        ({"blob": "x" * (100 * 1024)}, "at most"),
    ],
)
def test_params_without_a_stable_canonical_form_are_refused(log: AuditLog, params: Any, message: str) -> None:
    error = refusal(InvalidInput, log.append, A, job(params=params))

    assert (error.code, error.field) == ("invalid_audit_params", "params")
    assert message in error.message
    assert stored_ids(A) == []


@pytest.mark.parametrize(
    "change",
    [
        {"key_id": "not-a-key"},
        {"job_id": ""},
        {"job_id": "a/b"},
        {"type": "Delete"},
        {"reauth": "totp"},
        {"status": "done"},
        {"counts": {"deleted": -1}},
        {"counts": {"deleted": True}},
        {"counts": {"deleted": 1.5}},
        {"counts": {"Deleted": 1}},
        {"report_sha256": "ABC"},
        {"unknown": 1},
    ],
)
def test_what_an_entry_records_is_checked(change: dict[str, Any]) -> None:
    fields = {**job().model_dump(), **change}

    with pytest.raises(ValidationError):
        JobAudit.model_validate(fields)


# Concurrency: the head's condition keeps the chain from forking.


@pytest.mark.usefixtures("atomic_moto", "no_backoff")
def test_concurrent_appends_never_fork_the_chain(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    start = threading.Barrier(8)
    original = AuditRepository.append
    lost: list[set[str]] = []

    def append(self: AuditRepository, *args: Any) -> set[str]:
        refused = original(self, *args)
        if refused:
            lost.append(refused)
        return refused

    monkeypatch.setattr(AuditRepository, "append", append)
    # Without backoff, 8 writers can starve one past the production bound; this test is about forks, not that bound.
    monkeypatch.setattr("steward.audit.service.MAX_APPEND_ATTEMPTS", 1000)

    def work(worker: int) -> list[AuditEntry]:
        start.wait()
        return [log.append(A, job(f"job_{worker}_{number}")) for number in range(5)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        entries = [entry for batch in pool.map(work, range(8)) for entry in batch]

    assert sorted(entry.entry_id for entry in entries) == [f"{number:012d}" for number in range(1, 41)]
    prev_hashes = [entry.prev_hash for entry in entries]
    assert len(set(prev_hashes)) == 40  # no two entries chain onto the same one
    verification = log.verify_chain(A)
    assert (verification.intact, verification.entries) == (True, 40)
    assert verification.last_hash == max(entries, key=lambda entry: entry.entry_id).hash
    assert lost  # the race really happened: some appends lost it and chained onto the winner


@pytest.mark.usefixtures("no_backoff")
def test_an_append_that_loses_the_race_chains_onto_the_winner(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    original = AuditRepository.append
    raced = [False]

    def append(self: AuditRepository, *args: Any) -> set[str]:
        if not raced[0]:  # another job finishes between our read of the head and our transaction
            raced[0] = True
            original(self, A, winner, None, START)
        return original(self, *args)

    winner = AuditEntry.model_validate(_first_entry_of("job_winner"))
    monkeypatch.setattr(AuditRepository, "append", append)

    entry = log.append(A, job("job_loser"))

    assert (entry.entry_id, entry.prev_hash) == ("000000000002", winner.hash)
    assert log.verify_chain(A).intact


def _first_entry_of(job_id: str) -> dict[str, Any]:
    fields = {
        "entry_id": "000000000001",
        "at": "2026-03-01T12:00:00.000000Z",
        **job(job_id).model_dump(mode="json"),
        "prev_hash": None,
    }
    return {**fields, "hash": entry_hash(fields)}


@pytest.mark.usefixtures("no_backoff")
def test_an_append_that_always_loses_gives_up(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def refused(self: AuditRepository, *args: Any) -> set[str]:
        calls.append(1)
        return {"head"}

    monkeypatch.setattr(AuditRepository, "append", refused)

    error = refusal(Conflict, log.append, A, job())

    assert error.code == "concurrent_update"
    assert len(calls) == MAX_APPEND_ATTEMPTS


@pytest.mark.usefixtures("no_backoff")
def test_a_transaction_conflict_is_retried(log: AuditLog, conflicts: list[int]) -> None:
    conflicts[0] = 2

    assert log.append(A, job()).entry_id == "000000000001"
    assert conflicts == [0]


# The log, newest first.


def test_the_log_pages_newest_first(log: AuditLog) -> None:
    entries = append_jobs(log, 7)

    listed = collect_pages(lambda cursor: log.list_page(A, cursor, 3), limit=3)

    assert listed == entries[::-1]


def test_the_last_page_hands_out_no_cursor(log: AuditLog) -> None:
    append_jobs(log, 4)

    first = log.list_page(A, None, 2)
    second = log.list_page(A, first.next_cursor, 2)

    assert [entry.entry_id for entry in second.items] == ["000000000002", "000000000001"]
    assert second.next_cursor is None
    assert log.list_page(A, None, 4).next_cursor is None
    assert log.list_page(B, None, 50).model_dump() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    "cursor",
    ["not base64 !", encode_cursor({"after": "000000000002"}), encode_cursor({"before": "2"}), encode_cursor({})],
)
def test_a_cursor_the_log_never_issued_is_refused(log: AuditLog, cursor: str) -> None:
    append_jobs(log, 2)

    error = refusal(InvalidInput, log.list_page, A, cursor, 10)

    assert (error.code, error.field) == ("invalid_cursor", "cursor")


def test_another_apps_cursor_pages_only_the_callers_log(log: AuditLog) -> None:
    append_jobs(log, 5, A)
    b_entries = append_jobs(log, 2, B)
    a_cursor = log.list_page(A, None, 1).next_cursor  # "before entry 5"

    page = log.list_page(B, a_cursor, 50)

    assert page.items == b_entries[::-1]
    assert {entry.job_id for entry in page.items} == {"job_1", "job_2"}


# Verification: tampering shows.


def test_an_empty_log_is_intact(log: AuditLog) -> None:
    verification = log.verify_chain(A)

    assert (verification.intact, verification.entries, verification.last_hash) == (True, 0, None)


def test_a_changed_entry_breaks_its_own_hash(log: AuditLog) -> None:
    append_jobs(log, 4)
    raw_update(A, "000000000002", status={"S": "failed"})

    verification = log.verify_chain(A)

    assert verification.broken is not None
    assert (verification.broken.entry_id, verification.broken.problem) == ("000000000002", ChainProblem.HASH_MISMATCH)
    assert verification.entries == 1


def test_a_changed_entry_with_a_recomputed_hash_breaks_the_next_link(log: AuditLog) -> None:
    entries = append_jobs(log, 3)
    forged = {**entries[1].model_dump(mode="json"), "counts": {"selected": 120, "deleted": 0, "failed": 0}}
    forged["hash"] = entry_hash(forged)
    raw_update(A, "000000000002", counts={"S": rfc8785.dumps(forged["counts"]).decode()}, hash={"S": forged["hash"]})

    broken = log.verify_chain(A).broken

    assert broken is not None
    assert (broken.entry_id, broken.problem) == ("000000000003", ChainProblem.PREV_HASH_MISMATCH)


def test_a_removed_entry_leaves_a_gap(log: AuditLog) -> None:
    append_jobs(log, 4)
    raw_delete(A, "000000000002")

    broken = log.verify_chain(A).broken

    assert broken is not None
    assert (broken.entry_id, broken.problem) == ("000000000003", ChainProblem.SEQUENCE_GAP)


def test_a_removed_last_entry_disagrees_with_the_head(log: AuditLog) -> None:
    entries = append_jobs(log, 3)
    raw_delete(A, "000000000003")

    verification = log.verify_chain(A)

    assert verification.broken is not None
    assert (verification.broken.entry_id, verification.broken.problem) == (None, ChainProblem.HEAD_MISMATCH)
    assert (verification.entries, verification.last_hash) == (2, entries[1].hash)


@pytest.mark.parametrize(
    "tampering",
    [
        {"params": {"S": "{not json"}},
        {"params": None},
        {"reauth": {"S": "sudo"}},
        {"at": {"S": "yesterday"}},
        {"hash": None},
        {"counts": {"S": '{"deleted": 1e400}'}},
    ],
)
def test_an_entry_that_is_no_longer_one_is_unreadable(log: AuditLog, tampering: dict[str, Any]) -> None:
    append_jobs(log, 2)
    raw_update(A, "000000000001", **tampering)

    broken = log.verify_chain(A).broken

    assert broken is not None
    assert broken.entry_id == "000000000001"
    assert broken.problem in {ChainProblem.UNREADABLE, ChainProblem.HASH_MISMATCH}


def test_appends_after_tampering_keep_chaining_from_the_head(log: AuditLog) -> None:
    entries = append_jobs(log, 2)
    raw_update(A, "000000000001", job_id={"S": "job_forged"})

    later = log.append(A, job("job_3"))

    assert later.prev_hash == entries[1].hash
    broken = log.verify_chain(A).broken
    assert broken is not None
    assert broken.entry_id == "000000000001"


def test_tampering_in_one_app_leaves_the_others_chain_intact(log: AuditLog) -> None:
    append_jobs(log, 2, A)
    append_jobs(log, 2, B)
    raw_delete(A, "000000000001")

    assert not log.verify_chain(A).intact
    assert log.verify_chain(B).intact


# Append-only: nothing changes or deletes an entry.


def test_no_code_path_changes_or_deletes_an_entry() -> None:
    public = {name for name in dir(AuditRepository) if not name.startswith("_")}
    assert public == {"head", "append", "entry_of_job", "list_page", "walk"}
    assert {name for name in dir(AuditLog) if not name.startswith("_")} == {"append", "list_page", "verify_chain"}
    source = "\n".join(path.read_text() for path in (ROOT / "layers/common/steward/audit").glob("*.py"))
    assert not re.search(r"\.delete\(|delete_item|batch_write|\.update\((?!HEAD)", source)


def test_the_api_only_reads_the_log(api: ModuleType) -> None:
    status, document = call(api, {**load_event("http-api-health.json"), "rawPath": "/openapi.json"})

    assert status == 200
    audit_paths = {path: set(operations) for path, operations in document["paths"].items() if "audit" in path}
    assert audit_paths == {"/v1/audit": {"get"}}


# The real handler, fed the sample event.


def test_the_list_event_pages_the_log(api: ModuleType) -> None:
    entries = append_jobs(Services(SHARD_COUNT).audit_log, 3, "demo-shop")

    status, page = call(api, load_event("http-api-list-audit.json"))

    assert status == 200
    assert [item["entry_id"] for item in page["items"]] == ["000000000003", "000000000002"]
    assert page["items"][0] == entries[2].model_dump(mode="json")
    assert list(page["items"][0]) == list(ENTRY_FIELDS)
    event = load_event("http-api-list-audit.json")
    event["queryStringParameters"] = {"cursor": page["next_cursor"]}
    assert call(api, event)[1] == {"items": [entries[0].model_dump(mode="json")], "next_cursor": None}


@pytest.mark.parametrize("scopes", ["read write", "read", ""])
def test_the_log_needs_the_admin_scope(api: ModuleType, scopes: str) -> None:
    append_jobs(Services(SHARD_COUNT).audit_log, 1, "demo-shop")
    event = load_event("http-api-list-audit.json")
    event["requestContext"]["authorizer"]["lambda"]["scopes"] = scopes

    status, error = call(api, event)

    assert status == 403
    assert error["error"]["code"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("query", "code"),
    [({"limit": "0"}, "invalid_input"), ({"limit": "201"}, "invalid_input"), ({"cursor": "%%%"}, "invalid_cursor")],
)
def test_bad_list_parameters_are_422(api: ModuleType, query: dict[str, str], code: str) -> None:
    event = load_event("http-api-list-audit.json")
    event["queryStringParameters"] = query

    status, error = call(api, event)

    assert status == 422
    assert error["error"]["code"] == code


def test_the_app_of_the_log_comes_from_the_authorizer(api: ModuleType) -> None:
    append_jobs(Services(SHARD_COUNT).audit_log, 2, "demo-shop")
    event = load_event("http-api-list-audit.json")
    event["requestContext"]["authorizer"]["lambda"]["app_id"] = "demo-news"

    assert call(api, event) == (200, {"items": [], "next_cursor": None})


# The README's offline check, run on what the API returned.


def readme_audit_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("### Audit log") : text.index("### Errors")]


def test_the_readme_example_entry_hashes_as_shown() -> None:
    section = readme_audit_section()
    example = json.loads(re.findall(r"```json\n(.*?)```", section, flags=re.DOTALL)[0])
    shown_start = re.search(r"canonicalized, starts\n`(.*?)\.\.\.`", section)

    assert tuple(example) == ENTRY_FIELDS
    assert AuditEntry.model_validate(example).hash == entry_hash(example)
    assert shown_start is not None
    assert canonical_json({k: v for k, v in example.items() if k != "hash"}).decode().startswith(shown_start[1])


def readme_verifier() -> Callable[[list[dict[str, Any]]], str | None]:
    blocks = re.findall(r"```python\n(.*?)```", readme_audit_section(), flags=re.DOTALL)
    source = next(block for block in blocks if "def verify(entries" in block)
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    verify: Callable[[list[dict[str, Any]]], str | None] = namespace["verify"]
    return verify


def test_the_readme_check_verifies_what_the_api_returns(api: ModuleType) -> None:
    log = Services(SHARD_COUNT).audit_log
    append_jobs(log, 2, "demo-shop")
    log.append("demo-shop", job("job_3", params={"ratio": 0.1, "note": "naïve \u2028 ✓", "big": 2**53 - 1}))
    event = load_event("http-api-list-audit.json")
    event["queryStringParameters"] = {"limit": "200"}
    entries = call(api, event)[1]["items"][::-1]  # oldest first
    verify = readme_verifier()

    assert verify(entries) is None
    entries[1]["counts"]["deleted"] += 1
    assert verify(entries) == "000000000002"


def test_deleting_the_head_does_not_hide_the_entries_behind_it(log: AuditLog) -> None:
    for number in range(3):
        log.append(A, job(f"job_{number}"))
    AuditHeadRecord(pk=audit_head_pk(A), sk="head").delete()

    verification = log.verify_chain(A)

    assert verification.entries == 3
    assert verification.broken is not None
    assert verification.broken.problem is ChainProblem.HEAD_MISMATCH


def test_a_page_of_large_entries_stays_under_lambdas_answer_limit(log: AuditLog) -> None:
    big = {"criteria": {"all": [{"field": "fields.note", "op": "eq", "value": "x" * 80_000}]}}
    for number in range(70):
        log.append(A, job(f"job_big_{number}", params=big))

    page = log.list_page(A, None, 200)

    assert 0 < len(page.items) < 70
    assert page.next_cursor is not None
    rest = collect_pages(lambda cursor: log.list_page(A, cursor, 200), limit=200, start=page.next_cursor)
    assert len(page.items) + len(rest) == 70
