"""The reference ground truth: measured transfer of one (suite, backbone), built once, shipped as a
hash-pinned bundle that anyone can re-check cell by cell.

Stage 3 of the pipeline as the leaderboard consumes it. `collect` turns what the runner measured
(per-example test predictions of every prompt and cell, `transferbench.pipeline.units`) into transfer
matrices with uncertainty and a target admission list (formulas in `transferbench.reference.protocol`);
`save` writes a bundle, and `load_shipped` finds and hash-checks the one shipped for a setting.
`transferbench.reference.verify` recomputes every number from the stored predictions, checks the
recorded setting, and re-runs randomly chosen cells from the shipped prompts.

Bundle layout (`reference/<suite>__<backbone>/`):

    bundle.json          protocol: suite, backbone identity, prompt config, seeds, tasks (family,
                         classes, data hash), bootstrap settings; prompt metadata; build manifest
    prompts.safetensors  "<task>/<seed>" -> trained prompt [prompt_length, hidden], float32
    predictions.safetensors
                         "labels/<task>", "own/<task>/<seed>", "probe/<task>",
                         "zero_shot/<source>/<target>/<seed>", "init/<source>/<target>/<seed>"
                         (source "(null)": the untrained prompt / the default initialisation)
    tasks.json           per task: own prompt, null prompt, majority, linear probe; admission
    transfer.json        per transfer kind: mean, per-seed, std over seeds, bootstrap se and CI
    MANIFEST.json        sha256 of every file above and (format 2) the bundle's content hash, its
                         identity, pinned in reference/index.json (`bundle_identity`; a format-1
                         bundle's identity is the sha256 of MANIFEST.json itself)

Over 400 lines because the bundle is one contract: what `collect` and `save` write is exactly what
`read_bundle` and `check_hashes` check and `derive_tables` recomputes, and keeping both sides in one
file is what keeps them from drifting apart. The formulas themselves are in
`transferbench.reference.protocol`; verification against the code and the suite in
`transferbench.reference.verify`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transferbench.errors import TransferbenchError
from transferbench.reference import protocol
from transferbench.reference.protocol import NULL

FORMAT_VERSION = 2
FILES = ("bundle.json", "prompts.safetensors", "predictions.safetensors", "tasks.json", "transfer.json")
# Fields of bundle.json's `build` record that say when, where and by which command and software a
# build ran, not what it measured or how: left out of a format-2 bundle's content hash, so two builds
# of the same numbers (or one resumed after an interruption) have one identity. Kept in the hash:
# everything else, i.e. the numbers, prompts, protocol, suite, backbone, config, seeds, tasks and the
# build settings that change the numbers (device, precision, train_attention, eval_kernel,
# prompts_per_pass, unit_threads). A build carried across machines in shards has one identity
# however it was split.
BUILD_RECORD_FIELDS = (
    "first_artifact_utc", "last_artifact_utc", "artifact_span_seconds", "collect_seconds",  # timing
    "wall_seconds", "command", "git", "versions", "platform", "cpu", "cpu_count", "torch_threads",  # host
    "config", "data",  # build_manifest's executor repr (its threads: unit_threads) and data record
    "shards",  # which shards the entries came from and where each ran (`transferbench.reference.shards`)
)


def shipped_root() -> Path:
    """The folder holding shipped bundles: `reference/` of a source checkout, installed as package data."""
    import importlib.resources

    return Path(str(importlib.resources.files("transferbench.references")))


def bundle_name(suite: str, backbone: str) -> str:
    """`<suite>__<backbone>`, the backbone made file-name safe (a Hugging Face id or path keeps its
    distinguishing parts: `org/model` -> `org-model`)."""
    safe = re.sub(r"[^A-Za-z0-9._]+", "-", backbone).strip("-.")
    return f"{suite}__{safe or 'backbone'}"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=False, allow_nan=True, ensure_ascii=False) + "\n").encode()


@dataclass
class Reference:
    """A reference in memory: protocol (`info`), prompts, predictions, and the derived tables."""

    info: dict[str, Any]
    prompts: dict[str, np.ndarray]  # "<task>/<seed>" -> [prompt_length, hidden]
    predictions: dict[str, np.ndarray]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-task report and admission
    transfer: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> statistics -> matrix
    hash: str = ""  # sha256 of MANIFEST.json once saved or loaded; "" for an unsaved reference
    root: Path | None = None

    # ---- what scoring needs ---------------------------------------------------------------------
    @property
    def task_names(self) -> list[str]:
        return [t["name"] for t in self.info["tasks"]]

    @property
    def seeds(self) -> list[int]:
        return list(self.info["seeds"])

    @property
    def protocol_version(self) -> int:
        """The protocol version the reference was measured with (`protocol.protocol_of`): its kinds
        are the transfer kinds a run, a result file or a board may score against it."""
        return protocol.protocol_of(self.info).version

    def families(self) -> dict[str, str]:
        return {t["name"]: t["family"] for t in self.info["tasks"]}

    def transfer_targets(self) -> list[str]:
        """The targets the bundle holds transfer into: every task, or, built under
        `Protocol.admitted_targets_only`, the admitted ones."""
        names, cells = self.task_names, pair_cells(self.protocol_version)
        return [t for t in names if _transfer_measured(self.predictions, t, names, self.seeds, cells)]

    def excluded_targets(self) -> dict[str, str]:
        return {name: row["excluded_because"] for name, row in self.tasks.items() if not row["admitted"]}

    def matrix(self, kind: str, statistic: str = "mean") -> pd.DataFrame:
        """Transfer of `kind` (rows = source, columns = target); excluded targets' columns are NaN."""
        if kind not in self.transfer:
            raise TransferbenchError(f"unknown transfer kind {kind!r}; this reference has {', '.join(self.transfer)}")
        names = self.task_names
        values = self.transfer[kind][statistic]
        frame = pd.DataFrame([[values[s][t] for t in names] for s in names], index=names, columns=names, dtype=float)
        for target in self.excluded_targets():
            frame[target] = np.nan
        return frame

    def per_seed(self, kind: str) -> list[pd.DataFrame]:
        names = self.task_names
        excluded = self.excluded_targets()
        frames = []
        for k in range(len(self.seeds)):
            values = self.transfer[kind]["per_seed"]
            frame = pd.DataFrame([[values[s][t][k] if values[s][t] is not None else np.nan for t in names]
                                  for s in names], index=names, columns=names, dtype=float)
            for target in excluded:
                frame[target] = np.nan
            frames.append(frame)
        return frames

    def prompt(self, task: str, seed: int) -> np.ndarray:
        return self.prompts[f"{task}/{seed}"]


# ---- from predictions to tables (used by collect and by verify.py) -------------------------------
def _nan_to_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def derive_tables(info: dict[str, Any], predictions: dict[str, np.ndarray], *,
                  with_transfer: bool = True, missing_ok: bool = False) -> tuple[dict, dict]:
    """(tasks report with admission, transfer statistics) from the stored predictions alone
    (`with_transfer=False`: the tasks report only, from the own and null prompts' predictions).
    An admitted target whose transfer the predictions do not hold is an error, unless `missing_ok`
    (another protocol's rule re-run on a bundle measured into its own admitted targets only,
    `benchmarks/admission_stability.py`): its column is then left null like an excluded one's.

    Every number of a bundle except the predictions themselves comes from here, so `verify` can
    recompute all of them; the formulas are in `transferbench.reference.protocol`, and the
    bundle's protocol version (`protocol.protocol_of`) selects its transfer kinds and admission rule.
    """
    names = [t["name"] for t in info["tasks"]]
    seeds = list(info["seeds"])
    n_boot, boot_seed = info["protocol"]["n_bootstrap"], info["protocol"]["bootstrap_seed"]
    kinds = protocol.protocol_of(info).kinds
    classes = {t["name"]: t["classes"] for t in info["tasks"]}
    measured = pair_cells(protocol.protocol_of(info).version)
    tasks: dict[str, dict[str, Any]] = {}
    stats: dict[str, dict[str, dict[str, dict[str, Any]]]] = {kind: {} for kind in kinds}
    for target in names:
        labels = predictions[f"labels/{target}"]
        k = classes[target]
        weights, seed_draws = protocol.resamples(len(labels), len(seeds), n_boot,
                                                 boot_seed + names.index(target))

        arms: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

        def arm(prefix: str, source: str | None = None, metric=protocol.balanced_accuracy):
            if (prefix, source, metric) not in arms:  # each arm computed once per target
                stacked = np.stack([predictions[f"{prefix}/{target}/{seed}" if source is None
                                                else f"{prefix}/{source}/{target}/{seed}"] for seed in seeds])
                kwargs = {"num_classes": k} if metric is protocol.balanced_accuracy else {}
                arms[prefix, source, metric] = (metric(stacked, labels, **kwargs),
                                                metric(stacked, labels, weights, **kwargs))  # [S], [B, S]
            return arms[prefix, source, metric]

        own, own_b = arm("own")
        null, null_b = arm("zero_shot", NULL)
        own_acc, _ = arm("own", metric=protocol.accuracy)
        _, admission = protocol.admit(info["protocol"], *_stacked(predictions, target, seeds), labels,
                                      protocol.seed_mean(own_b, seed_draws), protocol.seed_mean(null_b, seed_draws), k)
        probe = predictions.get(f"probe/{target}")
        probe_score = float(protocol.balanced_accuracy(probe, labels, num_classes=k)) if probe is not None else None
        majority_label = int(np.bincount(labels, minlength=k).argmax())
        tasks[target] = {
            "family": next(t["family"] for t in info["tasks"] if t["name"] == target), "classes": k,
            "own_balanced_accuracy": float(own.mean()), "own_balanced_accuracy_per_seed": [float(v) for v in own],
            "own_accuracy": float(own_acc.mean()), "null_balanced_accuracy": float(null.mean()),
            "majority_accuracy": float(np.mean(labels == majority_label)), "chance_balanced_accuracy": 1.0 / k,
            "probe_balanced_accuracy": probe_score,
            "own_over_probe": (float(own.mean()) / probe_score) if probe_score else None,
            **admission,
        }
        if not with_transfer:
            continue
        if not _transfer_measured(predictions, target, names, seeds, measured):
            if tasks[target]["admitted"] and not missing_ok:
                raise TransferbenchError(f"the predictions hold no transfer into {target}, which the protocol "
                                         "admits as a target: the bundle is incomplete; rebuild it with "
                                         "`transferbench reference build`")
            continue  # a target the build measured no transfer into (`Protocol.admitted_targets_only`)
        for source in names:
            if source == target:
                continue
            cells = {name: kind.cell(arm, source) for name, kind in kinds.items()}
            for kind, (values, boot) in cells.items():
                stats[kind].setdefault(source, {})[target] = asdict(protocol.estimate(values, boot, seed_draws))
    transfer: dict[str, dict[str, Any]] = {}
    for kind, declared in kinds.items():
        transfer[kind] = {"description": declared.description}
        for statistic in ("mean", "per_seed", "std_over_seeds", "se", "ci_low", "ci_high"):
            transfer[kind][statistic] = {
                s: {t: (None if s == t or t not in stats[kind].get(s, {}) else _clean(stats[kind][s][t][statistic]))
                    for t in names} for s in names}
    return tasks, transfer


def _transfer_measured(predictions: dict[str, np.ndarray], target: str, names: list[str], seeds: list,
                       cells: list[str]) -> bool:
    """Whether `predictions` hold the pair `cells` (`pair_cells`) into `target` (a build measures
    them for every target, or, under `Protocol.admitted_targets_only`, for the admitted ones; all or none)."""
    source = next((name for name in names if name != target), None)
    return source is not None and all(f"{cell}/{source}/{target}/{seed}" in predictions
                                      for cell in cells for seed in seeds)


def pair_cells(version: int) -> list[str]:
    """The pair artifacts (a source, a target, a seed) protocol `version`'s transfer kinds are
    computed from; each is stored as the predictions `name/<source>/<target>/<seed>`."""
    from transferbench.pipeline.artifacts import ARTIFACTS

    return [name for name in protocol.measured_cells(version=version) if ARTIFACTS.get(name).per == "pair_seed"]


def admission_frequencies(info: dict[str, Any], predictions: dict[str, np.ndarray],
                          n_rng_seeds: int = protocol.ADMISSION_RNG_SEEDS,
                          only: list[str] | None = None) -> dict[str, int]:
    """Per task (of `only`, default all), in how many of `n_rng_seeds` bootstrap RNG seeds the
    bundle's admission rule admits it (`protocol.admission_frequency`; the target's index in the
    suite keeps targets' draws apart, as in `derive_tables`). `n_rng_seeds` everywhere: stable."""
    seeds = list(info["seeds"])
    frequencies = {}
    for index, task in enumerate(info["tasks"]):
        name = task["name"]
        if only is not None and name not in only:
            continue
        own, null = _stacked(predictions, name, seeds)
        frequencies[name] = protocol.admission_frequency(own, null, predictions[f"labels/{name}"], task["classes"],
                                                         info["protocol"], n_rng_seeds, stream=index)
    return frequencies


def _stacked(predictions: dict[str, np.ndarray], target: str, seeds: list) -> tuple[np.ndarray, np.ndarray]:
    """The own and the null prompt's test predictions on `target`, `[S, n]` each."""
    return (np.stack([predictions[f"own/{target}/{seed}"] for seed in seeds]),
            np.stack([predictions[f"zero_shot/{NULL}/{target}/{seed}"] for seed in seeds]))


def _clean(value: Any) -> Any:
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return _nan_to_none(value)


# ---- building from a benchmark -----------------------------------------------------------------
def protocol_artifacts(version: int = protocol.BUILD_PROTOCOL) -> list[str]:
    """The artifacts a reference is measured from: every (task, seed) prompt, the linear probe of
    each task, and the cells of every transfer kind of protocol `version` (`protocol.measured_cells`)."""
    return list(dict.fromkeys(["prompts", "probe", *protocol.measured_cells(version=version)]))


def protocol_record(version: int = protocol.BUILD_PROTOCOL) -> dict[str, Any]:
    """The protocol settings a bundle of protocol `version` records (bundle.json `protocol`) as the
    code defines them now; `verify` requires a bundle's to equal these (`setting_problem`)."""
    return dict(protocol.PROTOCOLS[version].record)


def collect(planner, *, build_manifest: dict[str, Any] | None = None,
            protocol_version: int = protocol.BUILD_PROTOCOL) -> Reference:
    """Measure (or load from the store) everything the protocol needs and derive the tables.

    Asks `planner` (a `transferbench.pipeline.planner.Planner`: a `Benchmark`) for the artifacts of
    `protocol_artifacts` by name: every (task, seed) prompt, the linear probe of each task, and
    every measured cell of every transfer kind (with the null prompt or the default initialisation
    as an extra source where the cell has one); each is resumable through the store. Under
    `Protocol.admitted_targets_only` the cells are measured in two steps: first the null prompt on
    every task, which admission compares the own prompt with, then every source into the admitted
    targets only. A pair cell artifact `name` is stored as the predictions `name/<source>/<target>/<seed>`.
    The bundle records `protocol.PROTOCOLS[protocol_version].record` as its protocol, which selects its formulas.
    """
    started = time.perf_counter()
    declared = protocol.PROTOCOLS[protocol_version]
    cells = pair_cells(protocol_version)
    names, seeds = list(planner.tasks), list(planner.seeds)
    info = {
        "format": FORMAT_VERSION,
        "suite": planner.suite.model_dump(mode="json"),
        "backbone": planner.backbone_identity(),
        "config": planner.config.to_dict(),
        "seeds": seeds,
        "threads_per_unit": planner.context.threads,
        "tasks": [{"name": n, "family": planner.tasks[n].family, "classes": planner.tasks[n].num_classes,
                   "labels": planner.tasks[n].label_names, "version": planner.tasks[n].version,
                   "data_hash": planner.data(n).data_hash, "test_size": len(planner.data(n).test)} for n in names],
        "protocol": protocol_record(protocol_version),
    }
    targets = names
    if declared.admitted_targets_only:
        planner.ensure(["prompts", "probe"])
        planner.ensure(["zero_shot"], sources=[None])
        report, _ = derive_tables(info, _predictions(planner, []), with_transfer=False)
        targets = [name for name in names if report[name]["admitted"]]
        excluded = [name for name in names if name not in targets]
        if getattr(planner, "console", None) is not None:  # a build's log says it as soon as it is known
            planner.console.print(f"admitted {len(targets)} of {len(names)} targets (excluded: {', '.join(excluded) or 'none'}); "
                                  "measuring transfer from every task into the admitted ones")
    planner.ensure(protocol_artifacts(protocol_version), tasks=targets)
    predictions = _predictions(planner, cells, targets)
    prompts = {f"{task}/{seed}": planner.get("prompts", task=task, seed=seed)["prompt"].float().numpy()
               for task in names for seed in seeds}
    prompt_meta = {f"{task}/{seed}": {"dev_accuracy": float(own["dev_accuracy"]), "best_step": int(own["best_step"])}
                   for task in names for seed in seeds for own in [planner.get("prompts", task=task, seed=seed)]}
    # When the measurements were made: the store's files of the prompts and cells (a build may be
    # resumed over several sessions, so the collect time alone says little).
    stamps = [planner.store.path(stage, key).stat().st_mtime for stage, key in planner.stored_keys(["prompts", *cells])]
    span = {"first_artifact_utc": _utc(min(stamps)), "last_artifact_utc": _utc(max(stamps)),
            "artifact_span_seconds": round(max(stamps) - min(stamps), 1)} if stamps else {}
    info["prompts"] = prompt_meta
    info["build"] = {**(build_manifest or {}), **span, "transfer_targets": "admitted" if declared.admitted_targets_only else "all",
                     "collect_seconds": round(time.perf_counter() - started, 1)}
    tasks, transfer = derive_tables(info, predictions)
    return Reference(info=info, prompts=prompts, predictions=predictions, tasks=tasks, transfer=transfer)


def _predictions(planner, cells: list[str], targets: list[str] | None = None) -> dict[str, np.ndarray]:
    """The stored test predictions a bundle holds, read through `planner`: each task's labels, probe
    and own prompts, the null prompt on every task (zero_shot), and the pair `cells` into `targets`
    (default: all tasks) from every source."""
    names, seeds = list(planner.tasks), list(planner.seeds)
    predictions: dict[str, np.ndarray] = {}
    for task in names:
        predictions[f"labels/{task}"] = planner.encoded(task, "test").labels.numpy().astype(np.int64)
        predictions[f"probe/{task}"] = int_predictions(planner.get("probe", task=task))
        for seed in seeds:
            own = planner.get("prompts", task=task, seed=seed)
            predictions[f"own/{task}/{seed}"] = np.asarray(own["test_predictions"], dtype=np.int64)
            predictions[f"zero_shot/{NULL}/{task}/{seed}"] = int_predictions(
                planner.get("zero_shot", task=task, seed=seed, source=None))
    for cell in cells:
        for address in planner.addresses(cell, targets):
            entry = planner.get(cell, task=address.task, seed=address.seed, source=address.source)
            predictions[f"{cell}/{address.source or NULL}/{address.task}/{address.seed}"] = int_predictions(entry)
    return predictions


class BundleArtifacts:
    """A saved reference bundle as artifacts supplied to a planner (`transferbench.pipeline.planner.Supply`):
    its prompts, and its measured pair cells (the predictions `name/<source>/<target>/<seed>`).

    Artifacts computed from its prompts are keyed by how they were trained (`training`, its build
    record; bundles built before the record existed used sdpa attention, one prompt per pass and
    dev selection under autocast), not by how the planner would train its own."""

    def __init__(self, reference: Reference):
        self.reference = reference
        build = reference.info.get("build", {})
        self.training = {"train_attention": build.get("train_attention", "sdpa"),
                         "prompts_per_pass": int(build.get("prompts_per_pass", 1)),
                         "eval_kernel": build.get("eval_kernel", "autocast")}

    def _cell(self, name: str, address) -> str:
        return f"{name}/{address.source or NULL}/{address.task}/{address.seed}"

    def has(self, name: str, address) -> bool:
        if self.reference.root is None:  # only a saved, hash-checked bundle supplies artifacts
            return False
        if name == "prompts":
            return f"{address.task}/{address.seed}" in self.reference.prompts
        return address.seed is not None and self._cell(name, address) in self.reference.predictions

    def get(self, name: str, address) -> dict[str, Any] | None:
        import torch

        if not self.has(name, address):
            return None
        reference = self.reference
        if name == "prompts":
            task, seed = address.task, address.seed
            predictions = reference.predictions[f"own/{task}/{seed}"]
            meta = reference.info["prompts"][f"{task}/{seed}"]
            return {"prompt": torch.from_numpy(reference.prompt(task, seed)), "dev_accuracy": meta["dev_accuracy"],
                    "test_accuracy": float(np.mean(predictions == reference.predictions[f"labels/{task}"])),
                    "test_predictions": torch.from_numpy(predictions), "best_step": meta["best_step"]}
        predictions = reference.predictions[self._cell(name, address)]
        labels = reference.predictions[f"labels/{address.task}"]
        return {"accuracy": torch.tensor(float(np.mean(predictions == labels))),
                "predictions": torch.from_numpy(predictions)}


def _utc(timestamp: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def int_predictions(entry: dict[str, Any]) -> np.ndarray:
    """A stored artifact's test predictions (`entry["predictions"]`) as int64, as a bundle holds them."""
    return np.asarray(entry["predictions"], dtype=np.int64)


# ---- bundle files --------------------------------------------------------------------------------
def save(reference: Reference, folder: Path, *, pin: Path | None = None) -> str:
    """Write the bundle to `folder` and return its hash; record the hash in `pin` (index.json) if given."""
    import torch
    from safetensors.torch import save_file

    from transferbench.store import atomic_write_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "bundle.json", _json_bytes(reference.info))
    atomic_write_bytes(folder / "tasks.json", _json_bytes(reference.tasks))
    atomic_write_bytes(folder / "transfer.json", _json_bytes(reference.transfer))
    for name, arrays, dtype in (("prompts.safetensors", reference.prompts, torch.float32),
                                ("predictions.safetensors", reference.predictions, torch.int16)):
        tensors = {key: torch.from_numpy(np.ascontiguousarray(value)).to(dtype) for key, value in sorted(arrays.items())}
        tmp = folder / f".{name}.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(folder / name)
    manifest = expected_manifest(folder)
    atomic_write_bytes(folder / "MANIFEST.json", _json_bytes(manifest))
    reference.hash = manifest["content_hash"]
    reference.root = folder
    if pin is not None:
        index = json.loads(pin.read_text()) if pin.exists() else {}
        index[folder.name] = reference.hash
        atomic_write_bytes(pin, _json_bytes(dict(sorted(index.items()))))
    return reference.hash


def _json_object(path: Path) -> dict[str, Any]:
    """A bundle file that must hold one JSON object; anything else is one TransferbenchError naming it."""
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TransferbenchError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TransferbenchError(f"{path}: not a JSON object; the reference bundle is damaged")
    return data


def _content_digest(folder: Path, name: str) -> str:
    """sha256 of what a file contributes to the content hash: its bytes, except bundle.json's,
    which contributes its canonical JSON without the build record's `BUILD_RECORD_FIELDS`."""
    path = folder / name
    if name != "bundle.json":
        return sha256_file(path)
    info = _json_object(path)
    build = info.get("build") if isinstance(info.get("build"), dict) else {}
    content = {**info, "build": {k: v for k, v in build.items() if k not in BUILD_RECORD_FIELDS}}
    return hashlib.sha256(json.dumps(content, sort_keys=True, allow_nan=True).encode()).hexdigest()


def expected_manifest(folder: Path) -> dict[str, Any]:
    """The format-2 MANIFEST.json of the bundle files in `folder`: the sha256 of each file, and the
    content hash, the sha256 of every file's content digest (`_content_digest`): the bundle's
    identity, which build timing and host records do not change."""
    folder = Path(folder)
    for name in FILES:
        if not (folder / name).is_file():
            raise TransferbenchError(f"{folder / name}: missing from the reference bundle")
    content = {name: _content_digest(folder, name) for name in FILES}
    content_hash = hashlib.sha256(json.dumps({"format": 2, **content}, sort_keys=True).encode()).hexdigest()
    return {"format": 2, "content_hash": content_hash, "files": {name: sha256_file(folder / name) for name in FILES}}


def check_hashes(folder: Path, pinned: str | None) -> str:
    """The bundle's identity after checking it against `pinned` and every file against
    MANIFEST.json; a mismatch is one TransferbenchError naming the file.

    The identity depends on the bundle's format: a format-1 bundle (the shipped default__minilm)
    is identified by the sha256 of its MANIFEST.json, as it always was; a format-2 one by its
    content hash (`expected_manifest`), recomputed here from the files."""
    folder = Path(folder)
    manifest_path = folder / "MANIFEST.json"
    if not manifest_path.is_file():
        raise TransferbenchError(f"{manifest_path}: missing; the reference bundle is incomplete")
    manifest = _json_object(manifest_path)
    content_addressed = "format" in manifest
    files = manifest.get("files") if content_addressed else manifest
    if content_addressed and (manifest.get("format") != 2 or not isinstance(files, dict)):
        raise TransferbenchError(f"{manifest_path}: format {manifest.get('format')!r} is not one this version "
                                 "reads (1 or 2); update transferbench or restore the bundle")
    if not content_addressed:  # format 1: the identity is the manifest file's own hash
        actual = sha256_file(manifest_path)
        if pinned is not None and actual != pinned:
            raise TransferbenchError(f"{manifest_path}: its sha256 {actual[:12]}... differs from the pinned "
                                     f"{pinned[:12]}... in index.json; the bundle was changed")
        for name in FILES:
            path = folder / name
            if not path.is_file():
                raise TransferbenchError(f"{path}: missing from the reference bundle")
            if sha256_file(path) != files.get(name):
                raise TransferbenchError(f"{path}: its sha256 differs from MANIFEST.json; the file was changed")
        return actual
    expected = expected_manifest(folder)
    if manifest_path.read_bytes() != _json_bytes(expected):
        changed = [name for name in FILES if expected["files"][name] != files.get(name)]
        if changed and expected["content_hash"] != pinned:
            raise TransferbenchError(f"{folder / changed[0]}: its sha256 differs from MANIFEST.json; the file was changed")
        if changed:  # the content is the pinned one: a build record or the manifest's record of it changed
            raise TransferbenchError(f"{folder / changed[0]}: its sha256 differs from MANIFEST.json ({manifest_path}); "
                                     "one of the two was changed")
        raise TransferbenchError(f"{manifest_path}: does not match the bundle's files (content hash "
                                 f"{expected['content_hash'][:12]}...); the manifest was changed")
    actual = expected["content_hash"]
    if pinned is not None and actual != pinned:
        raise TransferbenchError(f"{folder}: its content hash {actual[:12]}... differs from the pinned "
                                 f"{pinned[:12]}... in index.json; the bundle was changed")
    return actual


def read_bundle(folder: Path, pinned: str | None) -> Reference:
    """Load a bundle after `check_hashes`."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    digest = check_hashes(folder, pinned)

    def read_json(name: str) -> Any:
        try:
            return json.loads((folder / name).read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TransferbenchError(f"{folder / name}: not valid JSON ({exc})") from None

    info = read_json("bundle.json")
    try:  # a bundle of a protocol this code does not define cannot be scored, derived or verified
        protocol.protocol_of(info)
    except TransferbenchError as exc:
        raise TransferbenchError(f"{folder / 'bundle.json'}: {exc}") from None
    try:
        prompts = {k: v.astype(np.float32) for k, v in load_file(str(folder / "prompts.safetensors")).items()}
        predictions = {k: v.astype(np.int64) for k, v in load_file(str(folder / "predictions.safetensors")).items()}
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise TransferbenchError(f"{folder}: cannot read the tensors of the reference bundle ({exc})") from None
    return Reference(info=info, prompts=prompts, predictions=predictions,
                     tasks=read_json("tasks.json"), transfer=read_json("transfer.json"), hash=digest, root=folder)


def pinned_hashes(root: Path | None = None) -> dict[str, str]:
    path = (root or shipped_root()) / "index.json"
    if not path.is_file():
        return {}
    try:
        pins = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TransferbenchError(f"{path}: not valid JSON ({exc}); restore it from the repository") from None
    if not isinstance(pins, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pins.items()):
        raise TransferbenchError(f"{path}: not a JSON object of bundle name -> hash; restore it from the repository")
    return pins


def _bundle_folders(root: Path) -> list[Path]:
    """The folders of `root` that hold a reference bundle (a MANIFEST.json or a bundle.json)."""
    if not root.is_dir():
        return []
    return sorted(folder for folder in root.iterdir()
                  if folder.is_dir() and ((folder / "MANIFEST.json").exists() or (folder / "bundle.json").exists()))


def check_shipped_root(root: Path | None = None) -> dict[str, str]:
    """The pins of the shipped references, after checking that nothing switches their checks off:
    a folder of `root` holding a bundle must be pinned in a valid index.json, and every pinned
    bundle's MANIFEST.json must hash to its pin. One TransferbenchError saying what to restore
    otherwise. A root without bundles (and without index.json) ships no reference: {}.

    The leaderboard calls this before reading any result file: without it, deleting or editing
    index.json would silently stop every result file from being checked against its reference.
    """
    root = Path(root or shipped_root())
    index = root / "index.json"
    bundles = _bundle_folders(root)
    if not index.is_file():
        if bundles:
            raise TransferbenchError(
                f"{index} is missing but {root} holds reference bundles ({', '.join(b.name for b in bundles)}); "
                "restore index.json from the repository (`git checkout -- reference/index.json`)")
        return {}
    pins = pinned_hashes(root)
    for folder in bundles:
        if folder.name not in pins:
            raise TransferbenchError(
                f"{folder} is not pinned in {index}; restore index.json from the repository, or remove the folder")
    for name, pinned in sorted(pins.items()):
        manifest = root / name / "MANIFEST.json"
        if not manifest.is_file():
            raise TransferbenchError(f"{manifest}: missing, but {index} pins it; restore the bundle {root / name} "
                                     "from the repository")
        try:
            check_hashes(root / name, pinned)
        except TransferbenchError as exc:
            raise TransferbenchError(f"{exc} ({index}); restore the bundle and index.json from the repository") from None
    return pins


def load_shipped(suite: str, backbone: str, root: Path | None = None) -> Reference | None:
    """The shipped, hash-checked reference of (suite, backbone), or None when none is shipped."""
    root = root or shipped_root()
    name = bundle_name(suite, backbone)
    pins = pinned_hashes(root)
    if name not in pins:
        return None
    return read_bundle(root / name, pins[name])
