"""Artifacts as data: one `ArtifactSpec` per artifact computed by a unit from trained prompts
(what it is per, its unit, how a view serves it, its store stage, key settings and code version).

`transferbench.runner.Benchmark` plans, keys, stores and serves every declared artifact from these
declarations alone; `declare_artifact` adds one (docs/indicators.md, "Adding an artifact").
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from transferbench import units
from transferbench.errors import TransferbenchError
from transferbench.indicator import ARTIFACTS, PairOutputs


@dataclass(frozen=True)
class ArtifactSpec:
    """The one declaration of an artifact computed by a unit from trained prompts: from it alone the
    driver plans the units, keys and stores their results, and serves the artifact to `TaskView`s.

    - `per="task"`: `unit(ctx, task, seed, prompt) -> {name: tensor}` with the task's own prompt,
      one store entry per (task, seed); a view serves `[serve(entry) for each seed]`.
    - `per="pair"`: `unit(ctx, target, seed, {source: prompt}) -> {source: {name: tensor}}`, one
      unit per (target, seed) for all missing sources, one store entry per (source, target, seed);
      the *target's* view serves `{source: [serve(entry) for each seed]}`.

    `stage` is the store folder (one of `transferbench.store.STAGES`), `settings` everything else
    the unit's output depends on (sizes, penalties: part of the store key), `code` the version
    to bump when the unit changes what it computes, `description` what indicator authors read
    in `indicator.ARTIFACTS`, and `examples` how many examples the backbone evaluates per unit
    (per source for a pair artifact) given the task's train-split size (default: the whole train
    split once), which sizes the unit for progress and the opening estimate. See
    docs/indicators.md, "Adding an artifact".
    """

    per: str
    unit: Callable[..., Any]
    serve: Callable[[dict[str, Any]], Any]
    stage: str
    settings: dict[str, Any] = field(default_factory=dict)
    code: int = 1
    description: str = ""
    examples: Callable[[int], int] = lambda train_size: train_size


ARTIFACT_SPECS: dict[str, ArtifactSpec] = {
    "pair_outputs": ArtifactSpec(
        "pair", units.pair_outputs_unit, stage="pair_outputs", settings={"examples": units.PAIR_EXAMPLES},
        examples=lambda train_size: min(train_size, units.PAIR_EXAMPLES),
        serve=lambda a: PairOutputs(a["features"].numpy(), a["source_probs"].numpy(), a["target_labels"].numpy())),
    "probe_ranking": ArtifactSpec(
        "task", units.probe_ranking_unit, stage="activations", serve=lambda a: a["rank"].numpy(),
        examples=lambda train_size: min(train_size, units.PROBE_EXAMPLES),
        settings={"examples": units.PROBE_EXAMPLES, "l1": units.PROBE_L1, "l2": units.PROBE_L2,
                  "max_iter": units.PROBE_MAX_ITER, "positions": "prompt_mean"}),
}


def declare_artifact(name: str, spec: ArtifactSpec) -> None:
    """Add an artifact with one declaration: its spec here and its description in
    `indicator.ARTIFACTS`, so indicators may declare it in `requires` and views serve it."""
    if name in ARTIFACTS or name in ARTIFACT_SPECS:
        raise TransferbenchError(f"artifact {name!r} is declared twice; choose another name")
    ARTIFACT_SPECS[name] = spec
    ARTIFACTS[name] = spec.description


@contextlib.contextmanager
def isolated_artifacts() -> Iterator[None]:
    """Artifacts declared in the block are forgotten afterwards (for tests)."""
    specs, descriptions = dict(ARTIFACT_SPECS), dict(ARTIFACTS)
    try:
        yield
    finally:
        ARTIFACT_SPECS.clear()
        ARTIFACT_SPECS.update(specs)
        ARTIFACTS.clear()
        ARTIFACTS.update(descriptions)
