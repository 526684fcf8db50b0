"""Probe-neuron overlap: do linear probes on the two tasks' prompts rank the same neurons first?"""

from __future__ import annotations

import numpy as np

from transferbench.indicators.skill_overlap import jaccard
from transferbench.model.neurons import DEFAULT_FRACTION, neuron_fraction, select
from transferbench.scoring.indicator import Indicator


class ProbeOverlap(Indicator):
    """Jaccard index of the top-`p` neurons of the source and target probe rankings, NeuroX-style
    (Durrani et al., EMNLP 2020; `transferbench.model.neurons.probe_ranking`), averaged over seeds.

    The `probe_ranking` artifact ranks each task's FFN neurons by the weights of an elastic-net
    logistic probe on their activations (averaged over the prompt positions) with the task's own
    prompt. `selection="per_layer"` takes the top `floor(p * ffn_width)` of each layer (as
    `skill_overlap` does), `"global"` the top `floor(p * layers * ffn_width)` overall.
    """

    requires = ("probe_ranking",)
    kind = "neuron"
    description = "Jaccard of the top-p neurons of elastic-net probes (NeuroX-style, Durrani et al. 2020)"

    def __init__(self, p: float = DEFAULT_FRACTION, selection: str = "per_layer"):
        if selection not in ("per_layer", "global"):
            raise ValueError(f"selection must be 'per_layer' or 'global', got {selection!r}")
        self.p = neuron_fraction(p)
        self.selection = selection

    def score(self, source, target) -> float:
        per_layer = self.selection == "per_layer"
        # rank 0 is the most important neuron: select the top of -rank (stable ties never occur)
        return float(np.mean([jaccard(select(-a, self.p, per_layer), select(-b, self.p, per_layer))
                              for a, b in zip(source.probe_ranking, target.probe_ranking)]))
