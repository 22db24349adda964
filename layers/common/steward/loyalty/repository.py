"""Data access for loyalty programs and promo codes (CatalogTable).

Programs are a small per-app catalog under one partition (``<app_id>#loyalty``);
codes are write-sharded per app (``<app_id>#promo#<shard>``) with the code as
sort key, so a code is unique across all of an app's programs. Attaching a
code writes the code item and the user's ``promo_codes`` map in one
transaction, so the two never disagree.
"""

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from pynamodb.exceptions import PutError
from pynamodb.expressions.condition import Condition, size
from pynamodb.expressions.operand import Path
from pynamodb.expressions.update import Action

from steward.conditions import condition_failed
from steward.errors import Conflict, NotFound
from steward.loyalty.models import PROGRAM_ID_PREFIX, LoyaltyProgram
from steward.shard_reader import Position, read_shards
from steward.sharding import partition_for
from steward.tables import (
    LoyaltyProgramRecord,
    ProfileRecord,
    PromoCodeRecord,
    loyalty_programs_pk,
    promo_codes_collection,
)
from steward.transactions import Transaction
from steward.users.models import MAX_PROMO_CODES
from steward.users.repository import user_not_found

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FreeCodes:
    """A page of a program's free codes, in shard and code order, and where the next page starts."""

    codes: list[str]
    scanned: int
    next: Position | None  # None: no free code left after these


@dataclass(frozen=True)
class StoredCode:
    code: str
    program_id: str
    attached_user_id: str | None


def program_not_found(program_id: str) -> NotFound:
    return NotFound(
        f"Loyalty program {program_id!r} does not exist.", code="loyalty_program_not_found", field="program_id"
    )


def code_not_found(code: str) -> NotFound:
    return NotFound(f"Promo code {code!r} does not exist.", code="promo_code_not_found", field="code")


def code_not_attached(code: str, user_id: str) -> NotFound:
    return NotFound(
        f"Promo code {code!r} is not attached to user {user_id!r}.", code="promo_code_not_attached", field="code"
    )


def code_taken(code: str) -> Conflict:
    return Conflict(f"Promo code {code!r} is attached to another user.", code="promo_code_taken", field="code")


class LoyaltyRepository:
    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count

    def create_program(self, app_id: str, name: str, now: datetime) -> LoyaltyProgram:
        record = LoyaltyProgramRecord(
            pk=loyalty_programs_pk(app_id),
            sk=f"{PROGRAM_ID_PREFIX}{secrets.token_hex(8)}",
            name=name,
            created_at=now,
            updated_at=now,
        )
        record.save(condition=LoyaltyProgramRecord.sk.does_not_exist())
        return _to_program(record)

    def get_program(self, app_id: str, program_id: str) -> LoyaltyProgram:
        try:
            return _to_program(LoyaltyProgramRecord.get(loyalty_programs_pk(app_id), program_id))
        except LoyaltyProgramRecord.DoesNotExist as exc:
            raise program_not_found(program_id) from exc

    def add_code(self, app_id: str, program_id: str, code: str, now: datetime) -> bool:
        """Create one code; False when the app already has it (in any program), which is left unchanged."""
        record = PromoCodeRecord(
            pk=self._partition(app_id, code), sk=code, program_id=program_id, created_at=now, updated_at=now
        )
        try:
            record.save(condition=PromoCodeRecord.sk.does_not_exist())
        except PutError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def get_code(self, app_id: str, code: str) -> StoredCode | None:
        try:
            record = PromoCodeRecord.get(self._partition(app_id, code), code, consistent_read=True)
        except PromoCodeRecord.DoesNotExist:
            return None
        return StoredCode(code=record.sk, program_id=record.program_id, attached_user_id=record.attached_user_id)

    def free_codes(self, app_id: str, program_id: str, start: Position, max_codes: int) -> FreeCodes:
        """Up to ``max_codes`` codes of the program that no user holds, from ``start`` on (eventually consistent).

        A Query of the app's code shards with a filter: the codes it skips
        (other programs', attached ones) are read and billed too. A code
        listed here may be taken before it is attached: ``attach`` checks.
        """
        condition = (PromoCodeRecord.program_id == program_id) & PromoCodeRecord.attached_user_id.does_not_exist()
        codes: list[str] = []
        scanned = 0
        position: Position | None = start
        while position is not None and len(codes) < max_codes:
            batch = read_shards(
                PromoCodeRecord,
                promo_codes_collection(app_id),
                self.shard_count,
                position,
                condition,
                max_items=max_codes - len(codes),
            )
            codes.extend(record.sk for record in batch.items)
            scanned += batch.scanned
            position = batch.next
        return FreeCodes(codes, scanned, position)

    def attach(self, app_id: str, user_id: str, stored: StoredCode, now: datetime) -> None:
        """Attach a code to an existing user, in one transaction with the user's ``promo_codes`` map.

        The code must still be free or already this user's; the user must exist.
        Bumping the user's version makes a concurrent read-modify-write of the
        user retry instead of writing back a stale map.
        """
        code = stored.code
        free_or_mine = PromoCodeRecord.attached_user_id.does_not_exist() | (PromoCodeRecord.attached_user_id == user_id)
        # A user holds at most MAX_PROMO_CODES codes, so its item never nears DynamoDB's 400 KB.
        room_for_code = (
            ProfileRecord.promo_codes.does_not_exist()
            | (size(ProfileRecord.promo_codes) < MAX_PROMO_CODES)
            | _promo_code_entry(code).exists()
        )
        code_failed, user_failed = self._change_code_and_user(
            app_id,
            user_id,
            code,
            [
                PromoCodeRecord.attached_user_id.set(user_id),
                PromoCodeRecord.attached_at.set(PromoCodeRecord.attached_at | now),
                PromoCodeRecord.updated_at.set(now),
            ],
            PromoCodeRecord.sk.exists() & free_or_mine,
            _promo_code_entry(code).set(stored.program_id),
            now,
            room_for_code,
        )
        if user_failed:
            if self._profile_exists(app_id, user_id):
                raise Conflict(
                    f"A user holds at most {MAX_PROMO_CODES} promo codes.", code="too_many_promo_codes", field="code"
                )
            raise user_not_found(user_id)
        if code_failed:
            raise code_not_found(code) if self.get_code(app_id, code) is None else code_taken(code)

    def detach(self, app_id: str, user_id: str, code: str, now: datetime) -> None:
        """Detach a code from a user, in one transaction with the user's ``promo_codes`` map."""
        code_failed, user_failed = self._change_code_and_user(
            app_id,
            user_id,
            code,
            [
                PromoCodeRecord.attached_user_id.remove(),
                PromoCodeRecord.attached_at.remove(),
                PromoCodeRecord.updated_at.set(now),
            ],
            PromoCodeRecord.attached_user_id == user_id,
            _promo_code_entry(code).remove(),
            now,
        )
        if user_failed:
            raise user_not_found(user_id)
        if code_failed:
            raise code_not_attached(code, user_id)

    def _change_code_and_user(
        self,
        app_id: str,
        user_id: str,
        code: str,
        code_actions: list[Action],
        code_condition: Condition,
        user_action: Action,
        now: datetime,
        user_condition: Condition | None = None,
    ) -> tuple[bool, bool]:
        """One transaction over the code item and the user's item (which must exist).

        Returns which of the two failed its condition; (False, False) when it went through.
        """
        transaction = Transaction()
        transaction.update(
            "code", PromoCodeRecord(pk=self._partition(app_id, code), sk=code), code_actions, code_condition
        )
        transaction.update(
            "user",
            self._profile(app_id, user_id),
            [user_action, ProfileRecord.updated_at.set(now), ProfileRecord.version.add(1)],
            ProfileRecord.sk.exists() if user_condition is None else ProfileRecord.sk.exists() & user_condition,
        )
        failed = transaction.commit()
        return "code" in failed, "user" in failed

    def _partition(self, app_id: str, code: str) -> str:
        return partition_for(promo_codes_collection(app_id), code, self.shard_count)

    def _profile_exists(self, app_id: str, user_id: str) -> bool:
        try:
            ProfileRecord.get(partition_for(app_id, user_id, self.shard_count), user_id, attributes_to_get=["sk"])
        except ProfileRecord.DoesNotExist:
            return False
        return True

    def _profile(self, app_id: str, user_id: str) -> ProfileRecord:
        return ProfileRecord(pk=partition_for(app_id, user_id, self.shard_count), sk=user_id)


def _promo_code_entry(code: str) -> Path:
    """The document path ``promo_codes.<code>`` of a user item (a raw map dereferences to a Path)."""
    return cast(Path, ProfileRecord.promo_codes[code])


def _to_program(record: LoyaltyProgramRecord) -> LoyaltyProgram:
    return LoyaltyProgram(
        program_id=record.sk, name=record.name, created_at=record.created_at, updated_at=record.updated_at
    )
