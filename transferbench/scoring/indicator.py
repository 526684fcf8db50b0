"""The indicator plugin API: a base class, one registry, and the artifacts an indicator may read.

Stage 4 of the pipeline. An indicator declares the artifacts it needs in `requires`, stores its
parameters in `__init__` and implements `score(source, target)`; it never sees measured transfer.
Three ways in: `@register_indicator("name")`, the entry-point group `transferbench.indicators`,
and `--indicator path/to/file.py:ClassName`.

Over 400 lines because the ways in, the contract check and the guard around plugin code (import,
constructor, `score`) are one boundary: what a plugin gets wrong is told here, before any compute.
Scoring in a sealed child process with a time limit is `transferbench.scoring.sandbox`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import signal
import sys
import threading
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import yaml

from transferbench.pipeline.artifacts import PairOutputs, served_artifacts  # noqa: F401  (PairOutputs: re-exported)
from transferbench.errors import Terminated, TransferbenchError, UnknownNameError
from transferbench.registry import Registry, did_you_mean

class _ServedArtifacts(Mapping):
    """`ARTIFACTS[name]`: the description of every artifact an indicator may declare, read from the
    artifact declarations (`transferbench.pipeline.artifacts.ARTIFACTS`, those `served`). `TaskView` serves
    exactly these; it is read-only (declare an artifact with `artifacts.declare_artifact`)."""

    def __getitem__(self, name: str) -> str:
        return served_artifacts()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(served_artifacts())

    def __len__(self) -> int:
        return len(served_artifacts())


ARTIFACTS: Mapping[str, str] = _ServedArtifacts()

# The module name a `file.py:Class` plugin's file is imported under: `transferbench_user_<stem>`.
USER_MODULE_PREFIX = "transferbench_user_"


def known_artifacts() -> tuple[str, ...]:
    """The artifact names an indicator may list in `requires` (and a `TaskView` serves). Every
    reader asks this one function, so where the names come from can change in one line."""
    return tuple(ARTIFACTS)


# What `Indicator.kind` may be: which family of evidence an indicator reads (`transferbench
# indicators` groups by it). `None` (the default of a user's class) is listed as "other".
KINDS = ("neuron", "prompt", "estimator", "baseline")


class TaskView:
    """What an indicator sees of one task: its name, family and label names (from the task card),
    and the artifacts it declared.

    A sealed, read-only view: it holds the declared artifacts themselves (computed by the runner
    before scoring), never the runner, the store or measured transfer. Asking for an undeclared
    artifact is an error, so an indicator's inputs are explicit. `label_names` are the card's class
    names in label order (the values of its `labels` field, not the verbalizer words); a view built
    without them has an empty tuple.
    """

    __slots__ = ("name", "family", "num_classes", "label_names", "_artifacts")

    def __init__(self, name: str, family: str, num_classes: int, artifacts: Mapping[str, Any],
                 label_names: Sequence[str] = ()):
        self.name = name
        self.family = family
        self.num_classes = num_classes
        self.label_names = tuple(label_names)
        self._artifacts = MappingProxyType(dict(artifacts))

    def __getattr__(self, artifact: str) -> Any:
        if artifact.startswith("_"):
            raise AttributeError(artifact)
        # what the view holds first: in the sealed scoring process, artifacts declared at run time
        # (`declare_artifact` in the benchmark process) are not in that process's registry
        if artifact in self._artifacts:
            return self._artifacts[artifact]
        if artifact not in known_artifacts():
            raise AttributeError(artifact)
        raise TransferbenchError(f"indicator reads artifact {artifact!r} without declaring it: add it to `requires`")

    def __reduce__(self):  # pickled to the sealed scoring process (a mapping proxy does not pickle)
        return TaskView, (self.name, self.family, self.num_classes, dict(self._artifacts), self.label_names)

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
        # the class's own registration: a subclass of a registered indicator is another indicator
        return type(self).__dict__.get("registered_name") or type(self).__name__

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def _label(cls: type) -> str:
    return cls.__dict__.get("registered_name") or cls.__name__


def check_indicator_class(cls: type[Indicator], name: str | None = None) -> type[Indicator]:
    """The class half of the indicator contract (after scikit-learn's `check_estimator`), checked
    when a class is registered, loaded (entry point, `file.py:Class`) or passed to
    `transferbench.run`, before anything is computed: `requires` is a tuple of known artifact names,
    `name` (if set) and `description` strings, `kind` one of `KINDS` or None, `baseline` a bool, `score(self, source,
    target)` is implemented with that signature, and `__init__` takes its parameters by name (so
    `get_params` can read them back). Returns `cls`; a breach is one line naming the class (`name`:
    its registered name) and what to do."""
    label = name or _label(cls)
    requires = cls.requires
    if not isinstance(requires, (tuple, list)) or not all(isinstance(item, str) for item in requires):
        raise TransferbenchError(f"indicator {label!r}: `requires` must be a tuple of artifact names, "
                                 f"e.g. (\"prompts\",), got {requires!r}")
    known = known_artifacts()
    missing = [item for item in requires if item not in known]
    if missing:
        raise TransferbenchError(
            f"indicator {label!r} requires unknown artifact {missing[0]!r}{did_you_mean(missing[0], list(known))}")
    name_attribute = inspect.getattr_static(cls, "name")
    if not isinstance(name_attribute, (property, str)):
        raise TransferbenchError(f"indicator {label!r}: `name` must be a string, got {type(name_attribute).__name__}; "
                                 "or leave it out: the registered name (or the class name) is used")
    if not isinstance(cls.description, str):
        raise TransferbenchError(f"indicator {label!r}: `description` must be a string (one line on what it "
                                 f"measures), got {type(cls.description).__name__}")
    if cls.kind is not None and cls.kind not in KINDS:
        raise TransferbenchError(f"indicator {label!r}: `kind` must be one of {', '.join(KINDS)} or None, "
                                 f"got {cls.kind!r}")
    if not isinstance(cls.baseline, bool):
        raise TransferbenchError(f"indicator {label!r}: `baseline` must be True or False, got {cls.baseline!r}")
    if getattr(cls, "score", None) is Indicator.score:
        raise TransferbenchError(f"indicator {label!r} does not implement score(self, source, target)")
    try:
        inspect.signature(cls.score).bind(None, None, None)
    except (TypeError, ValueError):
        shown = f"score{inspect.signature(cls.score)}" if callable(cls.score) else f"score = {cls.score!r}"
        raise TransferbenchError(f"indicator {label!r}: {shown} must be a method score(self, source, target)") from None
    if cls.__init__ is not object.__init__:
        for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                shown = {param.VAR_POSITIONAL: f"*{param.name}", param.VAR_KEYWORD: f"**{param.name}"}.get(
                    param.kind, f"{param.name} (positional-only)")
                raise TransferbenchError(
                    f"indicator {label!r}: __init__ takes {shown}; take each parameter by name (name=default) "
                    "and store it as self.name, so get_params can read it back")
    return cls


def check_indicator(indicator: Indicator) -> Indicator:
    """The whole indicator contract, checked on every indicator a run is given and before anything
    is computed: its class (`check_indicator_class`), every `__init__` parameter stored under its own
    name (`get_params`, which names the result files, reads them back by name), the parameters
    round-trip (`type(indicator)(**indicator.get_params())` has the same parameters) and `repr`
    works. Returns the indicator; a breach is one line naming the indicator, the parameter and what
    to do."""
    cls = type(indicator)
    check_indicator_class(cls)
    name = indicator.name
    with _plugin_guard(f"indicator {name!r}: reading its parameters raised"):
        for param in indicator.param_names():
            if not hasattr(indicator, param):
                raise TransferbenchError(
                    f"indicator {name!r}: parameter {param!r} of __init__ is not stored under its own name; "
                    f"set self.{param} = {param} in __init__ (parameters are read back by name)")
        params = indicator.get_params()
    with _plugin_guard(f"indicator {name!r}: rebuilding it from get_params() raised"):
        rebuilt = cls(**params).get_params()
    for param, value in params.items():
        if repr(rebuilt[param]) != repr(value):  # repr: parameters may be arrays, NaN, any object with a repr
            raise TransferbenchError(
                f"indicator {name!r}: parameter {param!r} does not round-trip: {cls.__name__}({param}={value!r}) "
                f"stores {rebuilt[param]!r}; store each parameter unchanged in __init__ (derive other values in score)")
    with _plugin_guard(f"indicator {name!r}: repr() raised"):
        repr(indicator)
    return indicator


INDICATORS: Registry[Indicator] = Registry("indicator", Indicator, group="transferbench.indicators",
                                           check=lambda name, cls: check_indicator_class(cls, name))
register_indicator = INDICATORS.register

# The one registration of each built-in: imported only when first looked up. A result file that
# names one of these must carry its code identity (`builtin_code`): built-in names belong to built-in code.
BUILTIN_INDICATORS: Mapping[str, str] = MappingProxyType({
    "skill_overlap": "transferbench.indicators.skill_overlap:SkillOverlap",
    "activation_overlap": "transferbench.indicators.activation_overlap:ActivationOverlap",
    "embedding_similarity": "transferbench.indicators.embedding_similarity:EmbeddingSimilarity",
    "random": "transferbench.indicators.baselines:RandomIndicator",
    "data_size": "transferbench.indicators.baselines:DataSize",
    "task_embedding": "transferbench.indicators.baselines:TaskEmbedding",
    "same_family": "transferbench.indicators.baselines:SameFamily",
    "label_overlap": "transferbench.indicators.baselines:LabelOverlap",
    "same_corpus": "transferbench.indicators.same_corpus:SameCorpus",
    "skill_on": "transferbench.indicators.skill_overlap:SkillOn",
    "probe_overlap": "transferbench.indicators.probe_overlap:ProbeOverlap",
    "logme": "transferbench.indicators.estimators:LogME",
    "leep": "transferbench.indicators.estimators:LEEP",
    "nce": "transferbench.indicators.estimators:NCE",
    "h_score": "transferbench.indicators.estimators:HScore",
    # the neuron indicators read where the backbone's verbalizer reads (docs/indicators.md)
    "skill_overlap_readout": "transferbench.indicators.skill_overlap:SkillOverlapReadout",
    "skill_on_readout": "transferbench.indicators.skill_overlap:SkillOnReadout",
    "activation_overlap_readout": "transferbench.indicators.activation_overlap:ActivationOverlapReadout",
})
for _name, _target in BUILTIN_INDICATORS.items():
    INDICATORS.add(_name, _target)

# Bumped if what `indicator_code` hashes ever changes, so old and new identities never coincide.
CODE_IDENTITY = b"transferbench indicator code 1"


def indicator_code(cls: type) -> dict[str, str] | None:
    """The source identity of an indicator class, recorded in every result file (`indicator.code`):
    `{"sha256", "qualname", "module"}`. A board row is this code with its parameters on a setting.

    `sha256` hashes the bytes of the Python file that defines the class (for a `file.py:Class`
    plugin that file; for an installed or built-in indicator the `.py` file of its module), with
    line endings normalised to `\n` (a checkout with CRLF line endings is the same code), together
    with the class's qualified name (two classes of one file are two indicators). What that file
    imports is not hashed: the rest of the code is pinned by the package versions in the manifest,
    and `transferbench leaderboard --verify` re-scores a row to show that its scores come from the
    code. A class with no module file (a notebook cell) is hashed by its own source
    (`inspect.getsource`); None when neither can be read. `module` is the dotted module name, or
    the file's name for a `file.py` plugin (informative only)."""
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    source = None
    if file and str(file).endswith(".py"):
        with contextlib.suppress(OSError):
            source = Path(file).read_bytes()
    if source is None:
        with contextlib.suppress(OSError, TypeError):
            source = inspect.getsource(cls).encode()
    if source is None:
        return None
    shown = Path(file).name if file and cls.__module__.startswith(USER_MODULE_PREFIX) else cls.__module__
    return source_code(source, cls.__qualname__, shown)


def source_code(source: bytes, qualname: str, module: str) -> dict[str, str]:
    """`indicator_code` of the class `qualname` defined by the file whose bytes are `source`
    (computed without running the file: `transferbench.scoring.sandbox.load_sealed` names a
    plugin's code this way, from the file it reads itself)."""
    digest = hashlib.sha256(b"\0".join([CODE_IDENTITY, qualname.encode(), source.replace(b"\r\n", b"\n")])).hexdigest()
    return {"sha256": digest, "qualname": qualname, "module": module}


@functools.lru_cache(maxsize=None)
def builtin_class(name: str) -> type[Indicator] | None:
    """The class of the built-in indicator `name` of this version (its module is imported), or None
    if `name` is not a built-in (whatever a registry holds under that name: tests isolate registries)."""
    target = BUILTIN_INDICATORS.get(name)
    if target is None:
        return None
    module, _, attribute = target.partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    cls.registered_name = name  # as the registry names the classes it loads (`Registry.get`)
    return cls


@functools.lru_cache(maxsize=None)
def builtin_code(name: str) -> dict[str, str] | None:
    """The code identity (`indicator_code`) of the built-in indicator `name` of this version, or
    None if `name` is not a built-in."""
    cls = builtin_class(name)
    return None if cls is None else indicator_code(cls)


def load_file_class(path: str, class_name: str | None) -> type[Indicator]:
    """The Indicator subclass `class_name` of the Python file `path`; with `class_name` None, the one
    Indicator subclass the file defines (several, or none, is an error naming what it defines)."""
    file = Path(path)
    if not file.is_file():
        raise TransferbenchError(f"indicator file {path!r} does not exist")
    module_name = f"{USER_MODULE_PREFIX}{file.stem}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[module_name] = module
    # No __pycache__ folder is left beside the user's file: running an indicator writes nothing there.
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        with _plugin_guard(f"indicator file {path!r} failed to import:"):  # sys.exit() there must not end the run
            spec.loader.exec_module(module)  # type: ignore[union-attr]
    finally:
        sys.dont_write_bytecode = dont_write
    # the classes the file defines itself, not those it imports (the base class, a built-in it extends)
    classes = [n for n, v in vars(module).items()
               if isinstance(v, type) and issubclass(v, Indicator) and v.__module__ == module_name]
    if class_name is None:
        if not classes:
            raise TransferbenchError(f"indicator file {path!r} defines no subclass of transferbench.scoring.indicator.Indicator "
                                     "(see docs/indicators.md for one)")
        if len(classes) > 1:
            raise TransferbenchError(f"indicator file {path!r} defines several Indicator subclasses "
                                     f"({', '.join(classes)}); name one: {path}:{classes[0]}")
        class_name = classes[0]
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UnknownNameError(f"{path!r} has no class {class_name!r}{did_you_mean(class_name, classes)}")
    if not (isinstance(cls, type) and issubclass(cls, Indicator)):
        raise TransferbenchError(f"{path}:{class_name} is not a subclass of transferbench.scoring.indicator.Indicator")
    if cls.__dict__.get("registered_name") is None:  # not the name of a registered class it extends
        cls.registered_name = class_name
    return check_indicator_class(cls)


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


def file_spec(spec: str) -> tuple[str, str | None, str] | None:
    """(path, class name or None, parameter text) of a `file.py[:Class[:params]]` spec, None for a
    registered name (`name[:params]`)."""
    name = spec.partition(":")[0]
    if ".py:" in spec:
        path, _, rest = spec.partition(".py:")
        class_name, _, param_text = rest.partition(":")
        return path + ".py", class_name, param_text
    if name.endswith(".py") and name not in INDICATORS:
        return name, None, ""
    return None


def make_indicator(spec: str) -> Indicator:
    """Build an indicator from a command-line spec.

    Forms: `name`, `name:p=0.05,measure=weighted`, `path/to/file.py:ClassName`,
    `path/to/file.py:ClassName:param=value`, and `path/to/file.py` for a file that defines exactly
    one Indicator subclass.
    """
    name, _, param_text = spec.partition(":")
    file = file_spec(spec)
    if file is not None:
        path, class_name, param_text = file
        cls = load_file_class(path, class_name)
    else:
        with _plugin_guard(f"indicator {name!r} failed to import:"):  # an installed plugin's module
            cls = INDICATORS.get(name)
    params = parse_params(param_text, spec)
    unknown = sorted(set(params) - set(cls.param_names()))
    if unknown:
        raise TransferbenchError(
            f"indicator {cls.registered_name!r} has no parameter {unknown[0]!r}"
            f"{did_you_mean(unknown[0], cls.param_names())}"
        )
    return construct_indicator(cls, params)


def construct_indicator(cls: type[Indicator], params: Mapping[str, Any] | None = None) -> Indicator:
    """`cls(**params)` with the plugin's failures as one line, checked by `check_indicator`."""
    label = _label(check_indicator_class(cls))
    with _plugin_guard(f"indicator {label!r}: its constructor raised"):
        try:
            indicator = cls(**(params or {}))
        except (TypeError, ValueError) as exc:  # a bad parameter value: the plugin's own message
            raise TransferbenchError(f"indicator {label!r}: {exc}") from None
    return check_indicator(indicator)


def as_indicator(item: Any) -> Indicator:
    """What `transferbench.run(indicators=[...])` accepts, as one checked indicator: a spec string
    (as `--indicator` takes), an Indicator subclass (built with its defaults) or an instance."""
    if isinstance(item, str):
        return make_indicator(item)
    if isinstance(item, type) and issubclass(item, Indicator) and item is not Indicator:
        return construct_indicator(item)
    if isinstance(item, Indicator) and type(item) is not Indicator:
        return check_indicator(item)
    raise TransferbenchError(
        f"indicators: {item!r} is not an indicator; pass names ('random', 'skill_overlap:p=0.02', "
        "'file.py:ClassName', 'all'), Indicator subclasses or Indicator instances")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@contextlib.contextmanager
def _user_interrupts() -> Iterator[list[int]]:
    """Yield a list that receives SIGINT whenever a real Ctrl-C arrives during the block, so a
    `KeyboardInterrupt` can be told apart from one that plugin code raised itself.

    Outside the main thread nothing is installed: Python delivers SIGINT's KeyboardInterrupt to
    the main thread only, so one raised in another thread is never the user's.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        received.append(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _plugin_guard(failure: str) -> Iterator[None]:
    """Run plugin code (import, constructor, `score`): anything it raises becomes one
    `TransferbenchError` "<failure> <Type>: <message>", SystemExit and a KeyboardInterrupt the
    plugin raises itself included. A TransferbenchError passes unchanged, and so do the user's
    own Ctrl-C and a SIGTERM (`Terminated`, raised by the CLI's handler), which stop the run as usual."""
    with _user_interrupts() as interrupts:
        try:
            yield
        except TransferbenchError:
            raise
        except BaseException as exc:
            if isinstance(exc, Terminated) or (isinstance(exc, KeyboardInterrupt) and interrupts):
                raise
            raise TransferbenchError(f"{failure} {_describe(exc)}") from None


def checked_score(indicator: Indicator, source: TaskView, target: TaskView) -> float:
    """Call `indicator.score` in this process and turn any failure into one line naming the
    indicator and pair. A run scores through `transferbench.scoring.sandbox.score_pairs`, which calls this
    in a child process with a time limit."""
    where = f"indicator {indicator.name!r} on pair {source.name} -> {target.name}"
    with _plugin_guard(f"{where} raised"):  # sys.exit(0) in a plugin must not look like success
        try:
            value = indicator.score(source, target)
        except TransferbenchError as exc:  # e.g. reading an artifact it did not declare
            raise TransferbenchError(f"{where}: {exc}") from None
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
    return json.loads(text)


def all_indicator_names() -> list[str]:
    return INDICATORS.names()
