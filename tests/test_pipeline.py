"""The whole pipeline through the CLI, on a tiny random backbone and synthetic local tasks."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from transferbench.cli import main
from transferbench.pipeline import units
from transferbench.reference.protocol import TRANSFER_KINDS

REPO = Path(__file__).resolve().parent.parent
ALL_BUILTIN = ["skill_overlap", "activation_overlap", "embedding_similarity", "random", "data_size", "task_embedding",
               "same_family"]


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def workdir(tmp_path, monkeypatch, cache):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRANSFERBENCH_RESULTS", raising=False)
    return tmp_path


LOCAL = "transferbench-results"  # the default results folder, under the working directory


def test_run_every_builtin_indicator_writes_results_and_leaderboard(workdir, tiny_backbone, tiny_suite, capsys):
    args = ["run", "--submit", "--suite", tiny_suite, "--backbone", tiny_backbone]
    for name in ALL_BUILTIN:
        args += ["--indicator", name]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert out.startswith("transferbench run: indicators skill_overlap, activation_overlap, ")
    assert "4 tasks x 1 seeds = 4 prompts, 12 ordered pairs" in out and str(workdir / "cache") in out
    assert not (workdir / LOCAL).exists()  # --submit writes the project's folders only
    files = sorted((workdir / "submissions").glob("*.json"))
    assert len(files) == len(TRANSFER_KINDS) * len(ALL_BUILTIN)  # one per indicator and transfer kind
    kinds = {json.loads(f.read_text())["transfer_kind"] for f in files}
    assert kinds == set(TRANSFER_KINDS)
    result = json.loads(next(f for f in files if "zero_shot" in f.name).read_text())
    manifest = result["manifest"]
    assert manifest["config"]["seeds"] == [0]
    assert set(manifest["data"]) == {"pos_a", "pos_b", "topic_a", "topic_b"}
    assert all(len(d["data_hash"]) == 64 for d in manifest["data"].values())
    assert {"torch", "transformers", "datasets"} <= set(manifest["versions"])
    assert "commit" in manifest["git"]
    assert result["transfer_kind"] == "zero_shot" and len(result["tasks"]) == 4
    for name in ("README.md", "leaderboard.csv", "leaderboard.json"):
        assert (workdir / "leaderboard" / name).exists()
    assert "skill_overlap" in out and "Targets of the reference" in out
    # every file names the reference it was scored against, measured first and saved in the cache
    assert len({json.loads(f.read_text())["reference"] for f in files}) == 1
    assert "no shipped reference for suite tiny" in err and "roughly" in err

    # a rerun of the same setting leaves every committed file byte-identical, untouched
    board = workdir / "leaderboard"
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in [*files, *board.rglob("*") ] if p.is_file()}
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert out.count("unchanged ") == len(files) and "leaderboard leaderboard: 0 of " in out
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before
    assert sorted(workdir.glob("submissions/*.json")) == files

    # `leaderboard` prints without writing; --write writes only what changed
    for path in board.rglob("*.md"):
        path.unlink()
    code, out, err = run_cli(capsys, "leaderboard")
    assert code == 0 and "skill_overlap" in out and not (board / "README.md").exists()
    code, out, err = run_cli(capsys, "leaderboard", "--write")
    assert code == 0 and "leaderboard leaderboard: 1 of " in out and (board / "README.md").is_file()

    # the leaderboard is rebuilt from the result files alone
    code, out, err = run_cli(capsys, "leaderboard", "--format", "json")
    assert code == 0
    board = json.loads(out)
    assert len(board["tables"]) == len(TRANSFER_KINDS)  # transfer kinds are never ranked together
    rows = board["tables"][0]["rows"]
    assert {row["indicator"].split("(")[0] for row in rows} == set(ALL_BUILTIN)
    assert any(row["baseline"] for row in rows)


def test_second_run_and_other_indicators_train_nothing(workdir, tiny_backbone, tiny_suite, capsys, monkeypatch):
    assert run_cli(capsys, "run", "-i", "skill_overlap", "--suite", tiny_suite, "--backbone", tiny_backbone)[0] == 0

    def fail(*args, **kwargs):
        raise AssertionError("a prompt was trained again")

    monkeypatch.setattr(units, "train_prompts", fail)  # every unit trains through it
    assert run_cli(capsys, "run", "-i", "skill_overlap", "--suite", tiny_suite, "--backbone", tiny_backbone)[0] == 0
    assert run_cli(capsys, "run", "-i", "embedding_similarity", "--suite", tiny_suite, "--backbone", tiny_backbone)[0] == 0


def test_a_reference_measured_with_other_kernels_is_measured_again_not_reused(workdir, tiny_backbone, tiny_suite,
                                                                              capsys):
    """The cache keeps one measured reference per device and kernels: a run with another
    training attention measures its own (another folder, another hash) instead of scoring
    against the default kernels' reference, and the default one is kept."""
    import re

    hashes = {}
    for kernel in ("sdpa", "eager", "sdpa"):
        code, out, err = run_cli(capsys, "run", "-i", "random", "--suite", tiny_suite, "--backbone", tiny_backbone,
                                 "--train-attention", kernel)
        assert code == 0, err
        measured = "measuring it first" in out + err
        hashes.setdefault(kernel, []).append((re.search(r"scored against reference (\w+)", out).group(1), measured))
    (default_hash, first), (again, second) = hashes["sdpa"]
    assert first and not second and again == default_hash  # measured once, then reused
    assert hashes["eager"][0][1] and hashes["eager"][0][0] != default_hash
    assert len(list((workdir / "cache" / "references").iterdir())) == 2


def test_custom_indicator_file_runs_end_to_end(workdir, tiny_backbone, tiny_suite, capsys):
    plugin = workdir / "my_indicator.py"
    plugin.write_text(textwrap.dedent('''
        import numpy as np
        from transferbench.scoring.indicator import Indicator

        class PromptNormRatio(Indicator):
            """How similar the two prompts' norms are."""
            requires = ("prompts",)
            description = "negative absolute difference of prompt norms"

            def score(self, source, target):
                a = np.linalg.norm(source.prompts[0])
                b = np.linalg.norm(target.prompts[0])
                return -abs(a - b)
    '''))
    # a clone of the project: its .gitignore, its submissions, everything committed
    subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    (workdir / ".gitignore").write_text((REPO / ".gitignore").read_text() + "cache/\ntasks/\n")
    official = workdir / "submissions"
    assert run_cli(capsys, "run", "--submit", "-i", "random", "--suite", tiny_suite, "--backbone", tiny_backbone)[0] == 0
    subprocess.run(["git", "add", "-A"], cwd=workdir, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"], cwd=workdir, check=True)

    code, out, err = run_cli(capsys, "run", "-i", f"{plugin}:PromptNormRatio", "--suite", tiny_suite,
                             "--backbone", tiny_backbone)
    assert code == 0, err
    assert subprocess.run(["git", "status", "--porcelain"], cwd=workdir, capture_output=True, text=True,
                          check=True).stdout == ""  # nothing of the project changed, nothing new to commit
    assert list((workdir / LOCAL / "submissions").glob("*PromptNormRatio*.json"))
    assert not list(official.glob("*PromptNormRatio*"))
    # the board the user views holds the project's results and theirs, theirs marked local
    shown = [line for line in out.splitlines() if "PromptNormRatio" in line and "(local)" in line]
    assert shown and any("random (baseline)" in line for line in out.splitlines())
    readme = (workdir / LOCAL / "leaderboard" / "README.md").read_text()
    assert "PromptNormRatio (local)" in readme and "random (baseline)" in readme
    code, out, _ = run_cli(capsys, "leaderboard")
    assert code == 0 and "PromptNormRatio (local)" in out


def test_failing_plugin_leaves_earlier_results_untouched(workdir, tiny_backbone, tiny_suite, capsys):
    assert run_cli(capsys, "run", "-i", "random", "--suite", tiny_suite, "--backbone", tiny_backbone)[0] == 0
    before = {p: p.read_bytes() for p in (workdir / LOCAL / "submissions").glob("*.json")}
    assert before
    board_before = (workdir / LOCAL / "leaderboard" / "README.md").read_bytes()
    plugin = workdir / "nan.py"
    plugin.write_text("from transferbench.scoring.indicator import Indicator\n"
                      "class Nan(Indicator):\n    def score(self, s, t):\n        return float('nan')\n")
    code, out, err = run_cli(capsys, "run", "-i", f"{plugin}:Nan", "--suite", tiny_suite, "--backbone", tiny_backbone)
    assert code == 2
    assert "error: indicator 'Nan' on pair" in err and "must be finite" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in (workdir / LOCAL / "submissions").glob("*.json")} == before
    assert (workdir / LOCAL / "leaderboard" / "README.md").read_bytes() == board_before


@pytest.mark.parametrize("args, message", [
    (["run", "-i", "skil_overlap"], "unknown indicator 'skil_overlap' (did you mean 'skill_overlap'"),
    (["run", "-i", "random", "--suite", "smok"], "did you mean 'smoke'"),
])
def test_unknown_names_exit_2_with_one_line(workdir, capsys, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err


def test_indicators_and_tasks_listings(capsys):
    code, out, _ = run_cli(capsys, "indicators")
    assert code == 0 and all(name in out for name in ALL_BUILTIN)
    code, out, _ = run_cli(capsys, "tasks")
    assert code == 0 and "rt_sentiment" in out and "smoke" in out


def planned(config, tasks, seeds, sizes_for, **attributes):
    """A planner over a suite of `tasks` (split sizes `sizes_for(task)`) that loads no data: what
    the opening estimates read (the declarations' cost models at the suite's sizes)."""
    from types import SimpleNamespace

    from transferbench.pipeline.planner import Planner

    planner = Planner()
    planner.config, planner.tasks, planner.seeds, planner.supplied = config, list(tasks), list(seeds), None
    planner.suite = SimpleNamespace(sizes_for=sizes_for, name="suite")
    for name, value in attributes.items():
        setattr(planner, name, value)
    return planner


def test_protocol_work_counts_every_pass_of_a_reference_build():
    """Known answer for 2 tasks, 1 seed: 10 steps + 2 init arms x 3 steps of batch 2 per prompt;
    dev evaluated at steps 4, 8 and 10; 2n + 1 = 5 test passes per target; probe features once."""
    from transferbench.api import protocol_work
    from transferbench.model.prompt import PromptConfig
    from transferbench.tasks.schema import SplitSizes

    bench = planned(PromptConfig(steps=10, eval_every=4, init_steps=3, batch_size=2), ["a", "b"], [0],
                    lambda name: SplitSizes(train=5, dev=3, test=7))
    assert protocol_work(bench) == {"train": 2 * (10 + 2 * 3) * 2, "eval": 2 * (3 * 3 + 7 * 5 + 5 + 7)}


def test_estimates_from_the_declarations_agree_with_the_formulas_they_replaced():
    """The opening estimates come from the artifacts' cost models; for the same inputs they give
    what `api.protocol_work` and `api._scoring_examples` counted by hand before (issue 28), except
    that the prompt-alone [MASK] activations now count their one forward pass per task and seed."""
    from transferbench.api import protocol_work
    from transferbench.model.prompt import PromptConfig
    from transferbench.pipeline.artifacts import PAIR_EXAMPLES, PROBE_EXAMPLES
    from transferbench.reference.bundle import protocol_artifacts
    from transferbench.tasks.schema import SplitSizes

    sizes = {"a": SplitSizes(train=300, dev=40, test=70), "b": SplitSizes(train=900, dev=60, test=50),
             "c": SplitSizes(train=100, dev=20, test=30)}
    config, seeds = PromptConfig(steps=25, eval_every=10, init_steps=7, batch_size=4), [0, 1, 2]
    bench = planned(config, sizes, seeds, sizes.__getitem__)
    n, s, all_sizes = len(sizes), len(seeds), list(sizes.values())
    dev_evaluations = -(-config.steps // config.eval_every)
    assert protocol_work(bench) == {  # the formula of api.protocol_work before the declarations
        "train": s * n * (config.steps + n * config.init_steps) * config.batch_size,
        "eval": sum(s * (z.dev * dev_evaluations + z.test * (2 * n + 1)) + z.train + z.test for z in all_sizes)}
    before = {"skill_scores": s * sum(z.train + z.dev for z in all_sizes),  # api._scoring_examples
              "mask_activations_task": s * sum(z.dev for z in all_sizes),
              "pair_outputs": s * sum((n - 1) * min(z.train, PAIR_EXAMPLES) for z in all_sizes),
              "probe_ranking": s * sum(min(z.train, PROBE_EXAMPLES) for z in all_sizes),
              "text_embedding": sum(z.train for z in all_sizes), "prompts": 0, "samples": 0, "train_size": 0,
              "mask_activations": s * n}  # one forward pass of [CLS] prompt [MASK] per task and seed (was 0)
    for name, examples in before.items():
        work = bench.cold_work([name], skip=protocol_artifacts())
        assert work.train == 0 and work.eval == examples, name


def test_build_estimate_is_the_protocols_work_at_the_cost_measured_on_this_machine():
    """The printed estimate of a build is `protocol_work` at the measured cost of a training and an
    evaluation example (measured with the build's own kernels and precision, so no speed-up of a
    kernel is assumed), and says so; the plan of a run does the same for the indicators' artifacts."""
    from types import SimpleNamespace

    from transferbench.api import build_estimate, protocol_work, score_plan
    from transferbench.model.prompt import PromptConfig
    from transferbench.progress import ExampleCost
    from transferbench.tasks.schema import SplitSizes

    sizes = SplitSizes(train=1000, dev=200, test=400)
    bench = planned(PromptConfig(), [str(i) for i in range(12)], [0, 1, 2], lambda name: sizes,
                    store=SimpleNamespace(root="/cache"))
    work = protocol_work(bench)
    cost = ExampleCost(eval_seconds=0.001, train_seconds=0.01)
    minutes = (work["train"] * 0.01 + work["eval"] * 0.001) / 60
    assert f"roughly {round(minutes)} min at the rate measured on this machine (1 ms per evaluation example, " \
           "10 ms per training example)" in build_estimate(bench, cost)
    assert f"roughly {round(minutes / 2)} min" in build_estimate(bench, ExampleCost(0.0005, 0.005))
    assert f"roughly {minutes * 2 / 60:.1f} h" in build_estimate(bench, ExampleCost(0.002, 0.02))
    plan = score_plan(bench, [SimpleNamespace(requires=["skill_scores"])], cost)
    examples = 3 * 12 * (1000 + 200)  # skill neurons read train and dev of every task and seed
    assert f"read {examples} examples: roughly {round(examples * 0.001 / 60)} min at the rate measured" in plan

def _without_run_provenance(path: Path) -> dict:
    """A result file but for what differs between two runs of one setting: when it ran and how long."""
    record = json.loads(path.read_text())
    for key in ("created_at", "wall_seconds"):
        record["manifest"].pop(key)
    return record


def test_the_command_and_the_library_call_write_identical_result_files(workdir, tiny_backbone, tiny_suite, capsys):
    """`transferbench run` is `transferbench.run` plus printing: for the same settings both write the
    same files (name, numbers, configuration; the manifest differs only in its time stamps), and
    the library call writing into the command's folder leaves every file there untouched."""
    import transferbench
    from transferbench.run_config import RunConfig

    code, out, err = run_cli(capsys, "run", "-i", "random", "-i", "same_family", "--suite", tiny_suite,
                             "--backbone", tiny_backbone, "--results-dir", workdir / "cli")
    assert code == 0, err
    by_command = sorted((workdir / "cli" / "submissions").glob("*.json"))
    assert len(by_command) == 2 * len(TRANSFER_KINDS)
    results = transferbench.run(indicators=["random", "same_family"], suite=str(tiny_suite),
                                backbone=str(tiny_backbone), results_dir=workdir / "api")
    by_call = sorted((workdir / "api" / "submissions").glob("*.json"))
    assert [p.name for p in by_call] == [p.name for p in by_command] == sorted(p.name for p in results.paths)
    for mine, theirs in zip(by_call, by_command):
        assert _without_run_provenance(mine) == _without_run_provenance(theirs), mine.name
    assert {what for _, what in results.written} == {"wrote"}

    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in by_command}
    config = RunConfig(indicators=["random", "same_family"], suite=str(tiny_suite), backbone=str(tiny_backbone),
                       results_dir=workdir / "cli")
    again = transferbench.run(config)
    assert [what for _, what in again.written] == ["unchanged"] * len(by_command)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in by_command} == before
    assert not (workdir / LOCAL).exists()  # nothing went to the default results folder
