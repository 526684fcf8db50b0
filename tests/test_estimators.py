"""`transferbench.scoring.estimators`: each formula against a hand-computed answer or an independent implementation."""

import math

import numpy as np
import pytest

from transferbench.errors import TransferbenchError
from transferbench.scoring.estimators import h_score, leep, logme, nce


def logme_with_explicit_inverses(features, labels, max_steps=11, tolerance=0.01):
    """A second LogME, written from the paper's formulas with explicit inverses and no SVD.

    tllib (`tllib.ranking.logme.log_maximum_evidence`) cannot be installed here, so this is the
    stand-in for "matches tllib": it follows tllib's schedule (alpha = beta = 1, at most 11 updates,
    stop when alpha / beta moves < 1%, evidence at the last update with the m of the last step)
    but computes A^-1, gamma = D - alpha tr(A^-1) and log|A| directly.
    """
    f = np.asarray(features, dtype=np.float64)
    n, dims = f.shape
    gram = f.T @ f
    evidences = []
    for c in np.unique(labels):
        y = (np.asarray(labels) == c).astype(np.float64)
        alpha = beta = 1.0
        for _ in range(max_steps):
            a_inv = np.linalg.inv(alpha * np.eye(dims) + beta * gram)
            m = beta * a_inv @ f.T @ y
            gamma = dims - alpha * np.trace(a_inv)
            m_sq, residual_sq = m @ m, np.sum((y - f @ m) ** 2)
            previous = alpha / beta
            alpha, beta = gamma / m_sq, (n - gamma) / residual_sq
            if abs(alpha / beta - previous) / previous < tolerance:
                break
        _, log_det = np.linalg.slogdet(alpha * np.eye(dims) + beta * gram)
        evidence = (dims * math.log(alpha) + n * math.log(beta) - n * math.log(2 * math.pi)
                    - beta * residual_sq - alpha * m_sq - log_det) / 2
        evidences.append(evidence / n)
    return float(np.mean(evidences))


@pytest.mark.parametrize("n, dims, classes", [(60, 8, 2), (40, 5, 4), (12, 30, 3)])
def test_logme_matches_an_explicit_inverse_implementation_to_1e_6(n, dims, classes):
    rng = np.random.default_rng(n + dims)
    labels = np.arange(n) % classes
    # features that carry some label signal, so the iteration runs several steps
    features = rng.normal(size=(n, dims)) + 0.7 * np.eye(classes, dims)[labels]
    assert logme(features, labels) == pytest.approx(logme_with_explicit_inverses(features, labels), abs=1e-6)


def test_logme_known_answer_one_feature_two_examples():
    # f = [1, -1], labels [0, 1]. Both classes are mirror images (F^T y = +1 / -1), so one scalar
    # iteration suffices: F^T F = 2; step 1 (alpha = beta = 1): m = 1/3, gamma = 2/3 ->
    # alpha = 6, beta = 12/5; step 2: m = 2/9 -> alpha = 9, beta = 126/53; ... lambda keeps growing
    # by > 1%, so all 11 steps run. Iterated in exact fractions (outside this code), the evidence
    # per example is -1.0736766386900627.
    assert logme([[1.0], [-1.0]], [0, 1]) == pytest.approx(-1.0736766386900627, abs=1e-12)
    assert logme([[1.0], [-1.0]], ["neg", "pos"]) == pytest.approx(-1.0736766386900627, abs=1e-12)


def test_logme_is_invariant_to_rotating_the_features_and_prefers_informative_ones():
    rng = np.random.default_rng(3)
    labels = np.arange(80) % 2
    informative = rng.normal(size=(80, 6)) + 2.0 * labels[:, None]
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert logme(informative @ rotation, labels) == pytest.approx(logme(informative, labels), abs=1e-9)
    assert logme(informative, labels) > logme(rng.normal(size=(80, 6)), labels)


def test_leep_known_answer():
    # theta = [[.5, .5], [1, 0]], y = [0, 1]: P(y, z) = [[.25, .25], [.5, 0]], P(z) = [.75, .25],
    # P(y | z=0) = [1/3, 2/3], P(y | z=1) = [1, 0]; expected predictions .5/3 + .5 = 2/3 and 2/3.
    assert leep([[0.5, 0.5], [1.0, 0.0]], [0, 1]) == pytest.approx(math.log(2 / 3))
    # a source label that determines the target label: LEEP = 0
    assert leep(np.eye(3)[[0, 1, 2, 2]], [5, 7, 9, 9]) == pytest.approx(0.0)


def test_leep_rejects_rows_that_are_not_distributions():
    with pytest.raises(TransferbenchError, match="distributions"):
        leep([[0.5, 0.6]], [0])


def test_nce_known_answer():
    # z = [0, 0, 0, 1], y = [0, 0, 1, 1]: P(0,0) = 1/2, P(1,0) = 1/4, P(1,1) = 1/4, P(z) = [3/4, 1/4]
    expected = 0.5 * math.log(2 / 3) + 0.25 * math.log(1 / 3) + 0.25 * math.log(1.0)
    assert nce([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(expected)
    assert nce(["a", "a", "b", "b"], [1, 1, 0, 0]) == pytest.approx(0.0)
    # predictions independent of the labels: -H(Y) = log(1/2)
    assert nce([0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(math.log(0.5))


def test_h_score_known_answers():
    labels = [0, 0, 1, 1]
    # 1-D: class means 1 and 2 -> var(E[f|y]) = 1/3, var(f) = 5/3 (both ddof 1) -> 1/5
    assert h_score(np.array([[0.0], [2.0], [1.0], [3.0]]), labels) == pytest.approx(0.2)
    # dim 0 is all between-class variance, dim 1 all within-class and uncorrelated: 1 + 0
    features = np.array([[0.0, 1.0], [0.0, -1.0], [2.0, 1.0], [2.0, -1.0]])
    assert h_score(features, labels) == pytest.approx(1.0)
    # a constant extra dimension makes cov(f) singular; the pseudo-inverse ignores it
    assert h_score(np.hstack([features, np.ones((4, 1))]), labels) == pytest.approx(1.0)


def test_estimators_reject_mismatched_lengths():
    with pytest.raises(TransferbenchError, match="labels"):
        logme(np.zeros((3, 2)), [0, 1])
    with pytest.raises(TransferbenchError, match="labels"):
        h_score(np.zeros((3, 2)), [0, 1])
    with pytest.raises(TransferbenchError, match="labels"):
        nce([0, 1, 1], [0, 1])
