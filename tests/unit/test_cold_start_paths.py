"""What each function loads at cold start: the lean paths stay lean, and tracing follows Powertools' rule.

The cold-start benchmark measures time; these pin the modules, so that an
import added later on the authorizer's path fails here rather than slowly
in production.
"""

import json
import subprocess
import sys

import pytest
from samtranslator.yaml_helper import yaml_parse

from steward import observability
from steward_local.environment import FUNCTION_ENVIRONMENT
from tests.support.service import ROOT

_LOADED = "import json, sys; import app; print(json.dumps(sorted(sys.modules)))"


def loaded_modules(function: str) -> set[str]:
    """The modules that importing functions/<function>/app.py loads, in a fresh interpreter, tracing off."""
    environment = {
        **FUNCTION_ENVIRONMENT,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PYTHONPATH": f"{ROOT / 'functions' / function}:{ROOT / 'layers' / 'common'}",
    }
    completed = subprocess.run(
        [sys.executable, "-c", _LOADED],
        cwd=ROOT / "functions" / function,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(completed.stdout.strip().splitlines()[-1]))


def test_the_authorizer_loads_neither_pydantic_nor_the_domains_nor_xray() -> None:
    loaded = loaded_modules("authorizer")

    assert "steward.apps.keys" in loaded
    assert not {name for name in loaded if name.split(".")[0] in {"pydantic", "pydantic_settings", "aws_xray_sdk"}}
    assert not {name for name in loaded if name.startswith(("steward.users", "steward.devices", "steward.http"))}


def test_the_api_loads_services_and_heavy_extras_on_first_use() -> None:
    loaded = loaded_modules("api")

    assert "api_routes.users" in loaded
    assert "steward.users.models" in loaded
    for lazy in (
        "steward.users.service",  # built by the composition root on first use
        "steward.segments.repository",
        "steward.audit.service",
        "rfc8785",  # canonical JSON: only appends and checks of the audit log
        "email_validator",  # email routes only
        "aws_lambda_powertools.event_handler.openapi.models",  # /docs and /openapi.json only
        "aws_xray_sdk",  # tracing is off
        "steward.jobs.service",  # job routes only
        "boto3",  # Step Functions and S3 clients: job routes only
        "steward.conversations.preview",  # retention routes only
        "steward.audiences.service",  # audience routes only
        "steward.audiences.importer",  # the importer's use case never runs in the API
        "steward.audiences.lost",  # nor does the recorder of lost imports
        "steward.audiences.fanout",  # nor the fan-out's steps
    ):
        assert lazy not in loaded, lazy
    # The sweep's writes run in the retention function, never in the API.
    assert "steward.usecases.retention_sweep" not in loaded
    # The job types run in the jobs worker, never in the API.
    assert not {name for name in loaded if name.startswith(("steward.jobs.kinds", "steward.jobs.runner"))}


def test_the_jobs_worker_loads_no_job_type_and_no_http_layer_at_cold_start() -> None:
    loaded = loaded_modules("jobs")

    assert "steward.jobs.models" in loaded
    # A job imports its own type on its first step; the API's routing and OpenAPI never load here.
    assert not {name for name in loaded if name.startswith(("steward.jobs.kinds.", "steward.http", "api_routes"))}
    assert "aws_lambda_powertools.event_handler" not in loaded
    assert "aws_xray_sdk" not in loaded


def test_the_retention_functions_load_neither_the_http_layer_nor_the_jobs_engine() -> None:
    scheduler = loaded_modules("retention_scheduler")
    sweep = loaded_modules("retention")

    for loaded in (scheduler, sweep):
        assert not {name for name in loaded if name.startswith(("steward.http", "api_routes", "steward.jobs.kinds"))}
        assert "aws_lambda_powertools.event_handler" not in loaded
        assert "steward.jobs.runner" not in loaded
    # The sweep's use case is built on its first step; the scheduler never builds it.
    assert "steward.usecases.retention_sweep" not in scheduler | sweep
    # The sweep reads how its executions ended through the shared event model, not the audiences' module.
    assert "steward.step_functions" in sweep
    assert not {name for name in sweep if name.startswith("steward.audiences")}


def test_the_fan_out_steps_load_neither_the_http_layer_nor_the_api_routes() -> None:
    loaded = loaded_modules("audience_fan_out")

    assert "steward.audiences.fanout" in loaded
    assert not {name for name in loaded if name.startswith(("steward.http", "api_routes", "steward.jobs"))}
    assert "aws_lambda_powertools.event_handler" not in loaded
    # The importer never loads the fan-out's steps; it only starts their state machine.
    assert "steward.audiences.fanout" not in loaded_modules("audience_import")


def test_the_lost_import_recorder_loads_neither_the_http_layer_nor_the_import_work() -> None:
    loaded = loaded_modules("audience_import_failed")

    assert "steward.audiences.events" in loaded
    assert not {name for name in loaded if name.startswith(("steward.http", "api_routes", "steward.jobs"))}
    assert "aws_lambda_powertools.event_handler" not in loaded
    # Its use case and the SNS and EventBridge clients are built on its first event.
    assert "steward.audiences.lost" not in loaded
    assert "boto3" not in loaded


@pytest.mark.parametrize(
    ("environment", "traced"),
    [
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({}, False),  # outside Lambda, as Powertools decides
    ],
)
def test_the_real_tracer_only_when_powertools_would_trace(
    environment: dict[str, str], traced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    tracer = observability.build_tracer()

    assert (type(tracer).__name__ == "Tracer") is traced


def test_the_stand_in_tracer_leaves_the_handler_as_it_is() -> None:
    def handler(event: dict[str, str], context: object) -> dict[str, str]:
        return event

    stand_in = observability._NoTracer()

    assert stand_in.capture_lambda_handler(capture_response=False)(handler) is handler
    assert stand_in.capture_lambda_handler(handler) is handler


def test_the_audience_importer_loads_neither_the_http_layer_nor_the_api_routes() -> None:
    loaded = loaded_modules("audience_import")

    assert "steward.audiences.importer" in loaded
    assert not {name for name in loaded if name.startswith(("steward.http", "api_routes", "steward.jobs"))}
    assert "aws_lambda_powertools.event_handler" not in loaded
    assert "aws_xray_sdk" not in loaded


def test_the_placeholders_name_every_variable_the_template_gives_a_function() -> None:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    given = {
        name
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for name in resource["Properties"].get("Environment", {}).get("Variables", {})
        if name.startswith("STEWARD_")
    }

    assert given, "the template gives its functions no STEWARD_ variable"
    assert given - FUNCTION_ENVIRONMENT.keys() == set()
