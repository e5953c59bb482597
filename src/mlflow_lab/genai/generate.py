"""Turning the rendered prompt and the retrieved passages into an answer.

Offline (the default): an extractive, templated answer: the sentences of the retrieved
passages closest to the question, with the files they come from. It stands where an LLM call
would, so the workflow runs in a room without internet or API keys.

With OPENAI_API_KEY set, the rendered prompt goes to an OpenAI-compatible chat completions
endpoint instead: OPENAI_BASE_URL (default https://api.openai.com/v1; a local server such as
vLLM or Ollama's /v1 works too) and OPENAI_MODEL (default gpt-4o-mini). It is a plain HTTP call
with requests (MLflow already depends on it), so the lab needs no `openai` package. The lab's
tests cannot reach such a service: they check the request against a local stand-in only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import requests

from mlflow_lab.errors import LabError
from mlflow_lab.genai import embedding
from mlflow_lab.genai.index import Hit

SENTENCES = 3  # how many sentences the extractive answer quotes
LLM_TIMEOUT_S = 60
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(\"])")
# Not prose: code blocks, table rows, headings; list markers and emphasis are stripped.
_NOT_PROSE = re.compile(r"^```(?s:.*?)^```.*$|^\s*\|.*$|^#+ .*$", re.MULTILINE)
_MARKERS = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+|\*\*", re.MULTILINE)


@dataclass(frozen=True)
class Llm:
    """An OpenAI-compatible chat completions endpoint."""

    api_key: str
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"

    @classmethod
    def from_env(cls, environ=os.environ) -> Llm | None:
        key = environ.get("OPENAI_API_KEY", "")
        if not key:
            return None
        return cls(key, environ.get("OPENAI_BASE_URL") or cls.base_url, environ.get("OPENAI_MODEL") or cls.model)

    def complete(self, prompt: str) -> str:
        url = f"{self.base_url.rstrip('/')}/chat/completions"
        body: dict = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0}
        try:
            response = requests.post(url, json=body, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=LLM_TIMEOUT_S)
        except requests.RequestException as exc:
            raise LabError(f"the LLM endpoint {url} could not be reached: {exc}") from None
        if not response.ok:
            raise LabError(f"the LLM endpoint {url} answered {response.status_code}: {response.text[:300]}")
        try:
            return response.json()["choices"][0]["message"]["content"].strip()
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise LabError(f"the LLM endpoint {url} answered without choices[0].message.content: {response.text[:300]}") from None


def sentences(text: str) -> list[str]:
    """The prose sentences of a Markdown passage (headings, tables and code fences dropped)."""
    prose = " ".join(line.strip() for line in _MARKERS.sub("", _NOT_PROSE.sub("", text)).splitlines() if line.strip())
    return [s.strip() for s in _SENTENCE_END.split(prose) if len(s.strip()) > 20]


def extractive(question: str, hits: list[Hit], count: int = SENTENCES) -> str:
    """The `count` sentences of the passages most similar to the question, in the order they
    appear, then the sources. Deterministic: the same question and index give the same answer."""
    if not hits:
        return "The lab's documentation has nothing on that."
    candidates = [(i, s) for i, hit in enumerate(hits) for s in sentences(hit.passage.text)]
    if not candidates:
        quoted = [hits[0].passage.text.strip()[:400]]
    else:
        scores = embedding.embed([s for _, s in candidates]) @ embedding.embed([question])[0]
        chosen = sorted(np.argsort(-scores, kind="stable")[:count])
        quoted = [candidates[i][1] for i in chosen]
    return f"{' '.join(quoted)}\n\nSources: {', '.join(dict.fromkeys(hit.passage.anchor for hit in hits))}"
