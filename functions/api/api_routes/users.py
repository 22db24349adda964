"""User routes: profiles, contacts and subscriptions."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from api_routes.params import SegmentPath, UserIdPath, user_id_param
from steward.errors import InvalidInput
from steward.http.auth import current_principal
from steward.http.openapi import errors
from steward.http.paths import decode_id
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from steward.users.models import (
    Channel,
    EmailAddress,
    PhoneNumber,
    PutContact,
    PutSubscription,
    Subscription,
    UpsertUser,
    User,
)
from steward.users.service import UserBatchOutcome, UserService

TAG = "Users"
USER_NOT_FOUND = ["user_not_found"]
CONCURRENT = ["concurrent_update"]
_EMAIL = TypeAdapter(EmailAddress)
_PHONE = TypeAdapter(PhoneNumber)


class UserBatch(BaseModel):
    users: list[Any] = Field(
        description="Up to 100 items `{user_id, fields, global_unsubscribed}`; each gets its own outcome."
    )


def build_router(service: UserService) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.put(
        "/v1/users/<user_id>",
        tags=[TAG],
        summary="Create or update a user (fields merge)",
        responses=errors({409: CONCURRENT, 422: ["too_many_fields"]}),
    )
    def upsert_user(user_id: UserIdPath, body: UpsertUser) -> User:
        return service.upsert(app_id(), user_id_param(user_id), body)

    @router.get("/v1/users/<user_id>", tags=[TAG], summary="Get one user", responses=errors({404: USER_NOT_FOUND}))
    def get_user(user_id: UserIdPath) -> User:
        return service.get(app_id(), user_id_param(user_id))

    @router.delete(
        "/v1/users/<user_id>",
        tags=[TAG],
        summary="Delete a user",
        status_code=204,
        responses=errors({404: USER_NOT_FOUND, 409: CONCURRENT}),
    )
    def delete_user(user_id: UserIdPath) -> Response[None]:
        service.delete(app_id(), user_id_param(user_id))
        return Response(status_code=204)

    @router.get("/v1/users", tags=[TAG], summary="List the app's users")
    def list_users(
        cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> Page[User]:
        return service.list_page(app_id(), cursor, limit)

    @router.post(
        "/v1/users/batch",
        tags=[TAG],
        summary="Create or update up to 100 users",
        responses=errors({422: ["batch_too_large"]}),
    )
    def upsert_users(body: UserBatch) -> UserBatchOutcome:
        return service.upsert_batch(app_id(), body.users)

    @router.put(
        "/v1/users/<user_id>/emails/<email>",
        tags=[TAG],
        summary="Add or update an email address",
        responses=errors({404: USER_NOT_FOUND, 409: CONCURRENT, 422: ["too_many_contacts"]}),
    )
    def put_email(user_id: UserIdPath, email: SegmentPath, body: Annotated[PutContact | None, Body()] = None) -> User:
        active = (body or PutContact()).active
        return service.put_contact(app_id(), user_id_param(user_id), "emails", _address(_EMAIL, email, "email"), active)

    @router.delete(
        "/v1/users/<user_id>/emails/<email>",
        tags=[TAG],
        summary="Remove an email address",
        responses=errors({404: [*USER_NOT_FOUND, "contact_not_found"], 409: CONCURRENT}),
    )
    def delete_email(user_id: UserIdPath, email: SegmentPath) -> User:
        return service.remove_contact(app_id(), user_id_param(user_id), "emails", _address(_EMAIL, email, "email"))

    @router.put(
        "/v1/users/<user_id>/phones/<phone>",
        tags=[TAG],
        summary="Add or update an E.164 phone number",
        responses=errors({404: USER_NOT_FOUND, 409: CONCURRENT, 422: ["too_many_contacts"]}),
    )
    def put_phone(user_id: UserIdPath, phone: SegmentPath, body: Annotated[PutContact | None, Body()] = None) -> User:
        active = (body or PutContact()).active
        return service.put_contact(app_id(), user_id_param(user_id), "phones", _address(_PHONE, phone, "phone"), active)

    @router.delete(
        "/v1/users/<user_id>/phones/<phone>",
        tags=[TAG],
        summary="Remove a phone number",
        responses=errors({404: [*USER_NOT_FOUND, "contact_not_found"], 409: CONCURRENT}),
    )
    def delete_phone(user_id: UserIdPath, phone: SegmentPath) -> User:
        return service.remove_contact(app_id(), user_id_param(user_id), "phones", _address(_PHONE, phone, "phone"))

    @router.put(
        "/v1/users/<user_id>/subscriptions/<resource_id>/<channel>",
        tags=[TAG],
        summary="Set a subscription status on a resource's channel",
        responses=errors({404: [*USER_NOT_FOUND, "resource_not_found"], 409: CONCURRENT, 422: ["channel_not_offered"]}),
    )
    def put_subscription(
        user_id: UserIdPath, resource_id: SegmentPath, channel: Channel, body: PutSubscription
    ) -> Subscription:
        return service.put_subscription(app_id(), user_id_param(user_id), resource_id, channel, body.status)

    @router.get(
        "/v1/users/<user_id>/subscriptions",
        tags=[TAG],
        summary="List a user's subscriptions",
        responses=errors({404: USER_NOT_FOUND}),
    )
    def list_subscriptions(user_id: UserIdPath) -> list[Subscription]:
        return service.subscriptions(app_id(), user_id_param(user_id))

    return router


def _address(adapter: TypeAdapter[str], raw: str, field: str) -> str:
    try:
        return adapter.validate_python(decode_id(raw))
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"{field} is not valid: {exc}", code="invalid_path_parameter", field=field) from exc
