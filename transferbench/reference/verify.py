"""Verification of a reference bundle: is it what its stored predictions, the code and the suite
say now, and do randomly chosen stored predictions re-compute from its prompts alone?

`transferbench reference verify` runs these after `transferbench.reference.bundle.read_bundle` has
checked every hash: `recompute_problem` (the tables from the predictions, `bundle.derive_tables`),
`setting_problem` (suite, backbone, seeds, protocol settings, prompt config, task records, test
labels), then `rerun_cells` (stored predictions re-computed through the planner, compared within a
stated tolerance per kind). `suite_problem` is also how a run decides whether a shipped reference
measured its setting. docs/protocol.md, "Verifying", says what each step rules out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferbench.json_trees import first_difference
from transferbench.reference import protocol
from transferbench.reference.bundle import (
    BundleArtifacts,
    Reference,
    derive_tables,
    int_predictions,
    protocol_record,
)
from transferbench.reference.protocol import NULL


@dataclass(frozen=True)
class CellTolerance:
    """How far a re-run cell may be from the stored one (`reference verify`): the least share of
    test examples predicted as stored, and the largest difference in balanced accuracy."""

    agreement: float
    delta: float

    def phrase(self) -> str:
        return f"at least {self.agreement:.0%} of predictions as stored and balanced accuracy within {self.delta:.2f}"


# Re-run cells are compared with a tolerance, not for equality: kernels round differently on other
# CPU kinds (AMX vs AVX512-BF16 vs AVX2), thread counts and precisions, and predictions near the
# decision boundary flip; initialisation cells train `init_steps` steps first, so they drift more
# than zero-shot ones. Measured on the shipped default reference (bf16, AMX) re-run on an AMD EPYC
# in bf16 (24 cells) and fp32 (12 cells), docs/protocol.md "Verifying": zero-shot cells agreed on
# >= 99.3% of predictions with |delta m| <= 0.004, initialisation cells on >= 93.8% with
# |delta m| <= 0.024, fp32 no further off than bf16 on another CPU. Each bound is about twice the
# worst of those (rounded outwards), for any precision.
# Own-prompt test predictions and the null prompt's row are the same computation as a zero-shot cell
# (a stored or seeded prompt evaluated on a test split, `units.zero_shot_row_unit`), so they share its
# tolerance. The linear probe is a deterministic lbfgs fit on frozen features computed under the same
# autocast, so only feature rounding moves it: also the zero-shot tolerance (measured spread across CPU
# kinds in docs/protocol.md "Verifying").
VERIFY_TOLERANCE = {
    "zero_shot": CellTolerance(agreement=0.98, delta=0.02),
    "init": CellTolerance(agreement=0.85, delta=0.05),
    "own": CellTolerance(agreement=0.98, delta=0.02),
    "null": CellTolerance(agreement=0.98, delta=0.02),
    "probe": CellTolerance(agreement=0.98, delta=0.02),
}
# The kinds of stored predictions `verify` re-runs, in the order its cells cycle through them.
RERUN_KINDS = ("zero_shot", "init", "own", "null", "probe")


def build_precision(info: dict[str, Any]) -> str:
    """The precision a bundle was built at: its build record, else its prompt config (`bf16`)."""
    recorded = info.get("build", {}).get("precision")
    if isinstance(recorded, dict) and recorded.get("precision"):
        return str(recorded["precision"])
    return "bf16" if info.get("config", {}).get("bf16", True) else "fp32"


def cell_tolerance(kind: str) -> CellTolerance:
    return VERIFY_TOLERANCE[kind]


def suite_problem(reference: Reference, bench) -> str:
    """'' if `bench` (suite content, backbone, config, seeds, data) is the setting the reference
    measured, else the first difference, as a phrase."""
    if bench.suite.model_dump(mode="json") != reference.info["suite"]:
        return "the suite's YAML differs from the one the reference was built from"
    if bench.backbone_identity() != reference.info["backbone"]:
        return f"backbone {bench.backbone_identity()} differs from the reference's {reference.info['backbone']}"
    if list(bench.seeds) != reference.seeds:
        return f"seeds {list(bench.seeds)} differ from the reference's {reference.seeds}"
    for task in reference.info["tasks"]:
        if bench.data(task["name"]).data_hash != task["data_hash"]:
            return f"the data of task {task['name']} hashes differently from the reference's"
    return ""


def recompute_problem(reference: Reference) -> str:
    """'' if tasks.json and transfer.json are exactly what the stored predictions give, else where not."""
    tasks, transfer = derive_tables(reference.info, reference.predictions)
    for name, stored, recomputed in (("tasks.json", reference.tasks, tasks), ("transfer.json", reference.transfer, transfer)):
        found = first_difference(stored, json.loads(json.dumps(recomputed)), name, tolerance=1e-9)
        if found:
            where = reference.root / name if reference.root else name
            return f"{where}: does not match the stored predictions ({found})"
    return ""


def setting_problem(reference: Reference, bench) -> str:
    """'' if everything the bundle records about how it was measured is what the code and the suite
    say now, else the first difference, as one phrase naming the setting: `suite_problem` (suite,
    backbone, seeds, data hashes), the protocol settings (`protocol_record`: bootstrap size and
    seed, admission alpha, metric), the prompt config (its precision aside: `verify` may re-run in
    another), each task's family, classes, label names, version and test size, and the test labels
    (`labels/<task>`), reloaded from the suite's data."""
    problem = suite_problem(reference, bench)
    if problem:
        return problem
    recorded = reference.info.get("protocol", {})
    version = recorded.get("version", 1)
    if version not in protocol.PROTOCOLS:
        return f"bundle.json protocol version {version!r} is not one this transferbench knows ({', '.join(map(str, protocol.PROTOCOLS))})"
    expected = protocol_record(version)
    for setting, value in expected.items():
        if recorded.get(setting) != value:
            return (f"bundle.json protocol setting {setting} is {recorded.get(setting)!r} but the code's protocol "
                    f"(transferbench/reference/protocol.py) has {value!r}")
    extra = sorted(set(recorded) - set(expected))
    if extra:
        return f"bundle.json protocol setting {extra[0]} is not one the code's protocol has"
    config = {k: v for k, v in bench.config.to_dict().items() if k != "bf16"}
    stored_config = {k: v for k, v in reference.info.get("config", {}).items() if k != "bf16"}
    found = first_difference(stored_config, config, "config")
    if found:
        return f"bundle.json prompt config differs from the suite's ({found})"
    for task in reference.info["tasks"]:
        name = task["name"]
        spec, data = bench.tasks[name], bench.data(name)
        now = {"family": spec.family, "classes": spec.num_classes, "labels": spec.label_names,
               "version": spec.version, "test_size": len(data.test)}
        for setting, value in now.items():
            if task.get(setting) != value:
                return f"bundle.json task {name} {setting} is {task.get(setting)!r} but the suite's data has {value!r}"
        labels = bench.encoded(name, "test").labels.numpy().astype(np.int64)
        stored = reference.predictions.get(f"labels/{name}")
        if stored is None or stored.shape != labels.shape or not np.array_equal(stored, labels):
            differ = "missing" if stored is None else (
                f"{int(np.sum(stored != labels))} of {len(labels)} differ" if stored.shape == labels.shape
                else f"{stored.shape[0]} instead of {len(labels)}")
            return (f"predictions.safetensors labels/{name} are not the test labels of the suite's data now "
                    f"({differ})")
    return ""


# ---- re-running stored predictions ----------------------------------------------------------------
@dataclass
class CellCheck:
    """One re-run of stored predictions: `kind` (`RERUN_KINDS`), the stored key it re-computes, the
    share of test examples predicted as stored, and the stored and re-computed balanced accuracy."""

    kind: str
    source: str
    target: str
    seed: int | None
    agreement: float
    stored: float
    recomputed: float
    tolerance: CellTolerance = field(default_factory=lambda: VERIFY_TOLERANCE["zero_shot"])
    key: str = ""

    @property
    def ok(self) -> bool:
        return (self.agreement >= self.tolerance.agreement
                and abs(self.recomputed - self.stored) <= self.tolerance.delta)


class BundlePrompts(BundleArtifacts):
    """A bundle's prompts only, as a planner supply: what `rerun_cells` re-computes every other
    artifact from (its own cells would only hand back what is being checked)."""

    def has(self, name: str, address) -> bool:
        return name == "prompts" and super().has(name, address)


def _draw(reference: Reference, kind: str, rng: np.random.Generator) -> tuple[str, str | None, int | None]:
    """(target, source, seed) of one re-run of `kind`: a random target and seed, and a source
    other than the target (None: the null prompt / default initialisation, for `init`)."""
    names = reference.task_names
    # a transfer cell's target is one the bundle holds transfer into (`Reference.transfer_targets`)
    targets = names if kind in ("probe", "own", "null") else reference.transfer_targets()
    target = targets[rng.integers(len(targets))]
    run_seed = int(reference.seeds[rng.integers(len(reference.seeds))])
    if kind == "probe":
        return target, None, None
    if kind == "own":
        return target, target, run_seed
    if kind == "null":
        return target, None, run_seed
    sources = [s for s in ([None, *names] if kind == "init" else names) if s != target]
    return target, sources[rng.integers(len(sources))], run_seed


def rerun_cells(reference: Reference, bench, cells: int, seed: int = 0) -> list[CellCheck]:
    """Re-compute `cells` randomly chosen stored predictions, cycling through every kind
    (`RERUN_KINDS`: zero-shot, initialisation, own-prompt test predictions, the null prompt's row,
    the linear probe), from the bundle's prompts alone, and compare them per example with the
    stored ones within the tolerance of their kind (`cell_tolerance`), in `bench`'s precision.

    `bench` (a `Benchmark`) computes them as the build did, through its planner from the artifact
    declarations (`zero_shot`, `init`, `probe`; an own prompt's test predictions are its zero-shot
    cell on its own task: the same unit, the prompt on that task's test split with its
    verbalizer), supplied with the bundle's prompts only and with a scratch store, so nothing is
    read from the user's cache nor left in it."""
    import tempfile

    from transferbench.store import ArtifactStore

    rng = np.random.default_rng(seed)
    draws = [(RERUN_KINDS[i % len(RERUN_KINDS)], *_draw(reference, RERUN_KINDS[i % len(RERUN_KINDS)], rng))
             for i in range(cells)]
    saved_store, saved_supply = bench.store, bench.supplied
    checks = []
    with tempfile.TemporaryDirectory(prefix="transferbench-verify-") as scratch:
        bench.store = ArtifactStore(Path(scratch))
        bench.use_supplied(BundlePrompts(reference))
        try:
            for kind, target, source, run_seed in draws:
                if kind == "probe":
                    predicted = int_predictions(bench.get("probe", task=target))
                    stored_key = f"probe/{target}"
                else:
                    artifact = "init" if kind == "init" else "zero_shot"
                    predicted = int_predictions(bench.get(artifact, task=target, seed=run_seed, source=source))
                    stored_key = (f"own/{target}/{run_seed}" if kind == "own"
                                  else f"{artifact}/{source or NULL}/{target}/{run_seed}")
                stored = reference.predictions[stored_key]
                labels = reference.predictions[f"labels/{target}"]
                classes = next(t["classes"] for t in reference.info["tasks"] if t["name"] == target)
                agreement = float(np.mean(predicted == stored)) if predicted.shape == stored.shape else 0.0
                checks.append(CellCheck(
                    kind, "-" if kind == "probe" else (source or NULL), target, run_seed, agreement,
                    float(protocol.balanced_accuracy(stored, labels, num_classes=classes)),
                    float(protocol.balanced_accuracy(predicted, labels, num_classes=classes))
                    if predicted.shape == labels.shape else float("nan"),
                    cell_tolerance(kind), stored_key))
        finally:
            bench.store = saved_store
            bench.use_supplied(saved_supply)
    return checks
