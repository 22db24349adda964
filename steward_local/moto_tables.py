"""The template's DynamoDB tables in an in-process moto, for the unit tests and the benchmarks.

Both build the tables from template.yaml's own definitions, so a key or index
change in the template is what they see.
"""

from pathlib import Path

import boto3

from steward.settings import ConversationStoreSettings
from steward.tables import bind_tables
from steward_local import moto_speedups
from steward_local.template import dynamodb_tables, store_settings

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


def create_template_tables(shard_count: int, prefix: str, template: Path = TEMPLATE) -> ConversationStoreSettings:
    """Inside mock_aws: create every table of the template as `<prefix>-<logical id>` and bind the models to them."""
    # Segment and tag changes are transactions; without this they slow down as the tables grow.
    moto_speedups.install()
    client = boto3.client("dynamodb")
    names = {}
    for logical_id, definition in dynamodb_tables(template).items():
        names[logical_id] = f"{prefix}-{logical_id}"
        client.create_table(TableName=names[logical_id], **definition)
    settings = store_settings(names, shard_count)
    bind_tables(settings)
    return settings
