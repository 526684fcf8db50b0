"""What issue 28 promises: a new transfer kind that needs a new measured cell, and a new artifact
that depends on another artifact, each take one declaration and one unit (plus, for the kind, its
registration), nothing else edited; the planner measures, stores and serves them on the tiny
in-memory backbone. The registries are restored afterwards (`registry.isolated`)."""

from __future__ import annotations

import numpy as np
import pytest

from transferbench.pipeline.artifacts import ARTIFACTS, ArtifactSpec, declare_artifact
from transferbench.pipeline.runner import Benchmark
from transferbench.progress import Work
from transferbench.reference import protocol
from transferbench.reference.protocol import NULL, TRANSFER_KINDS, TransferKind
from transferbench.registry import isolated
from transferbench.scoring.indicator import Indicator
from transferbench.scoring.pairs import indicator_scores
from transferbench.tasks import load_suite


# ---- a transfer kind that needs a new measured cell ---------------------------------------------
def reversed_zero_shot_unit(ctx, target, seed, prompts):
    """The new cell's one unit: each source prompt with its tokens in reverse order, used as-is on
    the target's test split ({source: {"accuracy", "predictions"}}, as the zero-shot cells)."""
    from transferbench.pipeline import units

    return units.zero_shot_row_unit(ctx, target, seed, {source: prompt.flip(0) for source, prompt in prompts.items()})


def reversed_gain_cell(arm, source):
    """The new kind's formula: the reversed source prompt's balanced accuracy over the null prompt's."""
    (reversed_, reversed_b), (null, null_b) = arm("reversed_zero_shot", source), arm("zero_shot", NULL)
    return reversed_ - null, reversed_b - null_b


def test_a_new_transfer_kind_with_a_new_cell_is_measured_and_scored(cache, tiny_backbone, tiny_suite):
    from transferbench.api import ensure_reference
    from transferbench.evaluation.summary import evaluate_indicator

    with isolated(ARTIFACTS, TRANSFER_KINDS):
        declare_artifact("reversed_zero_shot", ArtifactSpec(  # one declaration ...
            "pair_seed", reversed_zero_shot_unit, stage="transfer", needs=("prompts",), batching="row", served=False,
            settings={"prompt_tokens": "reversed"}, cost=lambda sizes, config: Work(eval=sizes.test),
            description="{accuracy, predictions} of the source prompt, tokens reversed, on the target's test split"))
        TRANSFER_KINDS.add("reversed_gain", TransferKind(  # ... and one registration, the unit above
            "balanced accuracy of the reversed source prompt minus the null prompt's", reversed_gain_cell,
            cells=("reversed_zero_shot", "zero_shot")))

        bench = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), seeds=[0])
        assert protocol.measured_cells(["reversed_gain"]) == ["reversed_zero_shot", "zero_shot"]
        bench.ensure(protocol.measured_cells(["reversed_gain"]))  # what the kind needs, prompts first
        names = list(bench.tasks)
        assert len(bench.stored_keys(["reversed_zero_shot"])) == len(names) * (len(names) - 1)  # one entry per cell
        stored = {(s, t): bench.get("reversed_zero_shot", task=t, seed=0, source=s)["predictions"].numpy()
                  for t in names for s in names if s != t}
        own_prompt = bench.prompt_inputs(names[0], 0)
        reference = ensure_reference(bench)  # every kind's cells, the new one read from the store
        # the bundle now supplies the prompts, keyed by how this benchmark trained them
        assert bench.prompt_inputs(names[0], 0) == own_prompt
        assert reference.info["build"]["train_attention"] == bench.train_attention
        source, target = names[1], names[0]
        np.testing.assert_array_equal(reference.predictions[f"reversed_zero_shot/{source}/{target}/0"], stored[source, target])
        labels = reference.predictions[f"labels/{target}"]
        classes = bench.tasks[target].num_classes
        expected = (protocol.balanced_accuracy(stored[source, target], labels, num_classes=classes)
                    - protocol.balanced_accuracy(reference.predictions[f"zero_shot/{NULL}/{target}/0"], labels,
                                                 num_classes=classes))
        assert reference.transfer["reversed_gain"]["per_seed"][source][target] == [pytest.approx(expected)]

        # scored like every kind: an indicator's scores against the new kind's matrix
        measured = reference.matrix("reversed_gain")
        scores = indicator_scores(bench, PromptCosine())
        evaluation = evaluate_indicator(scores, measured, n_bootstrap=50, n_permutations=0)
        assert evaluation.per_target and set(measured.columns) == set(names)
    assert "reversed_gain" not in TRANSFER_KINDS and "reversed_zero_shot" not in ARTIFACTS  # restored


class PromptCosine(Indicator):
    """Cosine of the mean prompt tokens (seed 0)."""

    requires = ("prompts",)

    def score(self, source, target):
        a, b = source.prompts[0].mean(0), target.prompts[0].mean(0)
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---- an artifact computed from another artifact -------------------------------------------------
def layer_thresholds_unit(ctx, task, seed, neurons):
    """The new artifact's one unit: the mean skill-neuron threshold of each layer, from the stored
    skill neurons of (task, seed) (`needs`), so no activation is computed again."""
    return {"per_layer": neurons["thresholds"].mean(dim=(1, 2))}


def test_an_artifact_that_depends_on_another_is_computed_from_it_and_served(cache, tiny_backbone, tiny_suite):
    with isolated(ARTIFACTS):
        declare_artifact("layer_thresholds", ArtifactSpec(  # the one declaration (the unit is above)
            "task_seed", layer_thresholds_unit, stage="activations", needs=("skill_neurons",),
            serve=lambda entry: entry["per_layer"].numpy(), cost=lambda sizes, config: Work(),
            description="mean skill-neuron threshold of each layer, [layers] per seed"))

        class ThresholdGap(Indicator):  # an indicator requiring it
            requires = ("layer_thresholds",)

            def score(self, source, target):
                return -float(np.abs(source.layer_thresholds[0] - target.layer_thresholds[0]).sum())

        bench = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), seeds=[0, 1])
        scores = indicator_scores(bench, ThresholdGap())
        names = list(bench.tasks)
        # what was served is what the unit gives from the stored skill neurons it depends on
        served = {t: [bench.skill_neurons(t, seed)["thresholds"].mean(dim=(1, 2)).numpy() for seed in (0, 1)]
                  for t in names}
        for task in names:
            np.testing.assert_array_equal(bench.view("layer_thresholds", task)[1], served[task][1])
        a, b = names[0], names[1]
        assert scores.loc[a, b] == pytest.approx(-np.abs(served[a][0] - served[b][0]).sum(), rel=1e-6)
        assert len(bench.stored_keys(["skill_neurons"])) == len(bench.stored_keys(["layer_thresholds"])) == 2 * len(names)
    assert "layer_thresholds" not in ARTIFACTS


def test_a_declaration_is_checked_when_it_is_made():
    with pytest.raises(Exception, match="stage"):
        ArtifactSpec("task_seed", layer_thresholds_unit, stage="nowhere")
    with pytest.raises(Exception, match="per="):
        ArtifactSpec("pair", layer_thresholds_unit, stage="activations")
    with pytest.raises(Exception, match="batches as one of"):
        ArtifactSpec("pair_seed", layer_thresholds_unit, stage="activations", batching="each")
    with isolated(ARTIFACTS):
        with pytest.raises(Exception, match="declared twice"):
            declare_artifact("prompts", ARTIFACTS.get("prompts"))
