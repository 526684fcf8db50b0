"""The measurement protocol of the reference ground truth: every formula that turns per-example
test predictions into measured transfer, its uncertainty, and target admission.

Stage 3 of the pipeline, after the units have produced predictions (`transferbench.pipeline.units`) and
before indicators are scored against the result (`transferbench.reference.bundle` ships it). Each
formula lives here once; docs/protocol.md explains why each choice was made.

Notation: `m(p -> t)` is the balanced accuracy on target t's test split of prompt p with t's
verbalizer; `null` is the untrained initial prompt of the same seed (`prompt.initial_prompt`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from transferbench.registry import Registry

ADMISSION_ALPHA = 0.01
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0


def balanced_accuracy(predictions: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None,
                      num_classes: int | None = None) -> np.ndarray:
    """Mean over classes of the recall, `(1/K) sum_c |{i: y_i = c, yhat_i = c}| / |{i: y_i = c}|`
    (Brodersen et al. 2010), over the classes present in `labels`.

    `predictions` is `[..., n]`; `weights` (`[B, n]` example counts of bootstrap resamples, or
    None for every example once) gives one value per resample: shape `predictions.shape[:-1]` or
    `[B, *predictions.shape[:-1]]`. A constant prediction scores exactly 1/K, whatever the class
    balance, which is why the protocol uses it: "beats the majority class" becomes "beats 1/K".
    """
    classes = np.unique(labels) if num_classes is None else np.arange(num_classes)
    correct = predictions == labels
    w = np.ones((1, labels.shape[0])) if weights is None else np.asarray(weights, dtype=float)
    recalls = []
    for c in classes:
        in_class = (labels == c).astype(float)
        if in_class.sum() == 0:
            continue
        hits = np.einsum("bn,...n->b...", w, correct * in_class)
        total = (w @ in_class).reshape((-1,) + (1,) * (correct.ndim - 1))
        recalls.append(hits / np.maximum(total, 1e-12))
    value = np.mean(recalls, axis=0)
    return value[0] if weights is None else value


def accuracy(predictions: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Plain accuracy, same shapes as `balanced_accuracy` (Su et al. report it)."""
    correct = (predictions == labels).astype(float)
    if weights is None:
        return correct.mean(-1)
    w = np.asarray(weights, dtype=float)
    return np.einsum("bn,...n->b...", w, correct) / w.sum(1).reshape((-1,) + (1,) * (correct.ndim - 1))


def normalised_transfer(source: np.ndarray, own: np.ndarray, null: np.ndarray) -> np.ndarray:
    """`(m(s->t) - m(null->t)) / (m(t->t) - m(null->t))`: 0 = no better than the untrained prompt,
    1 = as good as the target's own prompt. Undefined (NaN) when the own prompt does not beat the
    null prompt, which admission (`admission`) rules out for every target in the tables."""
    gap = own - null
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, (source - null) / np.where(gap > 0, gap, 1.0), np.nan)


def relative_performance(source: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Su et al. (NAACL 2022), Sec. 4: `acc(s->t) / acc(t->t)` (NaN when the own accuracy is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(own > 0, source / np.where(own > 0, own, 1.0), np.nan)


def resamples(n_examples: int, n_seeds: int, n_bootstrap: int = N_BOOTSTRAP,
              seed: int = BOOTSTRAP_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap draws over test examples and seeds: (example weights `[B, n]`, seed indices `[B, S]`).

    One draw resamples the test examples (multinomial counts, shared by every arm of a cell so
    differences are paired) and, independently, the seeds with replacement.
    """
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_examples, np.full(n_examples, 1.0 / n_examples), size=n_bootstrap)
    seeds = rng.integers(0, n_seeds, size=(n_bootstrap, n_seeds))
    return weights.astype(float), seeds


@dataclass
class CellEstimate:
    """One measured quantity: mean over seeds, per-seed values, and bootstrap uncertainty."""

    mean: float
    per_seed: list[float]
    std_over_seeds: float  # sample std (ddof=1); NaN with one seed, never 0
    se: float  # bootstrap standard error over test examples and seeds
    ci_low: float
    ci_high: float


def estimate(per_seed: np.ndarray, boot_per_seed: np.ndarray, seed_draws: np.ndarray) -> CellEstimate:
    """Summarise one cell from its per-seed values `[S]` and bootstrap values `[B, S]` (the value of
    each seed under each example resample), averaging over the resampled seeds of each draw."""
    boot = np.take_along_axis(boot_per_seed, seed_draws, axis=1)
    boot_mean = boot.mean(axis=1)  # NaN where a resampled seed's value is undefined; left out below
    finite = boot_mean[np.isfinite(boot_mean)]
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
    return CellEstimate(
        mean=float(np.mean(per_seed)), per_seed=[float(v) for v in per_seed], std_over_seeds=std,
        se=float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan"),
        ci_low=float(np.percentile(finite, 2.5)) if len(finite) else float("nan"),
        ci_high=float(np.percentile(finite, 97.5)) if len(finite) else float("nan"),
    )


def one_sided_p(boot_difference: np.ndarray) -> float:
    """Bootstrap p-value of "difference <= 0" against "> 0": `(1 + #{b: d_b <= 0}) / (1 + B)`
    (Davison & Hinkley 1997, ch. 4; the +1 keeps p above zero with finitely many draws)."""
    return float((1 + np.sum(boot_difference <= 0)) / (1 + len(boot_difference)))


def admission(own_boot: np.ndarray, null_boot: np.ndarray, num_classes: int,
              alpha: float = ADMISSION_ALPHA) -> tuple[bool, float, float, str]:
    """Whether a target enters the tables: its own prompt must beat the majority class (balanced
    accuracy 1/K) and the null prompt, each one-sided at `alpha`, over the bootstrap of test
    examples and seeds (`own_boot`, `null_boot`: seed-averaged bootstrap values `[B]`).

    Returns (admitted, p vs majority, p vs null, reason when excluded).
    """
    p_majority = one_sided_p(own_boot - 1.0 / num_classes)
    p_null = one_sided_p(own_boot - null_boot)
    reasons = []
    if p_majority >= alpha:
        reasons.append(f"own prompt does not beat the majority class (balanced accuracy 1/{num_classes}), "
                       f"p = {p_majority:.3f}")
    if p_null >= alpha:
        reasons.append(f"own prompt does not beat the untrained null prompt, p = {p_null:.3f}")
    return not reasons, p_majority, p_null, "; ".join(reasons)


def near_admission_threshold(p: float, alpha: float = ADMISSION_ALPHA) -> bool:
    """Whether an admission p-value lies within a factor of two of `alpha` (`alpha/2 <= p < 2 alpha`):
    a decision that equally valid draws of the protocol can flip. Measured on the default suite:
    the build with eager training attention moved rt_sentiment's p vs null from 0.0095 to 0.0165
    and bbc_sport_vs_business's from 0.0080 to 0.0115, so both left the tables
    (benchmarks/README.md). Shown in the task reports; it changes no admission."""
    return alpha / 2 <= p < 2 * alpha


# ---- kinds of measured transfer ---------------------------------------------------------------------

NULL = "(null)"  # the untrained initial prompt, named as a source

# `arm(prefix, source=None, metric=balanced_accuracy)`: one arm of a target's cells, as (per seed
# [S], bootstrap [B, S]) of `metric` over the stored test predictions `prefix/source/target/seed`
# (`own/target/seed` when `source` is None); `transferbench.reference.bundle` provides it per target.
Arm = Callable[..., tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class TransferKind:
    """One kind of measured transfer a reference holds (rows = source, columns = target):
    what it means, its cell formula `cell(arm, source) -> (per seed, bootstrap)`, and its `label`:
    the few words that name its values on an axis or in a table heading (`transfer_label`);
    and `cells`, the artifacts (`transferbench.pipeline.artifacts.ARTIFACTS`) it is computed from: the planner
    measures them, and a pair artifact `name` among them is stored in the bundle as the predictions
    `name/<source>/<target>/<seed>` that `arm(name, source)` reads."""

    description: str
    cell: Callable[[Arm, str], tuple[np.ndarray, np.ndarray]]
    label: str = ""
    cells: tuple[str, ...] = ()


def zero_shot_cell(arm: Arm, source: str) -> tuple[np.ndarray, np.ndarray]:
    """`normalised_transfer` of the source prompt used as-is on the target (balanced accuracy)."""
    (ms, ms_b), (own, own_b), (null, null_b) = arm("zero_shot", source), arm("own"), arm("zero_shot", NULL)
    return normalised_transfer(ms, own, null), normalised_transfer(ms_b, own_b, null_b)


def zero_shot_relative_cell(arm: Arm, source: str) -> tuple[np.ndarray, np.ndarray]:
    """`relative_performance` of the source prompt on the target (plain accuracy)."""
    (acc, acc_b), (own, own_b) = arm("zero_shot", source, accuracy), arm("own", None, accuracy)
    return relative_performance(acc, own), relative_performance(acc_b, own_b)


def init_gain_cell(arm: Arm, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Balanced accuracy after `init_steps` from the source prompt minus the same budget from the
    default initialisation (the null prompt)."""
    (gain, gain_b), (base, base_b) = arm("init", source), arm("init", NULL)
    return gain - base, gain_b - base_b


# Reported in registration order; installed packages add kinds in the entry-point group
# `transferbench.transfer_kinds` (a "module:attr" naming a TransferKind).
TRANSFER_KINDS: Registry[TransferKind] = Registry("transfer kind", TransferKind,
                                                  group="transferbench.transfer_kinds", ordered=True)
TRANSFER_KINDS.add("zero_shot", TransferKind(
    "a source prompt used as-is on the target, corrected for chance and for the untrained prompt: "
    "(m(s->t) - m(null->t)) / (m(t->t) - m(null->t)), m = balanced accuracy", zero_shot_cell,
    label="normalised transfer (0 = untrained prompt, 1 = target's own prompt)", cells=("prompts", "zero_shot")))
TRANSFER_KINDS.add("zero_shot_relative", TransferKind(
    "Su et al. (2022)'s relative performance acc(s->t) / acc(t->t), plain accuracy", zero_shot_relative_cell,
    label="relative performance (source prompt / target's own prompt)", cells=("prompts", "zero_shot")))
TRANSFER_KINDS.add("init_gain", TransferKind(
    "balanced accuracy after init_steps of tuning from the source prompt minus the same budget "
    "from the default initialisation (same seed and data order)", init_gain_cell,
    label="gain (init from source − default init)", cells=("init",)))


def transfer_label(kind: str) -> str:
    """The label of a registered transfer kind's values (its name when it declares none), or
    "measured transfer" for a kind not registered here."""
    if kind not in TRANSFER_KINDS:
        return "measured transfer"
    return TRANSFER_KINDS.get(kind).label or kind


def check_transfer_kind(kind: str) -> str:
    """`kind` if it is a registered transfer kind; else ValueError listing the registered ones."""
    if kind not in TRANSFER_KINDS:
        names = [repr(name) for name in TRANSFER_KINDS]
        expected = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise ValueError(f"should be {expected} (a registered transfer kind), got {kind!r}")
    return kind


def measured_cells(kinds: Iterable[str] | None = None) -> list[str]:
    """The artifacts the transfer `kinds` (default: every registered kind) are computed from."""
    names = TRANSFER_KINDS.names() if kinds is None else list(kinds)
    return list(dict.fromkeys(cell for kind in names for cell in TRANSFER_KINDS.get(kind).cells))


class _KindDescriptions(Mapping):
    """`TRANSFER_KIND_HELP[kind]`: each registered kind's description, read from the registry."""

    def __getitem__(self, kind: str) -> str:
        if kind not in TRANSFER_KINDS:
            raise KeyError(kind)
        return TRANSFER_KINDS.get(kind).description

    def __iter__(self) -> Iterator[str]:
        return iter(TRANSFER_KINDS)

    def __len__(self) -> int:
        return len(TRANSFER_KINDS)


TRANSFER_KIND_HELP: Mapping[str, str] = _KindDescriptions()
