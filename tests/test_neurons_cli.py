"""`transferbench neurons`: one task's skill neurons printed and exported, on the tiny backbone."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from rich.console import Console

from transferbench.analysis.inspect_neurons import add_parser, run
from transferbench.errors import TransferbenchError
from transferbench.model.neurons import predictivity, select
from transferbench.pipeline.runner import Benchmark
from transferbench.tasks import load_suite


def parse(*argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="transferbench")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["neurons", *map(str, argv)])


def run_neurons(*argv) -> tuple[int, str]:
    console = Console(width=200, record=True)
    with console.capture() as captured:
        code = run(parse(*argv), console)
    return code, captured.get()


def test_defaults():
    args = parse("--task", "rt_sentiment")
    assert (args.suite, args.backbone, args.seeds, args.top, args.p, args.global_selection, args.export) == (
        "default", "minilm", None, 20, 0.05, False, None)
    assert args.positions == "mask+prompt"  # the reference code's positions
    with pytest.raises(SystemExit):
        parse("--task", "x", "--positions", "text")
    assert parse("--task", "x", "--seeds", "0,1", "--global").seeds == "0,1"  # read by seeds.parse_seeds in `run`


def test_prints_top_neurons_and_exports_arrays_that_reload(tmp_path, cache, tiny_backbone, tiny_suite):
    export = tmp_path / "export"
    code, out = run_neurons("--task", "pos_a", "--suite", tiny_suite, "--backbone", tiny_backbone,
                            "--seeds", "0,1", "--top", "5", "--p", "0.1", "--export", export)
    assert code == 0
    assert "Skill neurons of pos_a" in out and "mean over seeds 0, 1" in out
    assert "Top 5 neurons" in out and "mean score (selected)" in out

    names = {p.name for p in export.iterdir()}
    assert names == {"thresholds.npy", "thresholds_seed0.npy", "thresholds_seed1.npy", "scores.npy",
                     "scores_seed0.npy", "scores_seed1.npy", "mask.npy", "README.md"}
    scores, mask = np.load(export / "scores.npy"), np.load(export / "mask.npy")
    per_seed = [np.load(export / f"scores_seed{k}.npy") for k in (0, 1)]
    thresholds = np.load(export / "thresholds.npy")
    layers, ffn = scores.shape
    assert mask.dtype == bool and scores.dtype == np.float32 and mask.shape == (layers, ffn)
    assert thresholds.shape == (2, layers, 4 + 1, ffn)  # the 4 prompt positions and [MASK]
    assert np.allclose(scores, np.mean(per_seed, axis=0))
    assert np.array_equal(mask, select(scores, 0.1, per_layer=True))
    assert np.array_equal(thresholds[1], np.load(export / "thresholds_seed1.npy"))
    readme = (export / "README.md").read_text()
    assert "over the train split" in readme and "whole dev split" in readme and "[seeds, layers, positions, ffn_width]" in readme
    assert "positions 1..4, then the [MASK] position 5" in readme

    # the top neuron printed is the best-scoring one
    layer, neuron = np.unravel_index(np.argsort(-scores.ravel(), kind="stable")[0], scores.shape)
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    assert rows[0][:3] == ["1", str(layer), str(neuron)]

    # anyone can recompute the exported arrays, as the README describes
    bench = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), [0])
    bench.source_prompt("pos_a", 0)
    train = bench.skill_position_activations("pos_a", 0, "train", "mask+prompt")
    dev = bench.skill_position_activations("pos_a", 0, "dev", "mask+prompt")
    labels = bench.encoded("pos_a", "dev").labels
    assert np.allclose(train.mean(0).numpy(), np.load(export / "thresholds_seed0.npy"), atol=1e-5)
    assert np.allclose(predictivity(train, dev, labels), per_seed[0])


def test_global_selection_and_one_seed(tmp_path, cache, tiny_backbone, tiny_suite):
    export = tmp_path / "export"
    code, _ = run_neurons("--task", "topic_b", "--suite", tiny_suite, "--backbone", tiny_backbone,
                          "--global", "--p", "0.05", "--export", export)
    assert code == 0
    scores, mask = np.load(export / "scores.npy"), np.load(export / "mask.npy")
    assert np.array_equal(mask, select(scores, 0.05, per_layer=False))
    assert mask.sum() == int(np.floor(0.05 * scores.size))
    assert np.load(export / "thresholds.npy").shape[0] == 1  # the suite's seeds: [0]


@pytest.mark.parametrize("argv, message", [
    (["--task", "pos_aa"], "task 'pos_aa' is not in suite 'tiny' (did you mean 'pos_a'"),
    (["--task", "pos_a", "--top", "0"], "--top must be at least 1"),
    (["--task", "pos_a", "--p", "1.5"], "--p (the fraction of neurons selected) must be in (0, 1], got 1.5"),
])
def test_bad_arguments_are_one_line_errors(tiny_suite, tiny_backbone, cache, argv, message):
    with pytest.raises(TransferbenchError) as info:
        run(parse(*argv, "--suite", tiny_suite, "--backbone", tiny_backbone), Console())
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_dispatches_neurons_once_wired(tmp_path, cache, tiny_backbone, tiny_suite, capsys):
    from transferbench import cli

    if "neurons" not in cli.build_parser().format_help():
        pytest.skip("`neurons` is not wired into transferbench.cli yet")
    assert cli.main(["neurons", "--task", "pos_aa", "--suite", str(tiny_suite), "--backbone", str(tiny_backbone)]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.strip()] == [
        "error: task 'pos_aa' is not in suite 'tiny' (did you mean 'pos_a' or 'pos_b'?)"]
    assert cli.main(["neurons", "--task", "pos_a", "--suite", str(tiny_suite), "--backbone", str(tiny_backbone),
                     "--top", "3"]) == 0
    assert "Top 3 neurons" in capsys.readouterr().out


@pytest.mark.parametrize("seeds, message", [
    ("0,0", "error: --seeds lists a seed twice ([0, 0]); each seed is one run"),
    ("-1", "error: --seeds takes integers from 0 to 4294967295, got [-1]"),
    ("0,x", "error: --seeds takes integers separated by commas, got '0,x'"),
    (",", "error: --seeds needs at least one seed, e.g. 0, got ','"),
])
def test_bad_seeds_are_one_line_as_for_run(tiny_suite, tiny_backbone, cache, capsys, seeds, message):
    """`neurons --seeds` is read by the parser `run --seeds` uses: one line, before any compute."""
    from transferbench import cli

    argv = ["--task", "pos_a", "--suite", str(tiny_suite), "--backbone", str(tiny_backbone), "--seeds", seeds]
    assert cli.main(["neurons", *argv]) == 2
    assert [line for line in capsys.readouterr().err.splitlines() if line.strip()] == [message]
    assert cli.main(["run", "-i", "random", *argv[2:]]) == 2
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")] == [message]
    assert not (cache / "prompts").exists()


# The export's README for fixed inputs, as the f-string it was written with produced it before it
# became package data (transferbench/templates/neurons_readme.md): byte for byte.
README_CASES = {
    "per_layer": dict(seeds=[0, 2], fraction=0.05, per_layer=True, layers=2, scored=5, ffn=37, selected=4,
                      positions="mask+prompt"),
    "global": dict(seeds=[1], fraction=0.1, per_layer=False, layers=3, scored=1, ffn=8, selected=2, positions="mask"),
}


@pytest.mark.parametrize("case", sorted(README_CASES))
def test_export_readme_from_the_template_is_unchanged(case):
    from pathlib import Path
    from types import SimpleNamespace

    from transferbench.analysis.inspect_neurons import _readme

    data = SimpleNamespace(dev=list(range(17)), data_hash="abc123")
    bench = SimpleNamespace(backbone_identity=lambda: {"backbone": "minilm", "revision": "r1"},
                            data=lambda name: data, config=SimpleNamespace(bf16=case == "per_layer", prompt_length=4),
                            tasks={"pos_a": SimpleNamespace(version=3)})
    suite = SimpleNamespace(name="tiny", sizes_for=lambda name: SimpleNamespace(train=20, test=9), split_seed=5,
                            yaml_path=Path("/x/suite.yaml") if case == "per_layer" else None)
    expected = (Path(__file__).parent / "data" / "neurons_readme" / f"{case}.md").read_bytes()
    assert _readme(task="pos_a", suite=suite, bench=bench, **README_CASES[case]).encode() == expected
