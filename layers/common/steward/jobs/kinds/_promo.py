"""bulk_update's promo_codes: attach free codes of one program (one per profile), or detach the program's codes.

Attaching hands out one pool in order: the job walks the shards one after
the other (one work item) and keeps, in its position, where the walk over
the program's free codes stands. Each selected profile that holds none of
the program's codes is given the next free code in its report row (a dry
run lists the very codes a real run would attach, if nothing changes); once
the pool is exhausted, the rest are skipped ``no_code_left``.

The attach itself is the loyalty repository's transaction: the code must
still be free (or already this profile's) and the profile must exist, so
two profiles never get the same code, whatever runs concurrently (the API's
attach, a retried page). A code taken meanwhile is replaced by the next
free one found from the pool's start.
"""

from collections.abc import Sequence

from steward.errors import Conflict, NotFound
from steward.jobs.engine import Entity, JobContext, JsonObject, Outcome, ReportRow
from steward.jobs.kinds._reach import Meter
from steward.jobs.params import BulkUpdateParams
from steward.jobs.pricing import item_size
from steward.loyalty.repository import StoredCode
from steward.shard_reader import Position
from steward.users.models import User

CODE_ATTACHED = "code_attached"
CODE_DETACHED = "code_detached"
NO_CODE_LEFT = "no_code_left"
ALREADY_HAS_CODE = "already_has_code"
NO_CODE = "no_code"
TOO_MANY_PROMO_CODES = "too_many_promo_codes"
# The pool's position in a page position: absent at the start, None once no free code is left.
CODES_KEY = "codes"
# A code item (code, program, user, dates): well under 1 KB.
CODE_ITEM_BYTES = 200
# How many codes taken meanwhile a row replaces before it gives up (no_code_left).
MAX_REPLACEMENTS = 10


def program_codes(user: User, program_id: str) -> list[str]:
    return [item.code for item in user.promo_codes if item.program_id == program_id]


def attach_rows(
    ctx: JobContext, params: BulkUpdateParams, users: Sequence[User], position: JsonObject | None, meter: Meter
) -> tuple[list[ReportRow], JsonObject | None]:
    """Rows for ``users`` (in order) and the pool's next position (JSON fields; None: no free code left)."""
    assert params.program_id is not None
    needing = [user for user in users if not program_codes(user, params.program_id)]
    start = _pool_start(ctx, position)
    codes: list[str] = []
    next_codes = None if start is None else start.as_fields()
    if start is not None and needing:
        # Exactly as many as needed: the walk stops right after the last code handed out.
        free = ctx.services.loyalty_repository.free_codes(ctx.app_id, params.program_id, start, len(needing))
        meter.walk(free.scanned, [CODE_ITEM_BYTES] * len(free.codes), CODE_ITEM_BYTES)
        codes = free.codes
        next_codes = None if free.next is None else free.next.as_fields()
    handed = dict(zip((user.user_id for user in needing), codes, strict=False))
    rows = []
    for user in users:
        held = program_codes(user, params.program_id)
        if held:
            rows.append(ReportRow(Entity.USER, user.user_id, Outcome.SKIPPED, user.user_id, ALREADY_HAS_CODE))
        elif user.user_id in handed:
            size = item_size(ctx.services.user_repository.stored_item(ctx.app_id, user))
            meter.gets([size], consistent=True)  # apply's read
            meter.transaction([CODE_ITEM_BYTES, size])
            rows.append(ReportRow(Entity.USER, user.user_id, CODE_ATTACHED, user.user_id, handed[user.user_id]))
        else:
            rows.append(ReportRow(Entity.USER, user.user_id, Outcome.SKIPPED, user.user_id, NO_CODE_LEFT))
    return rows, next_codes


def _pool_start(ctx: JobContext, position: JsonObject | None) -> Position | None:
    if position is None or CODES_KEY not in position:
        return Position(0)
    stored = position[CODES_KEY]
    return None if stored is None else Position.from_fields(stored, ctx.services.shard_count)


def detach_row(user: User, program_id: str) -> ReportRow:
    held = program_codes(user, program_id)
    if not held:
        return ReportRow(Entity.USER, user.user_id, Outcome.SKIPPED, user.user_id, NO_CODE)
    return ReportRow(Entity.USER, user.user_id, CODE_DETACHED, user.user_id, " ".join(held))


def apply_attach(ctx: JobContext, params: BulkUpdateParams, row: ReportRow, user: User | None) -> ReportRow:
    """Attach the row's code, or the next free one if it was taken meanwhile; idempotent per row."""
    assert params.program_id is not None
    if user is None:
        return row.with_outcome(Outcome.NOT_FOUND, "")
    held = program_codes(user, params.program_id)
    if held:
        # This row's own earlier attempt (a retried page), or a code attached since the rows were listed.
        return row if row.detail in held else row.with_outcome(Outcome.SKIPPED, ALREADY_HAS_CODE)
    repository = ctx.services.loyalty_repository
    code = row.detail
    for _ in range(MAX_REPLACEMENTS):
        try:
            repository.attach(ctx.app_id, row.id, StoredCode(code, params.program_id, None), ctx.now)
        except Conflict as exc:
            if exc.code == TOO_MANY_PROMO_CODES:
                return row.with_outcome(Outcome.SKIPPED, TOO_MANY_PROMO_CODES)
        except NotFound as exc:
            if exc.code == "user_not_found":
                return row.with_outcome(Outcome.NOT_FOUND, "")
        else:
            return ReportRow(row.entity, row.id, CODE_ATTACHED, row.user_id, code, row.consequence)
        # Taken (or deleted) since it was listed: the next free code from the pool's start.
        free = repository.free_codes(ctx.app_id, params.program_id, Position(0), 1)
        if not free.codes:
            return row.with_outcome(Outcome.SKIPPED, NO_CODE_LEFT)
        code = free.codes[0]
    return row.with_outcome(Outcome.SKIPPED, NO_CODE_LEFT)


def apply_detach(ctx: JobContext, params: BulkUpdateParams, row: ReportRow, user: User | None) -> ReportRow:
    """Detach the program's codes the profile holds now; a code already detached (a retry) is no error."""
    assert params.program_id is not None
    if user is None:
        return row.with_outcome(Outcome.NOT_FOUND, "")
    held = program_codes(user, params.program_id)
    if not held:
        return row  # this row's own earlier attempt, or a detach that did the same
    for code in held:
        try:
            ctx.services.loyalty_repository.detach(ctx.app_id, row.id, code, ctx.now)
        except NotFound as exc:
            if exc.code == "user_not_found":
                return row.with_outcome(Outcome.NOT_FOUND, "")
    return ReportRow(row.entity, row.id, CODE_DETACHED, row.user_id, " ".join(held), row.consequence)
