"""What the API does to a conversation, as pure functions (no database): create, activity, status by hand.

The retention sweep's transitions are in retention.py; both end in the
repository's conditional writes.
"""

from datetime import datetime
from uuid import uuid4

from steward.conversations.models import ChangeStatus, Conversation, CreateConversation
from steward.errors import InvalidInput


def new_conversation_id() -> str:
    return f"cnv_{uuid4().hex}"


def create(request: CreateConversation, conversation_id: str, now: datetime) -> Conversation:
    """A new conversation; imported timestamps may be neither in the future nor before ``created_at``."""
    created_at = _not_in_future(request.created_at, now, "created_at") or now
    last_activity_at = _not_before(request.last_activity_at, created_at, now, "last_activity_at")
    status_changed_at = _not_before(request.status_changed_at, created_at, now, "status_changed_at")
    return Conversation(
        conversation_id=conversation_id,
        channel=request.channel,
        status=request.status,
        user_id=request.user_id,
        subject=request.subject,
        created_at=created_at,
        last_activity_at=last_activity_at or created_at,
        status_changed_at=status_changed_at or created_at,
    )


def record_activity(current: Conversation, now: datetime) -> Conversation:
    """A message in or out: the conversation stays where it is, its idle time starts again."""
    return current.model_copy(update={"last_activity_at": max(now, current.last_activity_at)})


def change_status(current: Conversation, request: ChangeStatus, now: datetime) -> Conversation:
    """A status set by hand counts as activity.

    Taken out of archive or delete, the conversation comes back: its idle time
    and its time in the new status start from now, so no sweep moves it on at
    once because of how long it had been idle before.
    """
    at = max(now, current.last_activity_at)
    if request.status == current.status:
        return current.model_copy(update={"last_activity_at": at})
    return current.model_copy(update={"status": request.status, "last_activity_at": at, "status_changed_at": at})


def _not_in_future(value: datetime | None, now: datetime, field: str) -> datetime | None:
    if value is not None and value > now:
        raise InvalidInput(f"{field} is in the future.", code="timestamp_in_future", field=field)
    return value


def _not_before(value: datetime | None, created_at: datetime, now: datetime, field: str) -> datetime | None:
    _not_in_future(value, now, field)
    if value is not None and value < created_at:
        raise InvalidInput(f"{field} is before created_at.", code="timestamp_before_created_at", field=field)
    return value
