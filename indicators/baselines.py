"""Baselines every transferability table carries: random, source data size, task embedding,
same family, label-name overlap."""

from __future__ import annotations

import hashlib

import numpy as np

from transferbench.errors import TransferbenchError
from transferbench.indicators.embedding_similarity import cosine
from transferbench.indicators.skill_overlap import jaccard
from transferbench.scoring.indicator import Indicator


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


class LabelOverlap(Indicator):
    """Jaccard overlap `|L_s ∩ L_t| / |L_s ∪ L_t|` of the two tasks' label-name sets, no model.

    The label names are the task cards' class names (the values of their `labels` field, e.g.
    {negative, positive}), compared as exact strings: every binary sentiment task scores 1 against
    another, {entailment, not_entailment} against {entailment, neutral, contradiction} 1/4.
    Transfer on the default suite is largely "the same distinction": this shortcut alone ranks
    first or second in every transfer kind of the default board, so an indicator must beat it.

    Class names rather than verbalizer words: the names say which distinction a task draws; the
    words are each card's choice of synonyms for the prompt's output head, and can coincide for
    different distinctions (snli_contradiction's words {no, yes} are two of snli's three, while
    only one of its classes, contradiction, is one of snli's). On the default reference the two
    give nearly the same mean rho (docs/reference_v2_candidates.md).
    """

    description = "Jaccard overlap of the two tasks' label-name sets (no model)"
    baseline = True
    kind = "baseline"

    def score(self, source, target) -> float:
        for view in (source, target):
            if not view.label_names:
                raise TransferbenchError(f"task {view.name!r} has no label names in its view; build TaskViews "
                                         "with label_names=spec.label_names")
        vocabulary = sorted(set(source.label_names) | set(target.label_names))
        return jaccard(np.isin(vocabulary, source.label_names), np.isin(vocabulary, target.label_names))
