"""Segment routes: static segments with explicit members, and criteria segments."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from api_routes.params import SegmentPath
from steward.composition import Services
from steward.http.auth import current_principal
from steward.http.openapi import JSON, errors
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page
from steward.segments.models import ChangeMembers, CreateSegment, MemberChangeOutcome, Segment
from steward.users.models import User

TAG = "Segments"
NOT_FOUND = errors({404: ["segment_not_found"]})

_DELETE_DESCRIPTION = """\
Deletes the segment. A static segment's members are removed first, up to 2,000 per
request: while some remain, the answer is 202 with the segment (`deleting: true`) and
the same DELETE continues. 204 once the segment is gone. Members cannot be added to a
segment that is being deleted.
"""

_MEMBERS_DESCRIPTION = """\
Up to 1,000 user ids in `add` and `remove` together. Only registered users can be
members. Each user is counted in one of the outcome's fields; `failed` ones can be
sent again. The segment's `member_count` and `inactive_member_count` change in the
same transactions as the members.
"""

_LIST_MEMBERS_DESCRIPTION = """\
The members as users. For a criteria segment, the users its criteria select now: a
page reads at most 5,000 users, so it may hold fewer than `limit` users, or none,
and still have a `next_cursor`.
"""

Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.post(
        "/v1/segments",
        tags=[TAG],
        summary="Create a segment",
        status_code=201,
        responses=errors(
            {409: ["segment_name_taken"], 422: ["criteria_required", "criteria_not_allowed", "invalid_criteria"]}
        ),
    )
    def create_segment(body: CreateSegment) -> Segment:
        return services.segments.create(app_id(), body)

    @router.get("/v1/segments", tags=[TAG], summary="List the app's segments with their counts")
    def list_segments(cursor: Cursor = None, limit: Limit = DEFAULT_PAGE_SIZE) -> Page[Segment]:
        return services.segments.list_page(app_id(), cursor, limit)

    @router.get("/v1/segments/<segment_id>", tags=[TAG], summary="Get one segment", responses=NOT_FOUND)
    def get_segment(segment_id: SegmentPath) -> Segment:
        return services.segments.get(app_id(), segment_id)

    @router.delete(
        "/v1/segments/<segment_id>",
        tags=[TAG],
        summary="Delete a segment",
        description=_DELETE_DESCRIPTION,
        status_code=204,
        responses={
            202: {
                "description": "Members remain: the segment, `deleting`; repeat the request.",
                "content": {JSON: {"model": Segment}},
            },
            204: {"description": "The segment is deleted; no body.", "content": {}},
            **errors({404: ["segment_not_found"], 409: ["concurrent_update"]}),
        },
    )
    def delete_segment(segment_id: SegmentPath) -> Response[Segment | None]:
        remaining = services.segments.delete(app_id(), segment_id)
        if remaining is None:
            return Response(status_code=204)
        return Response(status_code=202, content_type="application/json", body=remaining)

    @router.post(
        "/v1/segments/<segment_id>/members",
        tags=[TAG],
        summary="Add and remove members of a static segment",
        description=_MEMBERS_DESCRIPTION,
        responses=errors(
            {
                404: ["segment_not_found"],
                409: ["segment_not_static", "segment_deleting", "concurrent_update"],
                422: ["batch_too_large", "id_in_add_and_remove"],
            }
        ),
    )
    def change_members(segment_id: SegmentPath, body: ChangeMembers) -> MemberChangeOutcome:
        return services.segments.change_members(app_id(), segment_id, body)

    @router.get(
        "/v1/segments/<segment_id>/members",
        tags=[TAG],
        summary="List a segment's members",
        description=_LIST_MEMBERS_DESCRIPTION,
        responses=NOT_FOUND,
    )
    def list_members(segment_id: SegmentPath, cursor: Cursor = None, limit: Limit = DEFAULT_PAGE_SIZE) -> Page[User]:
        return services.segments.members(app_id(), segment_id, cursor, limit)

    return router
