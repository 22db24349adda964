"""Conversation routes: create (or import), read, list, record activity, change status, delete."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from steward.composition import Services
from steward.conversations.models import (
    CONVERSATION_ID_PATTERN,
    ChangeStatus,
    ChannelName,
    Conversation,
    ConversationFilter,
    ConversationStatus,
    CreateConversation,
    RecordActivity,
)
from steward.http.auth import current_principal
from steward.http.openapi import errors
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from steward.types import UserId

TAG = "Conversations"
ConversationIdPath = Annotated[str, Path(pattern=CONVERSATION_ID_PATTERN, description="`cnv_` + 32 hex digits.")]
NOT_FOUND = errors({404: ["conversation_not_found"]})
CHANGE = errors({404: ["conversation_not_found"], 409: ["concurrent_update"]})

_CREATE_DESCRIPTION = """\
`status` defaults to open. `created_at`, `last_activity_at` and `status_changed_at` import
existing history: none may be in the future (422 `timestamp_in_future`) or before `created_at`
(422 `timestamp_before_created_at`); each defaults to `created_at`, which defaults to now.
"""

_STATUS_DESCRIPTION = """\
A status set by hand counts as activity. A conversation taken out of archive or delete comes
back: its idle time and its time in the new status start again from now.
"""


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.post(
        "/v1/conversations",
        tags=[TAG],
        summary="Create a conversation, or import one with its history",
        description=_CREATE_DESCRIPTION,
        status_code=201,
        responses=errors({422: ["timestamp_in_future", "timestamp_before_created_at"]}),
    )
    def create_conversation(body: CreateConversation) -> Conversation:
        return services.conversations.create(app_id(), body)

    @router.get(
        "/v1/conversations",
        tags=[TAG],
        summary="List the app's conversations",
        description=(
            "A page reads at most 5,000 conversations: with sparse filters it can be short, or empty, "
            "and still have a `next_cursor`."
        ),
    )
    def list_conversations(
        status: Annotated[ConversationStatus | None, Query(description="Only conversations in this status.")] = None,
        channel: Annotated[ChannelName | None, Query(description="Only conversations of this channel.")] = None,
        user_id: Annotated[UserId | None, Query(description="Only this user's conversations.")] = None,
        cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> Page[Conversation]:
        conversation_filter = ConversationFilter(status=status, channel=channel, user_id=user_id)
        return services.conversations.list_page(app_id(), conversation_filter, cursor, limit)

    @router.get("/v1/conversations/<conversation_id>", tags=[TAG], summary="Get one conversation", responses=NOT_FOUND)
    def get_conversation(conversation_id: ConversationIdPath) -> Conversation:
        return services.conversations.get(app_id(), conversation_id)

    @router.delete(
        "/v1/conversations/<conversation_id>",
        tags=[TAG],
        summary="Delete a conversation at once",
        status_code=204,
        responses=NOT_FOUND,
    )
    def delete_conversation(conversation_id: ConversationIdPath) -> Response[None]:
        services.conversations.delete(app_id(), conversation_id)
        return Response(status_code=204)

    @router.post(
        "/v1/conversations/<conversation_id>/activity",
        tags=[TAG],
        summary="Record a message in or out",
        responses=CHANGE,
    )
    def record_activity(conversation_id: ConversationIdPath, body: RecordActivity) -> Conversation:
        return services.conversations.record_activity(app_id(), conversation_id, body)

    @router.put(
        "/v1/conversations/<conversation_id>/status",
        tags=[TAG],
        summary="Change the status by hand",
        description=_STATUS_DESCRIPTION,
        responses=CHANGE,
    )
    def change_status(conversation_id: ConversationIdPath, body: ChangeStatus) -> Conversation:
        return services.conversations.change_status(app_id(), conversation_id, body)

    return router
