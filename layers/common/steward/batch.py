"""Per-item batches: every item is validated and applied on its own and gets its own outcome.

Items with the same key (a device, a user) are applied in their given order;
different keys run side by side, because DynamoDB's conditional writes cannot
be batched and a batch of them is latency-bound.
"""

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from steward.conditions import resend_may_help
from steward.errors import MAX_MESSAGE_CHARS, InvalidInput, StewardError, clip
from steward.schema import Schema

WORKERS = 16
UNAPPLIED_RETRY = "This item was not applied; retry it."
UNAPPLIED_FINAL = "This item was not applied and cannot be as it is; the error has been logged."
MAX_KEY_ECHO_CHARS = 1024
logger = logging.getLogger(__name__)


class ItemError(Schema):
    code: str
    message: str
    field: str | None = None


class ItemOutcome(Schema):
    """What happened to one item of a batch; each batch adds the item's key and result."""

    index: int = Field(description="Position of the item in the request.")
    ok: bool
    error: ItemError | None = Field(default=None, description="Why not, when not ok; `field` names the input to blame.")


class BatchOutcome[O: ItemOutcome](Schema):
    """A batch answer: one outcome per item, in request order, and their tally."""

    succeeded: int
    failed: int
    results: list[O]

    @classmethod
    def of(cls, results: list[O]) -> Self:
        succeeded = sum(1 for outcome in results if outcome.ok)
        return cls(succeeded=succeeded, failed=len(results) - succeeded, results=results)


@dataclass(frozen=True)
class ItemResult[T]:
    index: int
    key: str | None
    value: T | None
    error: ItemError | None


def run_batch[I: BaseModel, T](
    raw_items: list[Any],
    item_model: type[I],
    key_field: str,
    apply: Callable[[I], T],
    collection: str,
    max_items: int,
) -> list[ItemResult[T]]:
    """Validate and apply each item; ``collection`` names the list in error fields (``results[3].accepted``)."""
    if len(raw_items) > max_items:
        raise InvalidInput(
            f"A batch holds at most {max_items} items; got {len(raw_items)}.", code="batch_too_large", field=collection
        )
    results: list[ItemResult[T] | None] = [None] * len(raw_items)
    by_key: dict[str, list[tuple[int, I]]] = {}
    for index, raw in enumerate(raw_items):
        try:
            item = item_model.model_validate(raw)
        except ValidationError as exc:
            results[index] = ItemResult(index, _raw_key(raw, key_field), None, _invalid(exc, f"{collection}[{index}]"))
            continue
        by_key.setdefault(str(getattr(item, key_field)), []).append((index, item))

    def apply_in_order(items: list[tuple[int, I]]) -> None:
        for index, item in items:
            key = str(getattr(item, key_field))
            try:
                results[index] = ItemResult(index, key, apply(item), None)
            except StewardError as exc:
                results[index] = ItemResult(
                    index,
                    key,
                    None,
                    ItemError(
                        code=exc.code,
                        message=clip(exc.message, MAX_MESSAGE_CHARS),
                        field=None if exc.field is None else clip(exc.field),
                    ),
                )
            except Exception as exc:  # one item's outage (throttling, timeout) must not hide the others' outcomes
                logger.exception("Item %d of a batch failed", index)  # no key: it may be a push token
                message = UNAPPLIED_RETRY if resend_may_help(exc) else UNAPPLIED_FINAL
                error = ItemError(code="internal_error", message=message)
                results[index] = ItemResult(index, key, None, error)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(apply_in_order, by_key.values()))
    return [result for result in results if result is not None]


def _raw_key(raw: Any, key_field: str) -> str | None:
    value = raw.get(key_field) if isinstance(raw, dict) else None
    # As sent, but bounded: a valid key (a device id) has at most 1,024 bytes.
    return clip(value, MAX_KEY_ECHO_CHARS) if isinstance(value, str) else None


def _invalid(exc: ValidationError, prefix: str) -> ItemError:
    first = exc.errors()[0]
    location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")  # pydantic's prefix for custom validators
    return ItemError(code="invalid_input", message=clip(message, MAX_MESSAGE_CHARS), field=clip(prefix + location))


def chunks[T](items: list[T], size: int) -> list[list[T]]:
    """``items`` cut into lists of at most ``size`` (a batch API's or a transaction's limit)."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def as_text(raw: Any) -> str:
    """An invalid bulk item as sent: strings as they are, anything else as JSON text (clipped, see clip)."""
    return clip(raw if isinstance(raw, str) else json.dumps(raw, default=str))


def check_add_remove(add: list[Any], remove: list[Any], max_items: int, what: str) -> None:
    """422 ``batch_too_large`` when a bulk add/remove request names more than ``max_items`` in all."""
    total = len(add) + len(remove)
    if total <= max_items:
        return
    # The field is the list that is too long on its own, else the body.
    field = "add" if len(add) > max_items else "remove" if len(remove) > max_items else None
    raise InvalidInput(
        f"A request changes at most {max_items} {what} in all; got {total}.", code="batch_too_large", field=field
    )


def refuse_add_and_remove(add: list[str], remove: list[str]) -> None:
    """422 ``id_in_add_and_remove``: an id in both lists has no meaning."""
    both = sorted(set(add) & set(remove))
    if both:
        raise InvalidInput(f"{both[0]!r} is in both add and remove.", code="id_in_add_and_remove", field="remove")


def split_ids(raw_ids: list[Any], adapter: TypeAdapter[str]) -> tuple[list[str], list[str], int]:
    """A bulk request's id list: the valid ids each once, the invalid items as text, and the repeats dropped."""
    valid: list[str] = []
    invalid: list[str] = []
    for raw in raw_ids:
        try:
            valid.append(adapter.validate_python(raw, strict=True))
        except ValidationError:
            invalid.append(as_text(raw))
    unique = list(dict.fromkeys(valid))
    return unique, invalid, len(valid) - len(unique)
