"""Neuron rankings for a task's label: skill neurons (Wang et al., EMNLP 2022) and a linear probe.

Stage 3 of the pipeline turns activations at the soft-prompt and [MASK] positions into per-neuron scores;
the `skill_overlap` indicator and `transferbench neurons` read them. `probe_ranking` ranks neurons
the NeuroX way instead (Durrani et al. 2020), by the weights of an elastic-net logistic probe.
"""

from __future__ import annotations

import numpy as np
import torch

from transferbench.errors import TransferbenchError

# Fraction of each layer's FFN neurons selected as skill neurons by default. Wang et al. select a
# few percent per layer; 5% is our choice (a benchmark parameter, overridable with `p=`).
DEFAULT_FRACTION = 0.05


def _as_tensor(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array).float()


def predictivity(train_activations, eval_activations, eval_labels) -> np.ndarray:
    """Per-neuron skill scores `s[l, i]`, shape `[layers, ffn_width]`.

    Wang et al. (EMNLP 2022), "Finding Skill Neurons in Pre-trained Transformer-based Language
    Models", Sec. 3, with activations `a[l,t,i](x)` at scored position t (the prompt positions and
    [MASK], as the reference code; which positions is the caller's choice, see
    `transferbench.pipeline.units.skill_positions`):

    - threshold: `theta[l,t,i] = mean over train_activations of a[l,t,i](x)`
    - the paper's accuracy on the eval split: `Acc[l,t,i] = mean_x 1[ 1[a[l,t,i](x) > theta[l,t,i]] == y ]`
    - score: `s[l,i] = max_t max(Acc, 1 - Acc) - 0.5 = max_t |Acc - 0.5|` (a neuron may be
      negatively predictive).

    Accuracy is balanced accuracy, `BalAcc = (TPR + TNR) / 2` of predicting `y == 1` from the
    firing indicator. On a split with equally many examples of both classes it *is* the paper's
    plain accuracy (Wang et al. probe balanced binary (sub)tasks); on an imbalanced split plain
    accuracy rewards neurons that rarely fire (92/8 labels: a neuron that never fires has
    Acc = 0.92, score 0.42, above a neuron with TPR = TNR = 0.8 at 0.30), balanced accuracy does
    not (0 and 0.30).

    Multi-class labels (our generalisation, the paper splits tasks into binary subtasks): for each
    class c, one-vs-rest balanced accuracy of predicting `y == c`, and
    `s[l,i] = max_c max_t |BalAcc_c - 0.5|`. For two classes both one-vs-rest problems give the
    same score, so this is one formula for every task.

    Arguments are arrays shaped `[examples, layers, positions, ffn_width]` and labels
    `[examples]`. The threshold uses no labels, so it may come from the prompt's training data
    (the reference code, THU-KEG/Skill-Neuron `src/probe.py`, takes it from the train split);
    the accuracy examples must be disjoint from the prompt's training data.
    """
    train = _as_tensor(train_activations)
    evaluation = _as_tensor(eval_activations)
    labels = torch.as_tensor(np.asarray(eval_labels)).long()
    if train.dim() != 4 or evaluation.dim() != 4 or train.shape[1:] != evaluation.shape[1:]:
        raise TransferbenchError(
            "predictivity: activations must be [examples, layers, positions, ffn_width] "
            f"with equal trailing shapes (got {tuple(train.shape)} and {tuple(evaluation.shape)})"
        )
    if labels.shape != (evaluation.shape[0],):
        raise TransferbenchError(
            f"predictivity: {labels.shape[0]} labels for {evaluation.shape[0]} eval examples"
        )
    theta = train.mean(0)
    fires = (evaluation > theta).float()  # [N, L, T, F]
    classes = torch.unique(labels)
    if len(classes) < 2:
        raise TransferbenchError("predictivity: the eval split holds a single class; scores are undefined")
    best = torch.zeros(fires.shape[1], fires.shape[3])
    for c in classes.tolist():
        positive = labels == c
        tpr = fires[positive].mean(0)
        tnr = 1.0 - fires[~positive].mean(0)
        balanced = (tpr + tnr) / 2
        best = torch.maximum(best, (balanced - 0.5).abs().amax(dim=1))
    return best.numpy()


def neuron_fraction(p: float) -> float:
    """`p` as a float in (0, 1], the share of neurons an indicator selects; ValueError otherwise
    (the indicator registry turns it into one line naming the indicator)."""
    try:
        fraction = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"p must be a number in (0, 1], e.g. p=0.05, got {p!r}") from None
    if not 0 < fraction <= 1:
        raise ValueError(f"p must be in (0, 1], got {p!r}")
    return fraction


def select(scores: np.ndarray, fraction: float = DEFAULT_FRACTION, per_layer: bool = True) -> np.ndarray:
    """Boolean mask `[layers, ffn_width]` of skill neurons: the top `floor(fraction * ffn_width)`
    neurons of each layer (the original code's per-layer selection), or with `per_layer=False`
    the top `floor(fraction * layers * ffn_width)` over all layers. Ties break by neuron index."""
    if not 0 < fraction <= 1:
        raise TransferbenchError(f"skill-neuron fraction p must be in (0, 1], got {fraction}")
    scores = np.asarray(scores)
    mask = np.zeros(scores.shape, dtype=bool)
    if per_layer:
        count = max(1, int(np.floor(fraction * scores.shape[1] + 1e-9)))
        for layer in range(scores.shape[0]):
            top = np.argsort(-scores[layer], kind="stable")[:count]
            mask[layer, top] = True
    else:
        count = max(1, int(np.floor(fraction * scores.size + 1e-9)))
        top = np.argsort(-scores.ravel(), kind="stable")[:count]
        mask.ravel()[top] = True
    return mask


def probe_ranking(activations, labels, l1: float, l2: float, max_iter: int = 5000) -> np.ndarray:
    """Neuron indices ranked by the weights of an elastic-net logistic probe, most important first.

    Durrani et al. 2020, "Analyzing Individual Neurons in Pre-trained Language Models" (EMNLP),
    Sec. 2, as in NeuroX: train a logistic-regression probe `softmax(W a + b)` on activations `a`
    by minimising

        mean_x CE(y, softmax(W a(x) + b)) + l1 ||W||_1 + l2 ||W||_2^2

    (the bias is not penalised), and rank neuron i by its weight mass `sum_c |W[c, i]|`. NeuroX
    (`neurox/interpretation/linear_probe.py`, `get_neuron_ordering`) instead adds, at increasing
    fractions of each class's weight mass, the neurons needed to reach it; ours is the plain total,
    a simpler ordering that agrees on which neurons carry the weight. Ties break by neuron index.
    With two classes scikit-learn fits a single weight vector (sigmoid), the usual binary form.

    scikit-learn's objective is `C sum_x CE + r ||W||_1 + (1 - r)/2 ||W||_2^2`; dividing ours by
    `l1 + 2 l2` gives it with `r = l1 / (l1 + 2 l2)` and `C = 1 / (n (l1 + 2 l2))`. Activations
    are used as given (no standardisation), like NeuroX's probe; scale them first if the neurons'
    ranges differ and that should not count.

    `activations`: `[examples, neurons]`; `labels`: `[examples]` (any hashable class labels, at
    least two classes). `l1, l2 >= 0`, not both zero (an unpenalised probe does not converge on
    separable data). `max_iter` caps saga's epochs (it stops earlier at tolerance 1e-6); a cap
    below convergence gives the ranking of a partly fitted probe, a cost bound that the caller
    states (see `transferbench.pipeline.units.probe_ranking_unit`).
    """
    # scikit-learn rather than a torch probe: saga solves this convex problem to a tolerance,
    # deterministically for a fixed random_state, with no learning rate or epoch count to choose.
    import sklearn
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(activations, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise TransferbenchError(
            f"probe_ranking: activations must be [examples, neurons] with one label each "
            f"(got {x.shape} and {y.shape} labels)"
        )
    if len(np.unique(y)) < 2:
        raise TransferbenchError("probe_ranking: the labels hold a single class; a probe needs two or more")
    if l1 < 0 or l2 < 0 or l1 + l2 == 0:
        raise TransferbenchError(f"probe_ranking: l1 and l2 must be >= 0 and not both 0 (got l1={l1}, l2={l2})")
    strength = l1 + 2 * l2
    options = dict(C=1.0 / (x.shape[0] * strength), l1_ratio=l1 / strength, solver="saga",
                   max_iter=max_iter, tol=1e-6, random_state=0)
    # scikit-learn 1.8 deprecated `penalty` (l1_ratio alone selects the elastic net); before 1.8
    # l1_ratio is ignored unless penalty="elasticnet".
    if tuple(int(part) for part in sklearn.__version__.split(".")[:2]) < (1, 8):
        options["penalty"] = "elasticnet"
    probe = LogisticRegression(**options).fit(x, y)
    weight_mass = np.abs(probe.coef_).sum(axis=0)
    return np.argsort(-weight_mass, kind="stable")
