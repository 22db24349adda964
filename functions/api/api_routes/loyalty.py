"""Loyalty routes: programs, their promo codes, and attaching codes to users."""

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import TypeAdapter, ValidationError

from api_routes.params import SegmentPath, UserIdPath, user_id_param
from steward.composition import Services
from steward.errors import InvalidInput
from steward.http.auth import current_principal
from steward.http.openapi import errors
from steward.http.paths import decode_id
from steward.loyalty.models import AddCodes, AddCodesOutcome, CreateLoyaltyProgram, LoyaltyProgram, PromoCodeValue
from steward.users.models import User

TAG = "Loyalty"
_CODE = TypeAdapter(PromoCodeValue)


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.post("/v1/loyalty-programs", tags=[TAG], summary="Create a loyalty program", status_code=201)
    def create_program(body: CreateLoyaltyProgram) -> LoyaltyProgram:
        return services.loyalty.create_program(app_id(), body.name)

    @router.post(
        "/v1/loyalty-programs/<program_id>/codes",
        tags=[TAG],
        summary="Add up to 1,000 promo codes to a program",
        responses=errors({404: ["loyalty_program_not_found"], 422: ["batch_too_large"]}),
    )
    def add_codes(program_id: SegmentPath, body: AddCodes) -> AddCodesOutcome:
        return services.loyalty.add_codes(app_id(), program_id, body.codes)

    @router.put(
        "/v1/users/<user_id>/promo-codes/<code>",
        tags=[TAG],
        summary="Attach a promo code to a user",
        responses=errors(
            {404: ["user_not_found", "promo_code_not_found"], 409: ["promo_code_taken", "too_many_promo_codes"]}
        ),
    )
    def attach_code(user_id: UserIdPath, code: SegmentPath) -> User:
        return services.loyalty.attach(app_id(), user_id_param(user_id), _code(code))

    @router.delete(
        "/v1/users/<user_id>/promo-codes/<code>",
        tags=[TAG],
        summary="Detach a promo code from a user",
        responses=errors({404: ["user_not_found", "promo_code_not_attached"]}),
    )
    def detach_code(user_id: UserIdPath, code: SegmentPath) -> User:
        return services.loyalty.detach(app_id(), user_id_param(user_id), _code(code))

    return router


def _code(raw: str) -> str:
    try:
        return _CODE.validate_python(decode_id(raw))
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"code is not valid: {exc}", code="invalid_path_parameter", field="code") from exc
