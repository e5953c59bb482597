"""Libraries' private names are used in mlflow_lab/adapters only (one module per library, each
pinned to the locked version by tests/unit/test_library_contracts.py), so that an upgrade
breaks in one named place. Outside the adapters, src/ must not:

- import a private name of MLflow or MLServer (`from mlserver.rest.errors import _X`);
- use any name an adapter declares in PRIVATE_NAMES (as an attribute, a name, a definition or
  a string);
- override a private method of a library class it subclasses;
- read or write an attribute `obj._name` that the lab never assigns or defines itself: such an
  attribute was made by a library (a source scan cannot tell by which, so this holds for all).

Each rule runs on src/ and on a copy broken to show it can fail.
"""

from __future__ import annotations

import ast
import importlib
import shutil
from pathlib import Path

import pytest

from mlflow_lab.adapters import mlflow_internals, mlserver_internals
from mlflow_lab.settings import REPO_ROOT

SRC = REPO_ROOT / "src"
LAB = "mlflow_lab"
ADAPTERS = (LAB, "adapters")
LIBRARIES = ("mlflow", "mlserver", "mlserver_mlflow")
DECLARED = {name: module.__name__ for module in (mlflow_internals, mlserver_internals) for name in module.PRIVATE_NAMES}


def _private(name: str) -> bool:
    """`_name`, not a dunder or a sunder (`_missing_`: hooks libraries document for overriding)."""
    return name.startswith("_") and not name.endswith("_")


class Module:
    def __init__(self, src: Path, path: Path):
        self.relative, self.tree = path.relative_to(src), ast.parse(path.read_text())
        parts = self.relative.with_suffix("").parts
        self.name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        self.is_adapter = parts[: len(ADAPTERS)] == ADAPTERS
        self.classes = {node.name: node for node in ast.walk(self.tree) if isinstance(node, ast.ClassDef)}
        self.imports: dict[str, tuple[str, str | None]] = {}  # local name -> (module, attribute or None)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (node.module, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:  # `import a.b` binds a; `import a.b as c` binds c to a.b
                    local = alias.asname or alias.name.split(".")[0]
                    self.imports[local] = (alias.name if alias.asname else local, None)

    def where(self, node: ast.AST) -> str:
        return f"{self.relative}:{getattr(node, 'lineno', 0)}"


class Source:
    def __init__(self, src: Path):
        self.modules = {m.name: m for m in (Module(src, p) for p in sorted((src / LAB).rglob("*.py")))}

    def library_bases(self, module: Module, cls: ast.ClassDef) -> list[type]:
        """The library classes a lab class derives from, through the lab's own classes."""
        found: list[type] = []
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in module.classes:
                found += self.library_bases(module, module.classes[base.id])
            elif isinstance(base, ast.Name) and base.id in module.imports:
                found += self._resolve(*module.imports[base.id])
            elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id in module.imports:
                source, attribute = module.imports[base.value.id]
                found += self._resolve(f"{source}.{attribute}" if attribute else source, base.attr)
        return found

    def _resolve(self, source: str, attribute: str | None) -> list[type]:
        if attribute is None:
            return []
        if source.split(".")[0] == LAB:
            owner = self.modules.get(source)
            return self.library_bases(owner, owner.classes[attribute]) if owner and attribute in owner.classes else []
        found = getattr(importlib.import_module(source), attribute, None)
        return [found] if isinstance(found, type) else []

    def overrides(self, module: Module) -> dict[ast.AST, str]:
        """Methods of lab classes that replace a library class's private method."""
        found = {}
        for cls in module.classes.values():
            bases = self.library_bases(module, cls)
            for node in cls.body:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _private(node.name):
                    owner = next((b for b in bases if hasattr(b, node.name)), None)
                    if owner is not None:
                        found[node] = f"{owner.__module__}.{owner.__qualname__}.{node.name}"
        return found

    def lab_defined(self) -> set[str]:
        """Private names the lab itself assigns or defines (outside the adapters)."""
        names: set[str] = set()
        for module in self.modules.values():
            if module.is_adapter:
                continue
            overriding = self.overrides(module)
            for node in ast.walk(module.tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node not in overriding:
                    names.add(node.name)
                elif isinstance(node, ast.Name | ast.Attribute) and isinstance(node.ctx, ast.Store):
                    names.add(node.id if isinstance(node, ast.Name) else node.attr)
                elif isinstance(node, ast.arg):
                    names.add(node.arg)
        return names


def violations(src: Path) -> list[str]:
    source = Source(src)
    defined = source.lab_defined()
    found = []
    for module in source.modules.values():
        if module.is_adapter:
            continue
        for node, what in source.overrides(module).items():
            found.append(f"{module.where(node)}: overrides {what}, a private method")
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
                for alias in node.names:
                    if _private(alias.name) or any(_private(part) for part in node.module.split(".")):
                        found.append(f"{module.where(node)}: imports {node.module}.{alias.name}, a private name")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] in LIBRARIES and any(_private(part) for part in parts):
                        found.append(f"{module.where(node)}: imports {alias.name}, a private module")
            named = _name_of(node)
            if named in DECLARED:
                found.append(f"{module.where(node)}: uses {named}; only {DECLARED[named]} may")
            elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in defined:
                found.append(f"{module.where(node)}: {ast.unparse(node)} is a library's private attribute")
    return sorted(set(found))


def _name_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name
    if isinstance(node, ast.alias):
        return node.asname or node.name.split(".")[-1]
    if isinstance(node, ast.keyword):
        return node.arg
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def test_no_module_outside_the_adapters_uses_a_private_name():
    assert violations(SRC) == []


def test_each_adapter_uses_every_name_it_declares():
    """PRIVATE_NAMES is what the adapter reaches into: a name it no longer uses is dropped from it."""
    for module in (mlflow_internals, mlserver_internals):
        used = {_name_of(node) for node in ast.walk(ast.parse(Path(module.__file__).read_text()))}
        assert not module.PRIVATE_NAMES - used, f"{module.__name__} declares unused {sorted(module.PRIVATE_NAMES - used)}"


BREAKS = {
    "a private import": (
        "stack/model_api/fast_path.py",
        "from mlflow_lab.adapters import mlserver_internals\n",
        "from mlserver.rest.errors import _EXCEPTION_HANDLERS\nfrom mlflow_lab.adapters import mlserver_internals\n",
        "imports mlserver.rest.errors._EXCEPTION_HANDLERS",
    ),
    "a declared name, past the adapter": (
        "stack/model_api/fast_path.py",
        "mlserver_internals.infer_metrics(data_plane)",
        "data_plane._ModelInferRequestSuccess, data_plane._ModelInferRequestDuration",
        "uses _ModelInferRequestSuccess; only mlflow_lab.adapters.mlserver_internals may",
    ),
    "a library's attribute no adapter declares": (
        "stack/model_api/one_model.py",
        "await mlserver_internals.model_registry(self).load(self.model)",
        "await self._inference_pool_registry.load_model(self.model)",
        "self._inference_pool_registry is a library's private attribute",
    ),
    "an override of a private method": (
        "stack/model_api/mlserver_server.py",
        "    def __init__(self, settings: ServerSettings, fast_path: bool = False):\n",
        "    def _configure_logger(self):\n        pass\n\n    def __init__(self, settings, fast_path=False):\n",
        "overrides mlserver.server.MLServer._configure_logger",
    ),
    "an override, one lab class further down": (
        "stack/model_api/one_model.py",
        "    async def ready(self) -> bool:\n",
        "    def _create_servers(self):\n        pass\n\n    async def ready(self) -> bool:\n",
        "overrides mlserver.server.MLServer._create_servers",
    ),
    "MLflow's private attribute": (
        "scoring/conforming.py",
        "mlflow_internals.flavor_predict(model)",
        "model._predict_fn",
        "uses _predict_fn; only mlflow_lab.adapters.mlflow_internals may",
    ),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_the_rules_fail_on_a_broken_copy(tmp_path, case):
    relative, old, new, expected = BREAKS[case]
    shutil.copytree(SRC / LAB, tmp_path / LAB, ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / LAB / relative
    text = path.read_text()
    assert old in text, f"{relative} no longer holds {old!r}: update this case"
    path.write_text(text.replace(old, new, 1))
    found = violations(tmp_path)
    assert any(f"{LAB}/{relative}:" in line and expected in line for line in found), found
