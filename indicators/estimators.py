"""Transferability estimators of the model-selection literature, per (source, target, seed) pair.

Each reads the `pair_outputs` artifact on the target: the frozen backbone run on the target's
training examples with the source's prompt. The formulas live in `transferbench.scoring.estimators`;
these classes only feed them and average over seeds.
"""

from __future__ import annotations

import numpy as np

from transferbench.scoring import estimators
from transferbench.scoring.indicator import Indicator, PairOutputs


class _PairEstimator(Indicator):
    """Mean over seeds of `estimate(outputs)`, one `PairOutputs` per seed (equal seeds paired)."""

    requires = ("pair_outputs",)
    kind = "estimator"

    def estimate(self, outputs: PairOutputs) -> float:
        raise NotImplementedError

    def score(self, source, target) -> float:
        return float(np.mean([self.estimate(outputs) for outputs in target.pair_outputs[source.name]]))


class LogME(_PairEstimator):
    """LogME (You et al., ICML 2021) of the source-prompted features for the target labels."""

    description = "LogME of source-prompted features on target labels (You et al. 2021)"

    def estimate(self, outputs: PairOutputs) -> float:
        return estimators.logme(outputs.features, outputs.target_labels)


class HScore(_PairEstimator):
    """H-score (Bao et al., ICIP 2019) of the source-prompted features for the target labels."""

    description = "H-score of source-prompted features on target labels (Bao et al. 2019)"

    def estimate(self, outputs: PairOutputs) -> float:
        return estimators.h_score(outputs.features, outputs.target_labels)


class LEEP(_PairEstimator):
    """LEEP (Nguyen et al., ICML 2020): the source prompt's verbalizer distribution over the
    source's labels, on target examples, as the source classifier."""

    description = "LEEP of the source prompt's label distribution on target examples (Nguyen et al. 2020)"

    def estimate(self, outputs: PairOutputs) -> float:
        probs = np.asarray(outputs.source_probs, dtype=np.float64)
        # stored in float32: renormalise so rows are distributions to float64 precision
        return estimators.leep(probs / probs.sum(1, keepdims=True), outputs.target_labels)


class NCE(_PairEstimator):
    """NCE (Tran et al., ICCV 2019) with the source prompt's hard prediction (argmax of its
    verbalizer distribution over the source's labels) on target examples."""

    description = "NCE of the source prompt's predicted labels on target examples (Tran et al. 2019)"

    def estimate(self, outputs: PairOutputs) -> float:
        return estimators.nce(np.asarray(outputs.source_probs).argmax(1), outputs.target_labels)
