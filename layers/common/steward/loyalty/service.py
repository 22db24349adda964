"""Loyalty use cases: create programs, add codes in bulk, attach and detach codes to users."""

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from steward.batch import as_text
from steward.clock import utc_now
from steward.errors import InvalidInput
from steward.loyalty.models import CODE_PATTERN, MAX_CODES_PER_REQUEST, AddCodesOutcome, LoyaltyProgram
from steward.loyalty.repository import LoyaltyRepository, code_not_found
from steward.users.models import User
from steward.users.repository import UserRepository, user_not_found

WORKERS = 16  # conditional writes cannot be batched; they run side by side, as in steward.batch
_CODE = re.compile(CODE_PATTERN)
logger = logging.getLogger(__name__)


class LoyaltyService:
    def __init__(self, repository: LoyaltyRepository, users: UserRepository) -> None:
        self.repository = repository
        self.users = users

    def create_program(self, app_id: str, name: str) -> LoyaltyProgram:
        return self.repository.create_program(app_id, name, utc_now())

    def add_codes(self, app_id: str, program_id: str, raw_codes: list[Any]) -> AddCodesOutcome:
        """Add up to 1,000 codes, one conditional put each: an existing code is counted, never overwritten."""
        if len(raw_codes) > MAX_CODES_PER_REQUEST:
            raise InvalidInput(
                f"A request adds at most {MAX_CODES_PER_REQUEST} codes; got {len(raw_codes)}.",
                code="batch_too_large",
                field="codes",
            )
        self.repository.get_program(app_id, program_id)  # NotFound for another app's or an unknown program
        invalid = [as_text(raw) for raw in raw_codes if not (isinstance(raw, str) and _CODE.match(raw))]
        valid = [raw for raw in raw_codes if isinstance(raw, str) and _CODE.match(raw)]
        unique = list(dict.fromkeys(valid))
        now = utc_now()

        def add(code: str) -> bool | None:
            try:
                return self.repository.add_code(app_id, program_id, code, now)
            except Exception:  # one code's outage (throttling, timeout) must not hide the others' outcomes
                logger.exception("Adding a promo code failed")
                return None

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            outcomes = list(pool.map(add, unique))
        added = sum(1 for outcome in outcomes if outcome is True)
        failed = [code for code, outcome in zip(unique, outcomes, strict=True) if outcome is None]
        existing = sum(1 for outcome in outcomes if outcome is False)
        return AddCodesOutcome(
            added=added, duplicates=existing + len(valid) - len(unique), invalid=invalid, failed=failed
        )

    def attach(self, app_id: str, user_id: str, code: str) -> User:
        """Attach a code of one of the app's programs to an existing user; idempotent for the same user."""
        stored = self.repository.get_code(app_id, code)
        if stored is None:
            raise code_not_found(code)
        if stored.attached_user_id == user_id:
            user = self.users.get(app_id, user_id)
            if user is not None and any(item.code == code for item in user.promo_codes):
                return user  # already attached: nothing to write
        self.repository.attach(app_id, user_id, stored, utc_now())
        return self._user(app_id, user_id)

    def detach(self, app_id: str, user_id: str, code: str) -> User:
        self.repository.detach(app_id, user_id, code, utc_now())
        return self._user(app_id, user_id)

    def _user(self, app_id: str, user_id: str) -> User:
        user = self.users.get(app_id, user_id)
        if user is None:  # deleted right after the transaction
            raise user_not_found(user_id)
        return user
