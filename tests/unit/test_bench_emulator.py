"""The benchmarks' faster emulator answers every call as moto does.

The patches change moto for the whole process, so the comparison runs in
its own interpreter; the tests keep moto as it is.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_patched_emulator_answers_every_call_as_moto_does() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.emulator"], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "10 answers equal"
