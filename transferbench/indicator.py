"""The indicator plugin API: a base class, one registry, and the artifacts an indicator may read.

Stage 4 of the pipeline. An indicator declares the artifacts it needs in `requires`, stores its
parameters in `__init__` and implements `score(source, target)`; it never sees measured transfer.
Three ways in: `@register_indicator("name")`, the entry-point group `transferbench.indicators`,
and `--indicator path/to/file.py:ClassName`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import math
import signal
import sys
import threading
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Iterator, Mapping, NamedTuple

import numpy as np
import yaml

from transferbench.errors import TransferbenchError, UnknownNameError
from transferbench.registry import Registry, did_you_mean

# Every artifact an indicator can declare, with what it is. `TaskView` serves exactly these.
ARTIFACTS: dict[str, str] = {
    "prompts": "trained soft prompts, one [prompt_length, hidden] array per seed",
    "skill_scores": "skill-neuron predictivity [layers, ffn_width], averaged over seeds",
    "mask_activations": "FFN activations at the [MASK] position with the prompt alone, [layers, ffn_width] per seed",
    "mask_activations_task": "FFN activations at [MASK] averaged over task inputs, [layers, ffn_width] per seed",
    "text_embedding": "mean frozen-backbone sentence embedding of the task's training inputs, no prompt [hidden]",
    "samples": "up to 32 training examples: list of (text, text_pair, label name)",
    "train_size": "number of usable labelled examples in the task's source (before subsampling)",
    "pair_outputs": "read on the target view: {source name: one PairOutputs per seed}, the backbone's outputs "
                    "on the target's first 256 train examples with the source's prompt",
    "probe_ranking": "elastic-net probe rank of each neuron (0 = most important), int [layers, ffn_width] per seed",
}

# What `Indicator.kind` may be: which family of evidence an indicator reads (`transferbench
# indicators` groups by it). `None` (the default of a user's class) is listed as "other".
KINDS = ("neuron", "prompt", "estimator", "baseline")


class PairOutputs(NamedTuple):
    """One (source, target, seed) cell of the `pair_outputs` artifact: the frozen backbone run on
    the target's first `PAIR_EXAMPLES` train examples with the *source* task's prompt.

    `features` `float32 [n, hidden]`: mean-pooled last hidden states (the prompt, [MASK] and text
    positions, as the verbalizer pools them); `source_probs` `float32 [n, source_classes]`: softmax
    of the source task's verbalizer logits (its own label words); `target_labels` `int64 [n]`.
    """

    features: np.ndarray
    source_probs: np.ndarray
    target_labels: np.ndarray


class TaskView:
    """What an indicator sees of one task: its name and family, and the artifacts it declared.

    A sealed, read-only view: it holds the declared artifacts themselves (computed by the runner
    before scoring), never the runner, the store or measured transfer. Asking for an undeclared
    artifact is an error, so an indicator's inputs are explicit.
    """

    __slots__ = ("name", "family", "num_classes", "_artifacts")

    def __init__(self, name: str, family: str, num_classes: int, artifacts: Mapping[str, Any]):
        self.name = name
        self.family = family
        self.num_classes = num_classes
        self._artifacts = MappingProxyType(dict(artifacts))

    def __getattr__(self, artifact: str) -> Any:
        if artifact.startswith("_") or artifact not in ARTIFACTS:
            raise AttributeError(artifact)
        if artifact not in self._artifacts:
            raise TransferbenchError(
                f"indicator reads artifact {artifact!r} without declaring it: add it to `requires`"
            )
        return self._artifacts[artifact]

    def __repr__(self) -> str:
        return f"TaskView({self.name!r}, family={self.family!r})"


class Indicator:
    """Base class of every transferability indicator.

    Subclasses set `requires` (names from `ARTIFACTS`), a one-line `description`, take their
    parameters as keyword arguments of `__init__` (stored as attributes of the same name, as in
    scikit-learn estimators), and implement `score(source, target) -> float`, where a higher
    score predicts more transfer from source to target.
    """

    requires: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    baseline: ClassVar[bool] = False
    # One of `KINDS` (every built-in sets it; baselines also set `baseline = True`).
    kind: ClassVar[str | None] = None
    registered_name: ClassVar[str | None] = None

    def score(self, source: TaskView, target: TaskView) -> float:
        raise NotImplementedError

    @classmethod
    def param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        signature = inspect.signature(cls.__init__)
        return {p.name: p.default for p in signature.parameters.values()
                if p.name != "self" and p.default is not inspect.Parameter.empty}

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names()}

    @property
    def name(self) -> str:
        return self.registered_name or type(self).__name__

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


INDICATORS: Registry[Indicator] = Registry("indicator", Indicator, group="transferbench.indicators")
register_indicator = INDICATORS.register

# The one registration of each built-in: imported only when first looked up.
for _name, _target in {
    "skill_overlap": "transferbench.indicators.skill_overlap:SkillOverlap",
    "activation_overlap": "transferbench.indicators.activation_overlap:ActivationOverlap",
    "embedding_similarity": "transferbench.indicators.embedding_similarity:EmbeddingSimilarity",
    "random": "transferbench.indicators.baselines:RandomIndicator",
    "data_size": "transferbench.indicators.baselines:DataSize",
    "task_embedding": "transferbench.indicators.baselines:TaskEmbedding",
    "same_family": "transferbench.indicators.baselines:SameFamily",
    "skill_on": "transferbench.indicators.skill_overlap:SkillOn",
    "probe_overlap": "transferbench.indicators.probe_overlap:ProbeOverlap",
    "logme": "transferbench.indicators.estimators:LogME",
    "leep": "transferbench.indicators.estimators:LEEP",
    "nce": "transferbench.indicators.estimators:NCE",
    "h_score": "transferbench.indicators.estimators:HScore",
}.items():
    INDICATORS.add(_name, _target)


def _load_file_class(path: str, class_name: str) -> type[Indicator]:
    file = Path(path)
    if not file.is_file():
        raise TransferbenchError(f"indicator file {path!r} does not exist")
    module_name = f"transferbench_user_{file.stem}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() on import must not end the run silently
        raise TransferbenchError(f"indicator file {path!r} failed to import: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        classes = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Indicator) and v is not Indicator]
        raise UnknownNameError(f"{path!r} has no class {class_name!r}{did_you_mean(class_name, classes)}")
    if not (isinstance(cls, type) and issubclass(cls, Indicator)):
        raise TransferbenchError(f"{path}:{class_name} is not a subclass of transferbench.indicator.Indicator")
    if cls.registered_name is None:
        cls.registered_name = class_name
    return cls


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: `"p=[1,2],q=a"` -> `["p=[1,2]", "q=a"]`."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item for item in items if item.strip()]


def parse_params(text: str, where: str) -> dict[str, Any]:
    """`"p=0.05,measure=weighted"` -> {"p": 0.05, "measure": "weighted"} (values read as YAML
    values, so `p=[1,2]` is a list)."""
    params: dict[str, Any] = {}
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TransferbenchError(f"indicator {where!r}: parameter {item!r} is not of the form name=value")
        try:
            params[key.strip()] = yaml.safe_load(value.strip())
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise TransferbenchError(
                f"indicator {where!r}: value of parameter {key.strip()!r} is not valid YAML ({problem}); "
                "quote it or write lists as [a, b]"
            ) from None
    return params


def make_indicator(spec: str) -> Indicator:
    """Build an indicator from a command-line spec.

    Forms: `name`, `name:p=0.05,measure=weighted`, `path/to/file.py:ClassName`, and
    `path/to/file.py:ClassName:param=value`.
    """
    if ".py:" in spec:
        path, _, rest = spec.partition(".py:")
        class_name, _, param_text = rest.partition(":")
        cls = _load_file_class(path + ".py", class_name)
    else:
        name, _, param_text = spec.partition(":")
        cls = INDICATORS.get(name)
    params = parse_params(param_text, spec)
    unknown = sorted(set(params) - set(cls.param_names()))
    if unknown:
        raise TransferbenchError(
            f"indicator {cls.registered_name!r} has no parameter {unknown[0]!r}"
            f"{did_you_mean(unknown[0], cls.param_names())}"
        )
    try:
        indicator = cls(**params)
    except (TypeError, ValueError) as exc:
        raise TransferbenchError(f"indicator {cls.registered_name!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # plugin code: any failure is one line naming it
        raise TransferbenchError(
            f"indicator {cls.registered_name!r}: its constructor raised {type(exc).__name__}: {exc}"
        ) from None
    missing = sorted(set(indicator.requires) - set(ARTIFACTS))
    if missing:
        raise TransferbenchError(
            f"indicator {indicator.name!r} requires unknown artifact {missing[0]!r}{did_you_mean(missing[0], list(ARTIFACTS))}"
        )
    return indicator


# Seconds one `score(source, target)` call may take before the run stops with an error line. Plugins
# are arbitrary code; a hung one should fail clearly rather than stall a benchmark run.
DEFAULT_TIME_LIMIT = 60.0


class _TimeLimitExceeded(BaseException):
    """Raised from the SIGALRM handler. A BaseException, so a plugin's `except Exception` cannot
    swallow it."""


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise `_TimeLimitExceeded` in the block after `seconds` of wall time.

    Uses `signal.setitimer(ITIMER_REAL)`, so it only works in the main thread on Unix; elsewhere
    (and with `seconds=None`) the block runs without a limit. Code stuck inside one long C call
    (e.g. a huge matrix product) is interrupted only when that call returns. An alarm someone else
    had set is restored afterwards, minus the time spent here.
    """
    usable = (seconds is not None and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise _TimeLimitExceeded

    # None: a handler installed from C, which Python cannot reinstall; fall back to the default.
    previous_handler = signal.signal(signal.SIGALRM, on_alarm) or signal.SIG_DFL
    started = time.monotonic()
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:  # nested, so an alarm landing right here still restores the previous handler
            signal.signal(signal.SIGALRM, previous_handler)
            if previous_delay > 0:
                remaining = max(previous_delay - (time.monotonic() - started), 1e-3)
                signal.setitimer(signal.ITIMER_REAL, remaining, previous_interval)


def checked_score(indicator: Indicator, source: TaskView, target: TaskView,
                  time_limit: float | None = None) -> float:
    """Call `indicator.score` and turn any failure into one line naming the indicator and pair.

    With `time_limit` (seconds; the runner passes `DEFAULT_TIME_LIMIT`), a call that runs longer
    fails with "... exceeded the time limit of N s". `None` means no limit.
    """
    where = f"indicator {indicator.name!r} on pair {source.name} -> {target.name}"
    try:
        with _time_limit(time_limit):
            value = indicator.score(source, target)
    except _TimeLimitExceeded:
        raise TransferbenchError(f"{where} exceeded the time limit of {time_limit:g} s") from None
    except TransferbenchError as exc:
        raise TransferbenchError(f"{where}: {exc}") from None
    except (Exception, SystemExit) as exc:  # sys.exit(0) in a plugin must not look like success
        raise TransferbenchError(f"{where} raised {type(exc).__name__}: {exc}") from None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
        raise TransferbenchError(f"{where} returned {type(value).__name__}, expected one float")
    value = float(value)
    if not math.isfinite(value):
        raise TransferbenchError(f"{where} returned {value}; scores must be finite")
    return value


def measured_costs() -> dict[str, dict[str, Any]]:
    """Measured seconds of one `score` call per pair of each built-in indicator (default
    parameters, artifacts already loaded), from `indicators/costs.json`, which
    `benchmarks/indicator_cost.py --write` produces: `{"setting": {...}, "seconds_per_pair":
    {name: float}}`. Empty when the file is missing."""
    from importlib import resources

    try:
        text = resources.files("transferbench.indicators").joinpath("costs.json").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        return {}
    import json

    return json.loads(text)


def all_indicator_names() -> list[str]:
    return INDICATORS.names()
