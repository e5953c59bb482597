"""`.env.example` and `docs/configuration.md`, rendered from the settings schema.

    python -m mlflow_lab.settings_render --write   # after changing settings_schema.py

tests/static/test_settings_schema.py fails when either file differs from what this renders.
"""

from __future__ import annotations

import sys
import textwrap

from pydantic.fields import FieldInfo

from mlflow_lab.settings import ENV_EXAMPLE, GENERATED_MARK, REPO_ROOT
from mlflow_lab.settings_schema import GROUP_NOTES, GROUPS, LabSettings, extra, kind

CONFIGURATION_DOC = REPO_ROOT / "docs" / "configuration.md"
WIDTH = 92

ENV_HEADER = """\
# mlflow-lab configuration. GENERATED from src/mlflow_lab/settings_schema.py: edit there, then
# run `python -m mlflow_lab.settings_render --write` (docs/configuration.md is made beside it).
#
# `make up` copies this file to .env on first run and fills every value marked
# "generated" with a strong random secret. An existing .env is never overwritten;
# variables added here later are appended to it. Both runners (Compose and native)
# read the same names.
"""

DOC_HEADER = """\
# Configuration

<!-- GENERATED from src/mlflow_lab/settings_schema.py by `python -m mlflow_lab.settings_render --write`. -->

Every setting lives in `.env` (made from `.env.example` by the first `make up`, secrets
generated); a variable set in the environment wins over `.env`, as with Compose. Both
runners read the same names. A service refuses to start, naming the setting, when one it
needs is empty or not of its type; outside `LAB_ENV=lab` every generated secret must also be
at least 16 characters and not a well-known default.
"""


def by_group() -> dict[str, dict[str, FieldInfo]]:
    groups: dict[str, dict[str, FieldInfo]] = {group: {} for group in GROUPS}
    for name, field in LabSettings.model_fields.items():
        groups[extra(field)["group"]][name] = field
    return groups


def env_value(field: FieldInfo) -> str:
    value = str(field.default)
    return f'"{value}"' if " " in value else value


def comment(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH - 2, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)


def render_env_example() -> str:
    lines = [ENV_HEADER]
    for group, settings in by_group().items():
        if group == "wiring":
            continue
        title = f"# --- {GROUPS[group]} "
        lines.append(title + "-" * max(3, WIDTH - len(title)))
        if group in GROUP_NOTES:
            lines += comment(GROUP_NOTES[group])
        for name, field in settings.items():
            lines += comment(field.description or "")
            if extra(field).get("generated"):
                lines.append(GENERATED_MARK)
            lines.append(f"{name}={'' if extra(field).get('generated') else env_value(field)}")
        lines.append("")
    return "\n".join(lines)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_configuration_doc() -> str:
    lines = [DOC_HEADER]
    for group, settings in by_group().items():
        lines += [f"## {GROUPS[group][0].upper()}{GROUPS[group][1:]}", ""]
        if group in GROUP_NOTES:
            lines += [GROUP_NOTES[group], ""]
        lines += ["| Setting | Default | Type | Needed by | Meaning |", "|---|---|---|---|---|"]
        for name, field in settings.items():
            meta = extra(field)
            default = "generated secret" if meta.get("generated") else (f"`{field.default}`" if field.default != "" else "empty")
            needed = ", ".join(meta["services"]) or ("optional" if meta.get("optional") else "-")
            secret = "; secret: never logged or archived" if meta.get("secret") else ""
            lines.append(f"| `{name}` | {default} | {cell(kind(field))}{secret} | {needed} | {cell(field.description or '')} |")
        lines.append("")
    lines.append(
        '"Needed by": the programs that refuse to start when the setting is empty: `lab` (the CLI\'s `up`), '
        "`init`, `mlflow` (tracking server), `model-api`, `nginx`, `wait-for-schema` (Kubernetes' init "
        "container of the tracking server).\n"
    )
    return "\n".join(lines)


RENDERED = {ENV_EXAMPLE: render_env_example, CONFIGURATION_DOC: render_configuration_doc}


def main(argv: list[str]) -> int:
    """--write: write both files; --check: exit 1 naming those that differ."""
    stale = [path for path, render in RENDERED.items() if not path.exists() or path.read_text() != render()]
    if "--write" in argv:
        for path in stale:
            path.write_text(RENDERED[path]())
            print(f"wrote {path}")
        return 0
    for path in stale:
        print(
            f"{path} differs from src/mlflow_lab/settings_schema.py: run `python -m mlflow_lab.settings_render --write`",
            file=sys.stderr,
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
