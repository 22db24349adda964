"""Data access for resources: a small per-app catalog under one partition (``<app_id>#resource``)."""

import secrets
from datetime import datetime

from pynamodb.exceptions import DeleteError

from steward.conditions import condition_failed
from steward.errors import NotFound
from steward.pagination import Page
from steward.resources.models import Resource
from steward.sharded_query import query_partition
from steward.tables import ResourceRecord, resources_pk
from steward.types import Channel


def resource_not_found(resource_id: str) -> NotFound:
    return NotFound(f"Resource {resource_id!r} does not exist.", code="resource_not_found", field="resource_id")


class ResourceRepository:
    def create(self, app_id: str, name: str, channels: list[Channel], now: datetime) -> Resource:
        record = ResourceRecord(
            pk=resources_pk(app_id),
            sk=f"res_{secrets.token_hex(8)}",
            name=name,
            channels=[channel.value for channel in dict.fromkeys(channels)],
            created_at=now,
            updated_at=now,
        )
        record.save(condition=ResourceRecord.sk.does_not_exist())
        return _to_resource(record)

    def get(self, app_id: str, resource_id: str) -> Resource:
        try:
            return _to_resource(ResourceRecord.get(resources_pk(app_id), resource_id))
        except ResourceRecord.DoesNotExist as exc:
            raise resource_not_found(resource_id) from exc

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[Resource]:
        records, next_cursor = query_partition(ResourceRecord, resources_pk(app_id), cursor, limit)
        return Page[Resource](items=[_to_resource(record) for record in records], next_cursor=next_cursor)

    def delete(self, app_id: str, resource_id: str) -> None:
        try:
            ResourceRecord(pk=resources_pk(app_id), sk=resource_id).delete(condition=ResourceRecord.sk.exists())
        except DeleteError as exc:
            if condition_failed(exc):
                raise resource_not_found(resource_id) from exc
            raise


def _to_resource(record: ResourceRecord) -> Resource:
    return Resource(
        resource_id=record.sk,
        name=record.name,
        channels=[Channel(str(channel)) for channel in record.channels],
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
