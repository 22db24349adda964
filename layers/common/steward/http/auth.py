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

from steward.apps.keys import (
    CONTEXT_APP_ID,
    CONTEXT_ERROR,
    CONTEXT_ERROR_MESSAGE,
    CONTEXT_KEY_ID,
    CONTEXT_SCOPES,
    MISSING_KEY_MESSAGE,
)
from steward.apps.models import Principal, Scope, known_scopes
from steward.http.errors import error_body, error_response

PRINCIPAL = "principal"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
    message = str(context.get(CONTEXT_ERROR_MESSAGE) or MISSING_KEY_MESSAGE)
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
            return error_response(401, "missing_api_key", MISSING_KEY_MESSAGE)
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
    scopes = known_scopes(str(context.get(CONTEXT_SCOPES, "")).split())
    return Principal(app_id=str(app_id), key_id=str(key_id), scopes=scopes)


def current_principal(app: BaseRouter) -> Principal:
    principal: Principal = app.context[PRINCIPAL]
    return principal


def _missing_scope(scope: Scope) -> Response[str]:
    return error_response(403, "insufficient_scope", f"This route needs an API key with the `{scope}` scope.")
