"""Presigned links that S3 accepts in every region: Signature Version 4, on the bucket's regional host.

Without a config botocore signs them with Version 2, which buckets created since June 2020 refuse, and puts
them on the global host, which answers a bucket outside us-east-1 with a redirect the signature does not
survive. The local stack's endpoint is an IP, so its tests cannot see either: this checks the URLs themselves.
"""

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from steward.composition import Services
from steward.settings import StoreSettings


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "af-south-1"])
def test_report_and_upload_links_are_signed_with_version_4_on_the_buckets_regional_host(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch, region: str
) -> None:
    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    services = Services(
        store.shard_count,
        reports_bucket="steward-reports",
        imports_bucket="steward-imports",
        audience_data_bucket="steward-audience-data",
        audience_importer="fn",
    )

    report = services.report_store.link("jobs/demo-shop/j1/report.csv", datetime.now(UTC))
    upload = services.audiences.upload_url("demo-shop", "spring sale")

    for url, bucket in ((report.url, "steward-reports"), (upload.url, "steward-imports")):
        parts = urlsplit(url)
        assert parts.scheme == "https"
        assert parts.netloc == f"{bucket}.s3.{region}.amazonaws.com"
        query = parse_qs(parts.query)
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Expires"] == ["900"]
        assert query["X-Amz-Credential"][0].endswith(f"/{region}/s3/aws4_request")
    assert urlsplit(upload.url).path == "/imports/demo-shop/spring%20sale.csv"
