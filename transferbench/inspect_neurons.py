"""`transferbench neurons`: look at (and export) one task's skill neurons.

Reads stage-3 artifacts only: the task's prompts are trained (or loaded from the cache) and its
skill-neuron scores computed by `Benchmark.skill_neurons`; selection is `transferbench.neurons.select`,
the same function the `skill_overlap` indicator uses.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from transferbench.errors import TransferbenchError


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one integer, e.g. --seeds 0")
    return seeds


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `neurons` subcommand to the `transferbench` subparsers."""
    from transferbench.neurons import DEFAULT_FRACTION

    parser = subparsers.add_parser(
        "neurons", help="show one task's skill neurons (top neurons, per-layer summary) and export them",
        description="Train (or load) the task's prompts, score every FFN neuron's predictivity of the label "
                    "(Wang et al., EMNLP 2022), and show the selected skill neurons.",
    )
    parser.add_argument("--task", required=True, help="task name (must be in the suite)")
    parser.add_argument("--suite", default="default", help="task suite name or YAML path (default: %(default)s)")
    parser.add_argument("--backbone", default="minilm",
                        help="packaged alias, Hugging Face id or local path (default: %(default)s)")
    parser.add_argument("--seeds", type=_seed_list, default=None,
                        help="prompt-tuning seeds, e.g. 0,1 (default: the suite's seeds); scores are averaged")
    parser.add_argument("--top", type=int, default=20, help="how many of the best neurons to list (default: %(default)s)")
    parser.add_argument("--p", type=float, default=DEFAULT_FRACTION,
                        help="fraction of neurons selected, per layer unless --global (default: %(default)s)")
    parser.add_argument("--global", dest="global_selection", action="store_true",
                        help="select the top fraction over all layers instead of per layer")
    parser.add_argument("--export", type=Path, default=None, metavar="DIR",
                        help="write thresholds, scores and the selection mask as .npy files plus a README.md to DIR")
    return parser


def run(args: argparse.Namespace, console: Console) -> int:
    """Compute, print and optionally export one task's skill neurons; returns the exit status."""
    import numpy as np

    from transferbench.neurons import select
    from transferbench.registry import did_you_mean
    from transferbench.runner import Benchmark
    from transferbench.task import load_suite

    if args.top < 1:
        raise TransferbenchError(f"--top must be at least 1, got {args.top}")
    if not 0 < args.p <= 1:
        raise TransferbenchError(f"--p (the fraction of neurons selected) must be in (0, 1], got {args.p}")
    per_layer = not getattr(args, "global_selection", False)
    suite = load_suite(str(args.suite))
    seeds = list(args.seeds) if args.seeds is not None else list(suite.seeds)
    bench = Benchmark(suite, str(args.backbone), seeds, console=Console(stderr=True))
    if args.task not in bench.tasks:
        raise TransferbenchError(
            f"task {args.task!r} is not in suite {suite.name!r}{did_you_mean(args.task, list(bench.tasks))}"
        )

    with bench.progress():
        # Train (or load) the prompts first: `skill_neurons` computes activations under
        # torch.no_grad, where a prompt cannot be trained lazily.
        for seed in seeds:
            bench.source_prompt(args.task, seed)
        per_seed = [bench.skill_neurons(args.task, seed) for seed in seeds]
    seed_scores = [entry["scores"].numpy() for entry in per_seed]
    scores = np.mean(seed_scores, axis=0)
    mask = select(scores, args.p, per_layer)

    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean over seeds {', '.join(map(str, seeds))}"
    console.print(f"[bold]Skill neurons of {args.task}[/] on {args.backbone}: {seed_text}; "
                  f"{scores.shape[0]} layers x {scores.shape[1]} FFN neurons, both indexed from 0")
    _print_top(console, scores, args.top)
    _print_layers(console, scores, mask, args.p, per_layer)
    if args.export is not None:
        _export(args.export, per_seed, seed_scores, scores, mask, seeds=seeds, task=args.task, suite=suite,
                bench=bench, fraction=args.p, per_layer=per_layer)
        console.print(f"wrote {args.export}")
    return 0


def _print_top(console: Console, scores, top: int) -> None:
    import numpy as np

    order = np.argsort(-scores.ravel(), kind="stable")[:top]
    table = Table(title=f"Top {len(order)} neurons", title_justify="left")
    for column in ("rank", "layer", "neuron", "score"):
        table.add_column(column, justify="right")
    for rank, flat in enumerate(order, start=1):
        layer, neuron = np.unravel_index(flat, scores.shape)
        table.add_row(str(rank), str(layer), str(neuron), f"{scores[layer, neuron]:.4f}")
    console.print(table)


def _print_layers(console: Console, scores, mask, fraction: float, per_layer: bool) -> None:
    how = "of each layer" if per_layer else "over all layers"
    table = Table(title=f"Per layer (selected: top {fraction:g} {how})", title_justify="left")
    for column in ("layer", "selected", "mean score (selected)", "mean score (all)"):
        table.add_column(column, justify="right")
    for layer in range(scores.shape[0]):
        chosen = scores[layer][mask[layer]]
        selected_mean = f"{chosen.mean():.4f}" if chosen.size else "-"
        table.add_row(str(layer), str(int(mask[layer].sum())), selected_mean, f"{scores[layer].mean():.4f}")
    console.print(table)


def _export(folder: Path, per_seed: list[dict[str, Any]], seed_scores: list, scores, mask, *, seeds: list[int],
            task: str, suite, bench, fraction: float, per_layer: bool) -> None:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    thresholds = [entry["thresholds"].numpy().astype(np.float32) for entry in per_seed]
    np.save(folder / "thresholds.npy", np.stack(thresholds))
    for seed, array in zip(seeds, thresholds):
        np.save(folder / f"thresholds_seed{seed}.npy", array)
    np.save(folder / "scores.npy", scores.astype(np.float32))
    for seed, array in zip(seeds, seed_scores):
        np.save(folder / f"scores_seed{seed}.npy", array.astype(np.float32))
    np.save(folder / "mask.npy", mask.astype(bool))
    layers, prompt_length, ffn = thresholds[0].shape
    (folder / "README.md").write_text(_readme(
        task=task, suite=suite, bench=bench, seeds=seeds, fraction=fraction, per_layer=per_layer,
        layers=layers, prompt_length=prompt_length, ffn=ffn, selected=int(mask.sum()),
    ))


def _readme(*, task: str, suite, bench, seeds: list[int], fraction: float, per_layer: bool,
            layers: int, prompt_length: int, ffn: int, selected: int) -> str:
    n = len(seeds)
    seed_text = ", ".join(map(str, seeds))
    identity = bench.backbone_identity()
    dev_size = len(bench.data(task).dev)
    selection = (f"the top `floor({fraction:g} * {ffn})` neurons of each layer (at least 1)" if per_layer
                 else f"the top `floor({fraction:g} * {layers * ffn})` neurons over all layers (at least 1)")
    call = f"select(scores, {fraction!r}, per_layer={per_layer})"
    precision = "computed under bfloat16 autocast" if bench.config.bf16 else "computed in float32"
    return f"""# Skill neurons of task `{task}`

Exported by `transferbench neurons --task {task}`. Skill neurons after Wang et al. (EMNLP 2022),
"Finding Skill Neurons in Pre-trained Transformer-based Language Models"; the code is
`transferbench.neurons.predictivity` (scores) and `transferbench.neurons.select` (mask).

| | |
|---|---|
| task | `{task}` (version {bench.tasks[task].version}, data hash `{bench.data(task).data_hash}`) |
| suite | `{suite.name}` (train {suite.sizes_for(task).train} / dev {dev_size} / test {suite.sizes_for(task).test} examples, split seed {suite.split_seed}) |
| backbone | `{identity['backbone']}` (revision `{identity['revision']}`) |
| prompt-tuning seeds | {seed_text} |
| layers x prompt positions x FFN width | {layers} x {prompt_length} x {ffn} |
| selection | {selection}: {selected} neurons |

## Files

All arrays are NumPy `.npy` files (`numpy.load`). Layers are indexed from 0; `prompt_length` is the
number of soft-prompt tokens.

| file | shape | dtype | what |
|---|---|---|---|
| `thresholds.npy` | `[{n}, {layers}, {prompt_length}, {ffn}]` = `[seeds, layers, prompt_length, ffn_width]` | float32 | the per-seed thresholds below, stacked in seed order ({seed_text}) |
| `thresholds_seed{{k}}.npy` | `[{layers}, {prompt_length}, {ffn}]` = `[layers, prompt_length, ffn_width]` | float32 | `theta[l,t,i]` for the prompt trained with seed k |
| `scores_seed{{k}}.npy` | `[{layers}, {ffn}]` = `[layers, ffn_width]` | float32 | skill score `s[l,i]` for the prompt trained with seed k |
| `scores.npy` | `[{layers}, {ffn}]` | float32 | mean of `scores_seed{{k}}.npy` over the seeds (what `skill_overlap` uses) |
| `mask.npy` | `[{layers}, {ffn}]` | bool | the selected skill neurons: `{call}` |

## How they were computed

1. For each seed k, a soft prompt of {prompt_length} tokens is tuned on the task's **train** split with the
   backbone frozen (or loaded from the transferbench cache).
2. The task's **dev** split ({dev_size} examples; disjoint from train, used in training only to pick the
   best checkpoint, never for gradient steps) is run through the backbone with that prompt.
   `a[l,t,i](x)` is the output of the feed-forward intermediate layer (after the activation
   function) of layer l, neuron i, at soft-prompt position t, {precision}. The dev split is
   divided in two disjoint halves by position in the split: the **even-indexed** examples
   (0, 2, 4, ...) and the **odd-indexed** ones (1, 3, 5, ...).
3. Threshold: `theta[l,t,i] = mean of a[l,t,i](x) over the even-indexed dev examples`.
4. Accuracy on the odd-indexed dev examples (labels y):
   `Acc[l,t,i] = mean over x of 1[ 1[a[l,t,i](x) > theta[l,t,i]] == y ]`.
   For two classes this is the paper's plain accuracy; with more classes we use one-vs-rest balanced
   accuracy per class and take the maximum over classes (see the docstring of `predictivity`).
5. Score: `s[l,i] = max over t of |Acc[l,t,i] - 0.5|` (= `max(Acc, 1 - Acc) - 0.5`; a neuron may be
   negatively predictive).
6. `scores` = mean of `s` over the seeds; `mask` = {selection}, ties broken by the lower neuron index.

To recompute them from the dev-split activations `acts` `[examples, layers, prompt_length, ffn_width]`
and labels:

```python
from transferbench.neurons import predictivity, select
from transferbench.runner import Benchmark
from transferbench.task import load_suite

bench = Benchmark(load_suite({str(suite.yaml_path or suite.name)!r}), {identity['backbone']!r}, seeds=[k])
acts = bench.prompt_position_activations({task!r}, k, "dev")  # train/load the prompt first: bench.source_prompt({task!r}, k)
labels = bench.encoded({task!r}, "dev").labels

theta = acts[0::2].mean(0)                                   # thresholds_seed{{k}}.npy
s = predictivity(acts[0::2], acts[1::2], labels[1::2])      # scores_seed{{k}}.npy
mask = {call.replace("scores", "mean_of_s_over_seeds")}
```
"""
