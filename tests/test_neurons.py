"""`transferbench.model.neurons.predictivity` and `select` on activations with known answers."""

import numpy as np
import pytest

from transferbench.errors import TransferbenchError
from transferbench.model.neurons import predictivity, probe_ranking, select


def _activations(rng, n, layers=2, positions=3, width=5):
    return rng.normal(size=(n, layers, positions, width)).astype(np.float32)


def test_perfect_positive_and_negative_neurons_score_half():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 20)
    train, evaluation = _activations(rng, 40), _activations(rng, 40)
    # neuron (layer 0, unit 1) fires exactly for label 1 at position 2 -> Acc = 1
    for acts in (train, evaluation):
        acts[:, 0, 2, 1] = np.where(labels == 1, 5.0, -5.0)
        acts[:, 1, 0, 3] = np.where(labels == 1, -5.0, 5.0)  # negatively predictive -> Acc = 0
    scores = predictivity(train, evaluation, labels)
    assert scores.shape == (2, 5)
    assert scores[0, 1] == pytest.approx(0.5)
    assert scores[1, 3] == pytest.approx(0.5)
    others = np.delete(scores.ravel(), [1, 5 + 3])
    assert others.max() < 0.45


def test_threshold_is_mean_of_train_split_not_eval_split():
    labels = np.array([0, 0, 1, 1])
    evaluation = np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1, 1, 1)  # eval mean 2.5 would separate perfectly
    # train mean 0: every eval example fires -> Acc 1/2 -> score 0 (an eval-mean threshold gives 0.5)
    train = np.array([-1.0, 1.0]).reshape(2, 1, 1, 1)
    assert predictivity(train, evaluation, labels)[0, 0] == pytest.approx(0.0)
    # train mean 1.5 (median 0): 2, 3, 4 fire -> Acc 3/4 -> score 1/4
    train = np.array([0.0, 0.0, 0.0, 6.0]).reshape(4, 1, 1, 1)
    assert predictivity(train, evaluation, labels)[0, 0] == pytest.approx(0.25)


def test_score_is_max_over_prompt_positions():
    labels = np.array([0, 1, 0, 1])
    train = np.zeros((4, 1, 2, 1))
    evaluation = np.zeros((4, 1, 2, 1))
    evaluation[:, 0, 1, 0] = [-1, 1, -1, 1]  # position 1 perfect; position 0 never fires -> 0.5
    evaluation[:, 0, 0, 0] = [-1, 1, 1, -1]  # position 0 at chance
    assert predictivity(train, evaluation, labels)[0, 0] == pytest.approx(0.5)


def test_imbalanced_binary_split_uses_balanced_accuracy():
    # 230 negatives, 20 positives (92/8, like rt_subjectivity). Plain accuracy would score a neuron
    # that never fires 0.92 - 0.5 = 0.42, above one with TPR = TNR = 0.8 (0.30).
    labels = np.array([0] * 230 + [1] * 20)
    evaluation = np.full((250, 1, 1, 2), -1.0)
    evaluation[:184, 0, 0, 1] = -1.0  # TNR = 184 / 230 = 0.8
    evaluation[184:230, 0, 0, 1] = 1.0
    evaluation[230:246, 0, 0, 1] = 1.0  # TPR = 16 / 20 = 0.8
    scores = predictivity(np.zeros((1, 1, 1, 2)), evaluation, labels)
    assert scores[0, 0] == pytest.approx(0.0)  # neuron 0 never fires
    assert scores[0, 1] == pytest.approx(0.3)


def test_multiclass_is_one_vs_rest_balanced_accuracy_max_over_classes():
    labels = np.array([0, 1, 2] * 10)
    train = np.zeros((30, 1, 1, 2))
    evaluation = np.zeros((30, 1, 1, 2))
    evaluation[:, 0, 0, 0] = np.where(labels == 2, 1.0, -1.0)  # fires exactly for class 2: balanced acc 1
    evaluation[:, 0, 0, 1] = np.where(labels == 0, 1.0, -1.0) * (np.arange(30) % 2)  # half of class 0
    scores = predictivity(train, evaluation, labels)
    assert scores[0, 0] == pytest.approx(0.5)
    # class 0: TPR = 0.5, TNR = 1 -> balanced 0.75 -> 0.25 (other classes give less)
    assert scores[0, 1] == pytest.approx(0.25)


def test_bad_shapes_give_one_line_errors():
    with pytest.raises(TransferbenchError, match="activations must be"):
        predictivity(np.zeros((2, 1, 1)), np.zeros((2, 1, 1)), [0, 1])
    with pytest.raises(TransferbenchError, match="labels"):
        predictivity(np.zeros((2, 1, 1, 1)), np.zeros((2, 1, 1, 1)), [0, 1, 1])


def test_select_per_layer_and_global():
    scores = np.array([[0.1, 0.4, 0.3, 0.0], [0.05, 0.02, 0.01, 0.2]])
    per_layer = select(scores, fraction=0.5, per_layer=True)
    assert per_layer.tolist() == [[False, True, True, False], [True, False, False, True]]
    global_ = select(scores, fraction=0.25, per_layer=False)
    assert global_.tolist() == [[False, True, True, False], [False, False, False, False]]
    with pytest.raises(TransferbenchError):
        select(scores, fraction=0)


def test_probe_ranking_puts_the_neuron_that_carries_the_label_first():
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 2
    activations = rng.normal(size=(200, 20))
    activations[:, 7] += 3.0 * labels  # only neuron 7 knows the label
    for l1, l2 in [(0.01, 0.0), (0.001, 0.001), (0.0, 0.01)]:
        ranking = probe_ranking(activations, labels, l1=l1, l2=l2)
        assert sorted(ranking.tolist()) == list(range(20))
        assert ranking[0] == 7


def test_probe_ranking_uses_absolute_weights_over_all_classes():
    rng = np.random.default_rng(1)
    labels = np.arange(300) % 3
    activations = rng.normal(size=(300, 12))
    activations[:, 3] -= 3.0 * (labels == 1)  # negatively tied to class 1
    activations[:, 10] += 3.0 * (labels == 2)
    ranking = probe_ranking(activations, [["a", "b", "c"][y] for y in labels], l1=0.005, l2=0.001)
    assert set(ranking[:2].tolist()) == {3, 10}


def test_probe_ranking_rejects_bad_input():
    with pytest.raises(TransferbenchError, match="not both 0"):
        probe_ranking(np.zeros((4, 2)), [0, 1, 0, 1], l1=0, l2=0)
    with pytest.raises(TransferbenchError, match="single class"):
        probe_ranking(np.zeros((4, 2)), [1, 1, 1, 1], l1=0.1, l2=0)
    with pytest.raises(TransferbenchError, match="examples, neurons"):
        probe_ranking(np.zeros((4, 2, 1)), [0, 1, 0, 1], l1=0.1, l2=0)


# ------------------------------------------------------------------ positions the skill-neuron scores read


def test_skill_positions_are_prompt_then_mask_by_default():
    from transferbench.pipeline.units import DEFAULT_SKILL_POSITIONS, skill_positions

    assert DEFAULT_SKILL_POSITIONS == "mask+prompt"  # as the reference code
    assert skill_positions(4) == [1, 2, 3, 4, 5]
    assert skill_positions(4, "prompt") == [1, 2, 3, 4]
    assert skill_positions(4, "mask") == [5]
    with pytest.raises(TransferbenchError, match="must be one of mask\\+prompt, prompt, mask"):
        skill_positions(4, "text")


def test_the_mask_position_holds_the_mask_token(tiny_backbone):
    """The position `skill_positions(n, "mask")` names is where the template puts [MASK]."""
    import torch

    from transferbench.model.backbone import Backbone
    from transferbench.model.prompt import initial_prompt, prompted_forward
    from transferbench.pipeline.units import skill_positions

    backbone = Backbone(str(tiny_backbone))
    inputs = []
    handle = backbone.encoder.embeddings.register_forward_pre_hook(
        lambda _module, _args, kwargs: inputs.append(kwargs["inputs_embeds"]), with_kwargs=True)
    encoded = backbone.tokenizer(["good movie", "bad"], padding=True, return_tensors="pt")
    try:
        with torch.no_grad():
            prompted_forward(backbone, initial_prompt(backbone, 3, seed=0), dict(encoded))
    finally:
        handle.remove()
    mask_embedding = backbone.word_embeddings.weight[backbone.tokenizer.mask_token_id]
    [position] = skill_positions(3, "mask")
    assert torch.equal(inputs[0][:, position], mask_embedding.expand(2, -1))
    # and no prompt position holds it
    for position in skill_positions(3, "prompt"):
        assert not torch.equal(inputs[0][0, position], mask_embedding)


def test_skill_thresholds_are_train_means_at_prompt_and_mask_positions(cache, tiny_backbone, tiny_suite):
    """Recomputed by hand from every position's activations: positions 1..n and n + 1."""
    import torch

    from transferbench.model.kernels import autocast
    from transferbench.model.prompt import capture_ffn, prompted_forward
    from transferbench.pipeline.artifacts import Address
    from transferbench.pipeline.runner import Benchmark
    from transferbench.tasks import load_suite

    bench = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), [0])
    prompt = bench.source_prompt("pos_a", 0)["prompt"]
    n = prompt.shape[0]
    train = bench.encoded("pos_a", "train")
    pad = bench.backbone.tokenizer.pad_token_id
    total = 0
    with capture_ffn(bench.backbone, slice(None)) as captured, autocast(bench.config, bench.backbone), torch.no_grad():
        for index in train.length_sorted_batches(bench.config.eval_batch_size):
            prompted_forward(bench.backbone, prompt, train.batch(index, pad))
            total = total + captured.pop()[:, :, : n + 2].sum(0)  # [CLS], prompt, [MASK]
    means = total / len(train)
    default = bench.skill_neurons("pos_a", 0)["thresholds"]
    assert default.shape == (bench.backbone.num_layers, n + 1, bench.backbone.ffn_width)
    assert torch.allclose(default, means[:, 1 : n + 2], atol=1e-5)
    only_prompt = bench.skill_neurons("pos_a", 0, "prompt")
    assert torch.allclose(only_prompt["thresholds"], means[:, 1 : n + 1], atol=1e-5)
    # a separate store entry per position set: the prompt-only scores are not served as the default
    assert bench.key("skill_neurons", Address("pos_a", 0)) != bench.key("skill_neurons", Address("pos_a", 0), positions="prompt")
    # a max over more positions: never below the prompt-only score
    scores = bench.skill_neurons("pos_a", 0)["scores"]
    assert (scores >= only_prompt["scores"] - 1e-7).all()
