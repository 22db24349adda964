"""The API does what /openapi.json says: schemathesis over every operation of the live document.

Each operation gets generated requests, valid and invalid, and the run fails on
any 5xx, any status the document does not list for the operation, and any body
that does not match the schema documented for its status. The document is read
from the running stack, so a route added later is checked without editing this
test.

The run uses an app of its own, bootstrapped with the operator CLI, so its
deletes and key revocations never touch the demo apps other tests rely on.
"""

import collections
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.integration.contract_hooks import KEY_ID_VARIABLE
from tests.support.client import ROOT, RunningStack, bootstrap_app

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
SEED = 20261206  # fixed, so a failure replays the same requests
# At most this many generated requests per operation (fewer where the inputs run out, such as
# the ids a DELETE can take from earlier responses). Examples and fuzzing fit `make test`'s budget
# (about 70 s here); STEWARD_CONTRACT_PHASES=examples,coverage,fuzzing,stateful runs the deep check.
EXAMPLES = int(os.environ.get("STEWARD_CONTRACT_EXAMPLES", "30"))
PHASES = os.environ.get("STEWARD_CONTRACT_PHASES", "examples,fuzzing")
WORKERS = "2"  # one generates while the stack answers the other
TIMEOUT_SECONDS = 600


def seed(stack: RunningStack, key: str) -> None:
    """A few items of each kind, so that list responses hand schemathesis real ids to reuse."""
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PUT", "/v1/users/alice", {"fields": {"plan": "pro"}}),
        ("PUT", "/v1/users/alice/emails/alice%40example.com", None),
        ("PUT", f"/v1/devices/{quote('fcm:alice-1', safe='')}", {"user_id": "alice", "transport": "FCM"}),
        ("PUT", f"/v1/devices/{quote('fcm:alice-1', safe='')}/tags/beta", None),
        ("POST", "/v1/resources", {"name": "newsletter", "channels": ["email", "push"]}),
        ("POST", "/v1/segments", {"name": "beta", "kind": "static"}),
        ("POST", "/v1/loyalty-programs", {"name": "summer"}),
        ("POST", "/v1/regions", {"type": "poi", "name": "Shop", "country": "FR", "lat": 48.85, "lng": 2.35}),
        ("POST", "/v1/conversations", {"channel": "email", "user_id": "alice", "subject": "Order 42"}),
        ("PUT", "/v1/retention-settings", {"archive_after_days": {"open": 30}}),
    ]
    for method, path, body in calls:
        response = stack.api(method, path, key, json=body)
        assert response.status_code in (200, 201), (path, response.text)


def summarize(report: Path) -> tuple[int, dict[str, set[tuple[str, int | None]]]]:
    """The number of requests sent and, per failed check, the (operation, status) pairs that failed it."""
    requests = 0
    failures: dict[str, set[tuple[str, int | None]]] = collections.defaultdict(set)
    for line in report.read_text().splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        if not scenario:
            continue
        recorder = scenario["recorder"]
        interactions = recorder.get("interactions") or {}
        requests += len(interactions)
        for case_id, checks in (recorder.get("checks") or {}).items():
            response = (interactions.get(case_id) or {}).get("response") or {}
            case = (recorder.get("cases") or {}).get(case_id, {}).get("value", {})
            operation = f"{case.get('method')} {case.get('path')}" if case else recorder["label"]
            for check in checks:
                if check["status"] == "failure":
                    failures[check["name"]].add((operation, response.get("status_code")))
    return requests, failures


def test_the_api_does_what_its_openapi_document_says(stack: RunningStack, tmp_path: Path) -> None:
    created = bootstrap_app(stack, "contract", "Contract")
    key, key_id = created["api_key"]["api_key"], created["api_key"]["key_id"]
    seed(stack, key)
    environment = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.integration.contract_hooks",
        "PYTHONPATH": str(ROOT),
        KEY_ID_VARIABLE: key_id,
    }

    completed = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{stack.api_url}/openapi.json",
         "--header", f"Authorization: Bearer {key}", "--checks", CHECKS, "--phases", PHASES,
         "--seed", str(SEED), "--max-examples", str(EXAMPLES), "--workers", WORKERS,
         "--generation-database", "none", "--request-timeout", "30", "--no-color",
         "--report", "ndjson", "--report-ndjson-path", str(tmp_path / "run.ndjson")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
    )  # fmt: skip

    requests, failures = summarize(tmp_path / "run.ndjson")
    found = "\n".join(
        f"{check}: {status} {operation}"
        for check, pairs in sorted(failures.items())
        for operation, status in sorted(pairs, key=str)
    )
    assert completed.returncode == 0, f"{requests} requests; failures:\n{found}\n\n{completed.stdout[-20000:]}"
    assert requests > 0
    # The run never revoked its own key (contract_hooks): it still works.
    assert stack.api("GET", f"/v1/api-keys/{key_id}", key).json()["revoked_at"] is None
