"""How the report's join reads S3's answers, through botocore's Stubber: an upload that S3 no longer has, and a
report looked up where ListBucket is granted only under a prefix (a HeadObject would get 403 there, not 404)."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from steward.conversations.reports import REPORT_HEADER, RunReports, UploadGone, report_key, run_prefix

APP, RUN, BUCKET, UPLOAD = "app-a", "ret_20260601100000_3f2a9c1b7d4e", "steward-test-reports", "upload-1"
KEY = report_key(APP, RUN)


class Files:
    """A reports bucket with no report page: the report is its header."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.bucket = BUCKET

    def page_keys(self, prefix: str, after: str | None = None) -> Iterator[str]:
        return iter([])

    def link(self, key: str, now: datetime) -> Any:
        raise NotImplementedError


@pytest.fixture
def stubbed() -> Iterator[tuple[RunReports, Stubber]]:
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(s3) as stubber:
        yield RunReports(Files(s3)), stubber
        stubber.assert_no_pending_responses()


def test_an_upload_part_to_an_upload_s3_no_longer_has_is_upload_gone(stubbed: tuple[RunReports, Stubber]) -> None:
    reports, stubber = stubbed
    expected = {"Bucket": BUCKET, "Key": KEY, "UploadId": UPLOAD, "PartNumber": 1, "Body": REPORT_HEADER.encode()}
    stubber.add_client_error("upload_part", "NoSuchUpload", http_status_code=404, expected_params=expected)

    with pytest.raises(UploadGone):
        reports.join_part(APP, RUN, UPLOAD, 1, None)


@pytest.mark.parametrize("refused", ["list_parts", "complete_multipart_upload"])
def test_completing_an_upload_s3_no_longer_has_is_upload_gone(
    stubbed: tuple[RunReports, Stubber], refused: str
) -> None:
    reports, stubber = stubbed
    if refused == "complete_multipart_upload":
        stubber.add_response(
            "list_parts",
            {"Parts": [{"PartNumber": 1, "ETag": '"e1"'}], "IsTruncated": False},
            {"Bucket": BUCKET, "Key": KEY, "UploadId": UPLOAD},
        )
    stubber.add_client_error(refused, "NoSuchUpload", http_status_code=404)

    with pytest.raises(UploadGone):
        reports.complete_join(APP, RUN, UPLOAD)


@pytest.mark.parametrize(
    ("listed", "joined"),
    [([KEY], True), ([], False), ([f"{KEY}.tmp"], False)],
)
def test_whether_the_report_exists_is_listed_under_the_runs_prefix(
    stubbed: tuple[RunReports, Stubber], listed: list[str], joined: bool
) -> None:
    reports, stubber = stubbed
    assert KEY.startswith(run_prefix(APP, RUN))  # inside the prefix the function may list
    contents = {"Contents": [{"Key": key} for key in listed]} if listed else {}
    stubber.add_response("list_objects_v2", contents, {"Bucket": BUCKET, "Prefix": KEY, "MaxKeys": 1})

    assert reports.joined(APP, RUN) is joined
