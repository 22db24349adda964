"""Check every *.asl.json under the given folders: cfn-lint does not look inside them.

Each file must parse with the Step Functions interpreter the local stack
runs (moto's ASL parser), and every transition must name a state that exists.
"""

import json
import sys
from pathlib import Path
from typing import Any

from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser


def problems_in(path: Path) -> list[str]:
    try:
        definition = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return [f"not JSON: {exc}"]
    found = _dangling_transitions(definition, "")
    try:
        AmazonStateLanguageParser.parse(json.dumps(definition))
    except Exception as exc:  # the parser raises several types; any of them means the file is invalid
        found.append(f"rejected by the ASL parser: {exc}")
    return found


def _dangling_transitions(machine: dict[str, Any], where: str) -> list[str]:
    states: dict[str, Any] = machine.get("States", {})
    found = []
    if machine.get("StartAt") not in states:
        found.append(f"{where}StartAt names no state: {machine.get('StartAt')!r}")
    for name, state in states.items():
        targets = [state.get("Next"), state.get("Default")]
        targets += [choice.get("Next") for choice in state.get("Choices", [])]
        targets += [catch.get("Next") for catch in state.get("Catch", [])]
        found += [
            f"{where}{name} -> {target!r}: no such state" for target in targets if target and target not in states
        ]
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                found += _dangling_transitions(state[key], f"{where}{name}.{key}: ")
        for index, branch in enumerate(state.get("Branches", [])):
            found += _dangling_transitions(branch, f"{where}{name}.Branches[{index}]: ")
    return found


def main(folders: list[str]) -> int:
    files = sorted(path for folder in folders for path in Path(folder).rglob("*.asl.json"))
    failed = 0
    for path in files:
        for problem in problems_in(path):
            print(f"{path}: {problem}")
            failed += 1
    print(f"asl check: {len(files)} definitions, {failed} problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["statemachines"]))
