"""Authentication and scopes for API routes.

The authorizer only resolves the key (see functions/authorizer); this module
turns its context into a Principal and enforces scopes. HTTP API simple
authorizers can only deny with 403, so an unknown key reaches the handler
marked as unauthenticated and is refused here with 401 before any route runs.
Routes never read the app id from the path or the body: only from here.
"""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter, Route
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from steward.apps.models import Principal, Scope
from steward.errors import Unauthenticated
from steward.http.errors import error_body, error_response

PRINCIPAL = "principal"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Keys the authorizer puts in its context (strings only: API Gateway's rule).
CONTEXT_APP_ID = "app_id"
CONTEXT_KEY_ID = "key_id"
CONTEXT_SCOPES = "scopes"
CONTEXT_ERROR = "auth_error"
CONTEXT_ERROR_MESSAGE = "auth_message"


def principal_context(principal: Principal) -> dict[str, str]:
    return {
        CONTEXT_APP_ID: principal.app_id,
        CONTEXT_KEY_ID: principal.key_id,
        CONTEXT_SCOPES: " ".join(sorted(principal.scopes)),
    }


def failure_context(code: str, message: str) -> dict[str, str]:
    return {CONTEXT_ERROR: code, CONTEXT_ERROR_MESSAGE: message}


class RequireScope:
    """Route middleware: the route needs this scope instead of the method's default."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.__name__ = f"require_{scope}_scope"  # Powertools names middlewares in its stack

    def __call__(self, app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[str]:
        principal: Principal = app.context[PRINCIPAL]
        if self.scope not in principal.scopes:
            return _missing_scope(self.scope)
        return next_middleware(app)


def refuse_unauthenticated(event: dict[str, Any], public_paths: frozenset[str]) -> dict[str, Any] | None:
    """Before routing and body validation: 401 for a request to a non-public path without a valid key.

    Runs ahead of the resolver so that a caller without a key never gets the
    server to parse and validate a body, nor learns anything about routes.
    """
    if event.get("rawPath") in public_paths:
        return None
    context = _authorizer_context(event)
    if _principal(context) is not None:
        return None
    code = str(context.get(CONTEXT_ERROR) or "missing_api_key")
    message = str(context.get(CONTEXT_ERROR_MESSAGE) or "Send an API key as `Authorization: Bearer <key>`.")
    return {"statusCode": 401, "headers": {"Content-Type": "application/json"}, "body": error_body(code, message)}


def authorize(public_paths: frozenset[str]) -> Callable[[APIGatewayHttpResolver, NextMiddleware], Response[str]]:
    """Global middleware: records the caller and checks the route's scope (403).

    GET routes need `read` and the others `write`, unless a route declares a
    RequireScope of its own.
    """

    def middleware(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[str]:
        route = app.context.get("_route")
        if route is None or route.path in public_paths:
            return next_middleware(app)
        principal = _principal(app.current_event.request_context.authorizer.get_lambda)
        if principal is None:  # refuse_unauthenticated already answered; kept so no route can run keyless
            return error_response(401, "missing_api_key", "Send an API key as `Authorization: Bearer <key>`.")
        app.append_context(**{PRINCIPAL: principal})
        if not any(isinstance(step, RequireScope) for step in route.middlewares):
            needed = required_scope(route)
            if needed not in principal.scopes:
                return _missing_scope(needed)
        return next_middleware(app)

    return middleware


def required_scope(route: Route) -> Scope:
    """The scope a route needs: the one its RequireScope declares, else read for GET and write otherwise."""
    for step in route.middlewares:
        if isinstance(step, RequireScope):
            return step.scope
    return Scope.READ if route.method in SAFE_METHODS else Scope.WRITE


def _authorizer_context(event: dict[str, Any]) -> dict[str, Any]:
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    context: dict[str, Any] = authorizer.get("lambda") or {}
    return context


def _principal(context: dict[str, Any]) -> Principal | None:
    app_id, key_id = context.get(CONTEXT_APP_ID), context.get(CONTEXT_KEY_ID)
    if not app_id or not key_id:
        return None
    known = {scope.value for scope in Scope}
    scopes = frozenset(Scope(scope) for scope in str(context.get(CONTEXT_SCOPES, "")).split() if scope in known)
    return Principal(app_id=str(app_id), key_id=str(key_id), scopes=scopes)


def current_principal(app: BaseRouter) -> Principal:
    principal: Principal = app.context[PRINCIPAL]
    return principal


def _missing_scope(scope: Scope) -> Response[str]:
    return error_response(403, "insufficient_scope", f"This route needs an API key with the `{scope}` scope.")


def authorizer_context(authorization: str | None, authenticate_key: Callable[[str], Principal]) -> dict[str, str]:
    """What the Lambda authorizer hands API Gateway for an Authorization header.

    Always a simple 'allow' answer: the context says who the caller is, or
    why they are not anyone, and the API function refuses the latter with 401.
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return failure_context("missing_api_key", "Send an API key as `Authorization: Bearer <key>`.")
    try:
        return principal_context(authenticate_key(token.strip()))
    except Unauthenticated as exc:
        return failure_context(exc.code, exc.message)
