"""Loyalty programs and promo codes against moto: bulk adds, attach/detach consistency, isolation."""

import pytest

from steward.composition import Services
from steward.errors import Conflict, InvalidInput, NotFound
from steward.loyalty.service import LoyaltyService
from steward.settings import StoreSettings
from steward.users.models import MAX_PROMO_CODES, PromoCode, UpsertUser
from tests.support.service import SHARD_COUNT, new_users, refusal

A, B = "app-a", "app-b"


@pytest.fixture
def loyalty(store: StoreSettings) -> LoyaltyService:
    return Services(SHARD_COUNT).loyalty


def program_with(loyalty: LoyaltyService, app_id: str, *codes: str) -> str:
    program_id = loyalty.create_program(app_id, "Gold").program_id
    assert loyalty.add_codes(app_id, program_id, list(codes)).added == len(codes)
    return program_id


def user_codes(app_id: str, user_id: str) -> list[PromoCode]:
    user = Services(SHARD_COUNT).user_repository.get(app_id, user_id)
    assert user is not None
    return user.promo_codes


def attached_to(app_id: str, code: str) -> str | None:
    stored = Services(SHARD_COUNT).loyalty.repository.get_code(app_id, code)
    assert stored is not None
    return stored.attached_user_id


def test_create_program(loyalty: LoyaltyService) -> None:
    program = loyalty.create_program(A, "Gold")
    assert program.program_id.startswith("lp_")
    assert loyalty.repository.get_program(A, program.program_id) == program


def test_add_codes_counts_added_duplicates_and_invalid(loyalty: LoyaltyService) -> None:
    first = program_with(loyalty, A, "KEEP-1")
    second = loyalty.create_program(A, "Silver").program_id

    outcome = loyalty.add_codes(A, second, ["NEW_1", "NEW_1", "KEEP-1", "bad code", "", "x" * 65, 7, None, "NEW-2"])

    assert (outcome.added, outcome.duplicates, outcome.failed) == (2, 2, [])
    assert outcome.invalid == ["bad code", "", "x" * 65, "7", "null"]
    kept = loyalty.repository.get_code(A, "KEEP-1")
    assert kept is not None
    assert kept.program_id == first
    for code in ("NEW_1", "NEW-2"):
        stored = loyalty.repository.get_code(A, code)
        assert stored is not None
        assert stored.program_id == second


def test_add_codes_limits_and_unknown_program(loyalty: LoyaltyService) -> None:
    program_id = loyalty.create_program(A, "Gold").program_id
    assert loyalty.add_codes(A, program_id, [f"C{i}" for i in range(1000)]).added == 1000
    with pytest.raises(InvalidInput) as too_many:
        loyalty.add_codes(A, program_id, ["C"] * 1001)
    assert too_many.value.code == "batch_too_large"
    with pytest.raises(NotFound) as missing:
        loyalty.add_codes(A, "lp_missing", ["C1"])
    assert missing.value.code == "loyalty_program_not_found"


def test_attach_and_detach_keep_code_and_user_consistent(loyalty: LoyaltyService) -> None:
    program_id = program_with(loyalty, A, "SUMMER", "WINTER")
    new_users(A, "u1")

    user = loyalty.attach(A, "u1", "SUMMER")
    again = loyalty.attach(A, "u1", "SUMMER")
    loyalty.attach(A, "u1", "WINTER")

    assert user.promo_codes == [PromoCode(code="SUMMER", program_id=program_id)]
    assert again == user  # idempotent
    assert attached_to(A, "SUMMER") == "u1"
    assert [item.code for item in user_codes(A, "u1")] == ["SUMMER", "WINTER"]

    detached = loyalty.detach(A, "u1", "SUMMER")

    assert detached.promo_codes == [PromoCode(code="WINTER", program_id=program_id)]
    assert attached_to(A, "SUMMER") is None
    assert user_codes(A, "u1") == detached.promo_codes
    with pytest.raises(NotFound) as twice:
        loyalty.detach(A, "u1", "SUMMER")
    assert twice.value.code == "promo_code_not_attached"


def test_code_taken_by_another_user(loyalty: LoyaltyService) -> None:
    program_with(loyalty, A, "ONLY")
    new_users(A, "u1")
    new_users(A, "u2")
    loyalty.attach(A, "u1", "ONLY")

    taken = refusal(Conflict, loyalty.attach, A, "u2", "ONLY")
    not_theirs = refusal(NotFound, loyalty.detach, A, "u2", "ONLY")

    assert taken.code == "promo_code_taken"
    assert not_theirs.code == "promo_code_not_attached"
    assert user_codes(A, "u2") == []
    assert attached_to(A, "ONLY") == "u1"
    loyalty.detach(A, "u1", "ONLY")
    assert loyalty.attach(A, "u2", "ONLY").promo_codes[0].code == "ONLY"


def test_unknown_code_or_user(loyalty: LoyaltyService) -> None:
    program_with(loyalty, A, "REAL")
    new_users(A, "u1")

    unknown_code = refusal(NotFound, loyalty.attach, A, "u1", "NOPE")
    unknown_user = refusal(NotFound, loyalty.attach, A, "ghost", "REAL")
    detach_unknown_user = refusal(NotFound, loyalty.detach, A, "ghost", "REAL")

    assert unknown_code.code == "promo_code_not_found"
    assert unknown_user.code == "user_not_found"
    assert detach_unknown_user.code == "user_not_found"
    assert attached_to(A, "REAL") is None  # the transaction left the code free
    assert Services(SHARD_COUNT).user_repository.get(A, "ghost") is None  # and created no user


def test_user_upsert_keeps_promo_codes(loyalty: LoyaltyService) -> None:
    program_with(loyalty, A, "KEPT")
    new_users(A, "u1")
    loyalty.attach(A, "u1", "KEPT")

    Services(SHARD_COUNT).users.upsert(A, "u1", UpsertUser(fields={"plan": "pro"}))

    assert [item.code for item in user_codes(A, "u1")] == ["KEPT"]


def test_apps_are_isolated(loyalty: LoyaltyService) -> None:
    program_id = program_with(loyalty, A, "SHARED")
    new_users(A, "u1")
    new_users(B, "u1")

    foreign_program = refusal(NotFound, loyalty.add_codes, B, program_id, ["MORE"])
    foreign_code = refusal(NotFound, loyalty.attach, B, "u1", "SHARED")

    assert foreign_program.code == "loyalty_program_not_found"
    assert foreign_code.code == "promo_code_not_found"
    b_program = loyalty.create_program(B, "B's").program_id
    assert loyalty.add_codes(B, b_program, ["SHARED"]).added == 1  # codes are unique per app only
    loyalty.attach(B, "u1", "SHARED")
    assert attached_to(A, "SHARED") is None
    assert loyalty.attach(A, "u1", "SHARED").promo_codes[0].program_id == program_id


def test_deleting_a_user_releases_its_codes(loyalty: LoyaltyService) -> None:
    program_with(loyalty, A, "KEEP", "ALSO")
    new_users(A, "leaver")
    new_users(A, "next")
    loyalty.attach(A, "leaver", "KEEP")
    loyalty.attach(A, "leaver", "ALSO")

    Services(SHARD_COUNT).user_deletion.delete(A, "leaver")

    assert attached_to(A, "KEEP") is None
    assert attached_to(A, "ALSO") is None
    assert [code.code for code in loyalty.attach(A, "next", "KEEP").promo_codes] == ["KEEP"]


def test_a_user_holds_at_most_max_promo_codes(loyalty: LoyaltyService) -> None:
    codes = [f"CAP-{index:03d}" for index in range(MAX_PROMO_CODES + 1)]
    program_with(loyalty, A, *codes)
    new_users(A, "collector")
    for code in codes[:MAX_PROMO_CODES]:
        loyalty.attach(A, "collector", code)

    with pytest.raises(Conflict) as caught:
        loyalty.attach(A, "collector", codes[-1])

    assert caught.value.code == "too_many_promo_codes"
    assert attached_to(A, codes[-1]) is None
    assert len(loyalty.attach(A, "collector", codes[0]).promo_codes) == MAX_PROMO_CODES  # repeating one is fine
    with pytest.raises(NotFound):
        loyalty.attach(A, "nobody", codes[-1])
