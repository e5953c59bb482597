"""The app: retrieve, render the prompt, generate; each step a span of one trace per question.

A trace shows, in the UI's Traces tab: the question and the answer (root span, CHAIN), the
retrieved passages with their scores (RETRIEVER span, shown as documents), the prompt as
rendered (PARSER span) and the generation (LLM span for a real model, else the extractive
stand-in, CHAIN), tagged with the prompt version it used.

An app built with `traced=False` runs the same steps without spans: the served app, unless
its server names an experiment for them (served.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import mlflow
from mlflow.entities import Document, SpanType

from mlflow_lab.errors import LabError
from mlflow_lab.genai import embedding, prompt
from mlflow_lab.genai.generate import Llm, extractive
from mlflow_lab.genai.index import Hit, Index

TOP_K = 3
MAX_QUESTION_CHARS = 2000


def step(name: str, span_type: str) -> Callable:
    """A method that is a span of the current trace when its app is traced (mlflow.trace)."""

    def decorate(method: Callable) -> Callable:
        traced = mlflow.trace(method, name=name, span_type=span_type)

        @functools.wraps(method)
        def call(self, *args, **kwargs):
            return (traced if self.traced else method)(self, *args, **kwargs)

        return call

    return decorate


@dataclass(frozen=True)
class DocsQA:
    index: Index
    template: str  # the prompt, as registered
    prompt_uri: str  # prompts:/<name>/<version>, recorded on every trace
    llm: Llm | None = None
    top_k: int = TOP_K
    traced: bool = True

    def __post_init__(self):
        prompt.check(self.template, self.prompt_uri)

    @step("docs-qa", SpanType.CHAIN)
    def answer(self, question: str) -> str:
        question = _checked(question)
        # No active span where MLflow turns tracing off (signature inference at logging time).
        if self.traced and mlflow.get_current_active_span() is not None:
            mlflow.update_current_trace(tags={"mlflow_lab.prompt": self.prompt_uri, "mlflow_lab.generator": self.generator})
        hits = self.retrieve(question)
        rendered = self.render(question, hits)
        return self.generate(question, rendered, hits)

    @property
    def generator(self) -> str:
        return f"llm:{self.llm.model}" if self.llm else "extractive"

    @step("retrieve", SpanType.RETRIEVER)
    def retrieve(self, question: str) -> list[Document]:
        hits = self.index.search(embedding.embed([question])[0], self.top_k)
        return [
            Document(h.passage.text, {"source": h.passage.anchor, "score": round(h.score, 4)}, id=str(h.position)) for h in hits
        ]

    @step("render-prompt", SpanType.PARSER)
    def render(self, question: str, documents: list[Document]) -> str:
        context = "\n\n".join(f"[{i}] ({d.metadata['source']})\n{d.page_content}" for i, d in enumerate(documents, 1))
        return prompt.render(self.template, question=question, context=context)

    def generate(self, question: str, rendered: str, documents: list[Document]) -> str:
        if self.llm is not None:
            return self._llm(self.llm, rendered)
        hits = []
        for document in documents:
            position = int(document.id or 0)  # retrieve() sets every id
            hits.append(Hit(self.index.passages[position], document.metadata["score"], position))
        return self._extractive(question, hits)

    @step("llm", SpanType.LLM)
    def _llm(self, llm: Llm, rendered: str) -> str:
        return llm.complete(rendered)

    @step("extractive-answer", SpanType.CHAIN)
    def _extractive(self, question: str, hits: list[Hit]) -> str:
        return extractive(question, hits)


def _checked(question) -> str:
    if not isinstance(question, str) or not question.strip():
        raise LabError("a question is a non-empty string.")
    if len(question) > MAX_QUESTION_CHARS:
        raise LabError(f"a question has at most {MAX_QUESTION_CHARS} characters; this one has {len(question)}.")
    return question.strip()
