"""A training spec from the command line: an optional JSON file, the options, then `--set path=value`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def parse_value(text: str) -> Any:
    """`10` → 10, `true` → True, `[10, 20]` → a list, `null` → None; anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def set_path(spec: dict[str, Any], assignment: str) -> None:
    """Apply one `dotted.path=value` to spec in place, creating the blocks on the way."""
    path, sep, raw = assignment.partition("=")
    keys = path.strip().split(".")
    if not sep or not all(keys):
        raise ValueError(f"--set needs PATH=VALUE with a dotted path such as wals.l2=0.1, got {assignment!r}")
    node = spec
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            where = ".".join(keys[: depth + 1])
            raise ValueError(f"--set {assignment!r}: {where} is {json.dumps(child)}, not a block of settings")
        node = child
    node[keys[-1]] = parse_value(raw.strip())


def build_spec(
    dataset_id: str | None, algorithm: str | None, spec_file: Path | None, assignments: list[str]
) -> dict[str, Any]:
    """The spec file (if any), then --dataset/--algorithm, then each --set in order: later wins."""
    spec: dict[str, Any] = {}
    if spec_file is not None:
        try:
            loaded = json.loads(spec_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"--spec {spec_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"--spec {spec_file}: expected a JSON object, got {type(loaded).__name__}")
        spec.update(loaded)
    if dataset_id is not None:
        spec["dataset_id"] = dataset_id
    if algorithm is not None:
        spec["algorithm"] = algorithm
    for assignment in assignments:
        set_path(spec, assignment)
    if not spec.get("dataset_id"):
        raise ValueError("no dataset: pass --dataset ID (or dataset_id in the --spec file)")
    return spec
