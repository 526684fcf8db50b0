"""Skill neurons (Wang et al., EMNLP 2022): per-neuron predictivity of a task's label.

Stage 3 of the pipeline turns activations at the soft-prompt positions into per-neuron scores;
the `skill_overlap` indicator and `transferbench neurons` read them.
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
    Models", Sec. 3, with activations `a[l,t,i](x)` at soft-prompt position t:

    - threshold: `theta[l,t,i] = mean over train_activations of a[l,t,i](x)`
    - accuracy on the disjoint eval split: `Acc[l,t,i] = mean_x 1[ 1[a[l,t,i](x) > theta[l,t,i]] == y ]`
    - score: `s[l,i] = max_t max(Acc, 1 - Acc) - 0.5 = max_t |Acc - 0.5|` (a neuron may be
      negatively predictive).

    Multi-class labels (our generalisation, the paper splits tasks into binary subtasks): for each
    class c, one-vs-rest with *balanced* accuracy `(TPR + TNR) / 2` of predicting `y == c` from the
    firing indicator, and `s[l,i] = max_c max_t |BalAcc_c - 0.5|`. With two classes we use the
    paper's plain accuracy.

    Arguments are arrays shaped `[examples, layers, prompt_positions, ffn_width]` and integer
    labels `[examples]`. The caller must pass activations of examples disjoint from each other and
    from the prompt's training data (the original code leaks here; we do not).
    """
    train = _as_tensor(train_activations)
    evaluation = _as_tensor(eval_activations)
    labels = torch.as_tensor(np.asarray(eval_labels)).long()
    if train.dim() != 4 or evaluation.dim() != 4 or train.shape[1:] != evaluation.shape[1:]:
        raise TransferbenchError(
            "predictivity: activations must be [examples, layers, prompt_positions, ffn_width] "
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
    if len(classes) == 2 and set(classes.tolist()) <= {0, 1}:
        y = labels.float().view(-1, 1, 1, 1)
        acc = (fires == y).float().mean(0)
        return (acc - 0.5).abs().amax(dim=1).numpy()
    best = torch.zeros(fires.shape[1], fires.shape[3])
    for c in classes.tolist():
        positive = labels == c
        tpr = fires[positive].mean(0)
        tnr = 1.0 - fires[~positive].mean(0)
        balanced = (tpr + tnr) / 2
        best = torch.maximum(best, (balanced - 0.5).abs().amax(dim=1))
    return best.numpy()


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
