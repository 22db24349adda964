"""User routes: profiles, contacts and subscriptions."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import Field

from api_routes.params import SegmentPath, UserIdPath, email_param, phone_param, user_id_param
from steward.composition import Services
from steward.http.auth import current_principal
from steward.http.openapi import errors
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from steward.schema import Schema
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
USER_NOT_FOUND = ["user_not_found"]
CONCURRENT = ["concurrent_update"]


class UserBatch(Schema):
    users: list[Any] = Field(
        description="Up to 100 items `{user_id, fields, global_unsubscribed, last_activity_at}`; one outcome each."
    )


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.put(
        "/v1/users/<user_id>",
        tags=[TAG],
        summary="Create or update a user (fields merge)",
        responses=errors({409: CONCURRENT, 422: ["too_many_fields", "fields_too_large"]}),
    )
    def upsert_user(user_id: UserIdPath, body: UpsertUser) -> User:
        return services.users.upsert(app_id(), user_id_param(user_id), body)

    @router.get("/v1/users/<user_id>", tags=[TAG], summary="Get one user", responses=errors({404: USER_NOT_FOUND}))
    def get_user(user_id: UserIdPath) -> User:
        return services.users.get(app_id(), user_id_param(user_id))

    @router.delete(
        "/v1/users/<user_id>",
        tags=[TAG],
        summary="Delete a user",
        description=(
            "Deletes its devices, releases its promo codes and leaves its segments first. 409 `concurrent_update`: "
            "the user kept changing, or other changes to one of its segments (parallel deletions of its members, "
            "a bulk change) kept the segment's counts busy past a few short pauses (0.5 s at most); 503 "
            "`unavailable`: DynamoDB throttled those writes. Either way what was done stays done, and the same "
            "request again goes on."
        ),
        status_code=204,
        responses=errors({404: USER_NOT_FOUND, 409: CONCURRENT, 503: ["unavailable"]}),
    )
    def delete_user(user_id: UserIdPath) -> Response[None]:
        services.user_deletion.delete_on_request(app_id(), user_id_param(user_id))
        return Response(status_code=204)

    @router.get("/v1/users", tags=[TAG], summary="List the app's users")
    def list_users(
        cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> Page[User]:
        return services.users.list_page(app_id(), cursor, limit)

    @router.post(
        "/v1/users/batch",
        tags=[TAG],
        summary="Create or update up to 100 users",
        responses=errors({422: ["batch_too_large"]}),
    )
    def upsert_users(body: UserBatch) -> UserBatchOutcome:
        return services.users.upsert_batch(app_id(), body.users)

    @router.put(
        "/v1/users/<user_id>/emails/<email>",
        tags=[TAG],
        summary="Add or update an email address",
        responses=errors({404: USER_NOT_FOUND, 409: CONCURRENT, 422: ["too_many_contacts"]}),
    )
    def put_email(user_id: UserIdPath, email: SegmentPath, body: Annotated[PutContact | None, Body()] = None) -> User:
        active = (body or PutContact()).active
        return services.users.put_contact(app_id(), user_id_param(user_id), "emails", email_param(email), active)

    @router.delete(
        "/v1/users/<user_id>/emails/<email>",
        tags=[TAG],
        summary="Remove an email address",
        responses=errors({404: [*USER_NOT_FOUND, "contact_not_found"], 409: CONCURRENT}),
    )
    def delete_email(user_id: UserIdPath, email: SegmentPath) -> User:
        return services.users.remove_contact(app_id(), user_id_param(user_id), "emails", email_param(email))

    @router.put(
        "/v1/users/<user_id>/phones/<phone>",
        tags=[TAG],
        summary="Add or update an E.164 phone number",
        responses=errors({404: USER_NOT_FOUND, 409: CONCURRENT, 422: ["too_many_contacts"]}),
    )
    def put_phone(user_id: UserIdPath, phone: SegmentPath, body: Annotated[PutContact | None, Body()] = None) -> User:
        active = (body or PutContact()).active
        return services.users.put_contact(app_id(), user_id_param(user_id), "phones", phone_param(phone), active)

    @router.delete(
        "/v1/users/<user_id>/phones/<phone>",
        tags=[TAG],
        summary="Remove a phone number",
        responses=errors({404: [*USER_NOT_FOUND, "contact_not_found"], 409: CONCURRENT}),
    )
    def delete_phone(user_id: UserIdPath, phone: SegmentPath) -> User:
        return services.users.remove_contact(app_id(), user_id_param(user_id), "phones", phone_param(phone))

    @router.put(
        "/v1/users/<user_id>/subscriptions/<resource_id>/<channel>",
        tags=[TAG],
        summary="Set a subscription status on a resource's channel",
        responses=errors(
            {
                404: [*USER_NOT_FOUND, "resource_not_found"],
                409: CONCURRENT,
                422: ["channel_not_offered", "too_many_subscriptions"],
            }
        ),
    )
    def put_subscription(
        user_id: UserIdPath, resource_id: SegmentPath, channel: Channel, body: PutSubscription
    ) -> Subscription:
        return services.users.put_subscription(app_id(), user_id_param(user_id), resource_id, channel, body.status)

    @router.get(
        "/v1/users/<user_id>/subscriptions",
        tags=[TAG],
        summary="List a user's subscriptions",
        responses=errors({404: USER_NOT_FOUND}),
    )
    def list_subscriptions(user_id: UserIdPath) -> list[Subscription]:
        return services.users.subscriptions(app_id(), user_id_param(user_id))

    return router
