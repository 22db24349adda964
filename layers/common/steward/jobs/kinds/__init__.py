"""The job types: one module each, imported only by the jobs worker, and only the one a job needs."""

import importlib

from steward.jobs.engine import JobKind
from steward.jobs.models import JobType

_MODULES = {
    JobType.SPLIT_AUDIENCE: "split_audience",
    JobType.REACTIVATE_DEVICES: "reactivate_devices",
    JobType.DEACTIVATE_USERS: "deactivate_users",
    JobType.DELETE_EMPTY_SEGMENTS: "segment_deletion",
    JobType.DELETE_SEGMENTS: "segment_deletion",
    JobType.DELETE_EMPTY_TAGS: "tag_deletion",
    JobType.DELETE_TAGS: "tag_deletion",
    JobType.DELETE_REGIONS: "region_deletion",
    JobType.BULK_UPDATE: "bulk_update",
}


def kind_for(job_type: JobType) -> JobKind:
    """The type's implementation; each module maps the types it serves in ``KINDS``."""
    module = importlib.import_module(f"{__name__}.{_MODULES[job_type]}")
    kind: JobKind = module.KINDS[job_type]
    return kind
