"""The trigger events of bulk_update's changes: which change starts which automation, from its report row.

Events come from the rows (the job's stored intent), not from this
attempt's writes: a page retried after its writes and before its events
publishes them again, rather than losing them.
"""

from collections.abc import Sequence

from steward.jobs.engine import JobContext, ReportRow
from steward.jobs.kinds import _promo, _subscriptions
from steward.jobs.params import BulkAction, BulkUpdateParams
from steward.jobs.triggers import (
    FIELD_UPDATED,
    PROMO_CODE_ATTACHED,
    SUBSCRIPTION_ADDED,
    SUBSCRIPTION_STATUS_CHANGED,
    TriggerEvent,
)


def trigger_events(ctx: JobContext, params: BulkUpdateParams, rows: Sequence[ReportRow]) -> list[TriggerEvent]:
    """The events of the rows that are changes; none when the job suppresses triggers."""
    if params.suppress_triggers:
        return []
    events = []
    for row in rows:
        if not row.is_change:
            continue
        event = _event(params, row)
        if event is not None:
            detail_type, facts = event
            events.append(TriggerEvent(detail_type, ctx.app_id, row.id, ctx.job.job_id, facts))
    return events


def _event(params: BulkUpdateParams, row: ReportRow) -> tuple[str, dict[str, object]] | None:
    if params.action is BulkAction.UPDATE_FIELDS:
        return FIELD_UPDATED, {"fields": sorted({*(params.set or {}), *(params.delete or [])})}
    if params.action in (BulkAction.ADD_SUBSCRIPTION, BulkAction.UPDATE_SUBSCRIPTION):
        assert params.channel is not None
        assert params.status is not None
        facts: dict[str, object] = {
            "resource_id": params.resource_id,
            "channel": params.channel.value,
            "status": params.status.value,
        }
        previous = _subscriptions.previous_status(row.detail)
        if previous is None:
            return SUBSCRIPTION_ADDED, facts
        return SUBSCRIPTION_STATUS_CHANGED, {**facts, "previous_status": previous}
    if params.attaches_codes and row.action == _promo.CODE_ATTACHED:
        return PROMO_CODE_ATTACHED, {"program_id": params.program_id, "code": row.detail}
    return None  # global unsubscribes, deletions and detaches start no automation
