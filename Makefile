# The two commands of the README: `make run` and `make test`. Each bootstraps
# the virtual environment with the pinned packages on first use.

PYTHON_VERSION := 3.13
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: run test lint typecheck validate asl pytest contract fire bench clean

$(STAMP): requirements-dev.txt layers/common/requirements.txt constraints.txt
	rm -rf $(VENV)
	"$$(scripts/find-python $(PYTHON_VERSION))" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	# The layer's package is importable in the venv, as it is on Lambda's path.
	$(BIN)/python -c 'import site, pathlib; pathlib.Path(site.getsitepackages()[0], "steward-layer.pth").write_text(str(pathlib.Path("layers/common").resolve()) + "\n")'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m steward_local run

fire: $(STAMP)
	$(BIN)/python -m steward_local fire $(SCHEDULE)

test: lint typecheck validate asl pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Each function is checked on its own: every one has its own app.py.
typecheck: $(STAMP)
	$(BIN)/mypy layers/common steward_local steward_admin bench
	for function in functions/*/; do MYPYPATH="$$function" $(BIN)/mypy "$$function" || exit 1; done

validate: $(STAMP)
	$(BIN)/sam validate --lint --template template.yaml

asl: $(STAMP)
	$(BIN)/python -m steward_local.asl_check statemachines tests/fixtures

# One worker per core, each with its own local stack; a test file stays on one
# worker, so its module fixtures are built once. PYTEST_WORKERS=0 runs serially.
# Files go out in collection order (integration first, see pyproject.toml), not
# xdist's default of the most tests first, which left the few long integration
# files to the end and one worker running them alone.
PYTEST_WORKERS ?= auto

pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The schemathesis check of /openapi.json on its own (pytest runs it too); see the README's Tests.
contract: $(STAMP)
	$(BIN)/pytest tests/integration/test_openapi_contract.py

bench: $(STAMP)
	$(BIN)/python -m bench.push_results
	$(BIN)/python -m bench.user_upserts
	$(BIN)/python -m bench.segment_members
	$(BIN)/python -m bench.tags
	# 100,000 users (the default) take about 1 h 45 min on a 2-core machine; 5,000 take minutes.
	$(BIN)/python -m bench.jobs --users 5000
	$(BIN)/python -m bench.retention
	$(BIN)/python -m bench.cold_start

clean:
	rm -rf $(VENV) .local .mypy_cache .pytest_cache .ruff_cache
