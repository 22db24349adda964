"""The dry run's cost estimate: DynamoDB's billing rules, item sizes and the price table."""

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from steward.jobs.pricing import (
    PRICES_FILE,
    PriceTableError,
    Usage,
    batch_get_units,
    default_prices,
    estimate,
    item_size,
    lambda_gb_seconds,
    load_prices,
    number_size,
    query_read_units,
    read_units,
    write_units,
)

# Write units: 1 per started KB.


@pytest.mark.parametrize(
    ("item_bytes", "units"), [(0, 1), (1, 1), (1024, 1), (1025, 2), (2048, 2), (2049, 3), (400 * 1024, 400)]
)
def test_a_write_costs_one_unit_per_started_kilobyte(item_bytes: int, units: int) -> None:
    assert write_units(item_bytes) == units


def test_a_transactional_write_costs_twice() -> None:
    assert write_units(1024, transactional=True) == 2
    assert write_units(1025, transactional=True) == 4


# Read units: 1 per started 4 KB, half when eventually consistent.


@pytest.mark.parametrize(
    ("item_bytes", "strong", "eventual"),
    [(0, "1", "0.5"), (1, "1", "0.5"), (4096, "1", "0.5"), (4097, "2", "1"), (8192, "2", "1"), (8193, "3", "1.5")],
)
def test_a_read_costs_one_unit_per_started_4_kb_and_half_when_eventually_consistent(
    item_bytes: int, strong: str, eventual: str
) -> None:
    assert read_units(item_bytes, consistent=True) == Decimal(strong)
    assert read_units(item_bytes, consistent=False) == Decimal(eventual)


def test_a_transactional_read_costs_twice_a_strong_read() -> None:
    assert read_units(4097, consistent=True, transactional=True) == 4
    assert read_units(4097, consistent=False, transactional=True) == 4  # transactions read consistently


def test_batch_get_rounds_each_item_up_but_query_sums_before_rounding() -> None:
    sizes = [100] * 40  # 4,000 bytes in all

    assert batch_get_units(sizes, consistent=True) == 40
    assert batch_get_units(sizes, consistent=False) == 20  # half a unit per item, each rounded up first
    assert query_read_units(sum(sizes), consistent=True) == 1
    assert query_read_units(sum(sizes), consistent=False) == Decimal("0.5")
    assert query_read_units(4097, consistent=False) == 1


def test_an_empty_batch_costs_nothing_and_an_empty_query_the_minimum() -> None:
    assert batch_get_units([], consistent=True) == 0
    assert query_read_units(0, consistent=True) == 1


def test_negative_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="item_bytes"):
        write_units(-1)
    with pytest.raises(ValueError, match="duration_ms"):
        lambda_gb_seconds(128, -1)


def test_lambda_is_billed_per_started_millisecond() -> None:
    assert lambda_gb_seconds(1024, 800) == Decimal("0.8")
    assert lambda_gb_seconds(128, 1) == Decimal("0.000125")
    assert lambda_gb_seconds(1024, Decimal("0.2")) == Decimal("0.001")  # 0.2 ms is billed as 1 ms
    assert lambda_gb_seconds(512, Decimal("100.01")) == Decimal("0.0505")


# Item sizes.


@pytest.mark.parametrize(
    ("number", "size"),
    [
        ("0", 1),
        ("1", 2),
        ("27", 2),
        ("101", 3),
        ("500", 2),  # trailing zeros are not stored
        ("1000", 2),
        ("12345", 4),
        ("1.5", 3),  # digit pairs align on the decimal point: 01.50
        ("0.5", 2),
        ("0.0050", 2),
        ("-1", 3),  # a sign byte
        ("-1E-130", 3),
        ("9" * 38, 20),
        ("1" + "0" * 37, 2),
    ],
)
def test_number_sizes(number: str, size: int) -> None:
    assert number_size(number) == size


def test_the_size_of_a_book_item_matches_published_calculators() -> None:
    # The example of the ddb-calc calculator, which gives 137 bytes.
    book: dict[str, dict[str, Any]] = {
        "Id": {"N": "101"},
        "Title": {"S": "Book 101 Title"},
        "ISBN": {"S": "111-1111111111"},
        "Authors": {"L": [{"S": "Author1"}]},
        "Price": {"N": "2"},
        "Dimensions": {"S": "8.5 x 11.0 x 0.5"},
        "PageCount": {"N": "500"},
        "InPublication": {"BOOL": True},
        "ProductCategory": {"S": "Book"},
    }

    assert item_size(book) == 137


def test_the_size_of_strings_numbers_and_binaries() -> None:
    # The example of the dyno-item-size calculator, which gives 32 bytes.
    assert item_size({"string": {"S": "string"}, "number": {"N": "27"}, "buffer": {"B": b"buffer"}}) == 32
    assert item_size({"buffer": {"B": "YnVmZmVy"}}) == 12  # base64 text in DynamoDB JSON counts its raw bytes


def test_utf8_sets_maps_nulls_and_empty_documents() -> None:
    assert item_size({"é": {"S": "日本"}}) == 2 + 6
    assert item_size({"tags": {"SS": ["a", "bc"]}}) == 4 + 3
    assert item_size({"n": {"NS": ["1", "101"]}}) == 1 + 2 + 3
    assert item_size({"bs": {"BS": [b"ab", b"c"]}}) == 2 + 3
    assert item_size({"gone": {"NULL": True}}) == 5
    assert item_size({"m": {"M": {}}, "l": {"L": []}}) == (1 + 3) * 2
    # A map: 3 bytes, then per entry its name, its value and 1 byte.
    assert item_size({"m": {"M": {"ab": {"S": "xyz"}, "c": {"BOOL": False}}}}) == 1 + 3 + (2 + 3 + 1) + (1 + 1 + 1)


def test_an_attribute_value_must_have_one_known_type() -> None:
    with pytest.raises(ValueError, match="unknown DynamoDB type"):
        item_size({"a": {"X": "1"}})
    with pytest.raises(ValueError, match="exactly one type"):
        item_size({"a": {"S": "1", "N": "1"}})


# Estimates.


def test_a_job_over_one_million_users_is_priced_per_service() -> None:
    # A made-up job: 16 workers read 1,000,000 users of 1,000 bytes in pages of 1,000 (eventually consistent
    # Queries), update 100,000 of them, run 1,000 Lambda invocations of 800 ms at 1 GB, write 17 report files and
    # publish 100,000 trigger events.
    page = query_read_units(1_000 * 1_000, consistent=False)
    usage = Usage(
        read_units=page * 1_000,
        write_units=100_000 * write_units(1_000),
        state_transitions=1_000 * 3 + 20,
        lambda_gb_seconds=lambda_gb_seconds(1024, 800) * 1_000,
        lambda_requests=1_000,
        s3_puts=17,
        s3_gets=1,
        events=100_000,
    )

    priced = estimate(usage, "us-east-1")

    assert page == Decimal("122.5")  # 245 started 4 KB blocks, halved
    assert priced.breakdown == {
        "dynamodb": Decimal("0.077813"),  # 100,000 WRU at $0.625/M + 122,500 RRU at $0.125/M = 0.0778125
        "stepfunctions": Decimal("0.075500"),  # 3,020 transitions at $0.025 per 1,000
        "lambda": Decimal("0.010867"),  # 800 GB-s at $0.0000133334 + 1,000 requests at $0.20/M
        "s3": Decimal("0.000085"),  # 17 PUTs at $0.005 per 1,000 + 1 GET at $0.0004 per 1,000
        "eventbridge": Decimal("0.100000"),  # 100,000 events at $1.00 per million
    }
    assert priced.usd == Decimal("0.264265")  # 0.26426462 exactly, rounded once
    assert priced.priced_as == "us-east-1"
    assert priced.prices_as_of == default_prices().as_of
    assert priced.as_dict()["usd"] == "0.264265"
    assert priced.as_dict()["read_units"] == "122500.0"


def test_a_region_missing_from_the_table_is_priced_with_the_default() -> None:
    usage = Usage(write_units=1_000_000)

    priced = estimate(usage, "ap-southeast-7")

    assert priced.priced_as == "default"
    assert priced.region == "ap-southeast-7"
    assert priced.usd == Decimal("0.625000")


def test_money_is_decimal_rounded_half_up_to_six_places() -> None:
    # 4 RRU at $0.125 per million is $0.0000005 exactly: half up makes it a millionth (banker's rounding would not).
    priced = estimate(Usage(read_units=Decimal(4)), "us-east-1")

    assert priced.usd == Decimal("0.000001")
    assert priced.usd.as_tuple().exponent == -6
    assert estimate(Usage(read_units=Decimal(3)), "us-east-1").usd == Decimal("0.000000")


def test_nothing_costs_nothing() -> None:
    assert estimate(Usage(), "eu-west-1").usd == 0


def test_usage_adds_up_and_refuses_negatives() -> None:
    total = Usage(read_units=Decimal("0.5"), s3_puts=1) + Usage(read_units=Decimal(1), write_units=2)

    assert total == Usage(read_units=Decimal("1.5"), write_units=2, s3_puts=1)
    with pytest.raises(ValueError, match="write_units"):
        Usage(write_units=-1)


# The price table.


def test_the_shipped_table_has_a_default_a_date_and_the_published_prices() -> None:
    table = load_prices()

    assert table.as_of == "2024-11-01"
    assert table.source
    name, prices = table.for_region("us-east-1")
    assert name == "us-east-1"
    assert prices.dynamodb.write_request_units_per_million == Decimal("0.625")
    assert prices.lambda_.arm64_gb_seconds == Decimal("0.0000133334")
    assert table.regions["default"] == prices
    assert PRICES_FILE.parent == Path(__file__).resolve().parents[2] / "layers/common/steward/jobs"


def _shipped() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(PRICES_FILE.read_text())
    return document


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(document))
    return path


def test_an_edited_table_is_read_as_exact_decimals(tmp_path: Path) -> None:
    document = _shipped()
    document["regions"]["eu-west-1"] = document["regions"]["default"] | {
        "s3": {"put_requests_per_thousand": 0.0054, "get_requests_per_thousand": 0.00043}
    }
    table = load_prices(_write(tmp_path, document))

    priced = estimate(Usage(s3_puts=1_000, s3_gets=1_000), "eu-west-1", prices=table)

    assert priced.usd == Decimal("0.005830")
    assert table.regions["eu-west-1"].s3.get_requests_per_thousand == Decimal("0.00043")  # no float on the way


def test_an_operators_region_entry_without_eventbridge_prices_takes_the_defaults(tmp_path: Path) -> None:
    document = _shipped()
    document["regions"]["eu-west-1"] = {
        name: prices for name, prices in document["regions"]["default"].items() if name != "eventbridge"
    }
    table = load_prices(_write(tmp_path, document))

    priced = estimate(Usage(events=1_000_000), "eu-west-1", prices=table)

    assert priced.usd == estimate(Usage(events=1_000_000), "default", prices=table).usd
    assert priced.usd > 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["regions"]["default"]["dynamodb"].update(write_request_units_per_million=-1),
            "regions.default.dynamodb.write_request_units_per_million: Input should be greater than or equal to 0",
        ),
        (
            lambda d: d["regions"]["us-east-1"]["lambda"].update(arm64_gb_seconds="0.1"),
            "regions.us-east-1.lambda.arm64_gb_seconds: Input should be an instance of Decimal",
        ),
        (
            lambda d: d["regions"]["default"]["s3"].pop("get_requests_per_thousand"),
            "regions.default.s3.get_requests_per_thousand: Field required",
        ),
        (
            lambda d: d["regions"]["default"]["s3"].update(gets_per_thousand=1),
            "regions.default.s3.gets_per_thousand: Extra inputs are not permitted",
        ),
        (lambda d: d["regions"].pop("default"), "regions needs a 'default' entry"),
        (lambda d: d["regions"]["default"].pop("eventbridge"), "the 'default' entry needs eventbridge prices"),
        (lambda d: d.update(as_of="last week"), "as_of: String should match pattern"),
        (lambda d: d.update(currency="EUR"), "currency: Input should be 'USD'"),
    ],
)
def test_a_malformed_table_is_refused_with_the_file_and_the_field(tmp_path: Path, edit: Any, message: str) -> None:
    document = _shipped()
    edit(document)
    path = _write(tmp_path, document)

    with pytest.raises(PriceTableError) as refused:
        load_prices(path)

    assert str(refused.value).startswith(f"{path}: ")
    assert message in str(refused.value)


def test_a_table_that_is_not_json_or_not_there_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "prices.json"
    broken.write_text('{"regions": {"default": NaN}}')

    with pytest.raises(PriceTableError, match="not valid JSON"):
        load_prices(broken)
    with pytest.raises(PriceTableError, match="cannot be read"):
        load_prices(tmp_path / "missing.json")


def test_the_readme_shows_the_shipped_prices_and_their_date() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### What a dry run will cost") : readme.index("### Splitting an audience")]
    table = load_prices()
    prices = table.regions["default"]

    assert f"as of {table.as_of}" in section
    for service in (prices.dynamodb, prices.stepfunctions, prices.lambda_, prices.s3):
        for name, price in service.model_dump().items():
            assert f"${price}" in section, f"the README does not show {name} = {price}"
            assert name in section
