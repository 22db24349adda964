"""Data access for retention: each app's settings, the index of apps that have settings, and sweep runs."""

import json
from collections.abc import Iterator
from datetime import datetime

from steward.conversations.models import RetentionSettings
from steward.sharding import shard_key, shard_of
from steward.tables import (
    RETENTION_APPS_COLLECTION,
    RETENTION_SETTINGS_SK,
    RetentionAppRecord,
    RetentionSettingsRecord,
    retention_settings_pk,
)
from steward.transactions import Transaction


class RetentionSettingsRepository:
    def __init__(self, shard_count: int) -> None:
        # The index of apps is sharded like any collection, so that millions of apps never make a hot partition.
        self.shard_count = shard_count

    def get(self, app_id: str) -> RetentionSettings | None:
        try:
            record = RetentionSettingsRecord.get(
                retention_settings_pk(app_id), RETENTION_SETTINGS_SK, consistent_read=True
            )
        except RetentionSettingsRecord.DoesNotExist:
            return None
        return RetentionSettings.model_validate(json.loads(record.document))

    def put(self, app_id: str, settings: RetentionSettings, now: datetime) -> None:
        """Store the settings and list the app in the index of apps with settings, in one transaction."""
        transaction = Transaction()
        document = json.dumps(settings.stored(), separators=(",", ":"), sort_keys=True)
        record = RetentionSettingsRecord(
            pk=retention_settings_pk(app_id),
            sk=RETENTION_SETTINGS_SK,
            document=document,
            created_at=now,
            updated_at=now,
        )
        transaction.put("settings", record)
        listed = RetentionAppRecord(pk=self._index_pk(app_id), sk=app_id, created_at=now, updated_at=now)
        transaction.put("app", listed)
        transaction.commit()

    def apps(self) -> Iterator[str]:
        """Every app that has settings: one query per index shard (a page holds thousands of app ids)."""
        for shard in range(self.shard_count):
            for record in RetentionAppRecord.query(shard_key(RETENTION_APPS_COLLECTION, shard)):
                yield record.sk

    def _index_pk(self, app_id: str) -> str:
        return shard_key(RETENTION_APPS_COLLECTION, shard_of(app_id, self.shard_count))
