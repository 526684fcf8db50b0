"""Skill-neuron analyses that reproduce the checks of Wang et al. (EMNLP 2022) on our prompts.

Reads stage-3 artifacts (a task's prompt and its skill-neuron scores) and the frozen backbone:
perturbing skill neurons versus random ones, overlap of skill neurons across tasks (specificity),
where in the network skill neurons live, and pruning the FFN layers down to their skill neurons.
`transferbench neurons --perturb / --specificity / --prune` drives it and writes a report folder.

Over 400 lines because its four analyses (perturbation, specificity, layer distribution, pruning)
reproduce one section of Wang et al. and share the model-surgery helpers above them.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from transferbench.errors import TransferbenchError
from transferbench.model.backbone import Backbone
from transferbench.model.neurons import select
from transferbench.model.prompt import EncodedSplit, PromptConfig, Verbalizer, predict, split_accuracy

PERTURB_FRACTIONS = (0.01, 0.02, 0.05, 0.1)
PRUNE_FRACTIONS = (0.1, 0.3, 0.5)
NOISE_STD = 0.1  # Wang et al.'s Gaussian perturbation
RANDOM_DRAWS = 5
PERMUTATIONS = 10_000


# ---------------------------------------------------------------------------------------------
# Perturbation


def _layer_indices(mask: np.ndarray) -> list[torch.Tensor]:
    return [torch.from_numpy(np.flatnonzero(row)).long() for row in np.asarray(mask, dtype=bool)]


@contextmanager
def perturb_neurons(backbone: Backbone, mask: np.ndarray, mode: str, *, std: float = NOISE_STD,
                    seed: int = 0) -> Iterator[None]:
    """Perturb the FFN neurons selected by `mask` (`[layers, ffn_width]`, bool) while inside the block.

    `mode="noise"` adds Gaussian noise `N(0, std^2)` to their activations, `mode="zero"` sets them to
    zero (Wang et al., EMNLP 2022, Sec. 4). A forward hook on each layer's FFN `intermediate`
    module (output after the activation function) changes its output in place, at every sequence
    position (prompt, [MASK] and text tokens alike: a neuron is perturbed wherever it fires).

    Noise as the reference code draws it (THU-KEG/Skill-Neuron, `src/modelzoo.py`,
    `BaseModel.addmask`, type "gaussian": `randn([batch, width]) * alpha`, added as
    `bias.unsqueeze(dim = 1)`): **one** noise vector per example and layer, shared by every
    position of that example, `a[x, pos, i] += std * z[x, i]` with `z ~ N(0, 1)`; not independent
    noise per position. The noise comes from a `torch.Generator` seeded with `seed`, so a run is
    reproducible; the hooks are removed when the block exits, even on an error.
    """
    if mode not in ("noise", "zero"):
        raise TransferbenchError(f"perturbation mode must be 'noise' or 'zero', got {mode!r}")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (backbone.num_layers, backbone.ffn_width):
        raise TransferbenchError(
            f"neuron mask has shape {mask.shape}; expected [layers, ffn_width] = "
            f"{(backbone.num_layers, backbone.ffn_width)}")
    generator = torch.Generator().manual_seed(seed)

    def hook(indices: torch.Tensor):
        def perturb(_module, _inputs, output):
            if mode == "zero":
                output[..., indices] = 0
            else:
                # [batch, 1, neurons]: the same draw at every position of an example
                noise = torch.randn((output.shape[0], 1, len(indices)), generator=generator) * std
                output[..., indices] += noise.to(device=output.device, dtype=output.dtype)
            return output

        return perturb

    handles = [module.register_forward_hook(hook(indices))
               for module, indices in zip(backbone.ffn_modules, _layer_indices(mask)) if len(indices)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def random_mask(shape: tuple[int, int], per_layer: int, seed: int) -> np.ndarray:
    """`per_layer` neurons drawn uniformly without replacement in each layer (seeded)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=bool)
    for layer in range(shape[0]):
        mask[layer, rng.choice(shape[1], size=per_layer, replace=False)] = True
    return mask


def perturbation_test(backbone: Backbone, prompt: torch.Tensor, split: EncodedSplit, verbalizer: Verbalizer,
                      config: PromptConfig, scores: np.ndarray, *, fractions: Sequence[float] = PERTURB_FRACTIONS,
                      draws: int = RANDOM_DRAWS, std: float = NOISE_STD, seed: int = 0) -> pd.DataFrame:
    """Accuracy of `prompt` on `split` with skill neurons or random neurons perturbed.

    For each fraction p, the skill neurons are `select(scores, p)` (top `floor(p * ffn_width)` per
    layer); the control perturbs the same number of neurons per layer drawn at random, `draws`
    times (random draw d uses seed `seed + d`; random neurons may include skill neurons). One row
    per (p, mode, neurons) with the mean and std of accuracy over draws (std 0 for skill neurons).
    """
    def score(mask: np.ndarray, mode: str, noise_seed: int) -> float:
        with perturb_neurons(backbone, mask, mode, std=std, seed=noise_seed):
            return split_accuracy(backbone, prompt, split, verbalizer, config)

    rows = []
    for p in fractions:
        skill = select(scores, p, per_layer=True)
        count = int(skill[0].sum())
        for mode in ("noise", "zero"):
            rows.append({"p": p, "per_layer": count, "mode": mode, "neurons": "skill", "draws": 1,
                         "accuracy": score(skill, mode, seed), "accuracy_std": 0.0})
            accs = [score(random_mask(scores.shape, count, seed + d), mode, seed + d) for d in range(draws)]
            rows.append({"p": p, "per_layer": count, "mode": mode, "neurons": "random", "draws": draws,
                         "accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs))})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Where skills live


def layer_summary(scores: np.ndarray, fraction: float) -> pd.DataFrame:
    """Per layer: how many of the top `fraction` of all neurons (global selection) sit in the layer,
    and the mean score of all its neurons and of its own top `fraction` (per-layer selection).

    Per-layer selection puts the same count in every layer by construction, so the count that says
    where skills live is the global one.
    """
    global_mask = select(scores, fraction, per_layer=False)
    local_mask = select(scores, fraction, per_layer=True)
    return pd.DataFrame({
        "layer": np.arange(scores.shape[0]),
        "skill_neurons": global_mask.sum(1),
        "share": global_mask.sum(1) / global_mask.sum(),
        "mean_score": scores.mean(1),
        "mean_score_top": np.array([scores[l][local_mask[l]].mean() for l in range(scores.shape[0])]),
        "max_score": scores.max(1),
    })


# ---------------------------------------------------------------------------------------------
# Task specificity


def order_by_family(tasks: Sequence[str], families: dict[str, str]) -> list[str]:
    """Tasks grouped by family (families in order of first appearance, tasks in suite order)."""
    first = {}
    for task in tasks:
        first.setdefault(families[task], len(first))
    return sorted(tasks, key=lambda t: first[families[t]])


def overlap_matrix(scores: dict[str, np.ndarray], fraction: float, order: Sequence[str]) -> pd.DataFrame:
    """Jaccard index of the per-layer skill-neuron selections `select(s, fraction)` of every pair of tasks."""
    from transferbench.indicators.skill_overlap import jaccard

    masks = {task: select(scores[task], fraction, per_layer=True) for task in order}
    return pd.DataFrame([[jaccard(masks[a], masks[b]) for b in order] for a in order],
                        index=list(order), columns=list(order))


def specificity_statistic(overlap: pd.DataFrame, families: dict[str, str], *, permutations: int = PERMUTATIONS,
                          seed: int = 0) -> dict[str, float]:
    """Mean same-family overlap vs mean cross-family overlap, with a one-sided permutation p-value.

    Over unordered pairs of distinct tasks: `difference = mean(same family) - mean(cross family)`.
    Null: family labels are exchangeable; the p-value is `(1 + #{perm: difference >= observed}) /
    (1 + permutations)` with labels shuffled over tasks (numpy generator seeded with `seed`).
    NaN when the suite has no same-family pair or no cross-family pair.
    """
    tasks = list(overlap.index)
    values = overlap.to_numpy(dtype=float)
    upper = np.triu_indices(len(tasks), k=1)
    pair_values = values[upper]
    codes = np.unique([families[t] for t in tasks], return_inverse=True)[1]

    def difference(labels: np.ndarray) -> float:
        same = (labels[:, None] == labels[None, :])[upper]
        if same.all() or not same.any():
            return float("nan")
        return float(pair_values[same].mean() - pair_values[~same].mean())

    same = (codes[:, None] == codes[None, :])[upper]
    observed = difference(codes)
    result = {"same_family": float(pair_values[same].mean()) if same.any() else float("nan"),
              "cross_family": float(pair_values[~same].mean()) if (~same).any() else float("nan"),
              "difference": observed, "p_value": float("nan"), "permutations": permutations,
              "same_pairs": int(same.sum()), "cross_pairs": int((~same).sum())}
    if np.isnan(observed):
        return result
    rng = np.random.default_rng(seed)
    null = np.array([difference(rng.permutation(codes)) for _ in range(permutations)])
    result["p_value"] = float((1 + np.sum(null >= observed - 1e-12)) / (1 + permutations))
    return result


def specificity_line(stat: dict[str, float]) -> str:
    if np.isnan(stat["difference"]):
        return ("specificity: undefined (the suite needs at least one same-family and one cross-family "
                "pair of tasks)")
    return (f"mean same-family overlap {stat['same_family']:.3f} ({stat['same_pairs']} pairs) vs mean "
            f"cross-family overlap {stat['cross_family']:.3f} ({stat['cross_pairs']} pairs): difference "
            f"{stat['difference']:+.3f}, permutation p = {stat['p_value']:.3g} ({stat['permutations']} "
            "permutations of family labels)")


# ---------------------------------------------------------------------------------------------
# Pruning


def _ffn_linears(backbone: Backbone, layer: int) -> tuple[nn.Module, str, nn.Linear, nn.Module, str, nn.Linear]:
    """(parent, name, up-projection) inside the layer's `intermediate` module and (parent, name,
    down-projection) among its siblings: the only Linear maps into / out of the FFN width."""
    width = backbone.ffn_width
    ffn = backbone.ffn_modules[layer]
    path = next(name for name, module in backbone.encoder.named_modules() if module is ffn)
    layer_path, _, ffn_name = path.rpartition(".")
    layer_module = backbone.encoder.get_submodule(layer_path) if layer_path else backbone.encoder
    ups = [n for n, m in ffn.named_modules() if isinstance(m, nn.Linear) and m.out_features == width]
    downs = [n for n, m in layer_module.named_modules()
             if isinstance(m, nn.Linear) and m.in_features == width and not n.startswith(ffn_name + ".")]
    if len(ups) != 1 or len(downs) != 1:
        raise TransferbenchError(
            f"backbone {backbone.name!r}, layer {layer}: expected one Linear into and one out of the FFN "
            f"width {width} (found {ups} in {path!r} and {downs} in {layer_path!r}); cannot prune it")

    def parts(root: nn.Module, name: str):
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        return parent, child, getattr(parent, child)

    return (*parts(ffn, ups[0]), *parts(layer_module, downs[0]))


def reference_prune_layers(num_layers: int) -> tuple[int, int]:
    """(first, last), 0-indexed and inclusive: the layers the reference code prunes, scaled to depth.

    THU-KEG/Skill-Neuron `src/prune.py` prunes layers 4-12 of roberta-base's 12 (its loop
    `for k in range(3, 12)`, 0-indexed 3..11) and leaves the bottom quarter whole. We keep the
    same share: prune the layers k with `k >= num_layers / 4`, i.e. from `ceil(num_layers / 4)` to
    the last. 12 layers: 3..11 (the reference); the packaged MiniLM's 6: 2..5 (layers 3-6 counted
    from 1), the bottom third whole since a quarter of 6 layers is 1.5.
    """
    return math.ceil(num_layers / 4), num_layers - 1


def check_layer_range(layers: tuple[int, int], num_layers: int) -> tuple[int, int]:
    """`layers` = (first, last) if `0 <= first <= last < num_layers`, else one TransferbenchError."""
    first, last = layers
    if not 0 <= first <= last < num_layers:
        raise TransferbenchError(f"pruned layers {first}-{last} are not a range of the backbone's layers "
                                 f"0-{num_layers - 1}; give FIRST-LAST with 0 <= FIRST <= LAST <= {num_layers - 1}")
    return first, last


def prune_ffn(backbone: Backbone, keep: np.ndarray, *, means: np.ndarray | None = None,
              layers: tuple[int, int] | None = None) -> Backbone:
    """A smaller copy of `backbone` whose FFN layers in `layers` keep only the neurons in `keep`.

    `keep` is `[layers, ffn]` (bool); `layers` = (first, last), 0-indexed and inclusive (default:
    every layer); layers outside the range keep every neuron. In a pruned layer the up-projection
    (e.g. BERT's `intermediate.dense`) keeps the rows, and the down-projection (`output.dense`) the
    columns, of the kept neurons, as new `nn.Linear`s of the reduced width.

    `means` (`[layers, ffn]`, e.g. the skill-neuron thresholds: mean train activations) folds each
    removed neuron's mean activation into the down-projection's bias, as the reference code
    (THU-KEG/Skill-Neuron `src/prune.py`: `outputbias + matmul(outputweight, pbias)`):

        b_out' = b_out + sum over removed i of W_out[:, i] * means[l, i]

    so a removed neuron acts as if it always output its mean. (The published script multiplies by
    the means of *all* neurons, kept ones too, although its README calls them "the fixed
    activations of non-skill neurons"; we fold the removed ones only, else a kept neuron would
    count twice.) Without `means` a removed neuron acts as if it output 0. Keeping every neuron
    reproduces the full model. The original is not modified.
    """
    keep = np.asarray(keep, dtype=bool)
    first, last = check_layer_range((0, backbone.num_layers - 1) if layers is None else layers, backbone.num_layers)
    pruned_layers = range(first, last + 1)
    if keep.shape != (backbone.num_layers, backbone.ffn_width) or not keep[first : last + 1].any(1).all():
        raise TransferbenchError("pruning mask must be [layers, ffn_width] with a kept neuron in every pruned layer")
    if means is not None:
        means = np.asarray(means, dtype=np.float64)
        if means.shape != keep.shape:
            raise TransferbenchError(f"mean activations have shape {means.shape}; expected [layers, ffn_width] = "
                                     f"{keep.shape}")
    pruned = copy.copy(backbone)  # shares the tokenizer; the weights are copied below
    pruned.model = copy.deepcopy(backbone.model)
    pruned.encoder = pruned.model.base_model if backbone.encoder is not backbone.model else pruned.model
    pruned.config = pruned.encoder.config
    pruned.ffn_modules = pruned._find_ffn_modules()
    pruned._linear_copies, pruned._linears_in = {}, None  # its own reduced-precision copies (`Backbone.linears_in`)
    widths = []
    for layer in range(pruned.num_layers):
        if layer not in pruned_layers:
            widths.append(pruned.ffn_width)
            continue
        up_parent, up_name, up, down_parent, down_name, down = _ffn_linears(pruned, layer)
        indices = torch.from_numpy(np.flatnonzero(keep[layer])).long()
        removed = torch.from_numpy(np.flatnonzero(~keep[layer])).long()
        widths.append(len(indices))
        new_up = nn.Linear(up.in_features, len(indices), bias=up.bias is not None,
                           dtype=up.weight.dtype, device=up.weight.device)
        new_down = nn.Linear(len(indices), down.out_features, bias=down.bias is not None or means is not None,
                             dtype=down.weight.dtype, device=down.weight.device)
        with torch.no_grad():
            new_up.weight.copy_(up.weight[indices])
            if up.bias is not None:
                new_up.bias.copy_(up.bias[indices])
            new_down.weight.copy_(down.weight[:, indices])
            bias = down.bias.double() if down.bias is not None else torch.zeros(down.out_features, dtype=torch.float64,
                                                                                        device=down.weight.device)
            if means is not None:
                removed_means = torch.from_numpy(means[layer]).to(bias.device)[removed.to(bias.device)]
                bias = bias + down.weight[:, removed].double() @ removed_means
            if new_down.bias is not None:
                new_down.bias.copy_(bias)
        new_up.requires_grad_(False)
        new_down.requires_grad_(False)
        setattr(up_parent, up_name, new_up)
        setattr(down_parent, down_name, new_down)
    if len(set(widths)) == 1:  # keeps `ffn_width` truthful when every layer has the same width
        pruned.config.intermediate_size = widths[0]
    return pruned


def pruning_test(backbone: Backbone, prompt: torch.Tensor, split: EncodedSplit, verbalizer: Verbalizer,
                 config: PromptConfig, scores: np.ndarray, *, means: np.ndarray | None = None,
                 fractions: Sequence[float] = PRUNE_FRACTIONS, layers: tuple[int, int] | None = None,
                 repeats: int = 3) -> pd.DataFrame:
    """Test accuracy and inference speed of the full model and of models pruned to their top-P skill neurons.

    As the reference code: the layers in `layers` (default `reference_prune_layers`, the reference's
    share of the depth) keep their top-P skill neurons, the others stay whole, and the removed
    neurons' mean activations `means` (`[layers, ffn]`, the skill-neuron thresholds averaged over
    the scored positions, as `src/prune.py` averages its `train_avg` over them) are folded into the
    output bias (`prune_ffn`). `ffn_width` is the width of the pruned layers, `ffn_params_share`
    the share of all FFN neurons (and weights) kept.

    Speed: examples per second of `predict` over the whole split (the same length-sorted batches
    for every model), models timed in turn within each of `repeats` rounds, best round kept. The
    verbalizer (label encodings of the cosine head) stays the full model's: it is part of the task's
    classifier, not of the network being pruned.
    """
    first, last = check_layer_range(reference_prune_layers(backbone.num_layers) if layers is None else layers,
                                    backbone.num_layers)
    models, kept, widths = {1.0: backbone}, {1.0: 1.0}, {1.0: backbone.ffn_width}
    for p in fractions:
        keep = select(scores, p, per_layer=True)
        keep[:first] = keep[last + 1 :] = True  # layers outside the range stay whole
        models[p] = prune_ffn(backbone, keep, means=means, layers=(first, last))
        kept[p], widths[p] = float(keep.mean()), int(keep[first].sum())
    accuracies = {p: split_accuracy(model, prompt, split, verbalizer, config)
                  for p, model in models.items()}
    best = {p: float("inf") for p in models}
    for _ in range(repeats):
        for p, model in models.items():
            start = time.perf_counter()
            predict(model, prompt, split, verbalizer, config)
            best[p] = min(best[p], time.perf_counter() - start)
    rows = []
    for p, model in models.items():
        rows.append({"P": p, "ffn_width": widths[p], "ffn_params_share": kept[p],
                     "accuracy": accuracies[p], "examples_per_s": len(split) / best[p],
                     "speedup": best[1.0] / best[p]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Figures (matplotlib Agg, no global state)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_perturbation(table: pd.DataFrame, baseline: float, path, title: str) -> None:
    figure = _figure(7.5, 4.5)
    axis = figure.add_subplot()
    styles = {("skill", "noise"): ("tab:red", "-", "o"), ("skill", "zero"): ("tab:red", "--", "s"),
              ("random", "noise"): ("tab:blue", "-", "o"), ("random", "zero"): ("tab:blue", "--", "s")}
    for (neurons, mode), (color, line, marker) in styles.items():
        rows = table[(table.neurons == neurons) & (table["mode"] == mode)].sort_values("p")
        x = rows.p.to_numpy() * 100
        axis.errorbar(x, rows.accuracy, yerr=rows.accuracy_std if neurons == "random" else None, color=color,
                      linestyle=line, marker=marker, capsize=3, label=f"{neurons} neurons, {mode}")
    axis.axhline(baseline, color="grey", linestyle=":", label="unperturbed")
    axis.set_xlabel("neurons perturbed per layer (%)")
    axis.set_ylabel("test accuracy")
    axis.set_title(title)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def plot_layers(summary: pd.DataFrame, fraction: float, path, title: str) -> None:
    figure = _figure(9, 3.8)
    left, right = figure.subplots(1, 2)
    left.bar(summary.layer, summary.skill_neurons, color="tab:red")
    left.set_xlabel("layer")
    left.set_ylabel(f"skill neurons (top {fraction:g} overall)")
    right.bar(summary.layer - 0.2, summary.mean_score, width=0.4, label="all neurons")
    right.bar(summary.layer + 0.2, summary.mean_score_top, width=0.4, label=f"top {fraction:g} of the layer")
    right.set_xlabel("layer")
    right.set_ylabel("mean skill score")
    right.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)


def plot_overlap(overlap: pd.DataFrame, families: dict[str, str], path, title: str) -> None:
    size = max(4.5, 0.6 * len(overlap) + 2.5)
    figure = _figure(size + 1, size)
    axis = figure.add_subplot()
    image = axis.imshow(overlap.to_numpy(), cmap="viridis", vmin=0, vmax=1)
    labels = [f"{t} ({families[t]})" for t in overlap.index]
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(overlap)):
        for j in range(len(overlap)):
            value = overlap.iat[i, j]
            axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                      color="black" if value > 0.6 else "white")
    figure.colorbar(image, ax=axis, label="Jaccard overlap of skill neurons")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path)


def plot_pruning(table: pd.DataFrame, path, title: str) -> None:
    figure = _figure(9, 3.8)
    left, right = figure.subplots(1, 2)
    labels = [f"{p:.0%}" for p in table.P]
    left.bar(labels, table.accuracy, color="tab:green")
    left.set_xlabel("FFN neurons kept per layer")
    left.set_ylabel("test accuracy")
    right.bar(labels, table.speedup, color="tab:purple")
    right.axhline(1.0, color="grey", linestyle=":")
    right.set_xlabel("FFN neurons kept per layer")
    right.set_ylabel("speed-up vs full model")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)


# ---------------------------------------------------------------------------------------------
# Markdown


def markdown_table(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """A GitHub Markdown table (no tabulate dependency)."""
    formats = formats or {}

    def cell(column: str, value) -> str:
        if column in formats:
            return format(value, formats[column])
        if isinstance(value, (float, np.floating)):
            return f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.to_dict("records"):  # keeps each column's type (iterrows would make ints floats)
        lines.append("| " + " | ".join(cell(c, row[c]) for c in frame.columns) + " |")
    return "\n".join(lines)


__all__ = [
    "perturb_neurons", "random_mask", "perturbation_test", "layer_summary", "order_by_family",
    "overlap_matrix", "specificity_statistic", "specificity_line", "reference_prune_layers", "prune_ffn", "pruning_test",
    "plot_perturbation", "plot_layers", "plot_overlap", "plot_pruning", "markdown_table",
]
