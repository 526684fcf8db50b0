"""Transferability estimators from the model-selection literature, as pure functions of arrays.

LogME, LEEP, NCE and H-score each score how well a fixed feature extractor (or source classifier)
suits a labelled target set. They read only numpy arrays, so any stage that can produce features
or source predictions on target examples can feed them; the `tllib.ranking` module of
thuml/Transfer-Learning-Library is the reference implementation we compare against.
"""

from __future__ import annotations

import numpy as np

from transferbench.errors import TransferbenchError

# LogME's fixed-point iteration: at most this many updates of (alpha, beta), stopping early when
# lambda = alpha / beta moves by less than this relative amount (tllib.ranking.logme's schedule).
LOGME_MAX_STEPS = 11
LOGME_TOLERANCE = 0.01


def _class_indices(labels, n: int, who: str) -> np.ndarray:
    """Labels as indices 0..K-1 of the classes that occur (sorted), checked against `n` examples."""
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise TransferbenchError(f"{who}: expected {n} labels in a 1-D array, got shape {labels.shape}")
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def _features(features, who: str) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise TransferbenchError(f"{who}: features must be [examples >= 2, dims], got shape {f.shape}")
    if not np.isfinite(f).all():
        raise TransferbenchError(f"{who}: features contain NaN or inf")
    return f


def logme(features, labels) -> float:
    """LogME: the maximum log evidence of a Bayesian linear model of the one-hot labels, per example.

    You et al., ICML 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning", Algorithm 1. For features `F` `[n, D]` and each one-hot label column `y` `[n]`,
    with prior `w ~ N(0, alpha^-1 I)` and noise `y ~ N(F w, beta^-1 I)`:

        A = alpha I + beta F^T F,        m = beta A^-1 F^T y
        L(alpha, beta) = D/2 log alpha + n/2 log beta - n/2 log 2 pi
                         - beta/2 ||F m - y||^2 - alpha/2 m^T m - 1/2 log|A|

    maximised by the fixed-point iteration (sigma_i = eigenvalues of F^T F)

        gamma = sum_i beta sigma_i / (alpha + beta sigma_i)
        alpha <- gamma / m^T m,          beta <- (n - gamma) / ||F m - y||^2

    from alpha = beta = 1, at most 11 steps, stopping once lambda = alpha / beta changes by less
    than 1%. LogME = mean over label columns of L / n. Higher = better features for the labels.

    As in `tllib.ranking.logme.log_maximum_evidence` (thuml/Transfer-Learning-Library), the last
    (alpha, beta) update is kept and L is evaluated with the m of that last step; we reproduce
    this schedule so the numbers match tllib's (tests/test_estimators.py checks that against an
    independent implementation with explicit inverses, since tllib is not installable here).
    Unlike tllib, which iterates over 0..max(label), only classes that occur in `labels` count;
    a class that never occurs makes tllib's evidence undefined.

    Computation: one SVD of `F` (`F = U S V^T`, so `F^T F = V S^2 V^T`); the `D - rank` zero
    eigenvalues add `log alpha` each to `log|A|` and nothing to gamma or m.
    """
    f = _features(features, "logme")
    y_index = _class_indices(labels, f.shape[0], "logme")
    n, dims = f.shape
    _, singular, vt = np.linalg.svd(f, full_matrices=False)
    sigma = singular**2  # the nonzero-or-small eigenvalues of F^T F, [min(n, D)]
    null_dims = dims - sigma.size  # eigenvalues that are exactly zero
    evidences = []
    for c in range(int(y_index.max()) + 1):
        y = (y_index == c).astype(np.float64)
        projected = vt @ (f.T @ y)  # V^T F^T y
        alpha, beta = 1.0, 1.0
        for _ in range(LOGME_MAX_STEPS):
            lam = alpha / beta
            gamma = float((sigma / (sigma + lam)).sum())
            m = vt.T @ (projected * beta / (alpha + beta * sigma))
            m_sq = float(m @ m)
            residual_sq = float(((f @ m - y) ** 2).sum())
            alpha, beta = gamma / m_sq, (n - gamma) / residual_sq
            if abs(alpha / beta - lam) / lam < LOGME_TOLERANCE:
                break
        log_det_a = float(np.log(alpha + beta * sigma).sum()) + null_dims * np.log(alpha)
        evidence = (dims / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
                    - beta / 2 * residual_sq - alpha / 2 * m_sq - log_det_a / 2)
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def leep(source_probs, target_labels) -> float:
    """LEEP: log expected empirical prediction of a source classifier on target labels.

    Nguyen et al., ICML 2020, "LEEP: A New Measure to Evaluate Transferability of Learned
    Representations", Sec. 3. With `theta(x_i)` the source model's distribution over its labels
    z (`source_probs`, `[n, Z]`, rows sum to 1) and target labels `y_i`:

        P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z,     P(y | z) = P(y, z) / sum_y' P(y', z)
        LEEP = 1/n sum_i log( sum_z P(y_i | z) theta(x_i)_z )

    LEEP <= 0; higher = better transfer. Source labels z with no probability mass are skipped.
    """
    theta = np.asarray(source_probs, dtype=np.float64)
    if theta.ndim != 2 or (theta < 0).any() or not np.allclose(theta.sum(1), 1.0, atol=1e-6):
        raise TransferbenchError("leep: source_probs must be [examples, source_labels] with rows that are distributions")
    y = _class_indices(target_labels, theta.shape[0], "leep")
    onehot = np.eye(int(y.max()) + 1)[y]  # [n, Y]
    joint = onehot.T @ theta / theta.shape[0]  # P(y, z), [Y, Z]
    marginal = joint.sum(0)  # P(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    expected = (theta @ conditional.T)[np.arange(theta.shape[0]), y]  # sum_z P(y_i | z) theta_iz
    return float(np.log(expected).mean())


def nce(source_pred, target_labels) -> float:
    """NCE: negative conditional entropy of target labels given hard source predictions.

    Tran et al., ICCV 2019, "Transferability and Hardness of Supervised Classification Tasks",
    Sec. 3. With `z_i` the source model's predicted label (`source_pred`, `[n]`) and `y_i` the
    target label, and the empirical joint `P(y, z) = 1/n |{i: y_i = y, z_i = z}|`:

        NCE = -H(Y | Z) = sum_{y, z} P(y, z) log( P(y, z) / P(z) )

    NCE <= 0, and 0 when z determines y; higher = better transfer.
    """
    z = np.asarray(source_pred)
    if z.ndim != 1:
        raise TransferbenchError(f"nce: source_pred must be a 1-D array of labels, got shape {z.shape}")
    z = np.unique(z, return_inverse=True)[1].reshape(-1)
    y = _class_indices(target_labels, z.shape[0], "nce")
    counts = np.zeros((int(y.max()) + 1, int(z.max()) + 1))
    np.add.at(counts, (y, z), 1.0)
    joint = counts / z.shape[0]
    marginal = np.broadcast_to(joint.sum(0), joint.shape)
    seen = joint > 0
    return float((joint[seen] * np.log(joint[seen] / marginal[seen])).sum())


def h_score(features, labels) -> float:
    """H-score: how much of the features' covariance the class-conditional means explain.

    Bao et al., ICIP 2019, "An Information-Theoretic Approach to Transferability in Task Transfer
    Learning", Definition 2. For features `f(x)` `[n, D]` and labels y:

        H(f) = tr( cov(f(X))^-1  cov( E[f(X) | Y] ) )

    with sample covariances (both with the same normalisation, which cancels) and `E[f | y]` the
    mean feature of class y, assigned to each example of that class. `cov(f)^-1` is the
    Moore-Penrose pseudo-inverse (`np.linalg.pinv` with numpy's default cutoff), because the
    feature covariance of n < D examples, or of features with a constant dimension, is singular;
    tllib (`tllib/ranking/hscore.py`) also uses pinv, with `rcond=1e-15`. Higher = better transfer.
    """
    f = _features(features, "h_score")
    y = _class_indices(labels, f.shape[0], "h_score")
    class_means = np.stack([f[y == c].mean(0) for c in range(int(y.max()) + 1)])
    cov_f = np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])
    cov_g = np.cov(class_means[y], rowvar=False).reshape(f.shape[1], f.shape[1])
    return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ cov_g))
