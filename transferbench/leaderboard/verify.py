"""Rows that reproduce from code: `transferbench leaderboard --verify` re-scores each official row
with its indicator, sealed, from a verification input pack, and marks it verified when the scores
equal the file's.

Stage 7 (leaderboard). Re-scoring needs the indicator's inputs (skill neurons, activations, text
embeddings ...), which take an hour or more to compute from a cold cache. A *verification input
pack* holds exactly the `TaskView` inputs the official rows of one setting were scored from (each
task's name, family, classes, label names and served artifacts), content-addressed and
hash-pinned in the repository (`verification/`), so the board re-scores every row from it in
seconds. Layout::

    verification/index.json                 {"<suite>__<backbone>": sha256 of its pack.json}
    verification/<suite>__<backbone>/pack.json
        {format, suite, backbone, reference (the full hash the rows were scored against),
         tasks [names, in the result files' order], views {task: {family, num_classes, label_names}},
         artifacts {artifact: {task: value}}, left_out {artifact: why it is not in the pack},
         files {file name: sha256}}
    verification/<suite>__<backbone>/<artifact>.safetensors   arrays keyed by their content hash

A value is JSON with every array replaced by `{"array": key}`, key = the sha256 of its dtype,
shape and bytes (equal arrays are stored once), tuples as `{"tuple": [...]}`, mappings as
`{"mapping": {...}}` and a `PairOutputs` as `{"pair_outputs": [...]}`. Reading a pack checks the
pin, every file's hash and every array's key: an edited pack is one error line.
`transferbench run --submit` writes the inputs of what it scores into the pack with its result
files (`pack_files`); `benchmarks/verification_pack.py` builds one for rows scored before that,
from a benchmark's own views.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from transferbench.errors import TransferbenchError
from transferbench.evaluation.results import ResultFile, Verification, dataframes
from transferbench.scoring.indicator import TaskView

PACK_FORMAT = 1
DEFAULT_PACK_FOLDER = "verification"
"""The packs' folder, beside the project's `submissions/` (`pack_root`)."""
SCORE_TOLERANCE = 1e-9
"""A re-scored value equals the file's when |a - b| <= SCORE_TOLERANCE * max(1, |b|). Scores are
float64 written as JSON, which round-trips them exactly; the slack is for float64 sums and dot
products whose order depends on the CPU's BLAS kernels (last-bit differences, about 1e-16
relative), a million times smaller than any difference another input or other code makes."""


def pack_root(submissions_dir: Path) -> Path:
    """Where the packs of the project whose result files are in `submissions_dir` are: `verification/`
    beside it."""
    return Path(submissions_dir).parent / DEFAULT_PACK_FOLDER


def _array_key(array: np.ndarray) -> str:
    digest = hashlib.sha256(f"{array.dtype.str}|{','.join(map(str, array.shape))}|".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """`value` (a served artifact) as JSON, its arrays moved into `arrays` by content key."""
    from transferbench.pipeline.artifacts import PairOutputs

    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TransferbenchError(f"{where}: an array of dtype {value.dtype} cannot go into a verification pack")
        key = _array_key(value)
        arrays[key] = np.ascontiguousarray(value)
        return {"array": key}
    if isinstance(value, PairOutputs):
        return {"pair_outputs": [_encode(part, arrays, where) for part in value]}
    if isinstance(value, tuple):
        return {"tuple": [_encode(item, arrays, where) for item in value]}
    if isinstance(value, list):
        return [_encode(item, arrays, where) for item in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {"mapping": {k: _encode(v, arrays, where) for k, v in value.items()}}
    if value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise TransferbenchError(f"{where}: a value of type {type(value).__name__} cannot go into a verification pack")


def _decode(tree: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    from transferbench.pipeline.artifacts import PairOutputs

    if isinstance(tree, list):
        return [_decode(item, arrays) for item in tree]
    if isinstance(tree, dict):
        (tag, inner), = tree.items()
        if tag == "array":
            return arrays[inner].copy()
        if tag == "pair_outputs":
            return PairOutputs(*(_decode(part, arrays) for part in inner))
        if tag == "tuple":
            return tuple(_decode(item, arrays) for item in inner)
        return {key: _decode(value, arrays) for key, value in inner.items()}
    return tree


class Pack(NamedTuple):
    """One setting's verification inputs, read and checked (`read_pack`)."""

    name: str
    digest: str  # sha256 of pack.json, as pinned
    suite: str
    backbone: str
    reference: str
    tasks: list[str]
    facts: dict[str, dict[str, Any]]
    artifacts: dict[str, dict[str, Any]]  # artifact -> task -> value (decoded)
    left_out: dict[str, str]

    def views(self, artifacts: Iterable[str]) -> dict[str, TaskView]:
        """Each task's `TaskView` with `artifacts` (all in the pack), as the run built them."""
        return {task: TaskView(task, self.facts[task]["family"], self.facts[task]["num_classes"],
                               {name: self.artifacts[name][task] for name in artifacts},
                               self.facts[task]["label_names"]) for task in self.tasks}


def _pins(root: Path) -> dict[str, str]:
    index = root / "index.json"
    if not index.is_file():
        return {}
    try:
        pins = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TransferbenchError(f"{index}: not valid JSON ({exc}); restore it from the repository") from None
    if not isinstance(pins, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pins.items()):
        raise TransferbenchError(f"{index}: not a JSON object of pack name -> sha256; restore it from the repository")
    return pins


def read_pack(root: Path, name: str) -> Pack | None:
    """The pack `name` (`<suite>__<backbone>`) under `root`, None when `root/index.json` pins none.
    One TransferbenchError when the pack does not match its pin: pack.json's hash, a file's hash,
    an array's content key."""
    from safetensors.numpy import load

    pinned = _pins(Path(root)).get(name)
    if pinned is None:
        return None
    folder = Path(root) / name
    where = f"verification pack {folder}"
    try:
        raw = (folder / "pack.json").read_bytes()
    except OSError as exc:
        raise TransferbenchError(f"{where}: pack.json cannot be read ({exc.strerror}); restore it from the repository") from None
    if hashlib.sha256(raw).hexdigest() != pinned:
        raise TransferbenchError(f"{where}: pack.json does not hash to its pin in {Path(root) / 'index.json'}; "
                                 "it was edited: restore it from the repository")
    info = json.loads(raw)
    if info.get("format") != PACK_FORMAT:
        raise TransferbenchError(f"{where}: format {info.get('format')!r}, this transferbench reads {PACK_FORMAT}")
    arrays: dict[str, np.ndarray] = {}
    for file, digest in info["files"].items():
        try:
            data = (folder / file).read_bytes()
        except OSError as exc:
            raise TransferbenchError(f"{where}: {file} cannot be read ({exc.strerror}); restore it from the repository") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise TransferbenchError(f"{where}: {file} does not hash to its pin in pack.json; restore it from the repository")
        for key, array in load(data).items():
            if _array_key(array) != key:
                raise TransferbenchError(f"{where}: array {key[:12]} of {file} is not the content its key names")
            arrays[key] = array
    try:
        artifacts = {name: {task: _decode(value, arrays) for task, value in by_task.items()}
                     for name, by_task in info["artifacts"].items()}
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise TransferbenchError(f"{where}: pack.json names an array it does not hold ({exc})") from None
    return Pack(name, pinned, info["suite"], info["backbone"], info["reference"], list(info["tasks"]),
                info["views"], artifacts, dict(info.get("left_out", {})))


ARTIFACT_BUDGET = 8 * 2**20
"""An artifact whose arrays take more bytes than this is left out of a pack (and the pack says so):
the pack lives in git. The built-ins' artifacts on the default suite take about 5 MB together; the
estimators' `pair_outputs` about 150 MB, so their rows are not verifiable from a pack."""


def _array_bytes(value: Any) -> int:
    """Bytes of the arrays in a served value (counted before encoding: a large one is never hashed)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, Mapping):
        return sum(_array_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_array_bytes(item) for item in value)
    return 0


def pack_files(bench, reference: str, artifacts: Iterable[str], root: Path,
               left_out: Mapping[str, str] | None = None) -> dict[Path, bytes]:
    """The files of the pack of `bench`'s setting under `root` (`root/<suite>__<backbone>/` and
    `root/index.json`) once it holds `artifacts` as `bench` serves them to an indicator
    (`bench.view`, what `transferbench.scoring.pairs.indicator_scores` hands to `score`), for
    reference `reference`: the pack already there keeps its other artifacts when it is of the same
    reference and tasks, and is replaced otherwise. An artifact over `ARTIFACT_BUDGET` is listed
    in `left_out` with its size instead, and so is each artifact of `left_out` with the reason given
    there. Files whose bytes would not change are not returned."""
    from safetensors.numpy import save

    from transferbench.leaderboard.files import _holds
    from transferbench.reference.bundle import bundle_name

    root = Path(root)
    name = bundle_name(bench.suite.name, bench.backbone_name)
    folder = root / name
    tasks = list(bench.tasks)
    old: dict[str, Any] = {}
    if (folder / "pack.json").is_file():
        try:
            old = json.loads((folder / "pack.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            old = {}
    if old.get("format") != PACK_FORMAT or old.get("reference") != reference or old.get("tasks") != tasks:
        old = {}
    encoded: dict[str, Any] = dict(old.get("artifacts", {}))
    left_out_now: dict[str, str] = dict(old.get("left_out", {}))
    files: dict[str, bytes] = {}
    for file in old.get("files", {}):
        try:
            files[file] = (folder / file).read_bytes()
        except OSError:
            pass
    for artifact, why in (left_out or {}).items():
        encoded.pop(artifact, None)
        files.pop(f"{artifact}.safetensors", None)
        left_out_now[artifact] = why
    for artifact in sorted(set(artifacts) - set(left_out or {})):
        values = {task: bench.view(artifact, task) for task in tasks}
        size = sum(_array_bytes(value) for value in values.values())
        encoded.pop(artifact, None)
        files.pop(f"{artifact}.safetensors", None)
        left_out_now.pop(artifact, None)
        if size > ARTIFACT_BUDGET:
            left_out_now[artifact] = (f"left out of the pack: {size / 2**20:.0f} MB of arrays, over its "
                                  f"{ARTIFACT_BUDGET / 2**20:.0f} MB budget per artifact")
            continue
        arrays: dict[str, np.ndarray] = {}
        encoded[artifact] = {task: _encode(values[task], arrays, f"artifact {artifact!r} of {task}") for task in tasks}
        if arrays:
            files[f"{artifact}.safetensors"] = save(dict(sorted(arrays.items())))
    info = {
        "format": PACK_FORMAT, "suite": bench.suite.name, "backbone": bench.backbone_name, "reference": reference,
        "tasks": tasks,
        "views": {task: {"family": spec.family, "num_classes": spec.num_classes, "label_names": list(spec.label_names)}
                  for task, spec in bench.tasks.items()},
        "artifacts": dict(sorted(encoded.items())), "left_out": dict(sorted(left_out_now.items())),
        "files": {file: hashlib.sha256(data).hexdigest() for file, data in sorted(files.items())},
    }
    raw = (json.dumps(info, indent=1, ensure_ascii=False) + "\n").encode()
    pins = {**_pins(root), name: hashlib.sha256(raw).hexdigest()}
    index = (json.dumps(dict(sorted(pins.items())), indent=1) + "\n").encode()
    wanted = {**{folder / file: data for file, data in files.items()}, folder / "pack.json": raw, root / "index.json": index}
    return {path: data for path, data in wanted.items() if not _holds(path, data)}


def stale_pack_files(root: Path, name: str) -> list[Path]:
    """Files in the pack folder `name` that its pack.json does not list (removed after a write)."""
    folder = Path(root) / name
    try:
        listed = set(json.loads((folder / "pack.json").read_text(encoding="utf-8"))["files"]) | {"pack.json"}
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return sorted(path for path in folder.iterdir() if path.is_file() and path.name not in listed)


def write_pack(bench, reference: str, artifacts: Iterable[str], root: Path,
               left_out: Mapping[str, str] | None = None) -> Path:
    """Compute `artifacts` on `bench` (`bench.ensure`) and write them into the pack of its setting
    (`pack_files`, all files or none, `left_out` as there), pinned in `root/index.json`; files the
    pack no longer lists are removed. Returns the pack's folder."""
    from transferbench.reference.bundle import bundle_name
    from transferbench.store import atomic_write_many

    artifacts = sorted(set(artifacts))
    bench.ensure(artifacts)
    atomic_write_many(pack_files(bench, reference, artifacts, root, left_out))
    name = bundle_name(bench.suite.name, bench.backbone_name)
    for path in stale_pack_files(root, name):
        path.unlink()
    return Path(root) / name


# ---- verifying rows ---------------------------------------------------------------------------

def _group_key(result: ResultFile) -> tuple[str, ...]:
    """Files that hold one re-scoring: the same code and params on one (suite, backbone,
    reference); their transfer kinds differ, their scores are the same indicator's."""
    code = result.indicator.code
    return (result.indicator.name, code.sha256 if code else "", result.indicator.params_key(), result.suite,
            result.backbone, result.reference or "")


def _indicator_of(result: ResultFile):
    """The indicator a row names, built with the file's params, or the reason it cannot be."""
    from transferbench.evaluation.results import builtin_mismatch
    from transferbench.scoring.indicator import builtin_class, builtin_code, construct_indicator

    code, name = result.indicator.code, result.indicator.name
    if code is None:
        return None, ("the file records no code identity (written before transferbench recorded one); "
                      "score it again to make it verifiable")
    if builtin_mismatch(result):
        return None, builtin_mismatch(result)
    if builtin_code(name) is None:
        return None, (f"its code ({code.module} {code.qualname}, sha256 {code.sha256[:12]}) is not a built-in "
                      "indicator of this version, and only built-in code is re-scored")
    try:
        return construct_indicator(builtin_class(name), result.indicator.params), ""
    except TransferbenchError as exc:
        return None, f"it cannot be rebuilt with its params ({exc})"


def _compare(result: ResultFile, values: dict[tuple[str, str], float], pack: Pack) -> Verification:
    scores, _ = dataframes(result)
    worst, differ, first = 0.0, 0, ""
    for (source, target), value in values.items():
        stored = float(scores.loc[source, target])
        gap = abs(value - stored) if not math.isnan(stored) else math.inf
        if gap > SCORE_TOLERANCE * max(1.0, abs(stored)):
            differ += 1
            first = first or f"{source} -> {target}: file {stored!r}, re-scored {value!r}"
        worst = max(worst, gap)
    if differ:
        return Verification(False, f"re-scored from pack {pack.name} ({pack.digest[:12]}), {differ} of {len(values)} "
                                   f"scores differ from the file's (first: {first})", rescored=True)
    exact = "exactly" if worst == 0 else f"within {worst:.1e}"
    return Verification(True, f"re-scored from pack {pack.name} ({pack.digest[:12]}): all {len(values)} scores equal "
                              f"the file's {exact}", rescored=True)


def verify_results(results: Sequence[ResultFile], root: Path, hidden: Sequence[Path | str] = (),
                   progress=None) -> dict[int, Verification]:
    """Re-score every official (not local) result of `results` with its indicator, sealed
    (`transferbench.scoring.sandbox.score_pairs`, with `hidden` also hidden from it), from the packs
    under `root`, and set each one's `verification`: verified when every score equals the file's
    (`SCORE_TOLERANCE`), else why not (no code identity, code that is not this version's built-in,
    no pack for its setting, inputs the pack leaves out, a failure, differing scores). Files of one
    code, params and setting share one re-scoring. `progress(line)` is told each re-scoring.
    Returns `id(result) -> Verification`."""
    from transferbench.reference.bundle import bundle_name
    from transferbench.scoring.sandbox import score_pairs

    groups: dict[tuple[str, ...], list[ResultFile]] = {}
    for result in results:
        if not result.local:
            groups.setdefault(_group_key(result), []).append(result)
    packs: dict[str, Pack | None | str] = {}
    found: dict[int, Verification] = {}
    for members in groups.values():
        first = members[0]
        name = bundle_name(first.suite, first.backbone)
        if name not in packs:
            try:
                packs[name] = read_pack(Path(root), name)
            except TransferbenchError as exc:
                packs[name] = str(exc)
        pack = packs[name]
        outcome: Verification | dict[tuple[str, str], float]
        indicator, why = _indicator_of(first)
        if indicator is None:
            outcome = Verification(False, why)
        elif isinstance(pack, str):
            outcome = Verification(False, pack)
        elif pack is None:
            outcome = Verification(False, f"no verification pack for {name} in {root}")
        elif pack.reference != first.reference or pack.tasks != first.tasks:
            outcome = Verification(False, f"the verification pack {name} holds the inputs of reference "
                                          f"{pack.reference[:12]}, not of {str(first.reference)[:12]}")
        else:
            missing = sorted(set(indicator.requires) - set(pack.artifacts))
            if missing:
                outcome = Verification(False, "inputs not in the verification pack: " + "; ".join(
                    f"{artifact} ({pack.left_out.get(artifact, 'not packed')})" for artifact in missing))
            else:
                views = pack.views(sorted(set(indicator.requires)))
                pairs = [(s, t) for s in pack.tasks for t in pack.tasks if s != t]
                if progress is not None:
                    progress(f"re-scoring {first.indicator.label()} on {len(pairs)} pairs from pack {name}")
                try:
                    values = score_pairs(indicator, [(views[s], views[t]) for s, t in pairs], hidden=hidden)
                    outcome = dict(zip(pairs, values, strict=True))
                except TransferbenchError as exc:
                    outcome = Verification(False, f"re-scoring it failed: {exc}", rescored=True)
        for result in members:
            verification = outcome if isinstance(outcome, Verification) else _compare(result, outcome, pack)
            result._verification = verification
            found[id(result)] = verification
    return found
