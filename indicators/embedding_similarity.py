"""Prompt-embedding similarity, Su et al. (NAACL 2022)."""

from __future__ import annotations

import numpy as np

from transferbench.indicator import Indicator, register_indicator


def prompt_similarity(p1: np.ndarray, p2: np.ndarray, measure: str) -> float:
    """Similarity of two soft prompts `[n, hidden]` (Su et al., NAACL 2022, Sec. 5.1).

    - `cosine`: cosine of the two prompts flattened (tokens concatenated);
    - `token_cosine`: `(1/n^2) sum_i sum_j cos(p1_i, p2_j)`;
    - `euclidean`: `1 / (1 + ||P1 - P2||_F)`.
    """
    p1, p2 = np.asarray(p1, dtype=np.float64), np.asarray(p2, dtype=np.float64)
    if measure == "cosine":
        a, b = p1.ravel(), p2.ravel()
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    if measure == "token_cosine":
        a = p1 / np.linalg.norm(p1, axis=1, keepdims=True)
        b = p2 / np.linalg.norm(p2, axis=1, keepdims=True)
        return float((a @ b.T).mean())
    if measure == "euclidean":
        return float(1.0 / (1.0 + np.linalg.norm(p1 - p2)))
    raise ValueError(f"measure must be cosine, token_cosine or euclidean, got {measure!r}")


@register_indicator("embedding_similarity")
class EmbeddingSimilarity(Indicator):
    """Similarity of the source and target soft prompts, averaged over seeds (equal seeds paired)."""

    requires = ("prompts",)
    description = "similarity of the two trained soft prompts (Su et al. 2022)"

    def __init__(self, measure: str = "cosine"):
        if measure not in ("cosine", "token_cosine", "euclidean"):
            raise ValueError(f"measure must be cosine, token_cosine or euclidean, got {measure!r}")
        self.measure = measure

    def score(self, source, target) -> float:
        return float(np.mean([prompt_similarity(a, b, self.measure) for a, b in zip(source.prompts, target.prompts)]))
