"""`transferbench.neurons.predictivity` and `select` on activations with known answers."""

import numpy as np
import pytest

from transferbench.errors import TransferbenchError
from transferbench.neurons import predictivity, probe_ranking, select


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
