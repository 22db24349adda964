"""The template's tables as an existing stack can take them, the rights the retention and audience functions get,
and the alarms that watch the audience import."""

import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

from steward.audiences.importer import REMOVAL_FAILED_METRIC
from steward.audiences.service import CLEANUP_NOT_STARTED
from steward.tables import (
    AudienceBucketRecord,
    AudienceLiftedRecord,
    AudiencePointerRecord,
    CatalogRecord,
    ConversationRecord,
    ConversationsTableRecord,
    RetentionRunPartRecord,
    audience_bucket_pk,
    audience_count_pk,
    audience_lifted_pk,
    audience_pointer_pk,
    audiences_pk,
)
from steward_local.template import load_and_transform

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text())
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def test_catalog_table_keeps_the_shape_deployed_stacks_have() -> None:
    # DynamoDB adds one index per UpdateTable: a stack update that adds two to an existing table fails.
    catalog = RESOURCES["CatalogTable"]["Properties"]
    assert "GlobalSecondaryIndexes" not in catalog
    assert [d["AttributeName"] for d in catalog["AttributeDefinitions"]] == ["pk", "sk"]


def _catalog_models() -> list[type[Any]]:
    found: list[type[Any]] = [AudiencePointerRecord, AudienceBucketRecord]
    pending: list[type[Any]] = [CatalogRecord]
    while pending:
        model = pending.pop()
        found.append(model)
        pending += model.__subclasses__()
    return found


def test_a_lifted_tombstones_floor_expires_by_ttl_and_only_it_carries_the_catalogs_ttl_attribute() -> None:
    catalog = RESOURCES["CatalogTable"]["Properties"]
    attribute = AudienceLiftedRecord.expires_at.attr_name
    assert catalog["TimeToLiveSpecification"] == {"AttributeName": attribute, "Enabled": True}
    # TTL removes any catalog item holding that attribute: no other kind of item may hold one.
    holders = [model.__name__ for model in _catalog_models() if attribute in model.get_attributes()]
    assert holders == ["AudienceLiftedRecord"]
    # The importer's claims and refusals check the floor (the recorder's refusals too: see the recorder's rights).
    checks = [
        pattern
        for statement in _statements("AudienceImportFunction")
        if "Template" not in statement and "dynamodb:ConditionCheckItem" in _names(statement["Action"])
        for pattern in statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    ]
    assert any(fnmatchcase(audience_lifted_pk("acme"), pattern) for pattern in checks)


def test_conversations_live_in_their_own_table_created_with_its_indexes() -> None:
    table = RESOURCES["ConversationsTable"]["Properties"]
    declared = {index["IndexName"] for index in table["GlobalSecondaryIndexes"]}
    assert declared == {ConversationRecord.due.Meta.index_name, ConversationRecord.by_user.Meta.index_name}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert issubclass(ConversationRecord, ConversationsTableRecord)
    assert issubclass(RetentionRunPartRecord, ConversationsTableRecord)
    assert not issubclass(ConversationRecord, CatalogRecord)


def _statements(function: str) -> list[dict[str, Any]]:
    found = []
    for policy in RESOURCES[function]["Properties"]["Policies"]:
        if "Statement" in policy:
            found += policy["Statement"]
        else:
            found.append({"Template": policy})
    return found


def _names_or_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _names(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def test_the_retention_functions_have_no_scan_and_the_sweep_writes_reports_only_under_its_prefix() -> None:
    for function in ("ApiFunction", "RetentionSchedulerFunction", "RetentionFunction"):
        for statement in _statements(function):
            if "Template" in statement:
                # SAM policy templates: none of them may name the conversations table (CRUD includes Scan).
                assert "ConversationsTable" not in repr(statement["Template"]), function
                continue
            actions = _names(statement["Action"])
            assert not {"dynamodb:Scan", "dynamodb:*"} & set(actions), function
    sweep = _statements("RetentionFunction")
    assert not [statement for statement in sweep if "Template" in statement]
    s3 = [statement for statement in sweep if any(action.startswith("s3:") for action in _names(statement["Action"]))]
    objects = [statement for statement in s3 if statement["Action"] != "s3:ListBucket"]
    assert [statement["Resource"] for statement in objects] == [{"Fn::Sub": "${ReportsBucket.Arn}/retention/*"}]
    [listing] = [statement for statement in s3 if statement["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "retention/*"}}
    on_conversations = [
        action
        for statement in sweep
        if {"Fn::GetAtt": ["ConversationsTable", "Arn"]} in _names_or_list(statement["Resource"])
        for action in _names(statement["Action"])
    ]
    # What the sweep calls on the table: the due query, moves, purges, the user check's consistent BatchGetItem.
    assert {"dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchGetItem"} <= set(
        on_conversations
    )
    env = RESOURCES["RetentionFunction"]["Properties"]["Environment"]["Variables"]
    assert env["STEWARD_CONVERSATIONS_TABLE"] == {"Ref": "ConversationsTable"}


def test_every_prefix_the_functions_write_in_the_reports_bucket_expires() -> None:
    # Job reports and retention reports (ids of deleted users) must not be kept forever.
    rules = RESOURCES["ReportsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = {rule["Prefix"]: rule["ExpirationInDays"] for rule in rules if "ExpirationInDays" in rule}
    assert expiring == {"jobs/": {"Ref": "ReportRetentionDays"}, "retention/": {"Ref": "ReportRetentionDays"}}


def test_the_fan_out_steps_staged_work_expires_after_any_use_of_it_and_member_lists_never_do() -> None:
    rules = RESOURCES["AudienceDataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = {rule["Prefix"]: rule["ExpirationInDays"] for rule in rules if "ExpirationInDays" in rule}
    assert expiring == {"staging/": 2}
    # Longer than an execution (its TimeoutSeconds) plus the delayed cleanup, delivered up to a day late.
    machine = json.loads((ROOT / "statemachines" / "audience_import.asl.json").read_text())
    delay = TEMPLATE["Parameters"]["AudienceStoppedImportDelaySeconds"]["Default"]
    rule = RESOURCES["AudienceStoppedImportStateMachine"]["Properties"]["Events"]["ExecutionEnded"]["Properties"]
    used = machine["TimeoutSeconds"] + rule["RetryPolicy"]["MaximumEventAgeInSeconds"] + delay
    assert used < expiring["staging/"] * 86400


def _leading_keys(function: str) -> list[str]:
    """The catalog keys a function may touch; it fails when any right on the catalog is not limited so."""
    keys: list[str] = []
    for statement in _statements(function):
        if "Template" in statement:
            assert "CatalogTable" not in repr(statement["Template"]), function  # a SAM template has no key limit
            continue
        if {"Fn::GetAtt": ["CatalogTable", "Arn"]} in _names_or_list(statement["Resource"]):
            keys += statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    return keys


def test_the_audience_import_functions_reach_only_audience_items_of_the_catalog() -> None:
    # Every key the importer and the fan-out write: records, lookup pointers, the per-app count, member buckets.
    touched = [audiences_pk("acme"), audience_pointer_pk("acme"), audience_count_pk("acme")]
    touched.append(audience_bucket_pk("acme", "0f3a", 12))
    for function in ("AudienceImportFunction", "AudienceFanOutFunction"):
        allowed = _leading_keys(function)
        assert all(any(fnmatchcase(key, pattern) for pattern in allowed) for key in touched), function
        # No other kind of the app's catalog items (its segments, tags, jobs...).
        others = ("acme#segment", "acme#tag", "acme#job#0", "acme#audience-other")
        assert not any(fnmatchcase(key, pattern) for pattern in allowed for key in others), function
    # The recorder of lost imports records failures, and finishes flips (the pointer, the replaced version's
    # buckets): each of its rights reaches only the kind of item it is for.
    _leading_keys("AudienceImportFailedFunction")  # no right on the catalog without a key limit
    rights: dict[str, set[str]] = {}
    for statement in _statements("AudienceImportFailedFunction"):
        if {"Fn::GetAtt": ["CatalogTable", "Arn"]} in _names_or_list(statement.get("Resource")):
            for action in _names(statement["Action"]):
                keys = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                rights.setdefault(action, set()).update(keys)
    assert rights == {
        "dynamodb:GetItem": {"*#audience", "*#audience-count"},
        "dynamodb:UpdateItem": {"*#audience", "*#audience-count"},
        "dynamodb:ConditionCheckItem": {"*#audience", "*#audience-lifted"},
        "dynamodb:PutItem": {"*#audience-pointer"},
        "dynamodb:BatchWriteItem": {"*#audience-bucket#*"},
    }
    s3 = [
        statement
        for statement in _statements("AudienceImportFailedFunction")
        if "Action" in statement and any(action.startswith("s3:") for action in _names(statement["Action"]))
    ]
    assert [(statement["Action"], statement["Resource"]) for statement in s3] == [
        ("s3:DeleteObject", {"Fn::Sub": "${AudienceDataBucket.Arn}/members/*"})
    ]


def test_the_audience_import_functions_may_list_the_imports_bucket_so_a_deleted_file_reads_as_not_found() -> None:
    read = RESOURCES["AudienceImportReadPolicy"]["Properties"]
    assert read["Roles"] == [{"Ref": "AudienceImportFunctionRole"}, {"Ref": "AudienceFanOutFunctionRole"}]
    statements = read["PolicyDocument"]["Statement"]
    [listing] = [statement for statement in statements if statement["Action"] == "s3:ListBucket"]
    assert listing["Resource"] == {"Fn::GetAtt": ["ImportsBucket", "Arn"]}
    # The whole bucket, unconditioned: S3 documents the 404 for a list right on the bucket, not on a prefix.
    assert "Condition" not in listing


def _matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge's matching of a pattern of value lists and nested objects."""
    for field, wanted in pattern.items():
        if isinstance(wanted, dict):
            if not isinstance(event.get(field), dict) or not _matches(wanted, event[field]):
                return False
        elif event.get(field) not in wanted:
            return False
    return True


def test_a_fan_out_execution_that_ends_badly_runs_the_fail_step_and_raises_the_alarm() -> None:
    event = json.loads((ROOT / "events" / "eventbridge-audience-fan-out-timed-out.json").read_text())
    machine = {"Ref": "AudienceImportStateMachine"}
    heard_by = {
        "failed at once": RESOURCES["AudienceFanOutFunction"]["Properties"]["Events"]["ExecutionEnded"],
        "after the delay": RESOURCES["AudienceStoppedImportStateMachine"]["Properties"]["Events"]["ExecutionEnded"],
    }
    matched: dict[str, list[str]] = {}
    for how, rule in heard_by.items():
        assert rule["Type"] == "EventBridgeRule"
        pattern = rule["Properties"]["Pattern"]
        assert pattern["detail"]["stateMachineArn"] == [machine]
        concrete = {**pattern, "detail": {**pattern["detail"], "stateMachineArn": [event["detail"]["stateMachineArn"]]}}
        matched[how] = [
            status
            for status in ("FAILED", "TIMED_OUT", "ABORTED", "SUCCEEDED")
            if _matches(concrete, {**event, "detail": {**event["detail"], "status": status}})
        ]
    # A failed execution is recorded at once; every ending is looked at again once no task of it can be running.
    assert matched == {"failed at once": ["FAILED"], "after the delay": ["FAILED", "TIMED_OUT", "ABORTED"]}
    alarm = RESOURCES["AudienceImportExecutionsFailedAlarm"]["Properties"]
    watched = {
        (query["MetricStat"]["Metric"]["MetricName"], query["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"])
        for query in alarm["Metrics"]
        if "MetricStat" in query
    }
    assert watched == {
        ("ExecutionsFailed", "AudienceImportStateMachine"),
        ("ExecutionsTimedOut", "AudienceImportStateMachine"),
        ("ExecutionsAborted", "AudienceImportStateMachine"),
        ("ExecutionsFailed", "AudienceStoppedImportStateMachine"),
    }


def test_the_fail_step_of_a_stopped_fan_out_waits_longer_than_any_of_its_tasks_can_run() -> None:
    stopped = RESOURCES["AudienceStoppedImportStateMachine"]["Properties"]
    substitutions = stopped["DefinitionSubstitutions"]
    assert substitutions["AudienceStoppedImportDelaySeconds"] == {"Ref": "AudienceStoppedImportDelaySeconds"}
    assert substitutions["AudienceFanOutFunctionArn"] == {"Fn::GetAtt": ["AudienceFanOutFunction", "Arn"]}
    delay = TEMPLATE["Parameters"]["AudienceStoppedImportDelaySeconds"]["Default"]
    assert delay > RESOURCES["AudienceFanOutFunction"]["Properties"]["Timeout"]
    definition = json.loads((ROOT / stopped["DefinitionUri"]).read_text())
    states = definition["States"]
    # The delay, then the function handed the status change event, marked as coming after the delay.
    assert states["Delay"]["Parameters"]["seconds.$"] == "States.StringToJson('${AudienceStoppedImportDelaySeconds}')"
    assert states["Delay"]["Next"] == "WaitForRunningSteps"
    assert states["WaitForRunningSteps"] == {"Type": "Wait", "SecondsPath": "$.seconds", "Next": "RecordFailure"}
    assert states["RecordFailure"]["Parameters"] == {
        "FunctionName": "${AudienceFanOutFunctionArn}",
        "Payload": {"after_delay": True, "event.$": "$.event"},
    }


def test_a_sweep_execution_that_ends_without_finalizing_reaches_the_retention_function() -> None:
    [rule] = RESOURCES["RetentionFunction"]["Properties"]["Events"].values()
    assert rule["Type"] == "EventBridgeRule"
    pattern = rule["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    # Only the sweep's own executions, and only the endings its Catch cannot record (SUCCEEDED finalized itself).
    assert pattern["detail"] == {
        "status": ["FAILED", "TIMED_OUT", "ABORTED"],
        "stateMachineArn": [{"Ref": "RetentionStateMachine"}],
    }
    # The handler reads the run from the execution's input, which the event carries.
    env = RESOURCES["RetentionFunction"]["Properties"]["Environment"]["Variables"]
    assert env["STEWARD_RETENTION_PAGES_PER_EXECUTION"] == {"Ref": "RetentionPagesPerExecution"}
    assert env["STEWARD_RETENTION_PAGE_ENTRIES"] == {"Ref": "RetentionPageEntries"}
    assert env["STEWARD_RETENTION_FINALIZE_MARGIN_SECONDS"] == {"Ref": "RetentionFinalizeMarginSeconds"}


def test_a_sweep_may_start_only_its_own_next_execution() -> None:
    policy = RESOURCES["RetentionNextExecutionPolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": "RetentionFunctionRole"}]
    assert policy["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "states:StartExecution", "Resource": {"Ref": "RetentionStateMachine"}}
    ]
    assert RESOURCES["RetentionStateMachine"]["Properties"]["Policies"] == [
        {"LambdaInvokePolicy": {"FunctionName": {"Ref": "RetentionFunction"}}}
    ]


def test_the_schedule_starts_the_schedulers_state_machine_which_runs_only_the_scheduler() -> None:
    schedule = RESOURCES["RetentionSchedule"]["Properties"]["Target"]
    assert schedule["Arn"] == {"Ref": "RetentionSchedulerStateMachine"}
    [role_policy] = RESOURCES["RetentionScheduleRole"]["Properties"]["Policies"]
    assert role_policy["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "states:StartExecution", "Resource": {"Ref": "RetentionSchedulerStateMachine"}}
    ]
    machine = RESOURCES["RetentionSchedulerStateMachine"]["Properties"]
    assert machine["Policies"] == [{"LambdaInvokePolicy": {"FunctionName": {"Ref": "RetentionSchedulerFunction"}}}]
    assert machine["DefinitionSubstitutions"] == {
        "RetentionSchedulerFunctionArn": {"Fn::GetAtt": ["RetentionSchedulerFunction", "Arn"]}
    }
    # The scheduler records a run failed when its execution cannot start: an update of runs, nothing else.
    updates = [
        statement
        for statement in _statements("RetentionSchedulerFunction")
        if "Template" not in statement and "dynamodb:UpdateItem" in _names(statement["Action"])
    ]
    assert [statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] for statement in updates] == [
        ["*#retention-run"]
    ]


def test_the_lost_import_recorder_has_the_importers_time_to_remove_a_replaced_version() -> None:
    # Finishing a flip removes the version it replaced, as the importer does after its own flip.
    def timeout(function: str) -> int:
        return int(RESOURCES[function]["Properties"]["Timeout"])

    assert timeout("AudienceImportFailedFunction") == timeout("AudienceImportFunction") == 900


def test_one_kind_of_bad_ending_alone_raises_the_fan_out_alarm() -> None:
    # Metric math over a metric with no data in the period is empty: every term is filled with 0.
    alarm = RESOURCES["AudienceImportExecutionsFailedAlarm"]["Properties"]
    [expression] = [query["Expression"] for query in alarm["Metrics"] if "Expression" in query]
    terms = [query["Id"] for query in alarm["Metrics"] if "MetricStat" in query]
    assert len(terms) == 4
    assert sorted(expression.split(" + ")) == sorted(f"FILL({term}, 0)" for term in terms)


def _alarms_on(resources: dict[str, Any], namespace: str, metric: str, dimension: dict[str, Any]) -> list[Any]:
    return [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and (resource["Properties"].get("Namespace"), resource["Properties"].get("MetricName")) == (namespace, metric)
        and resource["Properties"]["Dimensions"][0]["Value"] == dimension
    ]


def test_a_lost_import_the_recorder_failed_on_lands_in_a_watched_queue_and_both_functions_errors_raise_alarms() -> None:
    resources = load_and_transform(ROOT / "template.yaml", {}).cloudformation["Resources"]
    queue_arn = {"Fn::GetAtt": ["AudienceLostImportsDeadLetterQueue", "Arn"]}
    # The recorder's own failures (it raised, timed out or ran out of memory), after Lambda's asynchronous retries.
    [invoke_config] = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::EventInvokeConfig"
        and resource["Properties"]["FunctionName"] == {"Ref": "AudienceImportFailedFunction"}
    ]
    assert invoke_config["MaximumRetryAttempts"] == 2
    assert invoke_config["DestinationConfig"] == {"OnFailure": {"Destination": queue_arn}}
    queue = resources["AudienceLostImportsDeadLetterQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] == 1209600  # 14 days, the most SQS keeps
    # Only the recorder's role may send there, and sending there is all it may do with SQS.
    senders = {
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::IAM::Role"
        for policy in resource["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if queue_arn in _names_or_list(statement.get("Resource"))
    }
    assert senders == {"AudienceImportFailedFunctionRole"}
    sqs_rights = [
        (statement["Action"], statement["Resource"])
        for policy in resources["AudienceImportFailedFunctionRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if any(str(action).startswith("sqs:") for action in _names(statement["Action"]))
    ]
    assert sqs_rights == [("sqs:SendMessage", queue_arn)]
    # Its messages raise an alarm; so does any error of the importer (a retry follows, or the recorder) or recorder.
    queue_name = {"Fn::GetAtt": ["AudienceLostImportsDeadLetterQueue", "QueueName"]}
    [unrecorded] = _alarms_on(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible", queue_name)
    watched = [{"Ref": "AudienceImportFunction"}, {"Ref": "AudienceImportFailedFunction"}]
    errors = [alarm for function in watched for alarm in _alarms_on(resources, "AWS/Lambda", "Errors", function)]
    assert len(errors) == 2
    notify = RESOURCES["AuthorizerErrorsAlarm"]["Properties"]["AlarmActions"]
    for alarm in [unrecorded, *errors]:
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert (alarm["TreatMissingData"], alarm["AlarmActions"]) == ("notBreaching", notify)
    assert [alarm["Statistic"] for alarm in errors] == ["Sum", "Sum"]


def test_each_function_that_counts_a_removal_left_undone_raises_its_own_alarm_on_its_exact_dimensions() -> None:
    """Powertools publishes each count under the template's namespace with a ``service`` dimension (the function's
    POWERTOOLS_SERVICE_NAME): an alarm on the metric without it, or with another service, never fires."""
    namespace = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    counted_by = {
        REMOVAL_FAILED_METRIC: ["AudienceImportFunction", "AudienceFanOutFunction", "AudienceImportFailedFunction"],
        CLEANUP_NOT_STARTED: ["ApiFunction"],
    }
    notify = RESOURCES["AuthorizerErrorsAlarm"]["Properties"]["AlarmActions"]
    for metric, functions in counted_by.items():
        for function in functions:
            service = RESOURCES[function]["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
            [alarm] = _alarms_on(RESOURCES, namespace, metric, service)
            assert alarm["Dimensions"] == [{"Name": "service", "Value": service}], function
            assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
                "Sum",
                1,
                "GreaterThanOrEqualToThreshold",
            )
            assert (alarm["TreatMissingData"], alarm["AlarmActions"]) == ("notBreaching", notify)
