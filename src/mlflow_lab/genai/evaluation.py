"""An evaluation of the app with code-based scorers (no LLM judge): `mlflow.genai.evaluate`.

Each question names the doc that answers it. The scorers' results are stored as assessments
on the evaluation's traces (the UI's Evaluations view) and their means as metrics of the run
(`<scorer>/mean`); promotion compares PROMOTION_METRIC between versions.
"""

from __future__ import annotations

import re

import mlflow
from mlflow.entities import Feedback
from mlflow.genai.scorers import scorer

# Questions a workshop attendee asks, each with the file that answers it and words a good
# answer contains (any one of them).
DATASET = [
    {
        "inputs": {"question": "How do I promote a new model version to Production?"},
        "expectations": {"expected_source": "lifecycle.md", "expected_terms": ["promot", "Production", "champion"]},
    },
    {
        "inputs": {"question": "How do I back up the lab and restore it?"},
        "expectations": {"expected_source": "operations.md", "expected_terms": ["backup", "restore"]},
    },
    {
        "inputs": {"question": "How do I create accounts for workshop attendees?"},
        "expectations": {"expected_source": "teams.md", "expected_terms": ["account", "attendee", "users"]},
    },
    {
        "inputs": {"question": "Which server does the model API use to serve models?"},
        "expectations": {"expected_source": "model-api.md", "expected_terms": ["MLServer", "serv"]},
    },
    {
        "inputs": {"question": "How do I deploy the lab on Kubernetes?"},
        "expectations": {"expected_source": "kubernetes.md", "expected_terms": ["Kubernetes", "kubectl", "manifest"]},
    },
]
MIN_CHARS, MAX_CHARS = 40, 2000
PROMOTION_METRIC = "cites_expected_source/mean"  # higher is better
_SOURCES = re.compile(r"^Sources:\s*(.+)$", re.MULTILINE)


def cited_files(answer: str) -> list[str]:
    """The files an answer names in its `Sources:` line, in order (`lifecycle.md#promotion` -> `lifecycle.md`);
    an LLM's answer without that line: every `<name>.md` it mentions."""
    match = _SOURCES.search(answer or "")
    names = re.findall(r"[\w.-]+\.md", match.group(1) if match else answer or "")
    return list(dict.fromkeys(names))


@scorer
def top_source_exact_match(outputs: str, expectations: dict) -> bool:
    """The first file the answer cites is exactly the one that answers the question."""
    cited = cited_files(outputs)
    return bool(cited) and cited[0] == expectations["expected_source"]


@scorer
def cites_expected_source(outputs: str, expectations: dict) -> bool:
    """The file that answers the question is among the answer's sources."""
    return expectations["expected_source"] in cited_files(outputs)


@scorer
def answer_length(outputs: str) -> Feedback:
    """Neither empty nor a wall of text."""
    size = len(outputs or "")
    ok = MIN_CHARS <= size <= MAX_CHARS
    return Feedback(value=ok, rationale=f"{size} characters (expected {MIN_CHARS} to {MAX_CHARS})")


@scorer
def mentions_expected_term(outputs: str, expectations: dict) -> bool:
    """The answer uses at least one of the words a good answer contains."""
    text = (outputs or "").lower()
    return any(term.lower() in text for term in expectations["expected_terms"])


SCORERS = [top_source_exact_match, cites_expected_source, answer_length, mentions_expected_term]


def evaluate(predict, model_id: str | None = None):
    """Run the dataset through `predict(question) -> answer` and score it; in the active run if any."""
    return mlflow.genai.evaluate(data=DATASET, predict_fn=predict, scorers=SCORERS, model_id=model_id)
