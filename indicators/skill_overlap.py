"""Skill-neuron overlap: do the two tasks' prompts rely on the same FFN neurons?"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from transferbench.indicator import Indicator, register_indicator
from transferbench.neurons import DEFAULT_FRACTION, select


def jaccard(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Jaccard index `|A ∩ B| / |A ∪ B|` of two neuron sets given as boolean masks."""
    union = np.logical_or(mask_a, mask_b).sum()
    return float(np.logical_and(mask_a, mask_b).sum() / union) if union else 0.0


@register_indicator("skill_overlap")
class SkillOverlap(Indicator):
    """Overlap of the skill neurons (Wang et al., EMNLP 2022) of the source and target prompts.

    `measure="jaccard"`: Jaccard index of the selected sets (top fraction `p` of each layer, or of
    all neurons with `selection="global"`). `measure="weighted"`: Spearman correlation of the two
    tasks' full predictivity score vectors (no selection).
    """

    requires = ("skill_scores",)
    description = "overlap of skill neurons (Wang et al. 2022) selected at the prompt positions"

    def __init__(self, p: float = DEFAULT_FRACTION, selection: str = "per_layer", measure: str = "jaccard"):
        if selection not in ("per_layer", "global"):
            raise ValueError(f"selection must be 'per_layer' or 'global', got {selection!r}")
        if measure not in ("jaccard", "weighted"):
            raise ValueError(f"measure must be 'jaccard' or 'weighted', got {measure!r}")
        self.p = float(p)
        if not 0 < self.p <= 1:
            raise ValueError(f"p must be in (0, 1], got {p!r}")
        self.selection = selection
        self.measure = measure

    def score(self, source, target) -> float:
        a, b = source.skill_scores, target.skill_scores
        if self.measure == "weighted":
            return float(spearmanr(a.ravel(), b.ravel()).statistic)
        per_layer = self.selection == "per_layer"
        return jaccard(select(a, self.p, per_layer), select(b, self.p, per_layer))
