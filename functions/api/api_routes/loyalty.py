"""Loyalty routes: programs, their promo codes, and attaching codes to users."""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import TypeAdapter, ValidationError

from api_routes.params import user_id_param
from steward.composition import Services
from steward.errors import InvalidInput
from steward.http.auth import current_principal
from steward.http.paths import decode_id
from steward.loyalty.models import AddCodes, AddCodesOutcome, CreateLoyaltyProgram, LoyaltyProgram, PromoCodeValue
from steward.users.models import User

TAG = "Loyalty"
_CODE = TypeAdapter(PromoCodeValue)


def build_router(services: Services) -> APIGatewayHttpRouter:
    router = APIGatewayHttpRouter()

    def app_id() -> str:
        return current_principal(router).app_id

    @router.post("/v1/loyalty-programs", tags=[TAG], summary="Create a loyalty program")
    def create_program(body: CreateLoyaltyProgram) -> Response[LoyaltyProgram]:
        program = services.loyalty.create_program(app_id(), body.name)
        return Response(status_code=201, content_type="application/json", body=program)

    @router.post(
        "/v1/loyalty-programs/<program_id>/codes", tags=[TAG], summary="Add up to 1,000 promo codes to a program"
    )
    def add_codes(program_id: str, body: AddCodes) -> AddCodesOutcome:
        return services.loyalty.add_codes(app_id(), program_id, body.codes)

    @router.put("/v1/users/<user_id>/promo-codes/<code>", tags=[TAG], summary="Attach a promo code to a user")
    def attach_code(user_id: str, code: str) -> User:
        return services.loyalty.attach(app_id(), user_id_param(user_id), _code(code))

    @router.delete("/v1/users/<user_id>/promo-codes/<code>", tags=[TAG], summary="Detach a promo code from a user")
    def detach_code(user_id: str, code: str) -> User:
        return services.loyalty.detach(app_id(), user_id_param(user_id), _code(code))

    return router


def _code(raw: str) -> str:
    try:
        return _CODE.validate_python(decode_id(raw))
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"code is not valid: {exc}", code="invalid_path_parameter", field="code") from exc
