"""`transferbench neurons`: look at (and export) one task's skill neurons.

Reads stage-3 artifacts only: the task's prompts are trained (or loaded from the cache) and its
skill-neuron scores computed by `Benchmark.skill_neurons`; selection is `transferbench.model.neurons.select`,
the same function the `skill_overlap` indicator uses.

Over 400 lines because the command, its export and its report folders describe one folder format
together; the README beside an export is package data (`templates/neurons_readme.md`), the
skill-neuron formulas are in `transferbench.model.neurons`.
"""

from __future__ import annotations

import argparse
import string
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.table import Table

from transferbench.errors import TransferbenchError

# The README written beside an export: package data, its `${name}` fields filled in by `_readme`.
_README_TEMPLATE = resources.files("transferbench.analysis").joinpath("templates/neurons_readme.md")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `neurons` subcommand to the `transferbench` subparsers."""
    from transferbench.analysis.skill_neurons import NOISE_STD, PERTURB_FRACTIONS, PRUNE_FRACTIONS, RANDOM_DRAWS
    from transferbench.model.neurons import DEFAULT_FRACTION
    from transferbench.pipeline.units import DEFAULT_SKILL_POSITIONS, SKILL_POSITION_SETS

    parser = subparsers.add_parser(
        "neurons", help="show one task's skill neurons (top neurons, per-layer summary) and export them",
        description="Train (or load) the task's prompts, score every FFN neuron's predictivity of the label "
                    "(Wang et al., EMNLP 2022), and show the selected skill neurons.",
    )
    parser.add_argument("--task", default=None, help="task name (must be in the suite); required except with "
                                                      "--specificity alone")
    parser.add_argument("--suite", default="default", help="task suite name or YAML path (default: %(default)s)")
    parser.add_argument("--backbone", default="minilm",
                        help="packaged alias, Hugging Face id or local path (default: %(default)s)")
    parser.add_argument("--seeds", default=None,
                        help="prompt-tuning seeds, e.g. 0,1 (default: the suite's seeds); scores are averaged")
    parser.add_argument("--top", type=int, default=20, help="how many of the best neurons to list (default: %(default)s)")
    parser.add_argument("--p", type=float, default=DEFAULT_FRACTION,
                        help="fraction of neurons selected, per layer unless --global (default: %(default)s)")
    parser.add_argument("--positions", choices=SKILL_POSITION_SETS, default=DEFAULT_SKILL_POSITIONS,
                        help="positions whose activations are scored: the prompt and [MASK] (as the reference "
                             "code), the prompt only, [MASK] only, or with the verbalizer's read-out in place of "
                             "[MASK] ([MASK] with an MLM head, else the mean over positions) (default: %(default)s)")
    parser.add_argument("--global", dest="global_selection", action="store_true",
                        help="select the top fraction over all layers instead of per layer")
    parser.add_argument("--export", type=Path, default=None, metavar="DIR",
                        help="write thresholds, scores and the selection mask as .npy files plus a README.md to DIR")
    analyses = parser.add_argument_group(
        "analyses (Wang et al.'s checks; see docs/skill_neurons.md)",
        "Each writes tables and PNG figures to a report folder (--report) and prints the tables.")
    analyses.add_argument("--perturb", action="store_true",
                          help="test accuracy with the top-p skill neurons of each layer perturbed (noise, zero) "
                               "versus as many random neurons per layer")
    analyses.add_argument("--fractions", type=_fraction_list, default=list(PERTURB_FRACTIONS), metavar="P,P,...",
                          help="fractions p for --perturb (default: %(default)s)")
    analyses.add_argument("--draws", type=int, default=RANDOM_DRAWS,
                          help="random-neuron draws per p for --perturb (default: %(default)s)")
    analyses.add_argument("--noise-std", type=float, default=NOISE_STD,
                          help="std of the Gaussian noise of --perturb (default: %(default)s)")
    analyses.add_argument("--specificity", action="store_true",
                          help="skill-neuron overlap (Jaccard, at --p) between all tasks of the suite, and "
                               "same-family vs cross-family overlap with a permutation p-value")
    analyses.add_argument("--prune", type=_fraction_list, nargs="?", const=list(PRUNE_FRACTIONS), default=None,
                          metavar="P,P,...",
                          help="build smaller models keeping only the top-P skill neurons of each FFN layer; report "
                               f"accuracy and speed-up (default P: {','.join(map(str, PRUNE_FRACTIONS))})")
    analyses.add_argument("--prune-layers", type=_layer_range, default=None, metavar="FIRST-LAST",
                          help="layers --prune prunes, 0-indexed and inclusive, e.g. 2-5 (default: as the reference "
                               "code, which prunes layers 4-12 of 12: from a quarter of the depth up; 2-5 for MiniLM)")
    analyses.add_argument("--report", type=Path, default=None, metavar="DIR",
                          help="report folder (default: reports/<suite>/<task>/, or reports/<suite>/specificity/)")
    analyses.add_argument("--analysis-seed", type=int, default=0,
                          help="seed of the noise, the random neurons and the permutations (default: %(default)s)")
    return parser


def _layer_range(text: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    try:
        if not dash:
            raise ValueError
        return int(first), int(last)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a layer range FIRST-LAST, e.g. 2-5, got {text!r}") from None


def _fraction_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fractions separated by commas, e.g. 0.1,0.3, got {text!r}") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must be in (0, 1], got {text!r}")
    return values


def run(args: argparse.Namespace, console: Console) -> int:
    """Compute, print and optionally export one task's skill neurons; returns the exit status."""
    import numpy as np

    from transferbench.model.neurons import select
    from transferbench.pipeline.runner import Benchmark
    from transferbench.registry import did_you_mean
    from transferbench.seeds import parse_seeds
    from transferbench.tasks import load_suite

    if args.top < 1:
        raise TransferbenchError(f"--top must be at least 1, got {args.top}")
    if not 0 < args.p <= 1:
        raise TransferbenchError(f"--p (the fraction of neurons selected) must be in (0, 1], got {args.p}")
    per_layer = not getattr(args, "global_selection", False)
    specificity = getattr(args, "specificity", False)
    if args.task is None and not specificity:
        raise TransferbenchError("--task is required (only --specificity runs without one)")
    if getattr(args, "draws", 1) < 1:
        raise TransferbenchError(f"--draws must be at least 1, got {args.draws}")
    try:  # read as `transferbench run --seeds` reads them: one line for a bad list, before any compute
        seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    except ValueError as exc:
        raise TransferbenchError(f"--seeds {exc}") from None
    suite = load_suite(str(args.suite))
    seeds = seeds if seeds is not None else list(suite.seeds)
    bench = Benchmark(suite, str(args.backbone), seeds, console=Console(stderr=True, markup=False))
    if args.task is None:
        _specificity_report(bench, args, console)
        return 0
    if getattr(args, "prune_layers", None) is not None:
        from transferbench.analysis.skill_neurons import check_layer_range

        check_layer_range(args.prune_layers, bench.backbone.num_layers)
    if args.task not in bench.tasks:
        raise TransferbenchError(
            f"task {args.task!r} is not in suite {suite.name!r}{did_you_mean(args.task, list(bench.tasks))}"
        )

    with bench.progress():
        # Train (or load) the prompts first: `skill_neurons` computes activations under
        # torch.no_grad, where a prompt cannot be trained lazily.
        for seed in seeds:
            bench.source_prompt(args.task, seed)
        per_seed = [bench.skill_neurons(args.task, seed, args.positions) for seed in seeds]
    seed_scores = [entry["scores"].numpy() for entry in per_seed]
    scores = np.mean(seed_scores, axis=0)
    mask = select(scores, args.p, per_layer)

    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean over seeds {', '.join(map(str, seeds))}"
    console.print(Text.assemble((f"Skill neurons of {args.task}", "bold"),
                                f" on {args.backbone}: {seed_text}; {scores.shape[0]} layers x "
                                f"{scores.shape[1]} FFN neurons, both indexed from 0"))
    _print_top(console, scores, args.top)
    _print_layers(console, scores, mask, args.p, per_layer)
    if args.export is not None:
        _export(args.export, per_seed, seed_scores, scores, mask, seeds=seeds, task=args.task, suite=suite,
                bench=bench, fraction=args.p, per_layer=per_layer, positions=args.positions)
        console.print(f"wrote {args.export}")
    if args.perturb or args.prune is not None or specificity or args.report is not None:
        _task_report(bench, args, console, scores)
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
            task: str, suite, bench, fraction: float, per_layer: bool, positions: str) -> None:
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
    layers, scored, ffn = thresholds[0].shape
    (folder / "README.md").write_text(_readme(
        task=task, suite=suite, bench=bench, seeds=seeds, fraction=fraction, per_layer=per_layer,
        layers=layers, scored=scored, ffn=ffn, selected=int(mask.sum()), positions=positions,
    ))


def _readme(*, task: str, suite, bench, seeds: list[int], fraction: float, per_layer: bool,
            layers: int, scored: int, ffn: int, selected: int, positions: str) -> str:
    n = len(seeds)
    seed_text = ", ".join(map(str, seeds))
    identity = bench.backbone_identity()
    dev_size = len(bench.data(task).dev)
    selection = (f"the top `floor({fraction:g} * {ffn})` neurons of each layer (at least 1)" if per_layer
                 else f"the top `floor({fraction:g} * {layers * ffn})` neurons over all layers (at least 1)")
    call = f"select(scores, {fraction!r}, per_layer={per_layer})"
    precision = "computed under bfloat16 autocast" if bench.config.bf16 else "computed in float32"
    prompt_length = bench.config.prompt_length
    readout = ""  # the backbone is loaded to tell only where its read-out is scored
    if positions.startswith("readout"):
        readout = (f"the [MASK] position {prompt_length + 1}, where the MLM head reads" if bench.backbone.head == "mlm"
                   else "the mean over the example's attended positions, which the cosine verbalizer reads")
    where = {"mask+prompt": f"the soft-prompt positions 1..{prompt_length}, then the [MASK] position "
                            f"{prompt_length + 1} (as the reference code)",
             "prompt": f"the soft-prompt positions 1..{prompt_length}",
             "mask": f"the [MASK] position {prompt_length + 1}",
             "readout+prompt": f"the soft-prompt positions 1..{prompt_length}, then the verbalizer's read-out "
                               f"({readout})",
             "readout": f"the verbalizer's read-out ({readout})"}[positions]
    values = {
        "task": task, "task_repr": repr(task), "task_version": bench.tasks[task].version,
        "data_hash": bench.data(task).data_hash, "suite_name": suite.name,
        "suite_file_repr": repr(str(suite.yaml_path or suite.name)), "train_size": suite.sizes_for(task).train,
        "dev_size": dev_size, "test_size": suite.sizes_for(task).test, "split_seed": suite.split_seed,
        "backbone": identity["backbone"], "backbone_repr": repr(identity["backbone"]),
        "revision": identity["revision"], "seed_text": seed_text, "n": n, "layers": layers, "scored": scored,
        "ffn": ffn, "positions": positions, "positions_repr": repr(positions), "selection": selection,
        "selected": selected, "prompt_length": prompt_length, "where": where, "precision": precision,
        "call": call, "mean_call": call.replace("scores", "mean_of_s_over_seeds"),
    }
    return string.Template(_README_TEMPLATE.read_text(encoding="utf-8")).substitute(values)


# ---------------------------------------------------------------------------------------------
# Analyses (transferbench.analysis.skill_neurons) and their report folder


def _report_folder(args, suite, name: str) -> Path:
    from transferbench.evaluation.results import slug_of

    return args.report if args.report is not None else Path("reports") / slug_of(suite.name) / slug_of(name)


def _rich_table(title: str, frame, formats: dict[str, str]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for row in frame.to_dict("records"):
        table.add_row(*[format(row[c], formats[c]) if c in formats else str(row[c]) for c in frame.columns])
    return table


_LAYER_FORMATS = {"share": ".1%", "mean_score": ".4f", "mean_score_top": ".4f", "max_score": ".4f"}
_PERTURB_FORMATS = {"p": ".0%", "accuracy": ".4f", "accuracy_std": ".4f"}
_PRUNE_FORMATS = {"P": ".0%", "ffn_params_share": ".1%", "accuracy": ".4f", "examples_per_s": ".1f", "speedup": ".2f"}


def _header(bench, seeds: list[int], title: str) -> list[str]:
    identity = bench.backbone_identity()
    return [f"# {title}", "",
            f"Suite `{bench.suite.name}`, backbone `{identity['backbone']}` (revision `{identity['revision']}`), "
            f"prompt-tuning seed(s) {', '.join(map(str, seeds))}. Generated by `transferbench neurons`; "
            "the procedures are described in `docs/skill_neurons.md`.", ""]


def _task_report(bench, args, console: Console, scores) -> None:
    """Where skills live (always), plus --perturb / --prune / --specificity sections, into one folder."""
    import numpy as np
    import pandas as pd

    from transferbench.analysis import skill_neurons as analysis

    task, seeds = args.task, bench.seeds
    folder = _report_folder(args, bench.suite, task)
    folder.mkdir(parents=True, exist_ok=True)
    lines = _header(bench, seeds, f"Skill-neuron analysis of task `{task}`")

    summary = analysis.layer_summary(scores, args.p)
    console.print(_rich_table(f"Where skills live: top {args.p:g} of all neurons, by layer", summary, _LAYER_FORMATS))
    analysis.plot_layers(summary, args.p, folder / "layers.png", f"{task}: skill neurons by layer")
    summary.to_csv(folder / "layers.csv", index=False)
    lines += ["## Where skills live", "",
              f"`skill_neurons`: how many of the top {args.p:g} of all {scores.size} neurons (global selection) "
              f"sit in each layer; `mean_score`: mean skill score of the layer's neurons; `mean_score_top`: mean "
              f"score of the layer's own top {args.p:g}. Scores are averaged over the seeds.", "",
              analysis.markdown_table(summary, _LAYER_FORMATS), "", "![skill neurons by layer](layers.png)", ""]

    test = bench.encoded(task, "test")
    if args.perturb:
        tables, baselines = [], []
        with bench.progress():
            for seed in seeds:
                prompt = bench.source_prompt(task, seed)["prompt"]
                seed_scores = bench.skill_neurons(task, seed, args.positions)["scores"].numpy()
                baselines.append(bench.source_prompt(task, seed)["test_accuracy"])
                table = analysis.perturbation_test(
                    bench.backbone, prompt, test, bench.verbalizer(task), bench.config, seed_scores,
                    fractions=args.fractions, draws=args.draws, std=args.noise_std, seed=args.analysis_seed)
                tables.append(table.assign(seed=seed))
        keys = ["p", "per_layer", "mode", "neurons", "draws"]
        table = pd.concat(tables).groupby(keys, sort=False)[["accuracy", "accuracy_std"]].mean().reset_index()
        baseline = float(np.mean(baselines))
        table.to_csv(folder / "perturbation.csv", index=False)
        console.print(_rich_table(f"Perturbation ({task}, test accuracy; unperturbed {baseline:.4f})", table,
                                  _PERTURB_FORMATS))
        verdict = _perturbation_verdict(table)
        console.print(verdict)
        analysis.plot_perturbation(table, baseline, folder / "perturbation.png", f"{task}: perturbing neurons")
        lines += ["## Perturbation", "",
                  f"Test accuracy ({len(test)} examples) of the task's own prompt when the top-p skill neurons of "
                  f"each layer are perturbed (noise: Gaussian, std {args.noise_std:g}, added to their activations; "
                  "zero: set to 0), at every position, versus the same number of random neurons per layer "
                  f"({args.draws} draws: mean and std). Unperturbed: {baseline:.4f}.", "",
                  analysis.markdown_table(table, _PERTURB_FORMATS), "", verdict, "",
                  "![perturbation](perturbation.png)", ""]

    if args.prune is not None:
        tables = []
        layers = args.prune_layers or analysis.reference_prune_layers(bench.backbone.num_layers)
        for seed in seeds:
            prompt = bench.source_prompt(task, seed)["prompt"]
            neurons = bench.skill_neurons(task, seed, args.positions)
            # each neuron's mean train activation, averaged over the scored positions (as src/prune.py)
            means = neurons["thresholds"].mean(1).numpy()
            tables.append(analysis.pruning_test(bench.backbone, prompt, test, bench.verbalizer(task), bench.config,
                                                neurons["scores"].numpy(), means=means, fractions=args.prune,
                                                layers=layers))
        table = pd.concat(tables).groupby("P", sort=False).mean().reset_index()
        table["ffn_width"] = table["ffn_width"].astype(int)
        table.to_csv(folder / "pruning.csv", index=False)
        console.print(_rich_table(f"Pruning to the top-P skill neurons per layer ({task})", table, _PRUNE_FORMATS))
        analysis.plot_pruning(table, folder / "pruning.png", f"{task}: pruned to skill neurons")
        lines += ["## Pruning", "",
                  f"Smaller models whose FFN layers {layers[0]}-{layers[1]} (0-indexed; the others stay whole) keep "
                  "only their top-P skill neurons, the removed neurons' mean train activations folded into the "
                  "output bias (P = 100%: the full model). `ffn_width`: width of the pruned layers; "
                  "`ffn_params_share`: FFN weights kept over all layers; speed: examples/s of prediction over the "
                  "test split, same batches, models timed in turn, best of 3 rounds.", "",
                  analysis.markdown_table(table, _PRUNE_FORMATS), "", "![pruning](pruning.png)", ""]

    if getattr(args, "specificity", False):
        lines += _specificity_section(bench, args, console, folder)
    (folder / "README.md").write_text("\n".join(lines))
    console.print(f"wrote {folder}/README.md")


def _perturbation_verdict(table) -> str:
    """One line: at which (p, mode) skill neurons hurt more than random ones (mean over draws)."""
    wins = []
    for (p, mode), rows in table.groupby(["p", "mode"], sort=False):
        skill = float(rows[rows.neurons == "skill"].accuracy.iloc[0])
        random = rows[rows.neurons == "random"].iloc[0]
        if skill < random.accuracy - random.accuracy_std:
            wins.append(f"p={p:g} {mode} ({skill:.3f} vs {random.accuracy:.3f}±{random.accuracy_std:.3f})")
    if not wins:
        return "Skill neurons did not hurt accuracy more than random neurons (beyond one std) at any p."
    return "Skill neurons hurt accuracy more than random neurons (beyond one std of the draws) at: " + "; ".join(wins)


def _specificity_section(bench, args, console: Console, folder: Path) -> list[str]:
    import numpy as np

    from transferbench.analysis import skill_neurons as analysis

    with bench.progress():
        for seed in bench.seeds:
            for task in bench.tasks:
                bench.source_prompt(task, seed)
        scores = {task: np.mean([bench.skill_neurons(task, seed, args.positions)["scores"].numpy()
                                 for seed in bench.seeds], axis=0) for task in bench.tasks}
    families = {name: spec.family for name, spec in bench.tasks.items()}
    order = analysis.order_by_family(list(bench.tasks), families)
    overlap = analysis.overlap_matrix(scores, args.p, order)
    stat = analysis.specificity_statistic(overlap, families, seed=args.analysis_seed)
    line = analysis.specificity_line(stat)
    overlap.to_csv(folder / "overlap.csv")
    console.print(_rich_table(f"Skill-neuron overlap (Jaccard, top {args.p:g} per layer)",
                              overlap.reset_index(names="task"), {t: ".3f" for t in order}))
    console.print(line)
    analysis.plot_overlap(overlap, families, folder / "overlap.png",
                          f"{bench.suite.name}: skill-neuron overlap (top {args.p:g} per layer)")
    shown = overlap.reset_index(names="task")
    shown.insert(1, "family", [families[t] for t in order])
    return ["## Task specificity", "",
            f"Jaccard overlap of the skill-neuron sets (top {args.p:g} of each layer, scores averaged over the "
            "seeds) of every pair of tasks, grouped by family.", "",
            analysis.markdown_table(shown, {t: ".3f" for t in order}), "", line, "",
            "![skill-neuron overlap](overlap.png)", ""]


def _specificity_report(bench, args, console: Console) -> None:
    folder = _report_folder(args, bench.suite, "specificity")
    folder.mkdir(parents=True, exist_ok=True)
    lines = _header(bench, bench.seeds, f"Skill-neuron specificity in suite `{bench.suite.name}`")
    lines += _specificity_section(bench, args, console, folder)
    (folder / "README.md").write_text("\n".join(lines))
    console.print(f"wrote {folder}/README.md")
