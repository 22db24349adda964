"""What the OpenAPI document says about responses, kept true to what the API sends.

Powertools documents one success response per route and, with validation on,
a 422 in its own ``{"detail": [...]}`` shape, which Steward never sends: every
error goes through steward.http.errors. ``document_responses`` runs once, when
the app is built, and gives every route of the document:

- its success status (the route's ``status_code``; a 204 has no body);
- on authenticated routes: 401 (Steward's, or API Gateway's own when the
  ``Authorization`` header is missing), 403 naming the scope the route needs,
  and 415 when the route takes a body;
- on every route: 422 in Steward's shape (Powertools lists a 422 on every
  route once validation is on), 429 (API Gateway's throttling), 503
  ``unavailable`` (AWS refused a request for the moment) and 500;
- the responses the route declares itself, such as ``errors({404: [...]})``,
  which take precedence; a route's own 401, 429 or 503 adds to the shared one.

Every Steward error response references the one ErrorResponse model.
"""

import inspect
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, get_args, get_origin

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.api_gateway import Route
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, Field

from steward.http.auth import required_scope
from steward.schema import Schema

JSON = "application/json"
_SCHEMA_REF = "#/components/schemas/"


class ErrorDetail(Schema):
    code: str = Field(description="Stable and machine-readable, such as `device_not_found`: branch on it.")
    message: str = Field(description="For people; the wording may change.")
    field: str | None = Field(
        description=(
            "The input to blame, when one is: a body path such as `results[3].accepted`, "
            "or the name of a path or query parameter."
        )
    )


class ErrorResponse(Schema):
    """The body of every error Steward sends."""

    error: ErrorDetail


class GatewayError(Schema):
    """API Gateway's own answer, sent without running Steward (throttling, a missing Authorization header)."""

    message: str = Field(description="For example `Unauthorized` or `Too Many Requests`.")


AUTHENTICATION_CODES = ("missing_api_key", "invalid_api_key", "revoked_api_key")
# What any route with parameters or a body may answer; routes add their own with errors({422: [...]}).
VALIDATION_CODES = ("invalid_input", "missing_field", "malformed_json", "invalid_path_parameter", "invalid_cursor")

# Statuses that API Gateway itself may send on any route, besides Steward's own.
_SHARED_WITH_THE_GATEWAY = frozenset({401, 429})
_UNROUTABLE = "a path parameter holds characters that no route takes"
_REFUSED_FOR_NOW = (
    "`unavailable`: AWS refused a request for the moment (throttling, an item busy with another change); "
    "send it again after `Retry-After` seconds. What it changed before the refusal stays changed"
)
_TITLES = {
    401: "No valid API key",
    403: "The key lacks the scope this route needs",
    404: "Not found",
    409: "The current state forbids the change",
    415: "The body is not JSON",
    422: "The input is not acceptable; `field` names the culprit",
    428: "Fresh admin credentials are needed",
    429: "Too many attempts; `Retry-After` gives the seconds to wait",
    503: "A service Steward depends on refused the work for now; send it again after `Retry-After` seconds",
    500: "Something went wrong on Steward's side; it has been logged with the correlation id",
}


def errors(codes_by_status: Mapping[int, Iterable[str]]) -> dict[int, OpenAPIResponse]:
    """A route's own error responses, each listing the codes it may carry: ``errors({404: ["device_not_found"]})``."""
    return {status: _steward_error(status, codes) for status, codes in codes_by_status.items()}


def document_responses(app: APIGatewayHttpResolver, public_paths: frozenset[str]) -> None:
    """Give every documented route the responses it can send (see the module docstring).

    Call it after every router is included and before the first request:
    Powertools reads a route's ``responses`` once, when it first builds the
    route's dependant, to learn the response models it must describe. Those
    models cost each route about 3 ms more on its first request in a container.
    """
    for route in (*app._static_routes, *app._dynamic_routes):
        if route.include_in_schema:
            route.responses = _responses(route, public=route.path in public_paths)


def _responses(route: Route, *, public: bool) -> dict[int, OpenAPIResponse]:
    responses: dict[int, OpenAPIResponse] = {route.status_code: _success(route)}
    if not public:
        responses[401] = {
            "description": (
                f"{_TITLES[401]}: {_code_list(AUTHENTICATION_CODES)}. Without an `Authorization` header, "
                'API Gateway answers `{"message": "Unauthorized"}` itself, before Steward runs.'
            ),
            "content": {JSON: {"model": ErrorResponse | GatewayError}},
        }
        responses[403] = _steward_error(
            403, ["insufficient_scope"], title=f"The key lacks the `{required_scope(route)}` scope this route needs"
        )
        if _takes_body(route):
            responses[415] = {
                "description": f"{_TITLES[415]}: send `Content-Type: application/json`.",
                "content": {JSON: {"model": ErrorResponse}},
            }
    responses[422] = _steward_error(422, [])
    responses[429] = {
        "description": 'API Gateway\'s throttling: `{"message": "Too Many Requests"}`. Retry later.',
        "content": {JSON: {"model": GatewayError}},
    }
    responses[503] = _steward_error(503, [], title=_REFUSED_FOR_NOW)
    responses[500] = {
        "description": (
            f"{_TITLES[500]}: `internal_error`. API Gateway answers "
            '`{"message": "Internal Server Error"}` itself when its authorizer fails.'
        ),
        "content": {JSON: {"model": ErrorResponse | GatewayError}},
    }
    for status, own in (route.responses or {}).items():
        shared = responses.get(status)
        if status in _SHARED_WITH_THE_GATEWAY and shared is not None:
            # A route's own 401 or 429 (re-authentication) adds to what every route may send; it replaces nothing.
            responses[status] = {
                "description": f"{shared['description']} Also {own['description']}",
                "content": {JSON: {"model": ErrorResponse | GatewayError}},
            }
        elif status == 503 and shared is not None and "`unavailable`" not in own["description"]:
            # The route's own reasons (a start Step Functions refused), besides the refusal any route may meet;
            # a route that names `unavailable` itself says what it means there.
            responses[status] = {**own, "description": f"{own['description']} Also {shared['description']}"}
        else:
            responses[status] = own
    if "<" in route.path:
        # A parameter holding characters the router does not take (a quote, an emoji) matches no route.
        declared = responses.get(404)
        responses[404] = (
            {**declared, "description": f"{declared['description']} Or `route_not_found`: {_UNROUTABLE}."}
            if declared
            else _steward_error(404, ["route_not_found"], title=_UNROUTABLE.capitalize())
        )
    return responses


def _success(route: Route) -> OpenAPIResponse:
    if route.status_code == 204:
        return {"description": "Done; no body.", "content": {}}
    # No content here: Powertools describes the body from the handler's return annotation.
    return {"description": route.response_description or "Successful response."}


def _steward_error(status: int, codes: Iterable[str], title: str | None = None) -> OpenAPIResponse:
    listed = _code_list(codes)
    if status == 422:
        listed = f"{_code_list(VALIDATION_CODES)}{f'; on this route also {listed}' if listed else ''}"
    title = title or _TITLES.get(status, "Error")
    description = f"{title}: {listed}." if listed else f"{title}."
    return {"description": description, "content": {JSON: {"model": ErrorResponse}}}


def _code_list(codes: Iterable[str]) -> str:
    return ", ".join(f"`{code}`" for code in codes)


def _takes_body(route: Route) -> bool:
    """Whether the handler reads a JSON body: a pydantic model parameter, or one annotated with Body()."""
    for parameter in inspect.signature(route.func, eval_str=True).parameters.values():
        annotation: Any = parameter.annotation
        if get_origin(annotation) is Annotated:
            annotation, *metadata = get_args(annotation)
            if any(isinstance(item, Body) for item in metadata):
                return True
        if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            return True
    return False


def without_unused_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """The document without the component schemas no operation refers to.

    Powertools always adds its own validation-error schemas, which no response
    of Steward's uses any more; code generators would still turn them into types.
    """
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    used: set[str] = set()
    pending: list[Any] = [document.get("paths", {})]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith(_SCHEMA_REF):
                name = reference.removeprefix(_SCHEMA_REF)
                if name not in used:
                    used.add(name)
                    pending.append(schemas.get(name))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    if schemas:
        document["components"]["schemas"] = {name: schema for name, schema in schemas.items() if name in used}
    return document
