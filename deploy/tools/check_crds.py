"""Check the Prometheus Operator objects (monitoring.coreos.com/v1) in rendered manifests.

kubernetes-validate bundles the schemas of Kubernetes' own kinds only, so ServiceMonitor and
PrometheusRule are checked here, against the pydantic models that the PyPI package
cloudcoil-models-prometheus-operator generates from the operator's CRD schemas: types, required
fields, enums and patterns (durations, for instance). Those models ignore fields they do not know,
so this also dumps every object back and fails on any field that did not survive the round trip:
a misspelt or unsupported field is an error, as with `kubernetes-validate --strict`.

Usage: python deploy/tools/check_crds.py RENDERED.yaml...   (exit 1 on any error, 2 on no object)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import yaml

GROUP_VERSION = "monitoring.coreos.com/v1"
KINDS = ("ServiceMonitor", "PrometheusRule")


def dropped(given: Any, kept: Any, path: str = "") -> Iterator[str]:
    """Paths present in `given` but missing from `kept` (the model's dump of it)."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            yield path or "."
            return
        for key, value in given.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in kept:
                yield where
            else:
                yield from dropped(value, kept[key], where)
    elif isinstance(given, list):
        if not isinstance(kept, list) or len(kept) != len(given):
            yield path or "."
            return
        for i, (a, b) in enumerate(zip(given, kept, strict=True)):
            yield from dropped(a, b, f"{path}[{i}]")


def check(doc: dict[str, Any], models: Any) -> list[str]:
    model = getattr(models, doc["kind"])
    try:
        obj = model.model_validate(doc)
    except Exception as err:  # pydantic.ValidationError, reported as is
        return [str(err)]
    kept = obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return [f"unknown field {path}" for path in dropped(doc, kept)]


def main(paths: list[str]) -> int:
    try:
        from cloudcoil.models.prometheus_operator import v1 as models
    except ImportError:
        print("cloudcoil-models-prometheus-operator is not installed (pip install it)")
        return 1
    errors = 0
    seen = 0
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            if doc.get("apiVersion") != GROUP_VERSION:
                continue
            name = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if doc.get("kind") not in KINDS:
                print(f"  FAIL {name}: no model for this kind here (only {', '.join(KINDS)})")
                errors += 1
                continue
            seen += 1
            problems = check(doc, models)
            for problem in problems:
                print(f"  FAIL {name}: {problem}")
            errors += bool(problems)
            if not problems:
                print(f"  {name}: valid against the {GROUP_VERSION} CRD models")
    if not seen:
        print(f"no {GROUP_VERSION} object found in {', '.join(paths)}")
        return 2
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
