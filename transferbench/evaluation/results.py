"""Result files: one JSON file per (indicator, suite, backbone, transfer kind) under `submissions/`.

A result file carries the indicator's score matrix AND the measured transfer it was scored
against, so its metrics can be recomputed by anyone. `load_results` does exactly that: a file
whose stored metrics do not reproduce is reported and left out, never ranked.

Schema, version `SCHEMA_VERSION` (JSON; missing values and undefined metrics are `null`)::

    schema_version  int, must equal SCHEMA_VERSION
    indicator       {name: str, params: {..}, description: str, baseline: bool, code: {..}}
                    params: the parameters that differ from the indicator's defaults; they name
                    the indicator on the leaderboard, e.g. skill_overlap(p=0.05)
                    code (optional; absent in files written before it): {sha256, qualname, module},
                    the indicator's source identity (`transferbench.scoring.indicator.indicator_code`).
                    A row of the board is (code, params, setting); a file naming a built-in
                    indicator with other code than this version's is shown unverified
                    (`builtin_mismatch`), a built-in's code under another name is refused
                    (`code_problem`)
    suite           str, the task suite
    backbone        str, the frozen backbone (Hugging Face id or local path)
    transfer_kind   str, a registered transfer kind of any protocol version
                    (`transferbench.reference.protocol.all_transfer_kinds`); one of its reference's
                    protocol (a shipped reference's is checked on load, `reference_problem`)
    tasks           [str], the task names, the order of rows and columns
    seeds           [int], the prompt-tuning seeds the transfer was averaged over
    scores          {source: {target: float | null}}  the indicator's predictions
    transfer        {source: {target: float | null}}  the measured transfer (mean over seeds)
    families        {task: family}, optional ({} = unknown): enables the within-family,
                    across-family and partial rho; when given, every task has one
    transfer_per_seed  [{source: {target: float | null}}], optional ([] = unknown): the measured
                    transfer of each entry of `seeds`, in that order, same tasks as `transfer`,
                    whose mean over seeds (ignoring a seed's null) `transfer` must equal; the
                    leaderboard's rank intervals and split-seed check need it
    metrics         transferbench.evaluation.summary.Evaluation as a dict (includes its bootstrap seed)
    reference       str | null, the hash of the reference ground truth the transfer comes from
                    (transferbench.reference.bundle); a table ranks only files with one reference hash
    excluded_targets {task: reason}: targets the reference does not admit (their transfer
                    column is null)
    manifest        free-form provenance: config, package versions, data hashes, git commit,
                    created_at (ISO 8601 UTC; of two results of one row in a user's own results
                    folder the newest is shown, with a note; in the project's submissions two
                    files of one row are an error, see `load_results`)

Over 400 lines because the schema and the checks that re-derive a file on load (metrics
recomputed, transfer against the reference, names and paths) are one contract kept in one place;
the metric formulas are in `transferbench.evaluation.target_metrics`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import stat
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import pandas as pd
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from transferbench import __version__
from transferbench.errors import TransferbenchError
from transferbench.evaluation.summary import Evaluation, Metric, evaluate_indicator
from transferbench.json_trees import first_difference
from transferbench.reference.protocol import check_transfer_kind
from transferbench.store import atomic_write_many

SCHEMA_VERSION = 2  # 2: reference hash, excluded targets, protocol transfer kinds
METRIC_TOLERANCE = 1e-6
"""Stored and recomputed metrics may differ by this much (absolute) before a file is rejected."""

# Bounds on what a result file may ask `load_results` to recompute, so that one hostile or broken
# file cannot exhaust memory or time for everyone's leaderboard.
MAX_FILE_BYTES = 64 * 2**20
MAX_TASKS = 200
MAX_BOOTSTRAP = 100_000
MAX_K = 1000
MAX_SEED = 2**32 - 1
MAX_PERMUTATIONS = 20_000
MAX_SEEDS = 100

Matrix = dict[str, dict[str, Metric]]


class CodeInfo(BaseModel):
    """The indicator's source identity (`transferbench.scoring.indicator.indicator_code`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str
    qualname: str
    module: str

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be 64 lowercase hex digits")
        return value


class IndicatorInfo(BaseModel):
    """What produced the scores."""

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = {}
    description: str = ""
    baseline: bool = False
    code: CodeInfo | None = None  # None: a file written before code identities (shown unverified)

    def label(self) -> str:
        """The name shown on the leaderboard: `name` or `name(k=v, ...)` (keys sorted)."""
        if not self.params:
            return self.name
        args = ", ".join(f"{key}={self.params[key]}" for key in sorted(self.params))
        return f"{self.name}({args})"

    def params_key(self) -> str:
        """Canonical JSON of the params: two results with equal keys are the same indicator."""
        return json.dumps(self.params, sort_keys=True, default=str)


class Verification(NamedTuple):
    """Whether the board re-scored a row from its indicator's code and got the file's scores
    (`transferbench.leaderboard.verify`), and how, or why not."""

    verified: bool
    why: str
    rescored: bool = False  # whether it was re-scored (False: it could not be, `why` says why)


class ResultFile(BaseModel):
    """One indicator scored on one (suite, backbone, transfer kind); see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int
    indicator: IndicatorInfo
    suite: str
    backbone: str
    transfer_kind: str  # a registered transfer kind of any protocol: validated against the registries
    tasks: list[str]
    seeds: list[int]
    scores: Matrix
    transfer: Matrix
    metrics: Evaluation
    manifest: dict[str, Any] = {}
    reference: str | None = None
    excluded_targets: dict[str, str] = {}
    families: dict[str, str] = {}
    transfer_per_seed: list[Matrix] = []

    # Where `load_results` read it from, and whether that was a user's own results folder rather
    # than the project's submissions (not part of the file).
    _path: Path | None = PrivateAttr(default=None)
    _local: bool = PrivateAttr(default=False)
    # Set by `transferbench.leaderboard.verify.verify_results`; None: not checked.
    _verification: Verification | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        return self._path

    @field_validator("transfer_kind")
    @classmethod
    def _registered_kind(cls, value: str) -> str:
        try:
            return check_transfer_kind(value)
        except ValueError as exc:  # worded like pydantic's own errors: "Input should be ..."
            raise PydanticCustomError("unknown_transfer_kind", "Input {problem}", {"problem": str(exc)}) from None

    @property
    def local(self) -> bool:
        """True for a result from a user's own results folder: shown marked "(local)", never
        deduplicated against the project's submission of the same indicator."""
        return self._local

    @property
    def verification(self) -> Verification | None:
        """Whether the board re-scored this row from code and got its scores; None: not checked."""
        return self._verification

    @model_validator(mode="after")
    def _consistent(self) -> ResultFile:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version is {self.schema_version}, this transferbench reads {SCHEMA_VERSION}"
            )
        for field in ("suite", "backbone"):
            problem = _name_problem(getattr(self, field))
            if problem:
                raise ValueError(f"{field} {getattr(self, field)!r} {problem}; suite and backbone names are "
                                 "exact, case-sensitive identifiers")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError("tasks lists a task twice")
        expected = set(self.tasks)
        for label in ("scores", "transfer"):
            matrix = getattr(self, label)
            if set(matrix) != expected or any(set(row) != expected for row in matrix.values()):
                raise ValueError(f"{label} must have every task in `tasks` as source and target")
            if any(math.isinf(v) for row in matrix.values() for v in row.values()):
                raise ValueError(f"{label} holds an infinite value")
        if self.families and set(self.families) != expected:
            raise ValueError("families must name the family of every task in `tasks` and nothing else")
        if any(not family for family in self.families.values()):
            raise ValueError("families holds an empty family name")
        if self.transfer_per_seed:
            self._check_per_seed(expected)
        return self

    def _check_per_seed(self, expected: set[str]) -> None:
        if len(self.transfer_per_seed) != len(self.seeds):
            raise ValueError(
                f"transfer_per_seed has {len(self.transfer_per_seed)} matrices for {len(self.seeds)} seeds"
            )
        for k, matrix in enumerate(self.transfer_per_seed):
            if set(matrix) != expected or any(set(row) != expected for row in matrix.values()):
                raise ValueError(f"transfer_per_seed[{k}] must have every task in `tasks` as source and target")
            if any(math.isinf(v) for row in matrix.values() for v in row.values()):
                raise ValueError(f"transfer_per_seed[{k}] holds an infinite value")
        for source, row in self.transfer.items():
            for target, mean in row.items():
                values = [m[source][target] for m in self.transfer_per_seed]
                defined = [v for v in values if not math.isnan(v)]
                # A runner may average with NaN propagating (mean NaN when any seed is missing).
                if math.isnan(mean):
                    if len(defined) == len(values):
                        raise ValueError(f"transfer[{source!r}][{target!r}] is null but every seed has a value")
                elif not defined or abs(sum(defined) / len(defined) - mean) > METRIC_TOLERANCE:
                    raise ValueError(
                        f"transfer[{source!r}][{target!r}] is not the mean over seeds of transfer_per_seed"
                    )

    def created_at(self) -> str:
        return str(self.manifest.get("created_at", ""))


def _name_problem(name: str) -> str:
    """'' if `name` (a suite or backbone) is already normalised, else why not: names are compared
    exactly, so `"default "` or a name with a control character would open a look-alike setting."""
    if not name.strip():
        return "is empty"
    if name != name.strip():
        return "has leading or trailing whitespace"
    if not name.isprintable():
        return "holds a control or non-printable character"
    if unicodedata.normalize("NFC", name) != name:
        return "is not in Unicode NFC form"
    return ""


def _matrix(frame: pd.DataFrame, tasks: list[str]) -> dict[str, dict[str, float]]:
    return {s: {t: float(frame.loc[s, t]) for t in tasks} for s in tasks}


def make_result(
    scores: pd.DataFrame,
    transfer: pd.DataFrame,
    *,
    indicator: str,
    suite: str,
    backbone: str,
    transfer_kind: str,
    seeds: Sequence[int],
    params: dict[str, Any] | None = None,
    description: str = "",
    baseline: bool = False,
    manifest: dict[str, Any] | None = None,
    n_bootstrap: int = 10000,
    seed: int = 0,
    k_values: Sequence[int] = (1, 3),
    reference: str | None = None,
    excluded_targets: dict[str, str] | None = None,
    families: Mapping[str, str] | None = None,
    transfer_per_seed: Sequence[pd.DataFrame] | None = None,
    n_permutations: int = 2000,
    code: Mapping[str, str] | None = None,
) -> ResultFile:
    """Score the indicator with `evaluate_indicator` and package everything as a ResultFile.

    `families` (task -> family) enables the family-aware metrics; `transfer_per_seed` (one frame
    per entry of `seeds`, whose mean is `transfer`) enables the leaderboard's seed bootstrap and
    split-seed check. `code` is the indicator's source identity (`indicator_code`). `manifest` gets
    `created_at` (now, UTC) and `transferbench_version` unless already given.
    """
    families = {str(task): str(family) for task, family in (families or {}).items()}
    metrics = evaluate_indicator(
        scores, transfer, n_bootstrap=n_bootstrap, seed=seed, k_values=k_values,
        families=families or None, n_permutations=n_permutations,
    )
    tasks = [str(task) for task in scores.index]
    scores_f = scores.astype(float).rename(index=str, columns=str)
    transfer_f = transfer.astype(float).rename(index=str, columns=str)
    per_seed = [
        _matrix(frame.astype(float).rename(index=str, columns=str), tasks) for frame in (transfer_per_seed or [])
    ]
    full_manifest = dict(manifest or {})
    full_manifest.setdefault("created_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    full_manifest.setdefault("transferbench_version", __version__)
    try:
        return ResultFile(
            schema_version=SCHEMA_VERSION,
            indicator=IndicatorInfo(
                name=indicator, params=dict(params or {}), description=description, baseline=baseline,
                code=dict(code) if code is not None else None,
            ),
            suite=suite,
            backbone=backbone,
            transfer_kind=transfer_kind,
            tasks=tasks,
            seeds=list(seeds),
            scores=_matrix(scores_f, tasks),
            transfer=_matrix(transfer_f, tasks),
            metrics=metrics,
            manifest=full_manifest,
            reference=reference,
            excluded_targets=dict(excluded_targets or {}),
            families={task: families[task] for task in tasks if task in families},
            transfer_per_seed=per_seed,
        )
    except ValidationError as exc:
        raise TransferbenchError(f"cannot build the result of {indicator!r}: {_one_line(exc)}") from None


def dataframes(result: ResultFile) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, transfer) as square frames, rows = source, columns = target, in `tasks` order."""
    def frame(matrix: Matrix) -> pd.DataFrame:
        return pd.DataFrame(
            [[matrix[s][t] for t in result.tasks] for s in result.tasks],
            index=list(result.tasks),
            columns=list(result.tasks),
            dtype=float,
        )

    return frame(result.scores), frame(result.transfer)


def per_seed_frames(result: ResultFile) -> list[pd.DataFrame]:
    """`transfer_per_seed` as square frames (rows = source), one per seed; [] when not recorded."""
    return [
        pd.DataFrame(
            [[matrix[s][t] for t in result.tasks] for s in result.tasks],
            index=list(result.tasks), columns=list(result.tasks), dtype=float,
        )
        for matrix in result.transfer_per_seed
    ]


def slug_of(text: str) -> str:
    """Filesystem-safe: runs of anything but letters, digits, '.', '_' become '-'."""
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.")
    return slug or "unnamed"


def result_filename(result: ResultFile) -> str:
    """`<suite>__<backbone>__<transfer_kind>__<indicator>[-<8 hex of params>]__seeds-<s>__ref-<8 hex>.json`.

    Named by everything that produced it: the reference hash pins the suite's content, the
    backbone revision, the seeds and the measured transfer, so two settings never share a name,
    and the same indicator with the same params on the same setting always gets the same one.
    """
    name = slug_of(result.indicator.name)
    if result.indicator.params:
        name += "-" + hashlib.sha256(result.indicator.params_key().encode()).hexdigest()[:8]
    parts = [slug_of(result.suite), slug_of(result.backbone), result.transfer_kind, name,
             "seeds-" + "-".join(str(seed) for seed in result.seeds), f"ref-{(result.reference or 'none')[:8]}"]
    return "__".join(parts) + ".json"


def result_json(result: ResultFile) -> bytes:
    """The file's bytes: indented JSON, NaN as null, ending in a newline. A result without a code
    identity has no `indicator.code` key (as files written before it)."""
    data = result.model_dump(mode="json")
    if data["indicator"]["code"] is None:
        del data["indicator"]["code"]
    return (json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n").encode()


def check_output_folder(option: str, folder: Path) -> None:
    """Fail, before any compute, if `folder` (given by `option`) cannot become a writable folder: a
    file is in the way, or its nearest existing parent is not writable."""
    import os

    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TransferbenchError(f"{option} {folder}: {existing} is not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TransferbenchError(f"{option} {folder}: {existing} is not writable; choose another path")


def write_result(result: ResultFile, submissions_dir: Path) -> Path:
    """Write `result` to `submissions_dir / result_filename(result)` (`write_results`); return the path."""
    return write_results([result], submissions_dir)[0][0]


def _without_manifest(data: bytes) -> Any:
    record = json.loads(data)
    if isinstance(record, dict):
        record.pop("manifest", None)
    return record


def _status(path: Path, content: bytes) -> str:
    """"wrote" (no file yet), "unchanged" (the file holds the same result in every field but the
    manifest) or "replaced" (other numbers, or a file that cannot be read as a result)."""
    if not path.exists() and not path.is_symlink():
        return "wrote"
    try:
        same = _without_manifest(_read_regular_file(path).encode()) == _without_manifest(content)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, TransferbenchError):
        same = False
    return "unchanged" if same else "replaced"


def write_results(results: Sequence[ResultFile], submissions_dir: Path,
                  also: Mapping[Path, bytes] | None = None) -> list[tuple[Path, str]]:
    """The one writer of result files (`transferbench.run` writes through it): every file under
    `submissions_dir / result_filename(result)`, atomically and all or none (`atomic_write_many`),
    except those whose file already holds the same result in every field but the manifest (the
    provenance of one run: when, where, with which command, commit and package versions): such a
    file is left byte-identical, so rerunning an unchanged setting changes nothing in git. `also`:
    other files written in the same all-or-none step (the run's verification inputs). Returns
    (path, "wrote" | "replaced" | "unchanged") per result."""
    contents = {Path(submissions_dir) / result_filename(result): result_json(result) for result in results}
    done = [(path, _status(path, content)) for path, content in contents.items()]
    atomic_write_many({**{path: contents[path] for path, what in done if what != "unchanged"}, **(also or {})})
    return done


def _one_line(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "file"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def check_result(result: ResultFile) -> str:
    """'' if the stored metrics reproduce from the file's own scores and transfer, else why not."""
    stored = result.metrics
    scores, transfer = dataframes(result)
    recomputed = evaluate_indicator(
        scores, transfer, n_bootstrap=stored.n_bootstrap, seed=stored.seed, k_values=stored.k_values,
        families=result.families or None, n_permutations=stored.n_permutations,
    )
    found = first_difference(stored.to_dict(), recomputed.to_dict(), "metrics", tolerance=METRIC_TOLERANCE)
    if found:
        return f"metrics do not reproduce from the file's scores and transfer ({found})"
    return ""


def _settings_problem(result: ResultFile) -> str:
    """'' if the file's size and metric settings are within bounds, else what is wrong."""
    metrics = result.metrics
    if not 2 <= len(result.tasks) <= MAX_TASKS:
        return f"tasks must name between 2 and {MAX_TASKS} tasks, got {len(result.tasks)}"
    if not 1 <= metrics.n_bootstrap <= MAX_BOOTSTRAP:
        return f"metrics.n_bootstrap must be between 1 and {MAX_BOOTSTRAP}, got {metrics.n_bootstrap}"
    if not 0 <= metrics.seed <= MAX_SEED:
        return f"metrics.seed must be between 0 and {MAX_SEED}, got {metrics.seed}"
    if not 0 <= metrics.n_permutations <= MAX_PERMUTATIONS:
        return f"metrics.n_permutations must be between 0 and {MAX_PERMUTATIONS}, got {metrics.n_permutations}"
    if len(result.seeds) > MAX_SEEDS:
        return f"seeds must list at most {MAX_SEEDS} seeds, got {len(result.seeds)}"
    if not metrics.k_values or any(not 1 <= k <= MAX_K for k in metrics.k_values):
        return f"metrics.k_values must be integers between 1 and {MAX_K}, got {metrics.k_values}"
    return ""


def _read_regular_file(path: Path) -> str:
    """The text of `path` if it is a regular file (not a link, FIFO or device) of bounded size."""
    if path.is_symlink():
        raise TransferbenchError("is a symbolic link; copy the result file itself into the submissions folder")
    try:
        info = path.stat()
    except OSError as exc:
        raise TransferbenchError(f"cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):  # checked before opening: opening a FIFO would block
        raise TransferbenchError("is not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise TransferbenchError(f"is {info.st_size} bytes; result files are limited to {MAX_FILE_BYTES}")
    return path.read_text(encoding="utf-8")


def read_result(path: Path) -> ResultFile:
    """Read, validate and re-check one result file; TransferbenchError (one line) if it is bad."""
    try:
        data = json.loads(_read_regular_file(Path(path)))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TransferbenchError(f"not readable JSON ({exc})") from None
    except RecursionError:
        raise TransferbenchError("not readable JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise TransferbenchError("not a result file (top level is not a JSON object)")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise TransferbenchError(
            f"schema_version is {version!r}, this transferbench reads {SCHEMA_VERSION}; "
            "regenerate the file with this version"
        )
    try:
        result = ResultFile.model_validate(data)
    except ValidationError as exc:
        raise TransferbenchError(f"does not match the result schema: {_one_line(exc)}") from None
    problem = _settings_problem(result)
    if problem:
        raise TransferbenchError(problem)
    try:
        problem = check_result(result)
    except TransferbenchError as exc:
        problem = str(exc)
    if problem:
        raise TransferbenchError(problem)
    problem = reference_problem(result) or code_problem(result)
    if problem:
        raise TransferbenchError(problem)
    mismatch = builtin_mismatch(result)
    if mismatch:  # marked however the board is built, verified or not
        result._verification = Verification(False, mismatch)
    result._path = Path(path)
    return result


def code_problem(result: ResultFile) -> str:
    """'' unless the file carries a built-in indicator's code (`transferbench.scoring.indicator.
    BUILTIN_INDICATORS`) under another name: a built-in's results carry its own name."""
    from transferbench.scoring.indicator import BUILTIN_INDICATORS, builtin_code

    code, name = result.indicator.code, result.indicator.name
    if code is None or name in BUILTIN_INDICATORS:
        return ""
    for other in BUILTIN_INDICATORS:
        if builtin_code(other)["sha256"] == code.sha256:
            return (f"its code is the built-in indicator {other!r} (sha256 {code.sha256[:12]}) under the name "
                    f"{name!r}; a built-in's results carry its own name")
    return ""


def builtin_mismatch(result: ResultFile) -> str:
    """'' unless the file names a built-in indicator but carries other code than this version's
    built-in of that name: then why, and the file is shown unverified (built-in names belong to
    built-in code; after a built-in's module changes, its rows are scored again)."""
    from transferbench.scoring.indicator import builtin_code

    code, name = result.indicator.code, result.indicator.name
    builtin = builtin_code(name)
    if code is None or builtin is None or code.sha256 == builtin["sha256"]:
        return ""
    return (f"it names the built-in indicator {name!r}, but its code ({code.module} {code.qualname}, sha256 "
            f"{code.sha256[:12]}) is not this version's {name!r} ({builtin['sha256'][:12]}); score it again with "
            "this version, or give other code a name of its own")


@functools.lru_cache(maxsize=8)
def _shipped(root: str, name: str, pinned: str):
    from transferbench.reference.bundle import read_bundle

    return read_bundle(Path(root) / name, pinned)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal labels and cells (NaN equals NaN); the JSON round trip of a float is exact."""
    if list(a.index) != list(b.index) or list(a.columns) != list(b.columns):
        return False
    return bool((((a - b).abs() <= 1e-12) | (a.isna() & b.isna())).to_numpy().all())


def reference_problem(result: ResultFile) -> str:
    """'' if the file's measured transfer is its reference's, else why not.

    For a setting with a shipped reference, a file must name that reference's hash and carry
    exactly what the reference measured: its tasks in order, seeds, families, excluded targets,
    transfer matrix and per-seed transfer of the file's kind: a file cannot bring its own ground
    truth, nor drop or shorten the parts the leaderboard's rank intervals and split-seed check use.
    A file of any other setting may not name a shipped reference's hash (or one that shows as it),
    nor spell a shipped setting another way (`Default`, `minilm/`): its table would be headed by
    the official hash or look like the official table. Files of settings without a shipped
    reference are ranked only with files of the same hash.
    """
    from transferbench.reference.bundle import bundle_name, pinned_hashes, shipped_root

    root = shipped_root()
    pins = pinned_hashes(root)
    name = bundle_name(result.suite, result.backbone)
    pinned = pins.get(name)
    setting = f"suite {result.suite!r}, backbone {result.backbone!r}"
    if pinned is None:
        for other, digest in sorted(pins.items()):
            if other.casefold() == name.casefold():
                return (f"its {setting} is another spelling of the shipped setting {other}; "
                        "use the exact suite and backbone names")
            if result.reference and result.reference[:12] == digest[:12]:
                return (f"it names the hash of the shipped reference {other} ({digest[:12]}), but its {setting} "
                        "is not that reference's setting")
        return ""
    reference = _shipped(str(root), name, pinned)
    exact = (reference.info["suite"]["name"], reference.info["backbone"]["backbone"])
    if (result.suite, result.backbone) != exact:
        return (f"its {setting} is another spelling of the shipped setting {name} (suite {exact[0]!r}, "
                f"backbone {exact[1]!r}); use the exact suite and backbone names")
    if result.reference != pinned:
        return (f"scored against reference {str(result.reference)[:12]}, not the shipped reference {name} "
                f"({pinned[:12]}); score it again with `transferbench run`")
    if result.transfer_kind not in reference.transfer:
        return (f"the shipped reference {name} (protocol {reference.protocol_version}) has no transfer kind "
                f"{result.transfer_kind!r}; its kinds are {', '.join(reference.transfer)}")
    if result.tasks != reference.task_names:
        return f"its tasks differ from those of the shipped reference {name}"
    _, transfer = dataframes(result)
    if not _same(transfer, reference.matrix(result.transfer_kind)):
        return f"its transfer matrix differs from the shipped reference {name} ({pinned[:12]}); it was edited"
    if result.excluded_targets != reference.excluded_targets():
        return f"its excluded targets differ from the shipped reference {name}"
    if result.seeds != reference.seeds:
        return f"its seeds {result.seeds} differ from the shipped reference {name}'s {reference.seeds}"
    if result.families != reference.families():
        return f"its families differ from those of the shipped reference {name}"
    per_seed = per_seed_frames(result)
    if len(per_seed) != len(reference.seeds):
        return (f"it carries the transfer of {len(per_seed)} seeds, the shipped reference {name} "
                f"of {len(reference.seeds)}; transfer_per_seed must be the reference's")
    for k, (mine, theirs) in enumerate(zip(per_seed, reference.per_seed(result.transfer_kind))):
        if not _same(mine, theirs):
            return (f"its transfer of seed {result.seeds[k]} (transfer_per_seed[{k}]) differs from the shipped "
                    f"reference {name}; it was edited")
    return ""


def _setting(result: ResultFile) -> tuple[str, ...]:
    """The table a result is ranked in (suite, backbone, transfer kind, reference hash: `TableKey`)."""
    return (result.suite, result.backbone, result.transfer_kind, (result.reference or "none")[:12])


def row_identity(result: ResultFile) -> tuple[str, ...]:
    """What a row of the leaderboard is: the indicator's code (`indicator.code.sha256`) with its
    params on one setting. A file without a code identity (written before it) is identified by its
    indicator name instead, as then."""
    code = result.indicator.code
    who = f"code {code.sha256}" if code is not None else f"name {result.indicator.name}"
    return (who, result.indicator.params_key(), *_setting(result))


def _duplicate_problem(results: Sequence[ResultFile]) -> str:
    """'' if no two results are one row, nor show under one label in one table, else a line naming
    both files of the first such pair. Two files of one code and params are one row whatever
    their names (a renamed copy is no new row); two files of one name and params are one label
    whatever their code, and a label names one row."""
    by_row: dict[tuple[str, ...], ResultFile] = {}
    by_label: dict[tuple[str, ...], ResultFile] = {}
    for result in results:
        setting = (f"suite {result.suite!r}, backbone {result.backbone!r}, {result.transfer_kind}, reference "
                   f"{(result.reference or 'none')[:12]}")
        first = by_row.setdefault(row_identity(result), result)
        if first is not result:
            same = "" if first.indicator.name == result.indicator.name else (
                f" (the same code and params, named {first.indicator.label()} and {result.indicator.label()})")
            return (f"{first.path} and {result.path} both claim the row {first.indicator.label()} of "
                    f"{setting}{same}; keep one of them")
        first = by_label.setdefault((result.indicator.name, result.indicator.params_key(), *_setting(result)), result)
        if first is not result:
            return (f"{first.path} and {result.path} both name their row {result.indicator.label()} of {setting} "
                    "but carry different code; keep one of them, or give the other indicator a name of its own")
    return ""


def load_results(submissions_dir: Path, local: bool = False) -> tuple[list[ResultFile], list[tuple[Path, str]]]:
    """Every valid `*.json` under `submissions_dir` (recursively, in sorted path order), and
    (path, one-line reason) for each file left out: malformed, wrong schema version, metric
    settings out of bounds, not a regular file (links, FIFOs), or metrics that do not reproduce
    (a tampered or stale file), or a file not matching its shipped reference (`reference_problem`).
    `local`: the folder is a user's own results (see `ResultFile.local`).

    TransferbenchError (the whole board, one line) when the shipped references' index is missing,
    broken or does not pin its bundles (`transferbench.reference.bundle.check_shipped_root`), and, for the
    project's folder (not `local`), when two files claim one row (indicator name and params on
    one setting): neither file name order nor `created_at` may decide which one is official."""
    root = Path(submissions_dir)
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "does not exist"
        raise TransferbenchError(f"submissions folder {root} {problem}; pass the folder of result files")
    from transferbench.reference.bundle import check_shipped_root

    check_shipped_root()  # a removed or edited index.json would switch every reference check off
    results: list[ResultFile] = []
    problems: list[tuple[Path, str]] = []
    for path in sorted(root.rglob("*.json")):
        try:
            results.append(read_result(path))
            results[-1]._local = local
        except TransferbenchError as exc:
            problems.append((path, " ".join(str(exc).split())))
        except Exception as exc:  # a submission is untrusted input: it never stops the others
            problems.append((path, f"could not be checked ({type(exc).__name__}: {' '.join(str(exc).split())})"))
    if not local:
        problem = _duplicate_problem(results)
        if problem:
            raise TransferbenchError(f"submissions folder {root}: {problem}")
    return results, problems
