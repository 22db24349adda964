"""The composition root: the one place that builds services and hands them their collaborators.

Every function's ``app.py``, the local runner, the operator CLI, the tests
and the benchmarks get their services from here. Each service and
repository is built once, on first use, and its module is imported only
then: a function loads the domains it actually uses, which keeps cold
starts small and keeps job workers off the API's import path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from steward.clock import utc_now

if TYPE_CHECKING:
    from steward.apps.reauth import Reauthentication
    from steward.apps.repository import ApiKeyRepository, AppRepository, ReauthRepository
    from steward.apps.service import AppService
    from steward.audiences.fanout import FanOutSteps
    from steward.audiences.importer import AudienceImporter, FanOut
    from steward.audiences.limits import AudienceLimits
    from steward.audiences.lost import LostImports
    from steward.audiences.models import Layout
    from steward.audiences.repository import AudienceRepository
    from steward.audiences.service import AudienceService
    from steward.audiences.storage import AudienceNotifier, S3Objects
    from steward.audit.repository import AuditRepository
    from steward.audit.service import AuditLog
    from steward.conversations.preview import RetentionPreviewService
    from steward.conversations.repository import ConversationRepository
    from steward.conversations.retention_repository import RetentionRunRepository, RetentionSettingsRepository
    from steward.conversations.runs import RetentionRunService
    from steward.conversations.scheduler import RetentionScheduler
    from steward.conversations.service import ConversationService
    from steward.conversations.settings_service import RetentionSettingsService
    from steward.criteria.preview import CriteriaPreviewService
    from steward.criteria.selection import Selection, SelectionLimits
    from steward.devices.repository import DeviceRepository
    from steward.devices.service import DeviceService
    from steward.jobs.references import JobReferences
    from steward.jobs.reports import ReportStore
    from steward.jobs.repository import JobRepository
    from steward.jobs.runner import JobRunner
    from steward.jobs.service import JobService
    from steward.jobs.triggers import TriggerPublisher
    from steward.loyalty.repository import LoyaltyRepository
    from steward.loyalty.service import LoyaltyService
    from steward.regions.repository import RegionRepository
    from steward.regions.service import RegionService
    from steward.resources.repository import ResourceRepository
    from steward.resources.service import ResourceService
    from steward.segments.repository import SegmentRepository
    from steward.segments.service import SegmentService
    from steward.settings import AudienceImportFailedSettings
    from steward.tags.repository import TagRepository
    from steward.tags.service import TagService
    from steward.usecases.retention_executions import RetentionExecutions
    from steward.usecases.retention_sweep import RetentionSweep
    from steward.usecases.user_activation import UserActivation
    from steward.usecases.user_deletion import UserDeletion
    from steward.users.repository import UserRepository
    from steward.users.service import UserService


class Services:
    def __init__(
        self,
        shard_count: int,
        clock: Callable[[], datetime] = utc_now,
        selection_limits: SelectionLimits | None = None,
        *,
        reports_bucket: str | None = None,
        job_state_machine: str | None = None,
        job_event_bus: str | None = None,
        job_max_concurrency: int = 16,
        inactive_profile_months: int = 4,
        retention_state_machine: str | None = None,
        retention_pages_per_execution: int = 800,
        retention_finalize_margin_seconds: int | None = None,
        imports_bucket: str | None = None,
        audience_data_bucket: str | None = None,
        audience_importer: str | None = None,
        audience_topic: str | None = None,
        audience_event_bus: str | None = None,
        audience_metric: Callable[[str], None] | None = None,
        audience_fan_out: tuple[str, int, int] | None = None,
    ) -> None:
        self.shard_count = shard_count
        self.clock = clock
        self.selection_limits = selection_limits
        # Only the functions that run jobs name these; the others never build a jobs service.
        self.reports_bucket = reports_bucket
        self.job_state_machine = job_state_machine
        self.job_event_bus = job_event_bus
        self.job_max_concurrency = job_max_concurrency
        self.inactive_profile_months = inactive_profile_months
        self.retention_state_machine = retention_state_machine
        self.retention_pages_per_execution = retention_pages_per_execution
        self.retention_finalize_margin_seconds = retention_finalize_margin_seconds
        # Audience imports: the API names the first three, the importer the data bucket, topic and bus.
        self.imports_bucket = imports_bucket
        self.audience_data_bucket = audience_data_bucket
        self.audience_importer = audience_importer
        self.audience_topic = audience_topic
        self.audience_event_bus = audience_event_bus
        self.audience_metric = audience_metric
        # The importer only: (state machine, threshold bytes, range bytes) of the fan-out.
        self.audience_fan_out = audience_fan_out

    # Repositories

    @cached_property
    def app_repository(self) -> AppRepository:
        from steward.apps.repository import AppRepository

        return AppRepository()

    @cached_property
    def api_key_repository(self) -> ApiKeyRepository:
        from steward.apps.repository import ApiKeyRepository

        return ApiKeyRepository()

    @cached_property
    def reauth_repository(self) -> ReauthRepository:
        from steward.apps.repository import ReauthRepository

        return ReauthRepository()

    @cached_property
    def device_repository(self) -> DeviceRepository:
        from steward.devices.repository import DeviceRepository

        return DeviceRepository(self.shard_count)

    @cached_property
    def user_repository(self) -> UserRepository:
        from steward.users.repository import UserRepository

        return UserRepository(self.shard_count)

    @cached_property
    def resource_repository(self) -> ResourceRepository:
        from steward.resources.repository import ResourceRepository

        return ResourceRepository()

    @cached_property
    def region_repository(self) -> RegionRepository:
        from steward.regions.repository import RegionRepository

        return RegionRepository(self.shard_count)

    @cached_property
    def loyalty_repository(self) -> LoyaltyRepository:
        from steward.loyalty.repository import LoyaltyRepository

        return LoyaltyRepository(self.shard_count)

    @cached_property
    def segment_repository(self) -> SegmentRepository:
        from steward.segments.repository import SegmentRepository

        return SegmentRepository(self.shard_count)

    @cached_property
    def tag_repository(self) -> TagRepository:
        from steward.tags.repository import TagRepository

        return TagRepository(self.shard_count)

    @cached_property
    def audit_repository(self) -> AuditRepository:
        from steward.audit.repository import AuditRepository

        return AuditRepository()

    @cached_property
    def conversation_repository(self) -> ConversationRepository:
        from steward.conversations.repository import ConversationRepository

        return ConversationRepository(self.shard_count)

    @cached_property
    def retention_settings_repository(self) -> RetentionSettingsRepository:
        from steward.conversations.retention_repository import RetentionSettingsRepository

        return RetentionSettingsRepository(self.shard_count)

    # Services and use cases

    @cached_property
    def apps(self) -> AppService:
        from steward.apps.service import AppService

        return AppService(self.app_repository, self.api_key_repository)

    @cached_property
    def reauthentication(self) -> Reauthentication:
        from steward.apps.reauth import Reauthentication

        return Reauthentication(self.reauth_repository, self.clock)

    @cached_property
    def devices(self) -> DeviceService:
        from steward.devices.service import DeviceService

        return DeviceService(self.device_repository, self.user_repository)

    @cached_property
    def users(self) -> UserService:
        from steward.users.service import UserService

        return UserService(self.user_repository, self.resource_repository)

    @cached_property
    def user_deletion(self) -> UserDeletion:
        from steward.usecases.user_deletion import UserDeletion

        return UserDeletion(
            self.user_repository, self.loyalty_repository, self.segment_repository, self.device_repository
        )

    @cached_property
    def user_activation(self) -> UserActivation:
        from steward.usecases.user_activation import UserActivation

        return UserActivation(self.user_repository, self.segment_repository)

    @cached_property
    def resources(self) -> ResourceService:
        from steward.resources.service import ResourceService

        return ResourceService(self.resource_repository)

    @cached_property
    def regions(self) -> RegionService:
        from steward.regions.service import RegionService

        return RegionService(self.region_repository)

    @cached_property
    def selection(self) -> Selection:
        from steward.criteria.selection import Selection, SelectionLimits

        limits = self.selection_limits or SelectionLimits()
        return Selection(self.shard_count, self.user_repository, self.device_repository, limits)

    @cached_property
    def criteria(self) -> CriteriaPreviewService:
        from steward.criteria.preview import CriteriaPreviewService

        return CriteriaPreviewService(self.selection, self.clock)

    @cached_property
    def loyalty(self) -> LoyaltyService:
        from steward.loyalty.service import LoyaltyService

        return LoyaltyService(self.loyalty_repository, self.user_repository)

    @cached_property
    def segments(self) -> SegmentService:
        from steward.segments.service import SegmentService

        return SegmentService(self.segment_repository, self.user_repository, self.criteria)

    @cached_property
    def tags(self) -> TagService:
        from steward.tags.service import TagService

        return TagService(self.tag_repository, self.device_repository)

    @cached_property
    def conversations(self) -> ConversationService:
        from steward.conversations.service import ConversationService

        return ConversationService(self.conversation_repository, self.retention_settings_repository, self.clock)

    @cached_property
    def retention_settings(self) -> RetentionSettingsService:
        from steward.conversations.settings_service import RetentionSettingsService

        return RetentionSettingsService(self.retention_settings_repository, self.clock)

    @cached_property
    def audit_log(self) -> AuditLog:
        from steward.audit.service import AuditLog

        return AuditLog(self.audit_repository, self.clock)

    # Maintenance jobs: the API submits them, the worker runs them.

    @cached_property
    def job_repository(self) -> JobRepository:
        from steward.jobs.repository import JobRepository

        return JobRepository()

    @cached_property
    def report_store(self) -> ReportStore:
        from steward.jobs.reports import ReportStore

        # Its links are presigned: Signature Version 4, as for the upload links.
        return ReportStore(_presigning_s3(), _required(self.reports_bucket, "reports_bucket"))

    @cached_property
    def job_references(self) -> JobReferences:
        from steward.jobs.references import JobReferences

        return JobReferences(self.resource_repository, self.loyalty_repository, self.audience_repository)

    @cached_property
    def jobs(self) -> JobService:
        import boto3

        from steward.jobs.service import JobService

        stepfunctions = boto3.client("stepfunctions")
        machine = _required(self.job_state_machine, "job_state_machine")
        # The job id names the execution: a retried start cannot run the job twice.
        start_execution = _starter(stepfunctions, machine)

        def execution_status(job_id: str) -> str:
            try:
                described = stepfunctions.describe_execution(executionArn=_execution_arn(machine, job_id))
            except stepfunctions.exceptions.ExecutionDoesNotExist:
                return "MISSING"
            return str(described["status"])

        return JobService(
            self.job_repository,
            self.report_store,
            self.reauthentication,
            self.job_references,
            start_execution,
            self.clock,
            execution_status,
        )

    @cached_property
    def trigger_publisher(self) -> TriggerPublisher:
        import time

        import boto3

        from steward.jobs.triggers import TriggerPublisher

        events = boto3.client("events")

        def put_events(entries: list[dict[str, Any]]) -> dict[str, Any]:
            answer: dict[str, Any] = events.put_events(Entries=entries)
            return answer

        return TriggerPublisher(put_events, _required(self.job_event_bus, "job_event_bus"), time.sleep)

    @cached_property
    def job_runner(self) -> JobRunner:
        import boto3

        from steward.jobs.runner import EventNotPublished, JobRunner, job_finished_event

        events = boto3.client("events")
        bus = _required(self.job_event_bus, "job_event_bus")

        def publish(job: Any) -> None:
            answer = events.put_events(Entries=[{**job_finished_event(job), "EventBusName": bus}])
            # PutEvents answers 200 with the entries it refused; raising lets the finalize step retry.
            if answer.get("FailedEntryCount"):
                entry = answer["Entries"][0]
                raise EventNotPublished(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")

        return JobRunner(
            self,
            self.job_repository,
            self.report_store,
            self.audit_log,
            publish,
            events.meta.region_name,
            max_concurrency=self.job_max_concurrency,
        )

    # Retention: the API reads settings, runs and previews; the scheduler starts sweeps; the sweep function runs them.

    @cached_property
    def retention_run_repository(self) -> RetentionRunRepository:
        from steward.conversations.retention_repository import RetentionRunRepository

        return RetentionRunRepository()

    @cached_property
    def retention_preview(self) -> RetentionPreviewService:
        from steward.conversations.preview import PREVIEW_MAX_ENTRIES, PREVIEW_MAX_QUERIES, RetentionPreviewService

        return RetentionPreviewService(
            self.conversation_repository,
            self.retention_settings_repository,
            self.shard_count,
            self.clock,
            PREVIEW_MAX_ENTRIES,
            PREVIEW_MAX_QUERIES,
        )

    @cached_property
    def retention_runs(self) -> RetentionRunService:
        from steward.conversations.runs import RetentionRunService

        return RetentionRunService(self.retention_run_repository, self.report_store, self.clock)

    @cached_property
    def retention_scheduler(self) -> RetentionScheduler:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        from steward.conversations.scheduler import (
            ExecutionState,
            ExecutionUnknown,
            RetentionScheduler,
            StartFailed,
        )

        # The run id names the execution: a retried start cannot sweep the app twice for one run.
        machine = _required(self.retention_state_machine, "retention_state_machine")
        stepfunctions = boto3.client("stepfunctions")
        start = _starter(stepfunctions, machine)

        def start_execution(name: str, payload: dict[str, Any]) -> str:
            try:
                return start(name, payload)
            except (BotoCoreError, ClientError) as exc:
                raise StartFailed(str(exc)) from exc

        def describe_execution(name: str) -> ExecutionState | None:
            arn = _execution_arn(machine, name)
            try:
                found = stepfunctions.describe_execution(executionArn=arn)
            except stepfunctions.exceptions.ExecutionDoesNotExist:
                return None
            except (BotoCoreError, ClientError) as exc:
                raise ExecutionUnknown(f"{exc} (and whether it started is unknown)") from exc
            return ExecutionState(arn, found["status"], found.get("error"), found.get("cause"), found.get("stopDate"))

        return RetentionScheduler(
            self.retention_settings_repository,
            self.retention_run_repository,
            start_execution,
            describe_execution,
            self.clock,
        )

    @cached_property
    def retention_sweep(self) -> RetentionSweep:
        from steward.conversations.reports import RunReports
        from steward.usecases.retention_sweep import FINALIZE_MARGIN_SECONDS, RetentionSweep

        margin = self.retention_finalize_margin_seconds
        return RetentionSweep(
            self.conversation_repository,
            self.retention_settings_repository,
            self.retention_run_repository,
            self.user_deletion,
            self.user_repository,
            RunReports(self.report_store),
            self.shard_count,
            self.clock,
            FINALIZE_MARGIN_SECONDS if margin is None else float(margin),
        )

    @cached_property
    def retention_executions(self) -> RetentionExecutions:
        import boto3

        from steward.usecases.retention_executions import RetentionExecutions

        stepfunctions = boto3.client("stepfunctions")

        def start_execution(machine: str, name: str, payload: dict[str, Any]) -> str:
            return _starter(stepfunctions, machine)(name, payload)

        return RetentionExecutions(
            self.retention_sweep,
            self.retention_run_repository,
            self.shard_count,
            self.retention_pages_per_execution,
            start_execution,
            self.clock,
        )

    # Audiences: the importer writes them, the API reads them.

    @cached_property
    def audience_repository(self) -> AudienceRepository:
        from steward.audiences.repository import AudienceRepository

        return AudienceRepository()

    @cached_property
    def audience_limits(self) -> AudienceLimits:
        from steward.audiences.limits import AudienceLimits

        return AudienceLimits(self.audience_repository)

    @cached_property
    def audience_objects(self) -> S3Objects:
        import boto3

        from steward.audiences.storage import S3Objects

        return S3Objects(boto3.client("s3"), _required(self.audience_data_bucket, "audience_data_bucket"))

    @cached_property
    def audiences(self) -> AudienceService:
        import boto3
        from botocore.config import Config

        from steward.audiences.service import AudienceService
        from steward.audiences.storage import UploadLinks

        importer = _required(self.audience_importer, "audience_importer")
        # Bounded well inside the API's 15 s: the tombstone is committed by then, and a slow invoke must end in
        # the logged, counted failure (a repeated DELETE asks again), not in the function's timeout and a 5xx.
        lambda_client = boto3.client(
            "lambda", config=Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 2})
        )

        def cleanup(app_id: str, name: str, layout: Layout) -> None:
            # Removing a large audience's buckets takes longer than a request: the importer does it.
            payload = {"cleanup": {"app_id": app_id, "name": name, **layout.model_dump()}}
            lambda_client.invoke(FunctionName=importer, InvocationType="Event", Payload=json.dumps(payload).encode())

        links = UploadLinks(_presigning_s3(), _required(self.imports_bucket, "imports_bucket"))
        metric = self.audience_metric or _no_metric
        return AudienceService(self.audience_repository, self.audience_objects, links, cleanup, self.clock, metric)

    @cached_property
    def audience_notifier(self) -> AudienceNotifier:
        import boto3

        from steward.audiences.storage import AudienceNotifier

        return AudienceNotifier(
            boto3.client("sns"),
            _required(self.audience_topic, "audience_topic"),
            boto3.client("events"),
            _required(self.audience_event_bus, "audience_event_bus"),
        )

    def _app_exists(self, app_id: str) -> bool:
        return self.app_repository.exists(app_id)

    @cached_property
    def audience_importer_service(self) -> AudienceImporter:
        from steward.audiences.importer import AudienceImporter

        users = self.user_repository
        return AudienceImporter(
            self.audience_repository,
            self.audience_objects,
            self.audience_objects,
            users.existing_ids,
            users.read_ids,
            self._app_exists,
            self.audience_notifier,
            self.audience_metric or _no_metric,
            self.clock,
            None,
            self._fan_out(),
        )

    def _fan_out(self) -> FanOut | None:
        if self.audience_fan_out is None:
            return None
        import boto3

        from steward.audiences.importer import FanOut

        machine, threshold_bytes, range_bytes = self.audience_fan_out
        stepfunctions = boto3.client("stepfunctions")

        def start(name: str, payload: dict[str, Any]) -> bool:
            try:
                stepfunctions.start_execution(stateMachineArn=machine, name=name, input=json.dumps(payload))
            except stepfunctions.exceptions.ExecutionAlreadyExists:
                return False
            return True

        return FanOut(threshold_bytes, range_bytes, start)

    @cached_property
    def audience_fan_out_steps(self) -> FanOutSteps:
        from steward.audiences.fanout import FanOutSteps

        return FanOutSteps(self.audience_importer_service, self.audience_objects, None)

    @cached_property
    def audience_lost_imports(self) -> LostImports:
        from steward.audiences.lost import LostImports

        return LostImports(self.audience_importer_service)


def audience_import_services(
    settings: AudienceImportFailedSettings,
    metric: Callable[[str], None] | None,
    fan_out: tuple[str, int, int] | None,
) -> Services:
    """The services of the functions that import audience files (the importer, the fan-out's steps, and the
    recorder of lost imports)."""
    return Services(
        settings.shard_count,
        audience_data_bucket=settings.audience_data_bucket,
        audience_topic=settings.audience_topic,
        audience_event_bus=settings.audience_event_bus,
        audience_metric=metric,
        audience_fan_out=fan_out,
    )


def _starter(stepfunctions: Any, machine: str) -> Callable[[str, dict[str, Any]], str]:
    """Starts an execution of ``machine`` named ``name``; a retried start finds the execution, never a second one."""

    def start_execution(name: str, payload: dict[str, Any]) -> str:
        try:
            started = stepfunctions.start_execution(stateMachineArn=machine, name=name, input=json.dumps(payload))
        except stepfunctions.exceptions.ExecutionAlreadyExists:
            # Step Functions answers a same-name start of a finished execution (or one with other input) so.
            return _execution_arn(machine, name)
        return str(started["executionArn"])

    return start_execution


def _execution_arn(machine: str, name: str) -> str:
    """arn:...:stateMachine:<machine> -> arn:...:execution:<machine>:<name>."""
    return f"{machine.replace(':stateMachine:', ':execution:', 1)}:{name}"


def _presigning_s3() -> Any:
    """An S3 client whose presigned URLs S3 accepts. Without a config botocore presigns with Signature Version 2,
    which buckets created since June 2020 refuse, and on the global host `<bucket>.s3.amazonaws.com`, which a
    bucket outside us-east-1 answers with a redirect the signature does not survive (and opt-in regions not at
    all): Version 4 on the bucket's regional host. A local endpoint (an IP) keeps path-style URLs."""
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4", s3={"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"}
    )
    return boto3.client("s3", config=config)


def _no_metric(name: str) -> None:
    return None


def _required(value: str | None, name: str) -> str:
    if value is None:
        raise RuntimeError(f"This function was not given {name}: it cannot run jobs.")
    return value
