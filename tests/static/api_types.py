"""Offline validation of rendered Kubernetes objects.

- Kubernetes' own kinds: kubernetes-validate (the API's JSON schemas, strict: unknown fields fail).
- KServe's kinds: the API types of KServe 0.21 as its Python SDK generates them from the
  CRDs' OpenAPI (field names, types, required fields), with every embedded Kubernetes type
  (containers, probes, metadata) checked against Kubernetes' schemas. The SDK cannot be
  imported as a package here (it pins pandas < 3), so `make venv` unpacks it into
  .venv/kserve-sdk and only its `models` modules are loaded.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import types
from functools import cache
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

from mlflow_lab.settings import REPO_ROOT

KUBERNETES_VERSION = "1.33.0"
KSERVE_SDK = REPO_ROOT / ".venv" / "kserve-sdk"
KSERVE_KINDS = {("serving.kserve.io/v1beta1", "InferenceService"), ("serving.kserve.io/v1alpha1", "ClusterServingRuntime")}
_SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}


def problems(obj: dict) -> list[str]:
    """What is wrong with `obj` (empty: it validates)."""
    if (obj.get("apiVersion"), obj.get("kind")) in KSERVE_KINDS:
        version = obj["apiVersion"].partition("/")[2]
        return _check(obj, f"{version.capitalize()}{obj['kind']}", obj["kind"])
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{obj['kind']} {obj['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


@cache
def _kserve_models() -> types.ModuleType:
    package = KSERVE_SDK / "kserve"
    if not package.is_dir():
        raise RuntimeError(f"KServe's SDK is not unpacked at {KSERVE_SDK}: run `make venv`")
    shell = types.ModuleType("kserve")
    shell.__path__ = [str(package)]  # its submodules import, its __init__ (the model server) does not run
    sys.modules.setdefault("kserve", shell)
    return importlib.import_module("kserve.models")


def _schema_dir() -> Path:
    return Path(str(resources.files("kubernetes_validate"))) / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}-local-strict"


@cache
def _kubernetes_validator(type_name: str) -> jsonschema.Validator:
    """Kubernetes' schema of an embedded type, e.g. V1Container -> container-v1.json."""
    stem = type_name.removeprefix("V1").lower()
    [path] = [p for p in (_schema_dir() / f"{stem}-v1.json", _schema_dir() / f"{stem}-meta-v1.json") if p.exists()]
    schema = json.loads(path.read_text())
    definitions = json.loads((_schema_dir() / "_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _check(value, type_name: str, where: str) -> list[str]:
    if match := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{where}: a list expected"]
        return [p for i, item in enumerate(value) for p in _check(item, match[1], f"{where}[{i}]")]
    if match := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        if not isinstance(value, dict):
            return [f"{where}: a mapping expected"]
        return [p for key, item in value.items() for p in _check(item, match[1], f"{where}.{key}")]
    if type_name in _SCALARS:
        ok = isinstance(value, _SCALARS[type_name]) and not (type_name != "bool" and isinstance(value, bool))
        return [] if ok else [f"{where}: {type_name} expected, got {value!r}"]
    models = _kserve_models()
    if not hasattr(models, type_name):  # a Kubernetes type embedded in a KServe one
        return [f"{where}.{'.'.join(map(str, e.path))}: {e.message}" for e in _kubernetes_validator(type_name).iter_errors(value)]
    cls = getattr(models, type_name)
    if not isinstance(value, dict):
        return [f"{where}: an object expected"]
    by_json = {json_key: attribute for attribute, json_key in cls.attribute_map.items()}
    found = [f"{where}: unknown field {key!r}" for key in value if key not in by_json]
    for key, item in value.items():
        if key in by_json:
            found += _check(item, cls.openapi_types[by_json[key]], f"{where}.{key}")
    try:  # the generated setters refuse a missing required field and values outside an enum
        cls(**{by_json[key]: item for key, item in value.items() if key in by_json})
    except ValueError as exc:
        found.append(f"{where}: {exc}")
    return found
