"""Audience routes: imported audiences, their members, deletion with a tombstone, and upload links."""

from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from api_routes.params import UserIdPath, user_id_param
from steward.apps.models import Scope
from steward.audiences.models import Audience, MemberPage, MembersCheck, MembersCheckResult, Membership, UploadUrl
from steward.composition import Services
from steward.errors import InvalidInput
from steward.http.auth import RequireScope, current_principal
from steward.http.openapi import errors
from steward.http.paths import decode_id
from steward.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page

TAG = "Audiences"
READ: list[Callable[..., Any]] = [RequireScope(Scope.READ)]
MAX_MEMBER_PAGE = 1000
NAME_ERRORS = {422: ["invalid_audience_name"]}
NOT_FOUND = {404: ["audience_not_found"], **NAME_ERRORS}

NamePath = Annotated[
    str,
    Path(
        pattern=r"^[^/?#]+$",
        description="The audience name (the file name without `.csv`), URL-encoded. A name holding '?' or '#', "
        "or starting with '~', travels as '~' followed by its base64url encoding (`~YQ` is the name `a`; the name "
        "`~YQ` itself is `~fllR`).",
    ),
]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
MemberLimit = Annotated[int, Query(ge=1, le=MAX_MEMBER_PAGE)]

_LIST_DESCRIPTION = """\
The app's audiences, including refused ones (`failed`) and tombstones (`deleted`), by name.
"""
_GET_DESCRIPTION = """\
One audience: its status, counts, version, source key, import times, a sample of invalid lines,
and its last failure. A deleted audience answers with status `deleted`, the deletion time and
the last file refused because of the tombstone.
"""
_MEMBER_DESCRIPTION = """\
200 when the user is a member of the audience's current version, 404 `not_a_member` otherwise.
A point lookup: at most one read unit.
"""
_CHECK_DESCRIPTION = """\
Up to 1,000 user ids; each is listed in `members` or `not_members`, in the order sent.
Costs at most one read unit per id (ids that share a bucket share its read). Needs the read scope.
"""
_MEMBERS_DESCRIPTION = """\
The members of the current version, up to `limit` (default 100, at most 1,000) a page. The order
is stable within a version; if a newer file replaces the audience while you page, the next page
answers 409 `audience_replaced`: start again.
"""
_DELETE_DESCRIPTION = """\
Deletes the audience and leaves a tombstone: files with this name are refused (and recorded on
the tombstone) until you lift it with `DELETE /v1/audiences/{name}/tombstone`. Its members are
removed in the background. Answers the tombstone; deleting a tombstone again answers it unchanged.
"""
_UPLOAD_DESCRIPTION = """\
A presigned PUT for exactly `imports/<app_id>/<name>.csv`, valid for 15 minutes:
`curl -X PUT --upload-file audience.csv "<url>"`. The import starts when the upload ends.
"""


def name_param(raw: str) -> str:
    try:
        return decode_id(raw)
    except ValueError as exc:
        raise InvalidInput(f"name is not valid: {exc}", code="invalid_path_parameter", field="name") from exc


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.get("/v1/audiences", tags=[TAG], summary="List the app's audiences", description=_LIST_DESCRIPTION)
    def list_audiences(cursor: Cursor = None, limit: Limit = DEFAULT_PAGE_SIZE) -> Page[Audience]:
        return services.audiences.list_page(app_id(), cursor, limit)

    @router.get(
        "/v1/audiences/<name>",
        tags=[TAG],
        summary="Get one audience",
        description=_GET_DESCRIPTION,
        responses=errors(NOT_FOUND),
    )
    def get_audience(name: NamePath) -> Audience:
        return services.audiences.get(app_id(), name_param(name))

    @router.get(
        "/v1/audiences/<name>/members/<user_id>",
        tags=[TAG],
        summary="Whether a user is a member",
        description=_MEMBER_DESCRIPTION,
        responses=errors({404: ["audience_not_found", "not_a_member"], **NAME_ERRORS}),
    )
    def get_member(name: NamePath, user_id: UserIdPath) -> Membership:
        return services.audiences.is_member(app_id(), name_param(name), user_id_param(user_id))

    @router.post(
        "/v1/audiences/<name>/members/check",
        tags=[TAG],
        summary="Check up to 1,000 users' membership",
        description=_CHECK_DESCRIPTION,
        middlewares=READ,
        responses=errors(NOT_FOUND),
    )
    def check_members(name: NamePath, body: MembersCheck) -> MembersCheckResult:
        return services.audiences.check(app_id(), name_param(name), body.user_ids)

    @router.get(
        "/v1/audiences/<name>/members",
        tags=[TAG],
        summary="Page through an audience's members",
        description=_MEMBERS_DESCRIPTION,
        responses=errors({**NOT_FOUND, 409: ["audience_replaced"]}),
    )
    def list_members(name: NamePath, cursor: Cursor = None, limit: MemberLimit = 100) -> MemberPage:
        return services.audiences.members_page(app_id(), name_param(name), cursor, limit)

    @router.delete(
        "/v1/audiences/<name>",
        tags=[TAG],
        summary="Delete an audience, leaving a tombstone",
        description=_DELETE_DESCRIPTION,
        responses=errors({**NOT_FOUND, 409: ["concurrent_update"]}),
    )
    def delete_audience(name: NamePath) -> Audience:
        return services.audiences.delete(app_id(), name_param(name))

    @router.delete(
        "/v1/audiences/<name>/tombstone",
        tags=[TAG],
        summary="Lift an audience's tombstone",
        status_code=204,
        responses={
            # A late event of a file imported before the deletion is skipped: only files put from now on import.
            204: {
                "description": "The tombstone is lifted: a file with this name put from now on imports.",
                "content": {},
            },
            # The versions the tombstone still names are handed to the importer first: when that fails, it stays.
            **errors({**NOT_FOUND, 409: ["audience_not_deleted", "concurrent_update"], 503: ["unavailable"]}),
        },
    )
    def lift_tombstone(name: NamePath) -> Response[None]:
        services.audiences.lift_tombstone(app_id(), name_param(name))
        return Response(status_code=204)

    @router.post(
        "/v1/audiences/<name>/upload-url",
        tags=[TAG],
        summary="Get a presigned PUT for the audience's file",
        description=_UPLOAD_DESCRIPTION,
        responses=errors({409: ["audience_deleted"], **NAME_ERRORS}),
    )
    def upload_url(name: NamePath) -> UploadUrl:
        return services.audiences.upload_url(app_id(), name_param(name))

    return router
