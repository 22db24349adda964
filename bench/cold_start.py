"""Cold-start import time of each function's module, next to `import boto3` alone.

Each sample is a fresh interpreter without site-packages (`python -S`) that
sees only what Lambda would: the function's folder, the layer's package and
the layer's pinned requirements, installed once into .local/bench-layer.
Each function is timed with tracing off (the targets) and with tracing on,
as deployed with `Tracing: Active`. The samples are taken in rounds (boto3,
then each function), so a busy machine slows all of them alike, and the
ratios use the medians.

    .venv/bin/python -m bench.cold_start
"""

import os
import statistics
import subprocess
import sys
from pathlib import Path

from steward_local.environment import FUNCTION_ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 11
_TIMED = "import time; start = time.perf_counter(); import {module}; print(time.perf_counter() - start)"
TRACING_OFF = {"POWERTOOLS_TRACE_DISABLED": "true"}
# What Powertools sees inside Lambda with `Tracing: Active`: it then builds the X-Ray tracer.
TRACING_ON = {"LAMBDA_TASK_ROOT": "/var/task"}


LAYER_PACKAGES = ROOT / ".local" / "bench-layer"


def install_layer_packages() -> None:
    if not LAYER_PACKAGES.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
             str(LAYER_PACKAGES), "-r", str(ROOT / "layers/common/requirements.txt")],
            check=True,
        )  # fmt: skip


def import_seconds(module: str, cwd: Path, tracing: dict[str, str]) -> float:
    path = os.pathsep.join([str(cwd), str(ROOT / "layers/common"), str(LAYER_PACKAGES)])
    environment = {"PATH": os.environ.get("PATH", ""), **FUNCTION_ENVIRONMENT, **tracing, "PYTHONPATH": path}
    completed = subprocess.run(
        [sys.executable, "-S", "-c", _TIMED.format(module=module)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    install_layer_packages()
    functions = [function for function in sorted((ROOT / "functions").iterdir()) if (function / "app.py").exists()]
    targets = {"boto3": ("boto3", ROOT, TRACING_OFF)}
    for tracing, label in ((TRACING_OFF, ""), (TRACING_ON, " (tracing on)")):
        targets |= {f"functions/{function.name}/app.py{label}": ("app", function, tracing) for function in functions}
    for module, cwd, tracing in targets.values():
        import_seconds(module, cwd, tracing)  # the first run writes the bytecode cache
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(SAMPLES):
        for name, (module, cwd, tracing) in targets.items():
            samples[name].append(import_seconds(module, cwd, tracing))
    baseline = statistics.median(samples["boto3"])
    print(f"{'module':45} {'median':>9} {'min':>9} {'vs boto3':>9}")
    for name, seconds in samples.items():
        median = statistics.median(seconds)
        print(f"{name:45} {median * 1000:>6.0f} ms {min(seconds) * 1000:>6.0f} ms {median / baseline:>8.2f}x")


if __name__ == "__main__":
    main()
