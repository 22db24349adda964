"""The submission layer of maintenance jobs: the bodies, the job model, and each type's parameters."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from steward.errors import InvalidInput
from steward.jobs import params as job_params
from steward.jobs.models import (
    ConfirmJob,
    Job,
    JobCounts,
    JobEstimate,
    JobRecord,
    JobStatus,
    JobType,
    SubmitJob,
)
from steward.jobs.params import (
    MAX_PREFIX_CHARS,
    MAX_SEGMENT_SIZE,
    PARAMS_MODELS,
    DeleteRegionsParams,
    JobParams,
    ReactivateDevicesParams,
    SplitAudienceParams,
    parse_params,
)
from steward.segments.models import CreateSegment
from tests.support.service import ROOT

SEGMENT_A = "seg_0123456789abcdef"
SEGMENT_B = "seg_fedcba9876543210"
CRITERIA = {"all": [{"field": "active", "op": "eq", "value": True}]}
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]]}
PASSWORD = "correct horse battery staple"
CODE = "012345"

# One valid body per type: the tests below change one thing at a time.
VALID: dict[JobType, dict[str, Any]] = {
    JobType.SPLIT_AUDIENCE: {"prefix": "vip", "num_segments": 10},
    JobType.REACTIVATE_DEVICES: {"transport": "FCM", "start": "2026-01-01", "end": "2026-02-01"},
    JobType.DEACTIVATE_USERS: {"medium": "email", "criteria": CRITERIA},
    JobType.DELETE_EMPTY_SEGMENTS: {},
    JobType.DELETE_SEGMENTS: {"segment_ids": [SEGMENT_A]},
    JobType.DELETE_EMPTY_TAGS: {},
    JobType.DELETE_TAGS: {"tags": ["beta"]},
    JobType.DELETE_REGIONS: {"region_type": "poi"},
    JobType.BULK_UPDATE: {
        "action": "update_fields",
        "selection": {"source": "all", "criteria": CRITERIA, "range": {"from_percent": 10, "to_percent": 50}},
        "set": {"plan": "pro", "renewal": "2026-03-01"},
        "delete": ["trial_ends"],
    },
}


def parse(job_type: JobType, **changes: Any) -> JobParams:
    return parse_params(job_type, {**VALID[job_type], **changes})


def refused(job_type: JobType, raw: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_params(job_type, raw)
    return caught.value


def refused_with(job_type: JobType, **changes: Any) -> InvalidInput:
    return refused(job_type, {**VALID[job_type], **changes})


def without(job_type: JobType, name: str) -> dict[str, Any]:
    return {key: value for key, value in VALID[job_type].items() if key != name}


def test_importing_the_params_loads_neither_geos_nor_canonical_json() -> None:
    # Both load on first use (an area checked, a job's params measured), not at cold start.
    script = "import sys, steward.jobs.params; print(sorted({'shapely', 'rfc8785'} & set(sys.modules)))"
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(ROOT / "layers" / "common")},
        capture_output=True,
        text=True,
        check=True,
    )

    assert completed.stdout.strip() == "[]"


# --- the registry and what every type shares -------------------------------------------------------


def test_every_job_type_has_its_params_model() -> None:
    assert set(PARAMS_MODELS) == set(JobType)
    assert all(model.job_type is job_type for job_type, model in PARAMS_MODELS.items())


@pytest.mark.parametrize("job_type", list(JobType))
def test_each_valid_body_is_accepted_and_reads_back_the_same(job_type: JobType) -> None:
    params = parse_params(job_type, VALID[job_type])

    assert isinstance(params, PARAMS_MODELS[job_type])
    assert parse_params(job_type, params.to_json()) == params
    assert json.loads(json.dumps(params.to_json())) == params.to_json()
    assert params.describe()


@pytest.mark.parametrize("job_type", list(JobType))
def test_an_unknown_param_is_refused_by_name(job_type: JobType) -> None:
    error = refused_with(job_type, surprise=1)

    assert (error.code, error.field) == ("invalid_params", "params.surprise")


@pytest.mark.parametrize("raw", [None, [], "x", 3])
def test_params_must_be_an_object(raw: Any) -> None:
    error = refused(JobType.DELETE_EMPTY_SEGMENTS, raw)

    assert (error.code, error.field) == ("invalid_params", "params")


def test_the_message_starts_with_the_path() -> None:
    error = refused_with(JobType.SPLIT_AUDIENCE, num_segments=1)

    assert error.message.startswith("params.num_segments: ")


# --- split_audience -------------------------------------------------------------------------


def test_a_split_takes_a_number_of_segments_or_a_size() -> None:
    by_count = parse(JobType.SPLIT_AUDIENCE)
    by_size = parse_params(JobType.SPLIT_AUDIENCE, {"prefix": "vip", "max_segment_size": 5000})

    assert by_count.describe() == "split all users into 10 segments named vip-1..vip-10"
    assert by_size.describe() == "split all users into segments of at most 5,000 users named vip-1, vip-2, ..."


def test_a_split_with_both_ways_is_refused_on_max_segment_size() -> None:
    error = refused_with(JobType.SPLIT_AUDIENCE, max_segment_size=100)

    assert (error.code, error.field) == ("invalid_params", "params.max_segment_size")
    assert "not both" in error.message


def test_a_split_with_neither_way_is_refused_on_num_segments() -> None:
    error = refused(JobType.SPLIT_AUDIENCE, {"prefix": "vip"})

    assert (error.code, error.field) == ("invalid_params", "params.num_segments")


@pytest.mark.parametrize(("count", "accepted"), [(1, False), (2, True), (1000, True), (1001, False), (0, False)])
def test_num_segments_is_2_to_1000(count: int, accepted: bool) -> None:
    if accepted:
        assert parse(JobType.SPLIT_AUDIENCE, num_segments=count).describe().endswith(f"vip-{count}")
    else:
        assert refused_with(JobType.SPLIT_AUDIENCE, num_segments=count).field == "params.num_segments"


@pytest.mark.parametrize(
    ("size", "accepted"), [(0, False), (1, True), (MAX_SEGMENT_SIZE, True), (MAX_SEGMENT_SIZE + 1, False)]
)
def test_max_segment_size_is_1_to_the_cap(size: int, accepted: bool) -> None:
    raw = {"prefix": "vip", "max_segment_size": size}
    if accepted:
        parse_params(JobType.SPLIT_AUDIENCE, raw)
    else:
        assert refused(JobType.SPLIT_AUDIENCE, raw).field == "params.max_segment_size"


@pytest.mark.parametrize("count", ["10", 10.0, True, None])
def test_num_segments_is_a_json_integer(count: Any) -> None:
    error = refused_with(JobType.SPLIT_AUDIENCE, num_segments=count)

    assert error.field == "params.num_segments"


def test_the_longest_prefix_still_names_a_valid_thousandth_segment() -> None:
    prefix = "p" * MAX_PREFIX_CHARS

    parse(JobType.SPLIT_AUDIENCE, prefix=prefix, num_segments=1000)
    CreateSegment(name=f"{prefix}-1000", kind="static")
    assert refused_with(JobType.SPLIT_AUDIENCE, prefix=prefix + "p").field == "params.prefix"
    with pytest.raises(ValidationError):
        CreateSegment(name=f"{prefix}p-1000", kind="static")


@pytest.mark.parametrize("prefix", ["", "a\nb", "tab\there", 7])
def test_a_bad_prefix_is_refused(prefix: Any) -> None:
    assert refused_with(JobType.SPLIT_AUDIENCE, prefix=prefix).field == "params.prefix"


def test_the_prefix_is_required() -> None:
    error = refused(JobType.SPLIT_AUDIENCE, {"num_segments": 4})

    assert (error.code, error.field) == ("invalid_params", "params.prefix")


@pytest.mark.parametrize("medium", ["push", "email", "sms"])
def test_a_split_can_keep_only_users_reached_by_a_medium(medium: str) -> None:
    params = parse(JobType.SPLIT_AUDIENCE, medium=medium, criteria=CRITERIA)

    assert params.describe().startswith("split the users the criteria select that have an active ")


@pytest.mark.parametrize("medium", ["whatsapp", "PUSH", ""])
def test_other_media_are_refused(medium: str) -> None:
    assert refused_with(JobType.SPLIT_AUDIENCE, medium=medium).field == "params.medium"


def test_the_criteria_are_kept_as_sent() -> None:
    criteria = {"any": [{"field": "fields.renewal", "op": "before", "value": "2026-01-01"}]}

    params = parse(JobType.SPLIT_AUDIENCE, criteria=criteria)

    assert params.to_json()["criteria"] == criteria


def test_criteria_errors_pass_through_under_params() -> None:
    bad = {"all": [CRITERIA["all"][0], {"field": "active", "op": "sideways", "value": True}]}

    error = refused_with(JobType.SPLIT_AUDIENCE, criteria=bad)

    assert (error.code, error.field) == ("invalid_criteria", "params.criteria.all[1].op")
    assert error.message.startswith("params.criteria.all[1].op: ")


def test_criteria_the_audit_log_could_not_record_exactly_are_refused() -> None:
    # 1e20 is a number DynamoDB stores, but JSON readers with doubles would not read it back the same.
    huge = {"all": [{"field": "fields.points", "op": "gt", "value": 1e20}]}

    error = refused_with(JobType.SPLIT_AUDIENCE, criteria=huge)

    assert (error.code, error.field) == ("invalid_criteria", "params.criteria.all[0].value")


# --- reactivate_devices ----------------------------------------------------------------------


def window(start: str, end: str) -> ReactivateDevicesParams:
    params = parse(JobType.REACTIVATE_DEVICES, start=start, end=end)
    assert isinstance(params, ReactivateDevicesParams)
    return params


def test_a_date_alone_is_midnight_utc() -> None:
    params = window("2026-01-01", "2026-01-02")

    assert params.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert params.to_json()["start"] == "2026-01-01T00:00:00Z"


def test_an_offset_is_converted_to_utc_and_a_naive_time_is_utc() -> None:
    params = window("2026-01-01T10:00:00+02:00", "2026-01-01T10:00:00")

    assert params.start == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert params.end == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert params.to_json() == {
        "transport": "FCM",
        "reason": "delivery_error",  # the default is recorded: the audit shows what ran
        "start": "2026-01-01T08:00:00Z",
        "end": "2026-01-01T10:00:00Z",
    }


def test_a_fraction_of_a_second_is_kept() -> None:
    assert window("2026-01-01", "2026-01-01T00:00:00.25Z").to_json()["end"] == "2026-01-01T00:00:00.250000Z"


def test_exactly_180_days_is_accepted() -> None:
    params = window("2026-01-01", "2026-06-30")

    assert params.end - params.start == timedelta(days=180)


def test_180_days_and_a_second_is_refused_on_end() -> None:
    error = refused_with(JobType.REACTIVATE_DEVICES, start="2026-01-01", end="2026-06-30T00:00:01Z")

    assert (error.code, error.field) == ("invalid_params", "params.end")
    assert "180 days" in error.message


def test_the_window_counts_in_utc() -> None:
    # 180 days in UTC once the offset is applied: 2026-06-30T00:00:00Z, then one second later.
    window("2026-01-01T02:00:00+02:00", "2026-06-30T02:00:00+02:00")
    late = refused_with(JobType.REACTIVATE_DEVICES, start="2026-01-01T02:00:00+02:00", end="2026-06-30T00:00:01Z")
    assert late.field == "params.end"


@pytest.mark.parametrize(("start", "end"), [("2026-01-01", "2026-01-01"), ("2026-01-02", "2026-01-01")])
def test_start_must_be_before_end(start: str, end: str) -> None:
    error = refused_with(JobType.REACTIVATE_DEVICES, start=start, end=end)

    assert (error.code, error.field) == ("invalid_params", "params.end")


@pytest.mark.parametrize(
    "bad", ["2026-02-30", "yesterday", "2026-1-1", "01/02/2026", 1767225600, "2026-01-01T25:00:00Z", "", None]
)
def test_a_moment_that_is_not_iso_8601_is_refused(bad: Any) -> None:
    error = refused_with(JobType.REACTIVATE_DEVICES, start=bad)

    assert (error.code, error.field) == ("invalid_params", "params.start")


@pytest.mark.parametrize("transport", ["APNS", "FCM", "HMS", "SafariPush", "WebPush"])
def test_every_transport_is_accepted(transport: str) -> None:
    params = parse(JobType.REACTIVATE_DEVICES, transport=transport)

    assert params.describe() == (
        f"reactivate the {transport} devices deactivated by delivery errors "
        "from 2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z"
    )
    undo = parse(JobType.REACTIVATE_DEVICES, transport=transport, reason="deactivated_by_job")
    assert "deactivated by a deactivate_users job" in undo.describe()


@pytest.mark.parametrize("transport", ["fcm", "GCM", None])
def test_other_transports_are_refused(transport: Any) -> None:
    assert refused_with(JobType.REACTIVATE_DEVICES, transport=transport).field == "params.transport"


@given(
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
        lambda moment: moment.replace(microsecond=0)
    ),
    seconds=st.integers(min_value=-10, max_value=180 * 86400 + 10),
)
def test_the_window_is_accepted_exactly_when_it_is_0_to_180_days(start: datetime, seconds: int) -> None:
    end = start + timedelta(seconds=seconds)
    raw = {"transport": "HMS", "start": start.isoformat(), "end": end.isoformat()}

    if 0 < seconds <= 180 * 86400:
        assert parse_params(JobType.REACTIVATE_DEVICES, raw).to_json()["end"] == end.strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        assert refused(JobType.REACTIVATE_DEVICES, raw).field == "params.end"


# --- deactivate_users -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("medium", "noun"), [("push", "push devices"), ("email", "email addresses"), ("sms", "phone numbers")]
)
def test_deactivation_says_what_it_deactivates(medium: str, noun: str) -> None:
    assert parse(JobType.DEACTIVATE_USERS, medium=medium).describe() == (
        f"deactivate the {noun} of the users the criteria select"
    )


@pytest.mark.parametrize("name", ["medium", "criteria"])
def test_deactivation_needs_a_medium_and_criteria(name: str) -> None:
    error = refused(JobType.DEACTIVATE_USERS, without(JobType.DEACTIVATE_USERS, name))

    assert (error.code, error.field) == ("invalid_params", f"params.{name}")


def test_deactivation_criteria_errors_name_their_path() -> None:
    error = refused_with(JobType.DEACTIVATE_USERS, criteria={"any": []})

    assert (error.code, error.field) == ("invalid_criteria", "params.criteria.any")


def test_null_criteria_are_refused_where_they_are_required() -> None:
    error = refused_with(JobType.DEACTIVATE_USERS, criteria=None)

    assert (error.code, error.field) == ("invalid_criteria", "params.criteria")
    assert parse(JobType.SPLIT_AUDIENCE, criteria=None).describe().startswith("split all users")


# --- delete_empty_segments, delete_empty_tags --------------------------------------------------


def test_empty_segments_keep_those_with_inactive_users_by_default() -> None:
    assert parse(JobType.DELETE_EMPTY_SEGMENTS).to_json() == {"keep_segments_with_inactive_users": True}
    assert parse(JobType.DELETE_EMPTY_SEGMENTS).describe() == "delete the static segments that have no members"
    assert parse(JobType.DELETE_EMPTY_SEGMENTS, keep_segments_with_inactive_users=False).describe() == (
        "delete the static segments that have no active members"
    )


def test_empty_tags_keep_those_with_inactive_devices_by_default() -> None:
    assert parse(JobType.DELETE_EMPTY_TAGS).to_json() == {"keep_tags_with_inactive_devices": True}
    assert parse(JobType.DELETE_EMPTY_TAGS, keep_tags_with_inactive_devices=False).describe() == (
        "delete the device tags that no active device carries"
    )


@pytest.mark.parametrize(
    ("job_type", "name"),
    [
        (JobType.DELETE_EMPTY_SEGMENTS, "keep_segments_with_inactive_users"),
        (JobType.DELETE_EMPTY_TAGS, "keep_tags_with_inactive_devices"),
    ],
)
@pytest.mark.parametrize("bad", ["true", 1, 0, None])
def test_the_keep_flags_are_json_booleans(job_type: JobType, name: str, bad: Any) -> None:
    assert refused_with(job_type, **{name: bad}).field == f"params.{name}"


# --- delete_segments, delete_tags ---------------------------------------------------------------


def test_segment_ids_are_deduplicated_in_order() -> None:
    params = parse(JobType.DELETE_SEGMENTS, segment_ids=[SEGMENT_B, SEGMENT_A, SEGMENT_B])

    assert params.to_json() == {"segment_ids": [SEGMENT_B, SEGMENT_A]}
    assert params.describe() == "delete the segments listed (2)"


@pytest.mark.parametrize(
    "bad", ["seg_0123456789ABCDEF", "seg_0123456789abcde", "seg_0123456789abcdef0", "0123456789abcdef", 5]
)
def test_a_malformed_segment_id_is_named_by_its_index(bad: Any) -> None:
    error = refused_with(JobType.DELETE_SEGMENTS, segment_ids=[SEGMENT_A, bad])

    assert (error.code, error.field) == ("invalid_params", "params.segment_ids[1]")


def test_1_to_1000_segment_ids() -> None:
    ids = [f"seg_{index:016x}" for index in range(1001)]

    assert len(parse(JobType.DELETE_SEGMENTS, segment_ids=ids[:1000]).to_json()["segment_ids"]) == 1000
    assert refused_with(JobType.DELETE_SEGMENTS, segment_ids=ids).field == "params.segment_ids"
    assert refused_with(JobType.DELETE_SEGMENTS, segment_ids=[]).field == "params.segment_ids"
    assert refused(JobType.DELETE_SEGMENTS, {}).field == "params.segment_ids"


def test_tags_are_deduplicated_and_checked_like_device_tags() -> None:
    params = parse(JobType.DELETE_TAGS, tags=["beta", "v1.2:x-y_z", "beta"])

    assert params.to_json() == {"tags": ["beta", "v1.2:x-y_z"]}
    assert params.describe() == "delete the device tags listed (2) and untag their devices"
    for bad in ["has space", "", "t" * 65, "é"]:
        assert refused_with(JobType.DELETE_TAGS, tags=["ok", bad]).field == "params.tags[1]"


def test_1_to_1000_tags() -> None:
    tags = [f"t{index}" for index in range(1001)]

    parse(JobType.DELETE_TAGS, tags=tags[:1000])
    assert refused_with(JobType.DELETE_TAGS, tags=tags).field == "params.tags"
    assert refused_with(JobType.DELETE_TAGS, tags=[]).field == "params.tags"


# --- delete_regions ---------------------------------------------------------------------------


def regions(**changes: Any) -> DeleteRegionsParams:
    params = parse(JobType.DELETE_REGIONS, **changes)
    assert isinstance(params, DeleteRegionsParams)
    return params


@pytest.mark.parametrize("region_type", ["geozone", "poi", "city", "country"])
def test_a_region_type_is_required_and_enough(region_type: str) -> None:
    assert regions(region_type=region_type).describe() == f"delete the {region_type} regions"


def test_the_region_type_is_required() -> None:
    assert refused(JobType.DELETE_REGIONS, {}).field == "params.region_type"
    assert refused_with(JobType.DELETE_REGIONS, region_type="province").field == "params.region_type"


def test_all_region_filters_together() -> None:
    params = regions(tags=["coast", "north", "coast", "hq", "old"], country="FR", area=SQUARE)

    assert params.tags == ["coast", "north", "hq", "old"]
    assert params.area is not None
    assert params.area.contains(lat=2, lng=2)
    assert (
        params.describe()
        == "delete the poi regions tagged coast, north, hq or 1 more in FR whose center lies in the area"
    )
    assert params.to_json()["area"] == {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]]}


def test_one_or_two_tags_read_naturally() -> None:
    assert regions(tags=["coast"]).describe() == "delete the poi regions tagged coast"
    assert regions(tags=["coast", "hq"]).describe() == "delete the poi regions tagged coast or hq"


def test_region_tags_are_1_to_50() -> None:
    regions(tags=[f"t{index}" for index in range(50)])
    assert refused_with(JobType.DELETE_REGIONS, tags=[f"t{index}" for index in range(51)]).field == "params.tags"
    assert refused_with(JobType.DELETE_REGIONS, tags=[]).field == "params.tags"
    assert refused_with(JobType.DELETE_REGIONS, tags=["ok", "x" * 65]).field == "params.tags[1]"
    assert refused_with(JobType.DELETE_REGIONS, tags=["ok", "a\x00b"]).field == "params.tags[1]"


@pytest.mark.parametrize("country", ["fr", "FRA", "F", "", 33])
def test_the_country_is_two_capital_letters(country: Any) -> None:
    assert refused_with(JobType.DELETE_REGIONS, country=country).field == "params.country"


def test_a_country_code_in_wide_use_is_accepted_by_format() -> None:
    assert regions(country="XK").country == "XK"


@pytest.mark.parametrize(
    ("area", "code", "field"),
    [
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4]]]},
            "polygon_not_closed",
            "params.area.coordinates[0]",
        ),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [0, 2], [2, 0], [0, 0]]]},
            "polygon_self_intersecting",
            "params.area.coordinates",
        ),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [0, 0]]]},
            "polygon_too_few_points",
            "params.area.coordinates[0]",
        ),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 91], [0, 0]]]},
            "invalid_params",
            "params.area.coordinates[0][2][1]",
        ),
        (
            {"type": "MultiPolygon", "coordinates": [[[[0, 0], [4, 0], [4, 4], [0, 0]]], [[[9, 9], [8, 8]]]]},
            "polygon_too_few_points",
            "params.area.coordinates[1][0]",
        ),
        ({"type": "Circle", "coordinates": []}, "invalid_params", "params.area"),
        ({"type": "Polygon"}, "invalid_params", "params.area.coordinates"),
    ],
)
def test_a_bad_area_is_refused_with_its_path(area: dict[str, Any], code: str, field: str) -> None:
    error = refused_with(JobType.DELETE_REGIONS, area=area)

    assert (error.code, error.field) == (code, field)


def test_the_longest_tag_list_fits_what_a_job_records() -> None:
    tags = [f"{index:04d}" + "t" * 60 for index in range(1000)]

    assert len(parse(JobType.DELETE_TAGS, tags=tags).to_json()["tags"]) == 1000


def test_params_too_large_to_record_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only a pathological area comes near the audit entry's limit: a smaller limit shows the check.
    monkeypatch.setattr(job_params, "MAX_PARAMS_BYTES", 1000)

    error = refused_with(JobType.DELETE_TAGS, tags=[f"tag-{index}" for index in range(200)])

    assert (error.code, error.field) == ("invalid_params", "params")
    assert "at most 1,000" in error.message


# --- the bodies and the job --------------------------------------------------------------------


def test_a_submission_is_a_dry_run_by_default() -> None:
    body = SubmitJob.model_validate({"type": "delete_empty_tags"})

    assert (body.dry_run, body.params, body.admin_password, body.totp_code) == (True, {}, None, None)


def test_credentials_never_show_in_repr_or_dumps() -> None:
    body = SubmitJob.model_validate(
        {
            "type": "delete_tags",
            "params": {"tags": ["x"]},
            "dry_run": False,
            "admin_password": PASSWORD,
            "totp_code": CODE,
        }
    )
    confirm = ConfirmJob.model_validate({"admin_password": PASSWORD, "totp_code": CODE})

    assert (body.admin_password, body.totp_code) == (PASSWORD, CODE)
    for model in (body, confirm):
        shown = [repr(model), str(model), str(model.model_dump()), model.model_dump_json()]
        assert not [text for text in shown if PASSWORD in text or CODE in text]
    assert "admin_password" not in body.model_dump()


@pytest.mark.parametrize("model", [SubmitJob, ConfirmJob])
@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("admin_password", "p" * 1025),
        ("totp_code", "12345"),
        ("totp_code", "1234567"),
        ("totp_code", "12345a"),
        ("totp_code", "123456\n"),
        ("totp_code", 123456),
    ],
)
def test_credentials_out_of_bounds_are_refused_without_being_quoted(model: Any, field: str, bad: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate({"type": "delete_empty_tags", field: bad} if model is SubmitJob else {field: bad})

    assert caught.value.errors()[0]["loc"] == (field,)
    assert str(bad) not in str(caught.value)


def test_a_password_of_1024_characters_is_accepted() -> None:
    assert ConfirmJob.model_validate({"admin_password": "p" * 1024}).admin_password == "p" * 1024


@pytest.mark.parametrize(
    "body",
    [
        {"type": "delete_everything"},
        {"type": "delete_tags", "dry_run": "false"},
        {"type": "delete_tags", "params": []},
        {"type": "delete_tags", "extra": 1},
        {"params": {}},
    ],
)
def test_a_bad_submission_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SubmitJob.model_validate(body)


def test_confirm_takes_only_credentials() -> None:
    with pytest.raises(ValidationError):
        ConfirmJob.model_validate({"dry_run": False})


@pytest.mark.parametrize(
    ("usd", "rounded"),
    [("0.00001", "0.0001"), ("1.23451", "1.2346"), ("2", "2.0000"), (0.5, "0.5000"), ("0", "0.0000")],
)
def test_an_estimate_rounds_dollars_up_to_a_hundredth_of_a_cent(usd: Any, rounded: str) -> None:
    estimate = JobEstimate(read_units=1.5, write_units=2, state_transitions=7, lambda_gb_seconds=0.25, usd=usd)

    assert estimate.usd == Decimal(rounded)
    assert estimate.model_dump(mode="json")["usd"] == rounded


def test_counts_are_never_negative() -> None:
    assert JobCounts() == JobCounts(scanned=0, matched=0, changed=0, skipped=0, failed=0)
    with pytest.raises(ValidationError):
        JobCounts(failed=-1)


def test_the_internal_record_shows_the_api_job_without_its_internal_fields() -> None:
    record = JobRecord(
        job_id="job_" + "a" * 32,
        type=JobType.DELETE_SEGMENTS,
        params={"segment_ids": [SEGMENT_A]},
        dry_run=False,
        status=JobStatus.SUCCEEDED,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        confirms="job_" + "b" * 32,
        app_id="app-a",
        key_id="key-1",
        report_key="reports/app-a/job.csv",
    )

    job = record.public()

    assert type(job) is Job
    assert "report_key" not in job.model_dump()
    assert "app_id" not in Job.model_json_schema()["properties"]
    assert job.confirms == "job_" + "b" * 32
    assert job.model_dump() == record.model_dump(include=set(Job.model_fields))
    assert set(record.model_dump()) - set(job.model_dump()) == set(JobRecord.model_fields) - set(Job.model_fields)


@pytest.mark.parametrize("job_id", ["job_123", "JOB_" + "a" * 32, "seg_" + "a" * 32])
def test_a_job_id_has_one_form(job_id: str) -> None:
    with pytest.raises(ValidationError):
        Job(
            job_id=job_id,
            type=JobType.DELETE_TAGS,
            params={},
            dry_run=True,
            status=JobStatus.QUEUED,
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )


def test_split_params_model_is_the_one_the_registry_names() -> None:
    assert PARAMS_MODELS[JobType.SPLIT_AUDIENCE] is SplitAudienceParams


def test_a_ring_over_the_position_cap_is_an_area_too_large() -> None:
    ring = [[0.0, 0.0], *[[0.001, index / 10_000] for index in range(1, 2_001)], [0.0, 0.0]]
    area = {"type": "Polygon", "coordinates": [ring]}

    error = refused_with(JobType.DELETE_REGIONS, area=area)

    assert error.code == "area_too_large"
    assert (error.field or "").startswith("params.area")
