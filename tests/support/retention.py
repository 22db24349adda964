"""What the retention tests share: the issue's example settings document."""

from typing import Any

EXAMPLE_SETTINGS: dict[str, Any] = {
    "archive_after_days": {"open": 30, "pending": 30, "automated": 7, "sent": 14},
    "delete_after_days": {"archive": 90, "irrelevant": 0, "resolved": None},
    "purge_after_days": None,
    "delete_user_data": False,
    "channels": {"whatsapp": {"archive_after_days": {"open": 5}, "purge_after_days": 0}},
}
