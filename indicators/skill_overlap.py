"""Skill-neuron indicators: do the two tasks' prompts rely on the same FFN neurons?

`skill_on` is Wang et al.'s (EMNLP 2022) Sec. 6.2 indicator; `skill_overlap` is our variant. Both
read [MASK] (and the prompt) as the paper; their `_readout` names read where the backbone's
verbalizer reads its output (docs/indicators.md, "Read-out-aware neuron indicators").
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from transferbench.indicators.activation_overlap import check_readout, overlap_rate
from transferbench.model.neurons import DEFAULT_FRACTION, neuron_fraction, select
from transferbench.scoring.indicator import Indicator


def skill_scores_artifact(readout: str) -> str:
    """The skill scores read at [MASK] and the prompt (`readout="mask"`) or where the verbalizer reads."""
    return "skill_scores" if readout == "mask" else "skill_scores_readout"


def mask_activations_artifact(readout: str) -> str:
    """The prompt-alone activations at [MASK] (`readout="mask"`) or where the verbalizer reads."""
    return "mask_activations" if readout == "mask" else "readout_activations"


def jaccard(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Jaccard index `|A ∩ B| / |A ∪ B|` of two neuron sets given as boolean masks."""
    union = np.logical_or(mask_a, mask_b).sum()
    return float(np.logical_and(mask_a, mask_b).sum() / union) if union else 0.0


class SkillOverlap(Indicator):
    """Overlap of the two tasks' skill-neuron *sets*: our variant, not the paper's indicator.

    Skill neurons are Wang et al.'s (EMNLP 2022); their transferability indicator compares
    activation states on skill neurons (`skill_on`). This one compares which neurons are skill
    neurons. `measure="jaccard"`: Jaccard index of the selected sets (top fraction `p` of each
    layer, or of all neurons with `selection="global"`). `measure="weighted"`: Spearman
    correlation of the two tasks' full predictivity score vectors (no selection). Skill neurons are
    read at the prompt and [MASK] positions (`skill_scores`, as the reference code);
    `skill_overlap_readout` reads them where the verbalizer reads.
    """

    requires = ("skill_scores",)
    kind = "neuron"
    description = "ours: Jaccard of the two tasks' skill-neuron sets (neurons of Wang et al. 2022)"
    readout = "mask"  # where the neurons are read; a parameter of the _readout subclass only

    def __init__(self, p: float = DEFAULT_FRACTION, selection: str = "per_layer", measure: str = "jaccard"):
        if selection not in ("per_layer", "global"):
            raise ValueError(f"selection must be 'per_layer' or 'global', got {selection!r}")
        if measure not in ("jaccard", "weighted"):
            raise ValueError(f"measure must be 'jaccard' or 'weighted', got {measure!r}")
        self.p = neuron_fraction(p)
        self.selection = selection
        self.measure = measure
        self.requires = (skill_scores_artifact(self.readout),)

    def score(self, source, target) -> float:
        artifact = skill_scores_artifact(self.readout)
        a, b = getattr(source, artifact), getattr(target, artifact)
        if self.measure == "weighted":
            return float(spearmanr(a.ravel(), b.ravel()).statistic)
        per_layer = self.selection == "per_layer"
        return jaccard(select(a, self.p, per_layer), select(b, self.p, per_layer))


NEURON_SETS = ("union", "target")


class SkillOn(Indicator):
    """Wang et al. (EMNLP 2022), Sec. 6.2: Su et al.'s overlapping rate of activated neurons (ON)
    at the [MASK] position, computed on skill neurons only.

    `ON = |b_s AND b_t| / sqrt(|b_s| |b_t|)` (`activation_overlap.overlap_rate`) with
    `b = 1[a > 0]` over the selected neurons, `a` the FFN activations at [MASK] of each task's
    prompt alone (`mask_activations`), averaged over seeds. Selected neurons: the top fraction
    `p` of each layer by `skill_scores`, of both tasks (`neurons="union"`) or of the target only
    (`neurons="target"`). 0 when no selected neuron fires for one of the two prompts.

    What the reference code fixes and what we assumed: THU-KEG/Skill-Neuron dumps the activations
    this needs (`src/probe.py`, branch `probe_type == "prompt_act"`, calling
    `trainer.probe_prompt` in `src/trainer.py`, which keeps position 0 of each layer's
    intermediate output: the first [MASK] of the prompt-only `empty` dataset, per the README's
    "prompt_act" entry) but holds no code that turns them into the indicator (that branch does not
    run as published: it passes an undefined `pos`). So the binarisation at 0 is Su et al.'s ON
    (NAACL 2022, Sec. 5.2), and the union of both tasks' skill neurons (symmetric in the two
    tasks) is our assumption; `neurons="target"` is the other reading.

    `skill_on_readout` reads both the skill neurons and the activations where the backbone's
    verbalizer reads (`skill_scores_readout`, `readout_activations`) instead of at [MASK].
    """

    requires = ("skill_scores", "mask_activations")
    kind = "neuron"
    description = "ON at [MASK] restricted to skill neurons (Wang et al. 2022, Sec. 6.2)"
    readout = "mask"  # where the neurons are read; a parameter of the _readout subclass only

    def __init__(self, p: float = DEFAULT_FRACTION, neurons: str = "union"):
        if neurons not in NEURON_SETS:
            raise ValueError(f"neurons must be one of {', '.join(NEURON_SETS)}, got {neurons!r}")
        self.p = neuron_fraction(p)
        self.neurons = neurons
        self.requires = (skill_scores_artifact(self.readout), mask_activations_artifact(self.readout))

    def score(self, source, target) -> float:
        scores, activations = skill_scores_artifact(self.readout), mask_activations_artifact(self.readout)
        selected = select(getattr(target, scores), self.p)
        if self.neurons == "union":
            selected = selected | select(getattr(source, scores), self.p)
        rates = [overlap_rate(a[selected] > 0, b[selected] > 0)
                 for a, b in zip(getattr(source, activations), getattr(target, activations))]
        return float(np.mean(rates))


class SkillOverlapReadout(SkillOverlap):
    """`skill_overlap` with skill neurons read at the prompt positions and where the backbone's
    verbalizer reads its output (`readout="verbalizer"`, `skill_scores_readout`): [MASK] on a masked
    LM, as the reference code; the mean over the input's positions on a backbone with the cosine
    verbalizer (our adaptation). `readout="mask"` reads [MASK] (= `skill_overlap`)."""

    requires = ("skill_scores_readout",)
    description = "ours: skill_overlap with neurons read where the verbalizer reads ([MASK] on an MLM, else the mean)"

    def __init__(self, p: float = DEFAULT_FRACTION, selection: str = "per_layer", measure: str = "jaccard",
                 readout: str = "verbalizer"):
        self.readout = check_readout(readout)
        super().__init__(p, selection, measure)


class SkillOnReadout(SkillOn):
    """`skill_on` with skill neurons and activations read where the backbone's verbalizer reads
    (`readout="verbalizer"`): [MASK] on a masked LM, as the paper; the mean over positions with the
    cosine verbalizer (our adaptation). `readout="mask"` reads [MASK] (= `skill_on`)."""

    requires = ("skill_scores_readout", "readout_activations")
    description = "skill_on read where the verbalizer reads: [MASK] on an MLM, else the mean over positions (ours)"

    def __init__(self, p: float = DEFAULT_FRACTION, neurons: str = "union", readout: str = "verbalizer"):
        self.readout = check_readout(readout)
        super().__init__(p, neurons)
