"""Prompt-embedding similarity, Su et al. (NAACL 2022)."""

from __future__ import annotations

import numpy as np

from transferbench.scoring.indicator import Indicator

MEASURES = ("cosine", "token_cosine", "euclidean", "token_euclidean")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """`a . b / (||a|| ||b||)` of two vectors, in float64: the similarity of two flattened prompts
    (Su et al., NAACL 2022, Sec. 5.1) and of two tasks' mean text embeddings (the `task_embedding`
    baseline, after Vu et al., EMNLP 2020)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def prompt_similarity(p1: np.ndarray, p2: np.ndarray, measure: str) -> float:
    """Similarity of two soft prompts `[n, hidden]` (Su et al., NAACL 2022, Sec. 5.1).

    - `cosine`: cosine of the two prompts flattened (tokens concatenated);
    - `token_cosine`: `(1/n^2) sum_i sum_j cos(p1_i, p2_j)`;
    - `euclidean`: `1 / (1 + ||P1 - P2||_F)`;
    - `token_euclidean`: `1 / (1 + (1/n) sum_i ||p1_i - p2_i||_2)`, the token-wise Euclidean
      similarity (tokens compared position by position). The reference code
      (thunlp/Prompt-Transferability, `rank_task_sim.py`, `EuclideanDistances`) ranks by the plain
      sum `sum_i ||p1_i - p2_i||` ascending; for prompts of equal length that is the same ranking.
    """
    p1, p2 = np.asarray(p1, dtype=np.float64), np.asarray(p2, dtype=np.float64)
    if measure == "cosine":
        return cosine(p1, p2)
    if measure == "token_cosine":
        a = p1 / np.linalg.norm(p1, axis=1, keepdims=True)
        b = p2 / np.linalg.norm(p2, axis=1, keepdims=True)
        return float((a @ b.T).mean())
    if measure == "euclidean":
        return float(1.0 / (1.0 + np.linalg.norm(p1 - p2)))
    if measure == "token_euclidean":
        if p1.shape != p2.shape:
            raise ValueError(f"token_euclidean compares prompts position by position; shapes {p1.shape} and {p2.shape} differ")
        return float(1.0 / (1.0 + np.linalg.norm(p1 - p2, axis=1).mean()))
    raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")


class EmbeddingSimilarity(Indicator):
    """Similarity of the source and target soft prompts, averaged over seeds (equal seeds paired)."""

    requires = ("prompts",)
    kind = "prompt"
    description = "similarity of the two trained soft prompts (Su et al. 2022)"

    def __init__(self, measure: str = "cosine"):
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
        self.measure = measure

    def score(self, source, target) -> float:
        return float(np.mean([prompt_similarity(a, b, self.measure) for a, b in zip(source.prompts, target.prompts)]))
