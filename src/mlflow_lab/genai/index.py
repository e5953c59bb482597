"""The retrieval index: the passages and their vectors, searched by cosine similarity, saved as
two files in a folder (logged with the model, so the served app needs no documents)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlflow_lab.errors import LabError
from mlflow_lab.genai import embedding
from mlflow_lab.genai.corpus import Passage

PASSAGES, VECTORS = "passages.json", "vectors.npy"


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float
    position: int  # in the index, which names the passage in a trace's documents


@dataclass(frozen=True)
class Index:
    passages: list[Passage]
    vectors: np.ndarray  # one unit-length row per passage
    model: str = embedding.MODEL

    @classmethod
    def build(cls, passages: list[Passage]) -> Index:
        return cls(passages, embedding.embed([p.for_embedding for p in passages]))

    def search(self, query_vector: np.ndarray, k: int) -> list[Hit]:
        """The k passages most similar to the query, best first."""
        if k < 1:
            raise LabError(f"k must be at least 1; got {k}.")
        scores = self.vectors @ query_vector
        best = np.argsort(-scores, kind="stable")[:k]
        return [Hit(self.passages[i], float(scores[i]), int(i)) for i in best]

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"model": self.model, "passages": [p.to_dict() for p in self.passages]}
        (folder / PASSAGES).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        np.save(folder / VECTORS, self.vectors)
        return folder

    @classmethod
    def load(cls, folder: Path) -> Index:
        meta = json.loads((Path(folder) / PASSAGES).read_text(encoding="utf-8"))
        vectors = np.load(Path(folder) / VECTORS)
        passages = [Passage(**p) for p in meta["passages"]]
        if meta["model"] != embedding.MODEL or vectors.shape != (len(passages), embedding.DIMENSIONS):
            raise LabError(
                f"the index in {folder} was made by {meta['model']} ({vectors.shape}); "
                f"this app embeds questions with {embedding.MODEL}: build the app again."
            )
        return cls(passages, vectors, meta["model"])
