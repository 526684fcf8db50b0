"""Baselines every transferability table carries: random, source data size, task embedding,
same family."""

from __future__ import annotations

import hashlib

from transferbench.indicator import Indicator
from transferbench.indicators.embedding_similarity import cosine


class RandomIndicator(Indicator):
    """A uniform random score per (source, target) pair, reproducible from `seed`."""

    description = "uniform random score per pair (seeded)"
    baseline = True
    kind = "baseline"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def score(self, source, target) -> float:
        digest = hashlib.sha256(f"{self.seed}|{source.name}|{target.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64


class DataSize(Indicator):
    """The number of usable labelled examples in the source task's data (larger sources help more)."""

    requires = ("train_size",)
    description = "size of the source task's labelled data"
    baseline = True
    kind = "baseline"

    def score(self, source, target) -> float:
        return float(source.train_size)


class TaskEmbedding(Indicator):
    """Cosine of the two tasks' mean frozen-backbone sentence embeddings, no prompt.

    After Vu et al. (EMNLP 2020), "Exploring and Predicting Transferability across NLP Tasks"
    (their TextEmb: the average of a pre-trained encoder's sentence representations of a task).
    """

    requires = ("text_embedding",)
    description = "cosine of mean backbone embeddings of the two tasks' inputs (Vu et al. 2020)"
    baseline = True
    kind = "baseline"

    def score(self, source, target) -> float:
        return cosine(source.text_embedding, target.text_embedding)


class SameFamily(Indicator):
    """1 if the source task belongs to the target task's family (e.g. both sentiment), else 0.

    Knows nothing but the family labels of the task cards. Tasks of one family transfer to each
    other much better than across families, so this baseline alone earns a high mean rho: an
    indicator is only informative beyond the family if it beats this row, and its within-family
    and partial rho (where this baseline is undefined: its scores are constant there) are above 0.
    """

    description = "1 if source and target share a family, else 0"
    baseline = True
    kind = "baseline"

    def score(self, source, target) -> float:
        return 1.0 if source.family == target.family else 0.0
