"""The operator's setting of how many audiences an app may hold."""

from steward.audiences.models import DEFAULT_MAX_AUDIENCES, MAX_AUDIENCES_LIMIT
from steward.audiences.repository import AudienceRepository
from steward.errors import InvalidInput, NotFound
from steward.schema import Schema


class AudienceLimit(Schema):
    app_id: str
    max_audiences: int
    default: bool


class AudienceLimits:
    def __init__(self, repository: AudienceRepository) -> None:
        self.repository = repository

    def set(self, app_id: str, maximum: int) -> AudienceLimit:
        if not 1 <= maximum <= MAX_AUDIENCES_LIMIT:
            raise InvalidInput(
                f"max_audiences must be 1-{MAX_AUDIENCES_LIMIT}.", code="invalid_max_audiences", field="max_audiences"
            )
        if not self.repository.set_max_audiences(app_id, maximum):
            raise NotFound(f"App {app_id!r} does not exist.", code="app_not_found", field="app_id")
        return AudienceLimit(app_id=app_id, max_audiences=maximum, default=False)

    def get(self, app_id: str) -> AudienceLimit:
        maximum = self.repository.max_audiences(app_id)
        return AudienceLimit(app_id=app_id, max_audiences=maximum or DEFAULT_MAX_AUDIENCES, default=maximum is None)
