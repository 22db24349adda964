"""What a job would cost: DynamoDB's billing rules, and a dollar estimate from one price table.

A dry run counts the usage a real run would have (request units, state
transitions, Lambda GB-seconds, S3 requests) with the helpers below, then
``estimate`` prices it with ``prices.json``, which sits next to this module
so that the layer ships it. Money is ``Decimal`` from the file to the total:
the file is parsed without floats, and the total is rounded once, half up,
to six decimal places.

The unit helpers follow DynamoDB's published rules: a write is billed per
started 1 KB, a read per started 4 KB (half for an eventually consistent
read, twice for a transactional one); a GetItem and each item of a
BatchGetItem are rounded up on their own, while a Query (or Scan) adds up
the sizes of all the items of one call before rounding up. A request that
touches nothing (an item that is not there) still costs the minimum unit.
"""

import base64
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import ConfigDict, Field, ValidationError, model_validator

from steward.schema import Schema

PRICES_FILE = Path(__file__).with_name("prices.json")
DEFAULT_REGION = "default"

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
CENTS_PLACES = Decimal("0.000001")  # six decimal places of a dollar
HALF = Decimal("0.5")
MILLION = Decimal(1_000_000)
THOUSAND = Decimal(1_000)

# Item sizes: a list or map costs 3 bytes, plus 1 byte per element; a number
# is stored as base-100 digits plus an exponent byte (a sign byte if negative).
DOCUMENT_OVERHEAD = 3
ELEMENT_OVERHEAD = 1
MAX_NUMBER_BYTES = 21


# Request units.


def write_units(item_bytes: int, *, transactional: bool = False) -> int:
    """Write units of one PutItem, UpdateItem or DeleteItem: 1 per started KB (at least 1), twice in a transaction.

    ``item_bytes`` is the larger of the item before and after the write,
    as DynamoDB bills an update by the bigger of the two.
    """
    _not_negative(item_bytes, "item_bytes")
    units = max(1, math.ceil(item_bytes / WRITE_UNIT_BYTES))
    return units * 2 if transactional else units


def read_units(item_bytes: int, *, consistent: bool, transactional: bool = False) -> Decimal:
    """Read units of a GetItem: 1 per started 4 KB (at least 1); half if eventually consistent, twice if transactional.

    A transactional read is always strongly consistent, so ``consistent`` is
    ignored then.
    """
    _not_negative(item_bytes, "item_bytes")
    units = Decimal(max(1, math.ceil(item_bytes / READ_UNIT_BYTES)))
    if transactional:
        return units * 2
    return units if consistent else units * HALF


def query_read_units(total_bytes: int, *, consistent: bool) -> Decimal:
    """Read request units of one Query or Scan call: the items' sizes are added up, then rounded up to 4 KB.

    Pass the bytes of one call (one page, at most 1 MB): every call is
    rounded up on its own, so a walk of many pages costs the sum of its pages.
    """
    return read_units(total_bytes, consistent=consistent)


def batch_get_units(item_sizes: Iterable[int], *, consistent: bool) -> Decimal:
    """Read request units of one BatchGetItem: each item is rounded up to 4 KB on its own, as if it were a GetItem."""
    return sum((read_units(size, consistent=consistent) for size in item_sizes), Decimal(0))


def lambda_gb_seconds(memory_mb: int, duration_ms: int | Decimal) -> Decimal:
    """GB-seconds of one Lambda invocation: the duration is billed per started millisecond."""
    _not_negative(memory_mb, "memory_mb")
    _not_negative(duration_ms, "duration_ms")
    billed_ms = math.ceil(duration_ms)
    return Decimal(memory_mb) / 1024 * Decimal(billed_ms) / 1000


# Item sizes.


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """The size DynamoDB bills for an item in DynamoDB JSON (``{"name": {"S": "..."}}``), in bytes.

    Attribute names and strings count their UTF-8 bytes, binaries their raw
    bytes (base64 text in DynamoDB JSON, or ``bytes`` as boto3 gives them),
    booleans and nulls 1 byte, numbers about one byte per two significant
    digits plus one, sets the sum of their members, and lists and maps 3
    bytes plus 1 byte per element. Good for estimates: DynamoDB documents the
    rules only approximately.
    """
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def attribute_size(value: Mapping[str, Any]) -> int:
    """The size of one attribute value in DynamoDB JSON, without its name."""
    if len(value) != 1:
        raise ValueError(f"an attribute value has exactly one type, not {sorted(value)}")
    (kind, content), *_ = value.items()
    match kind:
        case "S":
            return len(str(content).encode())
        case "N":
            return number_size(str(content))
        case "B":
            return _binary_size(content)
        case "BOOL" | "NULL":
            return 1
        case "SS":
            return sum(len(str(member).encode()) for member in content)
        case "NS":
            return sum(number_size(str(member)) for member in content)
        case "BS":
            return sum(_binary_size(member) for member in content)
        case "L":
            return DOCUMENT_OVERHEAD + sum(attribute_size(element) + ELEMENT_OVERHEAD for element in content)
        case "M":
            return DOCUMENT_OVERHEAD + sum(
                len(str(name).encode()) + attribute_size(element) + ELEMENT_OVERHEAD
                for name, element in content.items()
            )
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def number_size(text: str) -> int:
    """Bytes of a stored number: its base-100 digits, aligned on the decimal point, plus an exponent byte.

    So 500 is 2 bytes (one digit pair and the exponent), 101 is 3, 1.5 is 3
    (the pairs ``01`` and ``50``); zero is 1 byte, a negative number 1 more.
    """
    number = Decimal(text)
    if not number.is_finite():
        raise ValueError(f"{text!r} is not a number DynamoDB stores")
    if number.is_zero():
        return 1
    # Not Decimal.normalize(): it rounds to the context's 28 digits, and DynamoDB keeps 38.
    _, digit_tuple, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    digits = "".join(map(str, digit_tuple))  # Decimal keeps no leading zero, but may keep trailing ones
    # The lowest and highest powers of ten that carry a digit, then the base-100 pairs they span.
    lowest = exponent + len(digits) - len(digits.rstrip("0"))
    highest = exponent + len(digits) - 1
    pairs = highest // 2 - lowest // 2 + 1
    size = pairs + 1 + (1 if number < 0 else 0)
    return min(size, MAX_NUMBER_BYTES)


def _binary_size(content: bytes | str) -> int:
    return len(content) if isinstance(content, bytes | bytearray) else len(base64.b64decode(content))


def _not_negative(value: int | Decimal, name: str) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


# Usage and its price.


@dataclass(frozen=True, slots=True)
class Usage:
    """What a run consumes. Reads are Decimal because an eventually consistent read costs half a unit."""

    read_units: Decimal = Decimal(0)
    write_units: int = 0
    state_transitions: int = 0
    lambda_gb_seconds: Decimal = Decimal(0)
    lambda_requests: int = 0
    s3_puts: int = 0
    s3_gets: int = 0
    events: int = 0  # EventBridge events published (PutEvents entries)

    def __post_init__(self) -> None:
        for name in self.__slots__:
            _not_negative(getattr(self, name), name)

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(*(getattr(self, name) + getattr(other, name) for name in self.__slots__))


@dataclass(frozen=True, slots=True)
class Estimate:
    """A priced usage. ``breakdown`` is per service (dynamodb, stepfunctions, lambda, s3, eventbridge), rounded.

    Each amount is rounded like ``usd``.

    ``usd`` is the exact sum rounded once, so it can differ from the sum of
    the rounded breakdown by a millionth of a dollar.
    """

    usage: Usage
    usd: Decimal
    breakdown: Mapping[str, Decimal]
    region: str
    priced_as: str  # the price table's entry used: the region, or "default"
    prices_as_of: str
    # Unrounded: whoever rounds again (JobEstimate rounds up to $0.0001) must start from this, not from ``usd``,
    # or a tiny cost rounds to zero and a rounded-down one stays below the true cost.
    usd_exact: Decimal = Decimal(0)

    def as_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready values (money and reads as strings, so no float creeps in)."""
        usage = self.usage
        return {
            "read_units": str(usage.read_units),
            "write_units": usage.write_units,
            "state_transitions": usage.state_transitions,
            "lambda_gb_seconds": str(usage.lambda_gb_seconds),
            "lambda_requests": usage.lambda_requests,
            "s3_puts": usage.s3_puts,
            "s3_gets": usage.s3_gets,
            "events": usage.events,
            "usd": str(self.usd),
            "breakdown": {service: str(usd) for service, usd in self.breakdown.items()},
            "region": self.region,
            "priced_as": self.priced_as,
            "prices_as_of": self.prices_as_of,
        }


# The price table: every price a JSON number, read as Decimal, and every key known (a typo fails).


class _Prices(Schema):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _price() -> Any:
    return Field(ge=0, allow_inf_nan=False)


class DynamoDBPrices(_Prices):
    write_request_units_per_million: Decimal = _price()
    read_request_units_per_million: Decimal = _price()


class StepFunctionsPrices(_Prices):
    state_transitions_per_thousand: Decimal = _price()


class LambdaPrices(_Prices):
    arm64_gb_seconds: Decimal = _price()
    requests_per_million: Decimal = _price()


class S3Prices(_Prices):
    put_requests_per_thousand: Decimal = _price()
    get_requests_per_thousand: Decimal = _price()


class EventBridgePrices(_Prices):
    custom_events_per_million: Decimal = _price()


class RegionPrices(_Prices):
    dynamodb: DynamoDBPrices
    stepfunctions: StepFunctionsPrices
    # "lambda" is a keyword: the field takes the file's name through its alias.
    lambda_: LambdaPrices = Field(alias="lambda")
    s3: S3Prices
    # An operator's own entry may predate trigger events: it is priced with the default entry's.
    eventbridge: EventBridgePrices | None = None


class PriceTable(_Prices):
    about: str = ""
    source: str = Field(min_length=1)
    as_of: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    currency: Literal["USD"]
    regions: dict[str, RegionPrices]

    @model_validator(mode="after")
    def _has_default(self) -> "PriceTable":
        if DEFAULT_REGION not in self.regions:
            raise ValueError(f"regions needs a {DEFAULT_REGION!r} entry, used for every region not listed")
        if self.regions[DEFAULT_REGION].eventbridge is None:
            raise ValueError(f"the {DEFAULT_REGION!r} entry needs eventbridge prices, used by entries without them")
        return self

    def for_region(self, region: str) -> tuple[str, RegionPrices]:
        """The entry for ``region``, or the default one: the name of the entry used and its prices.

        An entry without eventbridge prices takes the default entry's.
        """
        name = region if region in self.regions else DEFAULT_REGION
        prices = self.regions[name]
        if prices.eventbridge is None:
            prices = prices.model_copy(update={"eventbridge": self.regions[DEFAULT_REGION].eventbridge})
        return name, prices


class PriceTableError(ValueError):
    """The price file is missing, not JSON, or has a bad field; the message names the file and the field."""


def load_prices(path: Path = PRICES_FILE) -> PriceTable:
    """Read and validate a price table. Every problem is a ``PriceTableError`` naming the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PriceTableError(f"{path}: cannot be read ({error.strerror})") from error
    try:
        # Decimals straight from the text: a price never passes through a float.
        document = json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constant)
    except ValueError as error:
        raise PriceTableError(f"{path}: not valid JSON ({error})") from error
    try:
        return PriceTable.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(f"{_field_path(detail['loc'])}: {detail['msg']}" for detail in error.errors())
        raise PriceTableError(f"{path}: {problems}") from error


@cache
def default_prices() -> PriceTable:
    """The shipped price table, read and validated once per process."""
    return load_prices()


def estimate(usage: Usage, region: str, *, prices: PriceTable | None = None) -> Estimate:
    """What ``usage`` costs at on-demand prices in ``region`` (the default entry when the table lacks it)."""
    table = prices if prices is not None else default_prices()
    priced_as, price = table.for_region(region)
    events = price.eventbridge
    assert events is not None  # for_region fills it in
    exact = {
        "dynamodb": usage.write_units * price.dynamodb.write_request_units_per_million / MILLION
        + usage.read_units * price.dynamodb.read_request_units_per_million / MILLION,
        "stepfunctions": usage.state_transitions * price.stepfunctions.state_transitions_per_thousand / THOUSAND,
        "lambda": usage.lambda_gb_seconds * price.lambda_.arm64_gb_seconds
        + usage.lambda_requests * price.lambda_.requests_per_million / MILLION,
        "s3": usage.s3_puts * price.s3.put_requests_per_thousand / THOUSAND
        + usage.s3_gets * price.s3.get_requests_per_thousand / THOUSAND,
        "eventbridge": usage.events * events.custom_events_per_million / MILLION,
    }
    total = sum(exact.values(), Decimal(0))
    return Estimate(
        usage=usage,
        usd=_round(total),
        usd_exact=total,
        breakdown={service: _round(usd) for service, usd in exact.items()},
        region=region,
        priced_as=priced_as,
        prices_as_of=table.as_of,
    )


def _round(usd: Decimal) -> Decimal:
    return usd.quantize(CENTS_PLACES, rounding=ROUND_HALF_UP)


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(the whole file)"


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a price")
