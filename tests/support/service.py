"""How the unit tests call the layer in-process, on moto's tables: services, pages, refusals, real handlers."""

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from steward.composition import Services
from steward.pagination import Page
from steward.settings import ConversationStoreSettings, StoreSettings
from steward.sharding import shard_key
from steward.tables import CatalogRecord
from steward.users.models import UpsertUser
from steward_local.lambdas import LambdaContext, import_handler_module

ROOT = Path(__file__).resolve().parents[2]
SHARD_COUNT = 4  # small, so pagination crosses shards with few items
# The jobs' EventBridge bus (`Job Finished`, bulk updates' triggers): every moto test has it, as the template does.
JOBS_BUS = "steward-test-jobs"


# --- Services -----------------------------------------------------------------


def collect_pages[T](fetch: Callable[[str | None], Page[T]], limit: int = 2, start: str | None = None) -> list[T]:
    """Follow next_cursor from ``start`` until it is None; every page respects the limit."""
    found: list[T] = []
    cursor = start
    for _ in range(100):
        page = fetch(cursor)
        assert len(page.items) <= limit
        found.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return found
    raise AssertionError("pagination never ended")


def refusal[E: Exception, **P](kind: type[E], action: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> E:
    """The error that ``action(*args, **kwargs)`` raises, which must be a ``kind``: for tests that provoke several."""
    with pytest.raises(kind) as caught:
        action(*args, **kwargs)
    return caught.value


def new_users(app_id: str, *user_ids: str) -> None:
    """Users with no fields, through the real service."""
    service = Services(SHARD_COUNT).users
    for user_id in user_ids:
        service.upsert(app_id, user_id, UpsertUser())


def sort_keys_in_shards(model: type[CatalogRecord], collection: str) -> list[str]:
    """The sort keys of a sharded collection, read from every shard with consistent reads."""
    return [
        record.sk
        for shard in range(SHARD_COUNT)
        for record in model.query(shard_key(collection, shard), consistent_read=True)
    ]


# --- Handlers -----------------------------------------------------------------


def load_event(name: str) -> dict[str, Any]:
    """A sample event of events/ (API Gateway's shapes)."""
    event: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    return event


def context() -> LambdaContext:
    return LambdaContext("steward-test", 512, "arn:aws:lambda:us-east-1:123456789012:function:steward-test", 15)


def load_function(name: str, store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """functions/<name>/app.py, imported with the settings the template gives it."""
    monkeypatch.setenv("STEWARD_APPS_TABLE", store.apps_table)
    monkeypatch.setenv("STEWARD_DEVICES_TABLE", store.devices_table)
    monkeypatch.setenv("STEWARD_PROFILES_TABLE", store.profiles_table)
    monkeypatch.setenv("STEWARD_CATALOG_TABLE", store.catalog_table)
    if isinstance(store, ConversationStoreSettings):
        monkeypatch.setenv("STEWARD_CONVERSATIONS_TABLE", store.conversations_table)
    monkeypatch.setenv("STEWARD_SHARD_COUNT", str(store.shard_count))
    monkeypatch.setenv("STEWARD_REPORTS_BUCKET", "steward-test-reports")
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:steward-test-jobs"
    monkeypatch.setenv("STEWARD_JOB_STATE_MACHINE", machine)
    monkeypatch.setenv("STEWARD_JOB_EVENT_BUS", JOBS_BUS)
    monkeypatch.setenv("STEWARD_JOB_MAX_CONCURRENCY", "4")
    monkeypatch.setenv("STEWARD_RETENTION_MAX_CONCURRENCY", "4")
    monkeypatch.setenv("STEWARD_RETENTION_PAGES_PER_EXECUTION", "800")
    monkeypatch.setenv("STEWARD_RETENTION_PAGE_ENTRIES", "500")
    monkeypatch.setenv("STEWARD_RETENTION_FINALIZE_MARGIN_SECONDS", "60")
    monkeypatch.setenv("STEWARD_INACTIVE_PROFILE_MONTHS", "4")
    monkeypatch.setenv("STEWARD_IMPORTS_BUCKET", "steward-test-imports")
    monkeypatch.setenv("STEWARD_AUDIENCE_DATA_BUCKET", "steward-test-audiences")
    monkeypatch.setenv("STEWARD_AUDIENCE_IMPORTER", "steward-test-audience-import")
    audience_machine = "arn:aws:states:us-east-1:123456789012:stateMachine:steward-test-audience-import"
    monkeypatch.setenv("STEWARD_AUDIENCE_IMPORT_STATE_MACHINE", audience_machine)
    monkeypatch.setenv("STEWARD_AUDIENCE_FAN_OUT_BYTES", "268435456")
    monkeypatch.setenv("STEWARD_AUDIENCE_RANGE_BYTES", "67108864")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", name)
    return import_handler_module(f"test-{name}", ROOT / "functions" / name, "app")


def call(api: ModuleType, event: dict[str, Any]) -> tuple[int, Any]:
    """The handler's status code and decoded JSON body (None when it has none)."""
    response = api.lambda_handler(event, context())
    body = response.get("body")
    return response["statusCode"], json.loads(body) if body else None
