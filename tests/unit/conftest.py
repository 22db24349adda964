"""Unit tests run the real logic and pynamodb against moto's in-process DynamoDB.

The tables are created from template.yaml's own definitions, so a key or
index change in the template is what the tests see.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from samtranslator.yaml_helper import yaml_parse

from steward.settings import StoreSettings
from steward.tables import bind_tables

ROOT = Path(__file__).resolve().parents[2]
SHARD_COUNT = 4  # small, so pagination crosses shards with few devices
_TABLE_KEYS = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")


def template_tables() -> dict[str, dict[str, Any]]:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    return {
        logical_id: {key: value for key, value in resource["Properties"].items() if key in _TABLE_KEYS}
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }


@pytest.fixture
def store() -> Iterator[StoreSettings]:
    """Fresh, empty tables for one test, bound to the pynamodb models."""
    with mock_aws():
        client = boto3.client("dynamodb")
        names = {}
        for logical_id, definition in template_tables().items():
            names[logical_id] = f"test-{logical_id}"
            client.create_table(TableName=names[logical_id], **definition)
        settings = StoreSettings(
            apps_table=names["AppsTable"], devices_table=names["DevicesTable"], shard_count=SHARD_COUNT
        )
        bind_tables(settings)
        yield settings
