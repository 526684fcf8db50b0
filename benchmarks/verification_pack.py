"""Build the verification input pack of the project's existing official rows from this machine's
artifacts, keeping only the artifacts that reproduce those rows exactly, and measure its size.

    TRANSFERBENCH_CACHE=... python benchmarks/verification_pack.py [--suite default] [--backbone minilm]
        [--leave-out pair_outputs] [--write]

`transferbench run --submit` records the inputs of what it scores in the pack itself; this script
is for rows scored before runs recorded them (or on another machine). For every built-in indicator
with rows in `submissions/` of the setting it computes (or loads from the cache) the artifacts the
indicator declares, on the shipped reference's prompts, re-scores every pair from them in this
process and compares with the file's scores. An artifact is packed only if every such indicator
that reads it reproduces its file exactly; otherwise the pack names why it is left out (model
artifacts computed on another CPU kind differ in their last bits, docs/indicators.md). It prints
each artifact's size. `--leave-out ARTIFACT` (default: `pair_outputs`, about 150 MB on the default
suite, far over the budget) skips computing one: its size is estimated from its declaration.
`--write` writes `verification/<suite>__<backbone>/` and pins it in `verification/index.json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transferbench.api import benchmark_for, ensure_reference
from transferbench.leaderboard.verify import ARTIFACT_BUDGET, DEFAULT_PACK_FOLDER, SCORE_TOLERANCE, _array_bytes, write_pack
from transferbench.pipeline.artifacts import PAIR_EXAMPLES
from transferbench.scoring.indicator import TaskView, builtin_class, checked_score, construct_indicator

REPO = Path(__file__).resolve().parents[1]
MB = 2**20


def official_rows(submissions: Path, suite: str, backbone: str) -> dict[str, dict]:
    """Built-in name -> one of its result files (as JSON) of the setting, default params only."""
    rows = {}
    for path in sorted(submissions.glob("*.json")):
        data = json.loads(path.read_text())
        if (data["suite"], data["backbone"]) == (suite, backbone) and not data["indicator"]["params"]:
            if builtin_class(data["indicator"]["name"]) is not None:
                rows.setdefault(data["indicator"]["name"], data)
    return rows


def pair_outputs_estimate(bench) -> str:
    """`pair_outputs` from its declaration, without computing it: per (source, target, seed) cell
    features [examples, hidden] float32 and source probabilities [examples, classes] float32."""
    hidden = bench.backbone.hidden_size
    examples = {task: min(PAIR_EXAMPLES, len(bench.data(task).train)) for task in bench.tasks}
    cells = [(s, t) for s in bench.tasks for t in bench.tasks if s != t]
    features = sum(examples[t] * hidden * 4 for _, t in cells) * len(bench.seeds)
    probs = sum(examples[t] * bench.tasks[s].num_classes * 4 for s, t in cells) * len(bench.seeds)
    return (f"{(features + probs) / MB:.0f} MB of arrays ({len(cells) * len(bench.seeds)} (source, target, seed) "
            f"cells of features [{PAIR_EXAMPLES} x {hidden}] float32), over its {ARTIFACT_BUDGET / MB:.0f} MB budget "
            "per artifact")


def largest_difference(bench, name: str, row: dict) -> float:
    """The largest |re-scored - file| over the pairs, re-scoring in this process from `bench`'s views."""
    indicator = construct_indicator(builtin_class(name))
    declared = sorted(set(indicator.requires))
    views = {task: TaskView(task, spec.family, spec.num_classes, {a: bench.view(a, task) for a in declared},
                            spec.label_names) for task, spec in bench.tasks.items()}
    return max(abs(checked_score(indicator, views[s], views[t]) - row["scores"][s][t])
               for s in bench.tasks for t in bench.tasks if s != t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--leave-out", action="append", default=None,
                        help="an artifact not to compute; repeatable (default: pair_outputs)")
    parser.add_argument("--submissions-dir", type=Path, default=REPO / "submissions")
    parser.add_argument("--root", type=Path, default=REPO / DEFAULT_PACK_FOLDER, help="the packs' folder")
    parser.add_argument("--write", action="store_true", help="write the pack and pin it")
    args = parser.parse_args()
    leave_out = set(args.leave_out if args.leave_out is not None else ["pair_outputs"])

    bench = benchmark_for(args.suite, args.backbone, device="cpu")
    reference = ensure_reference(bench)
    rows = official_rows(args.submissions_dir, bench.suite.name, args.backbone)
    needs = {name: sorted(set(construct_indicator(builtin_class(name)).requires)) for name in rows}
    declared = sorted({artifact for artifacts in needs.values() for artifact in artifacts})
    why: dict[str, str] = {}
    for artifact in declared:
        if artifact in leave_out:
            why[artifact] = ("left out of the pack: " + pair_outputs_estimate(bench) if artifact == "pair_outputs"
                             else "not recomputed for the pack; a run with --submit records the inputs it scores from")
            print(f"{artifact:22s} {why[artifact]}", flush=True)
            continue
        bench.ensure([artifact])
        size = sum(_array_bytes(bench.view(artifact, task)) for task in bench.tasks)
        print(f"{artifact:22s} {size / MB:7.2f} MB of arrays", flush=True)
    for name, artifacts in sorted(needs.items()):
        if any(artifact in leave_out for artifact in artifacts):
            continue
        worst = largest_difference(bench, name, rows[name])
        print(f"{name:22s} re-scored here: largest difference from its file {worst:.3g}", flush=True)
        if worst > SCORE_TOLERANCE:
            for artifact in artifacts:
                why.setdefault(artifact, (
                    f"left out of the pack: computed again on this machine it does not reproduce the official rows "
                    f"({name}'s scores differ by up to {worst:.1g}); they were scored from artifacts computed on "
                    "another CPU kind, and a run with --submit records the inputs it scores from"))
    packed = [artifact for artifact in declared if artifact not in why]
    print(f"pack: {', '.join(packed) or 'no artifact'} (and every task's facts); left out: {', '.join(why) or 'nothing'}")
    if args.write:
        folder = write_pack(bench, reference.hash, packed, args.root, left_out=why)
        total = sum(path.stat().st_size for path in folder.iterdir())
        print(f"wrote {folder} ({total / MB:.2f} MB on disk) and pinned it in {args.root / 'index.json'}")


if __name__ == "__main__":
    main()
