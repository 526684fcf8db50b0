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
import json
import math
import os
import select
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import yaml

from transferbench.artifacts import PairOutputs, served_artifacts  # noqa: F401  (PairOutputs: re-exported)
from transferbench.errors import Terminated, TransferbenchError, UnknownNameError
from transferbench.registry import Registry, did_you_mean

class _ServedArtifacts(Mapping):
    """`ARTIFACTS[name]`: the description of every artifact an indicator may declare, read from the
    artifact declarations (`transferbench.artifacts.ARTIFACTS`, those `served`). `TaskView` serves
    exactly these; it is read-only (declare an artifact with `artifacts.declare_artifact`)."""

    def __getitem__(self, name: str) -> str:
        return served_artifacts()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(served_artifacts())

    def __len__(self) -> int:
        return len(served_artifacts())


ARTIFACTS: Mapping[str, str] = _ServedArtifacts()

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
        # the class's own registration: a subclass of a registered indicator is another indicator
        return type(self).__dict__.get("registered_name") or type(self).__name__

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
    "label_overlap": "transferbench.indicators.baselines:LabelOverlap",
    "skill_on": "transferbench.indicators.skill_overlap:SkillOn",
    "probe_overlap": "transferbench.indicators.probe_overlap:ProbeOverlap",
    "logme": "transferbench.indicators.estimators:LogME",
    "leep": "transferbench.indicators.estimators:LEEP",
    "nce": "transferbench.indicators.estimators:NCE",
    "h_score": "transferbench.indicators.estimators:HScore",
}.items():
    INDICATORS.add(_name, _target)


def _load_file_class(path: str, class_name: str | None) -> type[Indicator]:
    """The Indicator subclass `class_name` of the Python file `path`; with `class_name` None, the one
    Indicator subclass the file defines (several, or none, is an error naming what it defines)."""
    file = Path(path)
    if not file.is_file():
        raise TransferbenchError(f"indicator file {path!r} does not exist")
    module_name = f"transferbench_user_{file.stem}"
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
            raise TransferbenchError(f"indicator file {path!r} defines no subclass of transferbench.indicator.Indicator "
                                     "(see docs/indicators.md for one)")
        if len(classes) > 1:
            raise TransferbenchError(f"indicator file {path!r} defines several Indicator subclasses "
                                     f"({', '.join(classes)}); name one: {path}:{classes[0]}")
        class_name = classes[0]
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UnknownNameError(f"{path!r} has no class {class_name!r}{did_you_mean(class_name, classes)}")
    if not (isinstance(cls, type) and issubclass(cls, Indicator)):
        raise TransferbenchError(f"{path}:{class_name} is not a subclass of transferbench.indicator.Indicator")
    if cls.__dict__.get("registered_name") is None:  # not the name of a registered class it extends
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

    Forms: `name`, `name:p=0.05,measure=weighted`, `path/to/file.py:ClassName`,
    `path/to/file.py:ClassName:param=value`, and `path/to/file.py` for a file that defines exactly
    one Indicator subclass.
    """
    name, _, param_text = spec.partition(":")
    if ".py:" in spec:
        path, _, rest = spec.partition(".py:")
        class_name, _, param_text = rest.partition(":")
        cls = _load_file_class(path + ".py", class_name)
    elif name.endswith(".py") and name not in INDICATORS:
        cls = _load_file_class(name, None)
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
    label = cls.__dict__.get("registered_name") or cls.__name__
    with _plugin_guard(f"indicator {label!r}: its constructor raised"):
        try:
            indicator = cls(**(params or {}))
        except (TypeError, ValueError) as exc:  # a bad parameter value: the plugin's own message
            raise TransferbenchError(f"indicator {label!r}: {exc}") from None
    return check_indicator(indicator)


def check_indicator(indicator: Indicator) -> Indicator:
    """The indicator contract, checked when an indicator is built and before anything is computed
    (after scikit-learn's `check_estimator`): `requires` names known artifacts, `score` is
    implemented, and every `__init__` parameter is stored under its own name (`get_params`, which
    names the result files, reads them back by name). Returns the indicator; a breach is one line."""
    name = indicator.name
    requires = indicator.requires
    if isinstance(requires, str) or not all(isinstance(item, str) for item in requires):
        raise TransferbenchError(f"indicator {name!r}: `requires` must be a tuple of artifact names, "
                                 f"e.g. (\"prompts\",), got {requires!r}")
    missing = sorted(set(requires) - set(ARTIFACTS))
    if missing:
        raise TransferbenchError(
            f"indicator {name!r} requires unknown artifact {missing[0]!r}{did_you_mean(missing[0], list(ARTIFACTS))}"
        )
    if type(indicator).score is Indicator.score:
        raise TransferbenchError(f"indicator {name!r} does not implement score(self, source, target)")
    with _plugin_guard(f"indicator {name!r}: reading its parameters raised"):
        for param in indicator.param_names():
            if not hasattr(indicator, param):
                raise TransferbenchError(
                    f"indicator {name!r}: parameter {param!r} of __init__ is not stored under its own name; "
                    f"set self.{param} = {param} in __init__ (parameters are read back by name)")
    return indicator


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


# Seconds one `score(source, target)` call may take before the run stops with an error line. Plugins
# are arbitrary code; a hung one should fail clearly rather than stall a benchmark run.
DEFAULT_TIME_LIMIT = 60.0


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


def checked_score(indicator: Indicator, source: TaskView, target: TaskView,
                  time_limit: float | None = None) -> float:
    """Call `indicator.score` and turn any failure into one line naming the indicator and pair.

    With `time_limit` (seconds), the call runs in a child process (`score_pairs`) and one that
    runs longer fails with "... exceeded the time limit of N s". `None`: in this process, no limit.
    """
    if time_limit is not None:
        return score_pairs(indicator, [(source, target)], time_limit)[0]
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


def score_pairs(indicator: Indicator, pairs: Sequence[tuple[TaskView, TaskView]],
                time_limit: float | None = DEFAULT_TIME_LIMIT) -> list[float]:
    """`checked_score` of every (source, target) pair, in order, each within `time_limit` seconds.

    The pairs are scored in one forked child process, which sends each score (or its one-line
    error) back through a pipe; this process waits at most `time_limit` for each and SIGKILLs the
    child when it is over, so no plugin code (a loop catching BaseException, a blocking C call,
    an ignored signal) can outlast the limit. The child also dies with this process, ignores
    Ctrl-C (this process handles it and kills the child) and shares nothing back but the scores:
    state an indicator keeps between pairs lives for one call of this function. Without
    `os.fork` (Windows) or with `time_limit=None` the pairs run here, without a limit.
    """
    if time_limit is None or not hasattr(os, "fork") or not pairs:
        return [checked_score(indicator, source, target) for source, target in pairs]
    parent = os.getpid()
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns on fork with threads; the child runs no thread's code
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _score_in_child(indicator, pairs, write_end, parent)
    os.close(write_end)
    values: list[float] = []
    try:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            lines = _lines_within(pipe, time_limit)
            for source, target in pairs:
                where = f"indicator {indicator.name!r} on pair {source.name} -> {target.name}"
                line = next(lines)
                if line is None:
                    raise TransferbenchError(f"{where} exceeded the time limit of {time_limit:g} s")
                if not line:
                    raise TransferbenchError(f"{where} ended the scoring process ({_end_of(pid)})")
                message = json.loads(line)
                if "error" in message:
                    raise TransferbenchError(message["error"])
                values.append(float(message["value"]))
    finally:
        _stop(pid)
    return values


def _score_in_child(indicator: Indicator, pairs: Sequence[tuple[TaskView, TaskView]], fd: int,
                    parent: int) -> None:
    status = 0
    try:
        from transferbench.processes import die_with_parent

        die_with_parent(parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the user's Ctrl-C is the parent's to handle
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler: a SIGTERM ends the child at once
        if "torch" in sys.modules:  # torch's OpenMP thread pool does not survive fork: its next op would hang
            sys.modules["torch"].set_num_threads(1)
        with os.fdopen(fd, "wb", buffering=0) as pipe:
            for source, target in pairs:
                try:
                    message = {"value": checked_score(indicator, source, target)}
                except TransferbenchError as exc:
                    message = {"error": str(exc)}
                pipe.write(json.dumps(message).encode() + b"\n")
                if "error" in message:
                    break
    except BaseException:  # noqa: BLE001 -- the parent reports the missing score
        status = 70
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)  # never run the parent's cleanup (atexit, finally blocks up the stack)


def _lines_within(pipe, seconds: float) -> Iterator[bytes | None]:
    """Yield each line read from `pipe` (without its newline), waiting at most `seconds` for each:
    None when that time passed, b"" at the end of the stream."""
    buffer = b""
    while True:
        deadline = time.monotonic() + seconds
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([pipe], [], [], remaining)[0]:
                yield None
                return
            chunk = pipe.read(1 << 16)
            if not chunk:
                yield b""
                return
            buffer += chunk
        line, _, buffer = buffer.partition(b"\n")
        yield line


def _end_of(pid: int) -> str:
    """How the child `pid` ended, once it has: "exit status N" or "killed by SIGNAME"."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _stop(pid: int) -> None:
    """SIGKILL the child `pid` if it still runs, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


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
