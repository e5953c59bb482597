"""compose.yaml read as the one declaration of the stack, for the native runner.

Each service's command, environment, health check, start order (`depends_on` with its
conditions) and restart policy come from compose.yaml, with `${...}` interpolated from the
lab's settings by Compose's rules. The native runner adds only what differs on the host
(its overlay); it keeps no list of services, variables or start order of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import yaml

from mlflow_lab.errors import LabError
from mlflow_lab.settings import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "compose.yaml"
# Jobs run with `lab job`, never as part of the stack.
NOT_A_SERVICE_PROFILE = "jobs"

_INNERMOST = re.compile(r"\$\{([^{}]*)\}")
_PLAIN = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_ESCAPED = "\x00"  # stands for `$$` while the rest is interpolated


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
    ${VAR?error}, $VAR, and $$ for a literal $; defaults may hold ${...} themselves."""

    def substitute(match: re.Match) -> str:
        body = match.group(1)
        found = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])(.*))?", body, re.DOTALL)
        if not found:
            raise LabError(f"compose.yaml: cannot interpolate ${{{body}}}.")
        name, operator, argument = found.groups()
        value = env.get(name)
        missing = value is None or (operator is not None and operator.startswith(":") and value == "")
        if operator in ("-", ":-") and missing:
            return argument  # compose.yaml's own text, its ${...} already replaced
        if operator in ("?", ":?") and missing:
            raise LabError(f"{argument or f'{name} is not set'}.".replace("..", "."))
        return literal(value or "")

    def literal(value: str) -> str:
        """A setting's value is never interpolated again (a password may hold `$`)."""
        return value.replace("$", _ESCAPED)

    text = text.replace("$$", _ESCAPED)
    while _INNERMOST.search(text):
        text = _INNERMOST.sub(substitute, text)
    text = _PLAIN.sub(lambda m: literal(env.get(m.group(1), "")), text)
    return text.replace(_ESCAPED, "$")


def _interpolate_all(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_all(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_all(value, env) for key, value in node.items()}
    return node


@dataclass(frozen=True)
class DeclaredService:
    """One service of compose.yaml, as the native runner needs it."""

    name: str
    command: list[str]
    environment: dict[str, str]
    healthcheck: list[str] | None  # Compose's `test`: ["CMD", ...] or ["CMD-SHELL", "..."]
    depends_on: dict[str, str] = field(default_factory=dict)  # dependency -> condition
    one_shot: bool = False  # restart: "no" - runs to completion before its dependents start

    @property
    def is_python(self) -> bool:
        return bool(self.command) and self.command[0] == "python"


def load(env: Mapping[str, str], path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The services of `path`, every value interpolated with `env`."""
    document = yaml.safe_load(path.read_text())  # resolves the x-* anchors and `<<` merges
    return _interpolate_all(document.get("services", {}), env)


def _environment(raw: Any) -> dict[str, str]:
    if isinstance(raw, list):  # ["KEY=value", ...]
        return dict(item.split("=", 1) for item in raw)
    return {key: "" if value is None else str(value) for key, value in (raw or {}).items()}


def services(env: Mapping[str, str], profiles: set[str], path: Path = COMPOSE_FILE) -> dict[str, DeclaredService]:
    """The services that run with `profiles` active (those without profiles always do), jobs excepted."""
    declared = load(env, path)
    active = {
        name: spec
        for name, spec in declared.items()
        if NOT_A_SERVICE_PROFILE not in spec.get("profiles", [])
        and (not spec.get("profiles") or set(spec["profiles"]) & profiles)
    }
    result = {}
    for name, spec in active.items():
        depends = spec.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        needs = {}
        for dep, rule in depends.items():
            if dep in active:
                needs[dep] = rule.get("condition", "service_started")
            elif rule.get("required", True):
                raise LabError(f"compose.yaml: {name} depends on {dep}, which is not active here.")
        command = spec.get("command") or []
        result[name] = DeclaredService(
            name=name,
            command=command if isinstance(command, list) else command.split(),
            environment=_environment(spec.get("environment")),
            healthcheck=(spec.get("healthcheck") or {}).get("test"),
            depends_on=needs,
            one_shot=str(spec.get("restart", "no")) == "no",
        )
    return result


def start_order(declared: Mapping[str, DeclaredService]) -> list[str]:
    """Every service after the ones it depends on (Compose's order; ties in file order)."""
    sorter = TopologicalSorter({name: set(svc.depends_on) for name, svc in declared.items()})
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        batch = set(sorter.get_ready())
        ready = [name for name in declared if name in batch]
        order += ready
        sorter.done(*ready)
    return order
