"""What a job's params name in the app's data (resources...): checked at submission, so a bad name gets a 422.

The params' own checks (``steward.jobs.params``) are pure; these read the
store, one GetItem per name. A job re-checks at its plan step, as the data
may change before it runs.
"""

from steward.audiences.models import AudienceStatus
from steward.audiences.repository import AudienceRepository
from steward.errors import InvalidInput, NotFound
from steward.jobs.params import BulkUpdateParams, JobParams
from steward.loyalty.repository import LoyaltyRepository
from steward.resources.repository import ResourceRepository

UNKNOWN_RESOURCE = "unknown_resource"
CHANNEL_NOT_OFFERED = "channel_not_offered"
UNKNOWN_LOYALTY_PROGRAM = "unknown_loyalty_program"
UNKNOWN_AUDIENCE = "unknown_audience"
REFERENCE_ERROR_CODES = (UNKNOWN_RESOURCE, CHANNEL_NOT_OFFERED, UNKNOWN_LOYALTY_PROGRAM, UNKNOWN_AUDIENCE)


class JobReferences:
    def __init__(
        self, resources: ResourceRepository, loyalty: LoyaltyRepository, audiences: AudienceRepository
    ) -> None:
        self.resources = resources
        self.loyalty = loyalty
        self.audiences = audiences

    def check(self, app_id: str, params: JobParams) -> None:
        """Raise InvalidInput (field ``params.<name>``) for a name the app does not have."""
        if isinstance(params, BulkUpdateParams):
            self._resources(app_id, params)
            self._program(app_id, params)
            self._audience(app_id, params)

    def _audience(self, app_id: str, params: BulkUpdateParams) -> None:
        name = params.selection.name
        if name is None:
            return
        audience = self.audiences.get(app_id, name)
        if audience is None or audience.status is AudienceStatus.DELETED:
            raise InvalidInput(
                f"params.selection.name: audience {name!r} does not exist.",
                code=UNKNOWN_AUDIENCE,
                field="params.selection.name",
            )

    def _program(self, app_id: str, params: BulkUpdateParams) -> None:
        if params.program_id is None:
            return
        try:
            self.loyalty.get_program(app_id, params.program_id)
        except NotFound:
            raise InvalidInput(
                f"params.program_id: loyalty program {params.program_id!r} does not exist.",
                code=UNKNOWN_LOYALTY_PROGRAM,
                field="params.program_id",
            ) from None

    def _resources(self, app_id: str, params: BulkUpdateParams) -> None:
        """Each resource the action names exists and offers its channel (both, for a resource contact source)."""
        for field in ("resource_id", "source_resource_id"):
            resource_id: str | None = getattr(params, field)
            if resource_id is None or params.channel is None:
                continue
            try:
                resource = self.resources.get(app_id, resource_id)
            except NotFound:
                raise InvalidInput(
                    f"params.{field}: resource {resource_id!r} does not exist.",
                    code=UNKNOWN_RESOURCE,
                    field=f"params.{field}",
                ) from None
            if params.channel not in resource.channels:
                raise InvalidInput(
                    f"params.channel: resource {resource_id!r} does not offer the {params.channel.value} channel.",
                    code=CHANNEL_NOT_OFFERED,
                    field="params.channel",
                )
