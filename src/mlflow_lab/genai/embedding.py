"""Text to vectors with WordLlama's static token embeddings, loaded from the files its wheel ships.

WordLlama (MIT) averages token vectors taken from a large language model's embedding table:
no neural network runs, so numpy and a tokenizer are all it needs (no torch), it loads in
~0.3 s and embeds the lab's ~100 doc sections in ~0.3 s on one core. The 256-dimension
`l2_supercat` weights (16 MB) and the Llama 3 tokenizer's file are inside the installed
package. WordLlama 0.4.0 looks for the tokenizer in a folder `tokenizer/` of the package,
which it names `tokenizers/`, and would then download it: so it is loaded with the package's
own folder as its cache folder, where both files are found, and downloads disabled.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

MODEL = "wordllama l2_supercat 256"  # recorded with the index and on the run: what made the vectors
DIMENSIONS = 256


@functools.cache
def wordllama_model():
    import wordllama  # imported when first needed: `lab-job --help` does not pay for it

    return wordllama.WordLlama.load(
        config="l2_supercat", dim=DIMENSIONS, cache_dir=Path(wordllama.__file__).parent, disable_download=True
    )


def embed(texts: list[str]) -> np.ndarray:
    """One unit-length float32 row per text (so a dot product is the cosine similarity)."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    vectors = np.asarray(wordllama_model().embed(list(texts), norm=True), dtype=np.float32)
    return vectors
