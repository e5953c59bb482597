"""The answer prompt, kept in the lab's prompt registry and loaded by alias.

The first run registers DEFAULT_TEMPLATE as version 1 and points the alias at it; after that
the registry decides: register a new version, move the alias, run the workflow again, and the
app is rebuilt with it (the logged model records which prompt version it was built with).
"""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException

from mlflow_lab.errors import LabError

# The variables the app fills in; a template without one of them is refused before it is used.
VARIABLES = frozenset({"question", "context"})
DEFAULT_TEMPLATE = """\
You answer questions about mlflow-lab, a reference MLflow deployment, from its documentation.
Use only the numbered passages below. Say which files you used. If they do not answer the
question, say so.

Passages:
{{context}}

Question: {{question}}
Answer:"""


def check(template: str, where: str) -> None:
    """A clear error for a template the app cannot fill, before any call uses it."""
    if not isinstance(template, str):
        raise LabError(f"{where} is a chat prompt; the app takes a text prompt with {{{{question}}}} and {{{{context}}}}.")
    missing = sorted(name for name in VARIABLES if f"{{{{{name}}}}}" not in template.replace(" ", ""))
    if missing:
        names = ", ".join(f"{{{{{name}}}}}" for name in missing)
        raise LabError(f"{where} lacks the variable(s) {names} the app fills in; register a version that has them.")


def render(template: str, question: str, context: str) -> str:
    """The template with its two variables filled in (nothing else of it is interpreted)."""
    check(template, "the prompt")
    text = template
    for name, value in (("context", context), ("question", question)):
        for spelling in (f"{{{{{name}}}}}", f"{{{{ {name} }}}}"):
            text = text.replace(spelling, value)
    return text


def ensure(name: str, alias: str):
    """The prompt version `prompts:/<name>@<alias>`, registered (DEFAULT_TEMPLATE) and aliased if the
    prompt does not exist yet. An existing prompt without that alias is an error, not overwritten."""
    uri = f"prompts:/{name}@{alias}"
    try:
        found = mlflow.genai.load_prompt(uri, allow_missing=True, link_to_model=False)
    except MlflowException as exc:
        raise LabError(f"could not load {uri}: {exc.message}") from None
    if found is None:
        existing = _latest_version(name)
        if existing is not None:
            raise LabError(
                f"prompt {name!r} exists (version {existing}) but has no alias {alias!r}: "
                f"point it at a version (mlflow.genai.set_prompt_alias({name!r}, {alias!r}, <version>))."
            )
        version = mlflow.genai.register_prompt(
            name, DEFAULT_TEMPLATE, commit_message="the docs-qa app's answer prompt (registered by the workflow)"
        )
        mlflow.genai.set_prompt_alias(name, alias, version.version)
        found = mlflow.genai.load_prompt(uri, link_to_model=False)
    check(found.template, f"prompt {name!r} version {found.version} ({uri})")
    return found


def _latest_version(name: str) -> int | None:
    try:
        return mlflow.genai.load_prompt(f"prompts:/{name}@latest", allow_missing=True, link_to_model=False).version
    except (MlflowException, AttributeError):
        return None
