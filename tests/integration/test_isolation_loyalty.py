"""App B's key can neither use nor change app A's loyalty programs and promo codes."""

from tests.support.client import (
    A,
    B,
    RunningStack,
    add_codes,
    assert_error,
    code_path,
    fresh_code,
    new_program,
    new_user,
    user_path,
)

ROUTES_COVERED = {
    ("POST", "/v1/loyalty-programs"),
    ("POST", "/v1/loyalty-programs/{program_id}/codes"),
    ("PUT", "/v1/users/{user_id}/promo-codes/{code}"),
    ("DELETE", "/v1/users/{user_id}/promo-codes/{code}"),
}


def test_b_cannot_add_codes_to_a_program_of_a(stack: RunningStack) -> None:
    program_id = new_program(stack, app=A)
    code = fresh_code()

    refused = stack.api("POST", f"/v1/loyalty-programs/{program_id}/codes", stack.key(B), json={"codes": [code]})

    assert_error(refused, 404, "loyalty_program_not_found", "program_id")
    assert add_codes(stack, program_id, [code], app=A)["added"] == 1  # B wrote nothing


def test_b_cannot_attach_or_detach_codes_of_a(stack: RunningStack) -> None:
    program_id = new_program(stack, app=A)
    code, free_code = fresh_code(), fresh_code()
    add_codes(stack, program_id, [code, free_code], app=A)
    user_id = new_user(stack)
    assert stack.api("PUT", code_path(user_id, code), stack.key(A)).status_code == 200
    assert stack.api("PUT", user_path(user_id), stack.key(B), json={}).status_code == 200  # B's own user, same id
    before = stack.api("GET", user_path(user_id), stack.key(A)).json()

    assert_error(stack.api("PUT", code_path(user_id, free_code), stack.key(B)), 404, "promo_code_not_found")
    assert_error(stack.api("PUT", code_path(user_id, code), stack.key(B)), 404, "promo_code_not_found")
    assert_error(stack.api("DELETE", code_path(user_id, code), stack.key(B)), 404, "promo_code_not_attached")

    assert stack.api("GET", user_path(user_id), stack.key(A)).json() == before
    assert stack.api("GET", user_path(user_id), stack.key(B)).json()["promo_codes"] == []
    assert stack.api("PUT", code_path(new_user(stack), free_code), stack.key(A)).status_code == 200  # still free


def test_programs_and_codes_of_b_are_its_own(stack: RunningStack) -> None:
    a_program = new_program(stack, app=A)
    code = fresh_code()
    add_codes(stack, a_program, [code], app=A)
    b_program = new_program(stack, app=B)

    assert add_codes(stack, b_program, [code], app=B)["added"] == 1  # codes are unique per app, not across apps
    refused = stack.api("POST", f"/v1/loyalty-programs/{b_program}/codes", stack.key(A), json={"codes": ["x"]})
    assert_error(refused, 404, "loyalty_program_not_found")
