"""The operator's chain check on the local stack: intact after appends, the first broken link after tampering."""

import json
import uuid
from typing import Any

from steward.tables import audit_entries_pk
from tests.support.client import RunningStack, operator, seed_audit_log


def verify_audit(stack: RunningStack, app_id: str) -> tuple[int, dict[str, Any]]:
    completed = operator(stack, "verify-audit", "--app-id", app_id, check=False)
    return completed.returncode, json.loads(completed.stdout)


def test_the_operator_cli_finds_the_first_broken_link(stack: RunningStack) -> None:
    app_id = f"audit-{uuid.uuid4().hex[:8]}"
    entries = seed_audit_log(stack, app_id, 4)

    intact = verify_audit(stack, app_id)
    stack.client("dynamodb").update_item(
        TableName=stack.state["tables"]["CatalogTable"],
        Key={"pk": {"S": audit_entries_pk(app_id)}, "sk": {"S": entries[2]["entry_id"]}},
        UpdateExpression="SET #status = :status",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":status": {"S": "failed"}},
    )
    broken = verify_audit(stack, app_id)

    assert intact == (0, {"app_id": app_id, "entries": 4, "last_hash": entries[3]["hash"], "broken": None})
    assert broken[0] == 1
    assert (broken[1]["entries"], broken[1]["last_hash"]) == (2, entries[1]["hash"])
    assert broken[1]["broken"]["entry_id"] == entries[2]["entry_id"]
    assert broken[1]["broken"]["problem"] == "hash_mismatch"
