"""Reading and replacing an app's retention settings."""

from collections.abc import Callable
from datetime import datetime

from steward.conversations import retention
from steward.conversations.models import RetentionSettings, RetentionSettingsView
from steward.conversations.retention_repository import RetentionSettingsRepository


class RetentionSettingsService:
    def __init__(self, repository: RetentionSettingsRepository, clock: Callable[[], datetime]) -> None:
        self.repository = repository
        self.clock = clock

    def get(self, app_id: str) -> RetentionSettingsView:
        return view(self.repository.get(app_id))

    def put(self, app_id: str, settings: RetentionSettings) -> RetentionSettingsView:
        self.repository.put(app_id, settings, self.clock())
        # Read back as stored, so the answer is exactly what a GET returns.
        return view(RetentionSettings.model_validate(settings.stored()))


def view(settings: RetentionSettings | None) -> RetentionSettingsView:
    if settings is None:
        return RetentionSettingsView(settings=None, effective=None, channels={})
    return RetentionSettingsView(
        settings=settings,
        effective=retention.effective(settings),
        channels={channel: retention.effective(settings, channel) for channel in settings.channels},
    )
