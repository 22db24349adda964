"""Load the SAM template and transform it offline, as `sam deploy` would."""

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from steward.settings import ConversationStoreSettings

ARTIFACTS_BUCKET = "steward-local-artifacts"


@dataclass(frozen=True)
class Transformed:
    sam: dict[str, Any]
    cloudformation: dict[str, Any]
    # Source folder of every function, layer and state machine definition, by logical id.
    code_dirs: dict[str, Path]
    definitions: dict[str, Path]


class _NoManagedPolicies(ManagedPolicyLoader):  # type: ignore[misc]
    """Offline: SAM policy templates need no lookup, and the template names no managed policy."""

    def __init__(self) -> None:
        pass

    def load(self) -> dict[str, str]:
        return {}


_TABLE_PROPERTIES = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")


def dynamodb_tables(template_path: Path) -> dict[str, dict[str, Any]]:
    """CreateTable arguments of every table in the template, by logical id (for tests and benchmarks)."""
    template = yaml_parse(template_path.read_text())
    return {
        logical_id: {key: value for key, value in resource["Properties"].items() if key in _TABLE_PROPERTIES}
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }


# Which StoreSettings field holds each table of the template.
_STORE_FIELDS = {
    "AppsTable": "apps_table",
    "DevicesTable": "devices_table",
    "ProfilesTable": "profiles_table",
    "CatalogTable": "catalog_table",
    "ConversationsTable": "conversations_table",
}


def store_settings(table_names: dict[str, str], shard_count: int) -> ConversationStoreSettings:
    """Settings for the layer from {logical id: table name} (the local stack, tests, benchmarks)."""
    fields: dict[str, Any] = {field: table_names[logical_id] for logical_id, field in _STORE_FIELDS.items()}
    return ConversationStoreSettings(shard_count=shard_count, **fields)


def load_and_transform(template_path: Path, parameters: dict[str, str]) -> Transformed:
    sam = yaml_parse(template_path.read_text())
    base = template_path.parent
    prepared = copy.deepcopy(sam)
    code_dirs: dict[str, Path] = {}
    definitions: dict[str, Path] = {}
    for logical_id, resource in prepared.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                code_dirs[logical_id] = (base / properties[key]).resolve()
                # moto creates functions from S3 objects; the runner uploads each folder there.
                properties[key] = f"s3://{ARTIFACTS_BUCKET}/{logical_id}.zip"
        if isinstance(properties.get("DefinitionUri"), str):
            definitions[logical_id] = (base / properties.pop("DefinitionUri")).resolve()
            properties["Definition"] = json.loads(definitions[logical_id].read_text())
    cloudformation = transform(prepared, parameters, _NoManagedPolicies())
    return Transformed(sam=sam, cloudformation=cloudformation, code_dirs=code_dirs, definitions=definitions)
