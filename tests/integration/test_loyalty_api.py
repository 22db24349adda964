"""Loyalty programs and promo codes over HTTP: create, add codes, attach and detach."""

import uuid

from tests.support.client import (
    A,
    RunningStack,
    add_codes,
    assert_error,
    code_path,
    fresh_code,
    new_program,
    new_user,
    user_path,
)


def test_create_program_and_add_codes(stack: RunningStack) -> None:
    program_id = new_program(stack)
    code = fresh_code()

    outcome = add_codes(stack, program_id, [code, code, "bad code", 5])
    again = add_codes(stack, program_id, [code])

    assert program_id.startswith("lp_")
    assert outcome == {"added": 1, "duplicates": 1, "invalid": ["bad code", "5"], "failed": []}
    assert again == {"added": 0, "duplicates": 1, "invalid": [], "failed": []}


def test_bad_program_requests(stack: RunningStack) -> None:
    program_id = new_program(stack)

    assert_error(stack.api("POST", "/v1/loyalty-programs", stack.key(A), json={"name": ""}), 422, "invalid_input")
    too_many = stack.api("POST", f"/v1/loyalty-programs/{program_id}/codes", stack.key(A), json={"codes": ["c"] * 1001})
    assert_error(too_many, 422, "batch_too_large", "codes")
    unknown = stack.api("POST", "/v1/loyalty-programs/lp_nope/codes", stack.key(A), json={"codes": ["c"]})
    assert_error(unknown, 404, "loyalty_program_not_found", "program_id")


def test_attach_and_detach(stack: RunningStack) -> None:
    program_id = new_program(stack)
    code = fresh_code()
    add_codes(stack, program_id, [code])
    user_id, other = new_user(stack), new_user(stack)

    attached = stack.api("PUT", code_path(user_id, code), stack.key(A))
    again = stack.api("PUT", code_path(user_id, code), stack.key(A))
    taken = stack.api("PUT", code_path(other, code), stack.key(A))
    not_theirs = stack.api("DELETE", code_path(other, code), stack.key(A))

    assert attached.status_code == 200, attached.text
    assert attached.json()["promo_codes"] == [{"code": code, "program_id": program_id}]
    assert again.status_code == 200
    assert again.json() == attached.json()
    assert_error(taken, 409, "promo_code_taken", "code")
    assert_error(not_theirs, 404, "promo_code_not_attached", "code")
    assert stack.api("GET", user_path(user_id), stack.key(A)).json()["promo_codes"] == attached.json()["promo_codes"]

    detached = stack.api("DELETE", code_path(user_id, code), stack.key(A))

    assert detached.status_code == 200, detached.text
    assert detached.json()["promo_codes"] == []
    assert_error(stack.api("DELETE", code_path(user_id, code), stack.key(A)), 404, "promo_code_not_attached")
    moved = stack.api("PUT", code_path(other, code), stack.key(A))
    assert moved.status_code == 200
    assert moved.json()["promo_codes"][0]["code"] == code


def test_attach_errors(stack: RunningStack) -> None:
    program_id = new_program(stack)
    code = fresh_code()
    add_codes(stack, program_id, [code])
    user_id = new_user(stack)

    assert_error(stack.api("PUT", code_path(user_id, fresh_code()), stack.key(A)), 404, "promo_code_not_found", "code")
    assert_error(stack.api("PUT", code_path("ghost-" + fresh_code(), code), stack.key(A)), 404, "user_not_found")
    assert_error(
        stack.api("PUT", code_path(user_id, "bad%20code"), stack.key(A)), 422, "invalid_path_parameter", "code"
    )


def test_user_ids_with_slashes(stack: RunningStack) -> None:
    program_id = new_program(stack)
    code = fresh_code()
    add_codes(stack, program_id, [code])
    user_id = f"team/{uuid.uuid4().hex}"
    assert stack.api("PUT", user_path(user_id), stack.key(A), json={}).status_code == 200

    attached = stack.api("PUT", code_path(user_id, code), stack.key(A))

    assert attached.status_code == 200, attached.text
    assert attached.json()["user_id"] == user_id
