"""Cold-start import time of each function's module, next to `import boto3` alone.

Each sample is a fresh interpreter without site-packages (`python -S`) that
sees only what Lambda would: the function's folder, the layer's package and
the layer's pinned requirements, installed once into .local/bench-layer.

    .venv/bin/python -m bench.cold_start
"""

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 7
_TIMED = "import time; start = time.perf_counter(); import {module}; print(time.perf_counter() - start)"
ENVIRONMENT = {
    "STEWARD_APPS_TABLE": "bench-apps",
    "STEWARD_DEVICES_TABLE": "bench-devices",
    "STEWARD_PROFILES_TABLE": "bench-profiles",
    "STEWARD_CATALOG_TABLE": "bench-catalog",
    "STEWARD_SHARD_COUNT": "16",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


LAYER_PACKAGES = ROOT / ".local" / "bench-layer"


def install_layer_packages() -> None:
    if not LAYER_PACKAGES.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
             str(LAYER_PACKAGES), "-r", str(ROOT / "layers/common/requirements.txt")],
            check=True,
        )  # fmt: skip


def median_import_seconds(module: str, cwd: Path) -> float:
    path = os.pathsep.join([str(cwd), str(ROOT / "layers/common"), str(LAYER_PACKAGES)])
    environment = {**os.environ, **ENVIRONMENT, "PYTHONPATH": path}
    samples = []
    for _ in range(SAMPLES + 1):  # the first run writes the bytecode cache
        completed = subprocess.run(
            [sys.executable, "-S", "-c", _TIMED.format(module=module)],
            cwd=cwd,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(float(completed.stdout.strip().splitlines()[-1]))
    return statistics.median(samples[1:])


def main() -> None:
    install_layer_packages()
    baseline = median_import_seconds("boto3", ROOT)
    print(f"{'module':32} {'median import':>14} {'vs boto3':>9}")
    print(f"{'boto3':32} {baseline * 1000:>11.0f} ms {1.0:>8.1f}x")
    for function in sorted((ROOT / "functions").iterdir()):
        seconds = median_import_seconds("app", function)
        print(f"{'functions/' + function.name + '/app.py':32} {seconds * 1000:>11.0f} ms {seconds / baseline:>8.1f}x")


if __name__ == "__main__":
    main()
