"""User routes: profiles, contacts and subscriptions."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from api_routes.params import email_param, phone_param, user_id_param
from steward.composition import Services
from steward.http.auth import current_principal
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from steward.types import Channel
from steward.users.models import (
    PutContact,
    PutSubscription,
    Subscription,
    UpsertUser,
    User,
    UserBatchOutcome,
)

TAG = "Users"


class UserBatch(BaseModel):
    users: list[Any] = Field(
        description="Up to 100 items `{user_id, fields, global_unsubscribed}`; each gets its own outcome."
    )


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.put("/v1/users/<user_id>", tags=[TAG], summary="Create or update a user (fields merge)")
    def upsert_user(user_id: str, body: UpsertUser) -> User:
        return services.users.upsert(app_id(), user_id_param(user_id), body)

    @router.get("/v1/users/<user_id>", tags=[TAG], summary="Get one user")
    def get_user(user_id: str) -> User:
        return services.users.get(app_id(), user_id_param(user_id))

    @router.delete("/v1/users/<user_id>", tags=[TAG], summary="Delete a user")
    def delete_user(user_id: str) -> Response[None]:
        services.user_deletion.delete(app_id(), user_id_param(user_id))
        return Response(status_code=204)

    @router.get("/v1/users", tags=[TAG], summary="List the app's users")
    def list_users(
        cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> Page[User]:
        return services.users.list_page(app_id(), cursor, limit)

    @router.post("/v1/users/batch", tags=[TAG], summary="Create or update up to 100 users")
    def upsert_users(body: UserBatch) -> UserBatchOutcome:
        return services.users.upsert_batch(app_id(), body.users)

    @router.put("/v1/users/<user_id>/emails/<email>", tags=[TAG], summary="Add or update an email address")
    def put_email(user_id: str, email: str, body: Annotated[PutContact | None, Body()] = None) -> User:
        active = (body or PutContact()).active
        return services.users.put_contact(app_id(), user_id_param(user_id), "emails", email_param(email), active)

    @router.delete("/v1/users/<user_id>/emails/<email>", tags=[TAG], summary="Remove an email address")
    def delete_email(user_id: str, email: str) -> User:
        return services.users.remove_contact(app_id(), user_id_param(user_id), "emails", email_param(email))

    @router.put("/v1/users/<user_id>/phones/<phone>", tags=[TAG], summary="Add or update an E.164 phone number")
    def put_phone(user_id: str, phone: str, body: Annotated[PutContact | None, Body()] = None) -> User:
        active = (body or PutContact()).active
        return services.users.put_contact(app_id(), user_id_param(user_id), "phones", phone_param(phone), active)

    @router.delete("/v1/users/<user_id>/phones/<phone>", tags=[TAG], summary="Remove a phone number")
    def delete_phone(user_id: str, phone: str) -> User:
        return services.users.remove_contact(app_id(), user_id_param(user_id), "phones", phone_param(phone))

    @router.put(
        "/v1/users/<user_id>/subscriptions/<resource_id>/<channel>",
        tags=[TAG],
        summary="Set a subscription status on a resource's channel",
    )
    def put_subscription(user_id: str, resource_id: str, channel: Channel, body: PutSubscription) -> Subscription:
        return services.users.put_subscription(app_id(), user_id_param(user_id), resource_id, channel, body.status)

    @router.get("/v1/users/<user_id>/subscriptions", tags=[TAG], summary="List a user's subscriptions")
    def list_subscriptions(user_id: str) -> list[Subscription]:
        return services.users.subscriptions(app_id(), user_id_param(user_id))

    return router
