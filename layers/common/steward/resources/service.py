"""Resource use cases: the mailing resources and sender brands users subscribe to."""

from steward.clock import utc_now
from steward.pagination import Page
from steward.resources.models import Resource
from steward.resources.repository import ResourceRepository
from steward.types import Channel


class ResourceService:
    def __init__(self, repository: ResourceRepository) -> None:
        self.repository = repository

    def create(self, app_id: str, name: str, channels: list[Channel]) -> Resource:
        return self.repository.create(app_id, name, channels, utc_now())

    def get(self, app_id: str, resource_id: str) -> Resource:
        return self.repository.get(app_id, resource_id)

    def list_page(self, app_id: str, cursor: str | None, limit: int) -> Page[Resource]:
        return self.repository.list_page(app_id, cursor, limit)

    def delete(self, app_id: str, resource_id: str) -> None:
        self.repository.delete(app_id, resource_id)
