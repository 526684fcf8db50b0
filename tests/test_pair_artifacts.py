"""Artifacts declared in `artifacts.ARTIFACTS`: the pair-level outputs behind the estimators,
the probe ranking, and what adding a new artifact takes (the places docs/indicators.md lists)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferbench.errors import TransferbenchError
from transferbench.pipeline import units
from transferbench.pipeline.artifacts import ARTIFACTS as DECLARED, ArtifactSpec, declare_artifact, isolated_artifacts
from transferbench.pipeline.runner import Benchmark
from transferbench.scoring.indicator import ARTIFACTS, Indicator, PairOutputs, make_indicator
from transferbench.scoring.pairs import indicator_scores
from transferbench.store import ArtifactStore
from transferbench.tasks import load_suite

from conftest import build_tiny_suite


@pytest.fixture(scope="module")
def bench(tiny_backbone, tmp_path_factory):
    """One benchmark for the module (its prompts are trained once), with its own store."""
    folder = tmp_path_factory.mktemp("pair_artifacts")
    return Benchmark(load_suite(str(build_tiny_suite(folder / "tasks"))), str(tiny_backbone), seeds=[0, 1],
                     store=ArtifactStore(folder / "store"))


def test_pair_outputs_are_per_source_per_seed_with_the_source_label_space(bench):
    hidden = bench.backbone.hidden_size
    outputs = bench.view("pair_outputs", "pos_a")  # what `target.pair_outputs` serves
    assert set(outputs) == {"pos_b", "topic_a", "topic_b"}
    train = bench.encoded("pos_a", "train")
    count = min(units.PAIR_EXAMPLES, len(train))
    for source, per_seed in outputs.items():
        assert len(per_seed) == 2
        for cell in per_seed:
            assert isinstance(cell, PairOutputs)
            assert cell.features.shape == (count, hidden) and cell.features.dtype == np.float32
            assert cell.source_probs.shape == (count, bench.tasks[source].num_classes)
            np.testing.assert_allclose(cell.source_probs.sum(1), 1.0, atol=1e-5)
            np.testing.assert_array_equal(cell.target_labels, train.labels[:count].numpy())
        assert not np.allclose(per_seed[0].features, per_seed[1].features)  # seeds' prompts differ
    # one store entry per (source, target, seed), all four targets' rows written by one unit each
    bench.ensure(["pair_outputs"])
    assert len(list((bench.store.root / "pair_outputs").glob("*.pt"))) == 4 * 3 * 2


def test_pair_outputs_of_one_batched_pass_match_each_source_alone(bench):
    prompts = {s: bench.source_prompt(s, 0)["prompt"] for s in ("pos_b", "topic_a", "topic_b")}
    together = units.pair_outputs_unit(bench.context, "pos_a", 0, prompts)
    for source, prompt in prompts.items():
        alone = units.pair_outputs_unit(bench.context, "pos_a", 0, {source: prompt})[source]
        # bf16 matrix products round differently for other batch shapes: close, not bit-equal
        torch.testing.assert_close(together[source]["features"], alone["features"], atol=0.05, rtol=0.05)
        torch.testing.assert_close(together[source]["source_probs"], alone["source_probs"], atol=0.05, rtol=0.05)
    # the source's own verbalizer scores its rows: the first example's probabilities, recomputed
    from transferbench.model.kernels import autocast
    from transferbench.model.prompt import prompted_forward
    suite = units.loaded(bench.context)
    first = units.first_examples(suite.encoded("pos_a", "train"), 1)
    with torch.no_grad(), autocast(bench.config, bench.backbone):
        output = prompted_forward(suite.backbone, prompts["topic_a"], first.batch([0], suite.backbone.tokenizer.pad_token_id))
        expected = suite.verbalizer("topic_a").logits(output).softmax(-1)[0]
    torch.testing.assert_close(units.pair_outputs_unit(bench.context, "pos_a", 0, {"topic_a": prompts["topic_a"]})
                               ["topic_a"]["source_probs"][0], expected, atol=0.05, rtol=0.05)


def test_probe_ranking_is_a_ranking_of_every_neuron(bench):
    per_seed = bench.view("probe_ranking", "pos_a")
    backbone = bench.backbone
    assert len(per_seed) == 2
    for rank in per_seed:
        assert rank.shape == (backbone.num_layers, backbone.ffn_width)
        assert sorted(rank.ravel().tolist()) == list(range(rank.size))


def prompt_norm_unit(ctx, task, seed, prompt):
    """A new artifact's unit: the norm of each prompt token."""
    return {"norms": prompt.norm(dim=1)}


@pytest.fixture()
def no_new_artifacts():
    with isolated_artifacts():
        yield


def test_a_new_artifact_is_one_declaration_a_unit_and_an_indicator(bench, no_new_artifacts):
    # what docs/indicators.md ("Adding an artifact") names, and nothing else: one declaration ...
    declare_artifact("prompt_norms", ArtifactSpec(
        "task_seed", prompt_norm_unit, serve=lambda a: a["norms"].numpy(), stage="activations", needs=("prompts",),
        description="norm of each prompt token, [prompt_length] per seed"))
    assert ARTIFACTS["prompt_norms"].startswith("norm of each") and "prompt_norms" in DECLARED
    with pytest.raises(TransferbenchError, match="declared twice"):
        declare_artifact("pair_outputs", DECLARED.get("pair_outputs"))

    class NormGap(Indicator):  # ... and one indicator class that reads it (the unit is above)
        requires = ("prompt_norms",)

        def score(self, source, target):
            return -float(np.mean([abs(a.mean() - b.mean()) for a, b in zip(source.prompt_norms, target.prompt_norms)]))

    stored_before = set((bench.store.root / "activations").glob("*.pt"))
    scores = indicator_scores(bench, NormGap())
    norms = {t: [np.linalg.norm(bench.source_prompt(t, s)["prompt"].numpy(), axis=1).mean() for s in (0, 1)]
             for t in bench.tasks}
    expected = -np.mean([abs(norms["pos_b"][k] - norms["topic_a"][k]) for k in (0, 1)])
    assert scores.loc["pos_b", "topic_a"] == pytest.approx(expected, rel=1e-5)
    added = set((bench.store.root / "activations").glob("*.pt")) - stored_before
    assert len(added) == 4 * 2  # stored per (task, seed)


def test_estimator_indicators_run_on_the_benchmark(bench):
    for name in ("logme", "leep", "nce", "h_score"):
        scores = indicator_scores(bench, make_indicator(name))
        off_diagonal = scores.values[~np.eye(4, dtype=bool)]
        assert np.isfinite(off_diagonal).all(), name
