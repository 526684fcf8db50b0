"""Sealed plugin scoring: each indicator's pairs are scored in a fresh Python process
(`transferbench.scoring.sandbox_child`) that is given only the sealed task views and the indicator, with a
time limit per pair, and whose answers pass a strict channel (one finite float per pair). A
`file.py:Class` indicator is also loaded in such a process (`load_sealed`): its file never runs here.

Stage 4 (scoring), beside the indicator API (`transferbench.scoring.indicator`, whose `checked_score` the
child calls). What a plugin can and cannot see on which platform: docs/indicators.md. Over 400 lines
because starting, sealing, feeding and reading that process, for loading and for scoring, is one
protocol over one channel, kept in one place.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import math
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import tomllib
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Sequence

from transferbench.errors import TransferbenchError
from transferbench.scoring.indicator import USER_MODULE_PREFIX, Indicator, TaskView

# Seconds one `score(source, target)` call may take before the run stops with an error line. Plugins
# are arbitrary code; a hung one should fail clearly rather than stall a benchmark run.
DEFAULT_TIME_LIMIT = 60.0
# Seconds the scoring process may take to start, seal itself and load the indicator (its imports)
# before the first pair's clock starts; at least the time limit.
STARTUP_LIMIT = 60.0
# The longest line the channel accepts: one score or one error line is far shorter.
MAX_MESSAGE = 1 << 16
# The code packages of this distribution: visible to the plugin, even inside a hidden checkout.
CODE_PACKAGES = ("transferbench", "transferbench.indicators", "transferbench.task_files")
# Folders of a run's output, relative to the folder it runs in (the CLI's defaults).
OUTPUT_FOLDERS = ("submissions", "leaderboard", "transferbench-results", "results")

# Why this machine cannot seal the scoring process (None: not tried yet or it can), found once.
_unsealable: str | None = None if sys.platform.startswith("linux") else f"no namespaces on {sys.platform}"
_told = False
_lock = threading.Lock()


def score_pairs(indicator: Indicator, pairs: Sequence[tuple[TaskView, TaskView]],
                time_limit: float | None = DEFAULT_TIME_LIMIT,
                hidden: Sequence[Path | str] = ()) -> list[float]:
    """`checked_score` of every (source, target) pair, in order, each within `time_limit` seconds
    (None: no limit), computed in a sealed child process.

    The child is a fresh interpreter (not a fork of this process, which holds the reference and
    the store): it receives the pickled views and the indicator (a `file.py:Class` indicator as its
    file and parameters; any other as a pickle, its class by value when it is not installed code),
    runs in a scratch folder with a minimal environment, and on Linux hides the checkout, the
    package's reference data, the cache, the run's output folders and `hidden` behind read-only,
    locked mounts (`transferbench.scoring.sandbox_child`). Its answers come back one line per pair on a
    dedicated pipe and are accepted only as exactly one finite float per pair; it is killed, with
    every process it started, when a pair is over the limit, on an error, and on Ctrl-C.
    """
    global _unsealable
    if not pairs:
        return []
    payload = _payload(indicator, pairs)
    while True:
        seal = _unsealable is None
        try:
            return _run_child(indicator, pairs, payload, time_limit, seal, [str(p) for p in hidden])
        except _Unsealable as exc:
            _unsealable = str(exc)
        finally:
            _tell_if_unsealed()


class _Unsealable(Exception):
    pass


class LoadedIndicator(Indicator):
    """What the benchmark process holds of a `file.py:Class` indicator loaded sealed (`load_sealed`):
    its name, declared artifacts, description, flags and parameters as the scoring process reported
    them, and its code identity as this process computed it from the file's bytes. Its file never
    runs here; `score_pairs` rebuilds it from `file`, `class_name` and the spec's `spec_params`."""

    def __init__(self, report: dict, file: str, spec_params: dict, code: dict[str, str]):
        self._name = report["name"]
        self.requires = tuple(report["requires"])
        self.description, self.baseline, self.kind = report["description"], report["baseline"], report["kind"]
        self._params, self._defaults = report["params"], report["defaults"]
        self.file, self.class_name, self.spec_params, self.code = file, report["class"], spec_params, code

    @property
    def name(self) -> str:
        return self._name

    def param_names(self) -> list[str]:  # type: ignore[override]
        return list(self._params)

    def defaults(self) -> dict:  # type: ignore[override]
        return dict(self._defaults)

    def get_params(self) -> dict:
        return dict(self._params)

    def score(self, source, target) -> float:
        raise TransferbenchError(f"indicator {self.name!r} scores only in its sealed process (score_pairs)")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{self.class_name}({params})"


def code_of(indicator: Indicator) -> dict[str, str] | None:
    """The code identity of an indicator the benchmark holds (`indicator_code`; for one loaded sealed,
    computed from its file's bytes by this process, never reported by the plugin)."""
    from transferbench.scoring.indicator import indicator_code

    return indicator.code if isinstance(indicator, LoadedIndicator) else indicator_code(type(indicator))


def load_sealed(spec: str, hidden: Sequence[Path | str] = ()) -> Indicator:
    """The indicator of a `file.py[:Class[:params]]` spec, loaded in the sealed process: the file's
    top level, its constructor and the contract check (`make_indicator`) run there, never here; this
    process gets a `LoadedIndicator`. The scoring process reports the class, name, declared
    artifacts, flags and parameters on its channel (checked strictly: a forged or malformed report
    is one error line); the code identity is computed here from the file's bytes. A failure is the
    same one line `make_indicator` gives. Other specs (registered names) load here, as installed code."""
    from transferbench.scoring.indicator import file_spec, make_indicator, parse_params, source_code

    parts = file_spec(spec)
    if parts is None:
        return make_indicator(spec)
    path, class_name, param_text = parts
    if not Path(path).is_file():
        raise TransferbenchError(f"indicator file {path!r} does not exist")
    spec_params = parse_params(param_text, spec)
    file = os.path.abspath(path)
    global _unsealable
    while True:
        seal = _unsealable is None
        try:
            report = _in_child(spec, file, b"", seal, [str(p) for p in hidden],
                               lambda child, channel: _loaded(child, channel, spec),
                               {"load": spec, "cwd": os.getcwd()})
            break
        except _Unsealable as exc:
            _unsealable = str(exc)
        finally:
            _tell_if_unsealed()
    if class_name is not None and report["class"] != class_name:
        raise _malformed(spec, f"it loaded class {report['class']!r}, not {class_name!r}")
    try:
        source = Path(file).read_bytes()
    except OSError as exc:
        raise TransferbenchError(f"indicator file {path!r} cannot be read ({exc.strerror})") from None
    return LoadedIndicator(report, file, spec_params, source_code(source, report["class"], Path(file).name))


_REPORT = {"class": str, "name": str, "requires": list, "description": str, "baseline": bool,
           "kind": (str, type(None)), "params": dict, "defaults": dict}


def _loaded(child, channel: int, spec: str) -> dict:
    """The load report of the child: exactly one `{"loaded": {...}}` with the `_REPORT` fields and
    types (a class name that is an identifier, known artifact names), or one `{"error": line}`."""
    from transferbench.scoring.indicator import known_artifacts

    messages = _Channel(child, channel, spec)
    message = _first_message(child, messages, spec, STARTUP_LIMIT, "load it", "while loading it")
    report = message.get("loaded")
    if set(message) != {"loaded"} or not isinstance(report, dict) or set(report) != set(_REPORT) or not all(
            isinstance(report[key], kind) and not (kind is str and len(report[key]) > 2000)
            for key, kind in _REPORT.items()):
        raise _malformed(spec, "not one load report")
    if not report["class"].isidentifier() or not all(isinstance(a, str) and a in known_artifacts()
                                                     for a in report["requires"]):
        raise _malformed(spec, "a load report naming an unknown class or artifact")
    if messages.next(1.0) not in (_END, None) or messages.buffer:
        raise _malformed(spec, "a message after the load report")
    return report


def _tell_if_unsealed() -> None:
    """One line, once per process, where the operating system cannot seal plugin scoring."""
    global _told
    if _unsealable is not None and not _told:
        _told = True
        print(f"transferbench: plugin scoring runs in a fresh process but is not sealed by the operating "
              f"system here ({_unsealable}): a plugin can read and write your files (docs/indicators.md)",
              file=sys.stderr)


def sealing() -> str | None:
    """Why plugin scoring is not sealed on this machine, or None where it is (or not tried yet)."""
    return _unsealable


def _payload(indicator: Indicator, pairs) -> bytes:
    """The child's input: the pairs and the indicator, as `("file", path, class, params)` for a
    class loaded from a file (rebuilt there, its file imported sealed) or `("pickle", bytes)`."""
    cls = type(indicator)
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    where = f"indicator {indicator.name!r}"
    if isinstance(indicator, LoadedIndicator):  # loaded sealed: rebuilt from its file with the spec's params
        spec: tuple = ("file", indicator.file, indicator.class_name, indicator.spec_params)
    elif cls.__module__.startswith(USER_MODULE_PREFIX) and file:
        spec = ("file", file, cls.__name__, indicator.get_params())
    else:
        spec = ("pickle", _pickle_indicator(indicator, module, where))
    try:
        return pickle.dumps({"indicator": spec, "pairs": list(pairs)}, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 -- a parameter that cannot be pickled
        raise TransferbenchError(f"{where} cannot be sent to its scoring process ({type(exc).__name__}: {exc}); "
                                 "use parameters that pickle (numbers, strings, lists, arrays)") from None


def _pickle_indicator(indicator: Indicator, module, where: str) -> bytes:
    """Pickle by reference where the child can import the class (installed code), else by value
    (a class in `__main__`, a notebook, a test module): the class's code travels, and runs sealed."""
    import cloudpickle

    by_value = module is not None and module.__name__ != "__main__" and not _installed(module)
    with _lock:  # cloudpickle's by-value registry is global
        if by_value:
            cloudpickle.register_pickle_by_value(module)
        try:
            return cloudpickle.dumps(indicator, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001
            raise TransferbenchError(
                f"{where} cannot be sent to its scoring process ({type(exc).__name__}: {exc}); define it in a "
                "file (--indicator file.py:Class) or keep only picklable values on the instance") from None
        finally:
            if by_value:
                cloudpickle.unregister_pickle_by_value(module)


def _installed(module) -> bool:
    file = getattr(module, "__file__", None)
    if file is None:
        return True  # built-in or namespace module: importable by name
    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    roots |= set(_code_folders())
    resolved = os.path.realpath(file)
    return any(resolved.startswith(os.path.realpath(root) + os.sep) for root in roots)


def _code_folders() -> list[str]:
    folders = []
    for name in CODE_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            folders.extend(spec.submodule_search_locations)
    return folders


def _hidden_folders(extra: list[str]) -> list[str]:
    """What the child hides: the source checkout transferbench runs from, the reference data, the
    cache, the run's output folders (relative to here) and `extra`."""
    from transferbench.store import cache_root

    hidden = [str(cache_root()), *(str(Path.cwd() / name) for name in OUTPUT_FOLDERS), *extra]
    references = importlib.util.find_spec("transferbench.references")
    if references is not None and references.submodule_search_locations:
        hidden.extend(references.submodule_search_locations)
    hidden.extend(str(folder) for folder in _checkouts())
    return hidden


def _checkouts() -> set[Path]:
    """The transferbench source checkouts this run can name: the one holding the code it imports
    (an editable install, or a virtual environment inside a checkout, as under tox), the one it
    runs in, and the one its installed copy was built from (pip's `direct_url.json`). Each is the
    nearest folder at or above such a place whose `pyproject.toml` names the project `transferbench`."""
    places = [Path(importlib.util.find_spec("transferbench").origin), Path.cwd()]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError, json.JSONDecodeError, AttributeError):
        # no direct_url.json: a source tree on sys.path, or a setuptools `*.egg-info` in the folder run
        # from, found first
        url = json.loads(importlib.metadata.distribution("transferbench").read_text("direct_url.json") or "{}").get("url", "")
        if url.startswith("file://"):
            places.append(Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path)))
    found = set()
    for place in places:
        for folder in (place.resolve(), *place.resolve().parents):
            if _names_transferbench(folder / "pyproject.toml"):
                found.add(folder)
                break
    return found


def _names_transferbench(pyproject: Path) -> bool:
    try:
        with open(pyproject, "rb") as file:
            return tomllib.load(file).get("project", {}).get("name") == "transferbench"
    except (OSError, tomllib.TOMLDecodeError):
        return False


def _indicator_file(indicator: Indicator) -> str | None:
    """The file a `file.py:Class` indicator comes from (or its module's file), if any."""
    if isinstance(indicator, LoadedIndicator):
        return indicator.file
    return getattr(sys.modules.get(type(indicator).__module__), "__file__", None)


def _run_child(indicator: Indicator, pairs, payload: bytes, time_limit: float | None, seal: bool,
               hidden: list[str]) -> list[float]:
    return _in_child(indicator.name, _indicator_file(indicator), payload, seal, hidden,
                     lambda child, channel: _answers(child, channel, indicator.name, pairs, time_limit))


def _in_child(name: str, file: str | None, payload: bytes, seal: bool, hidden: list[str], read, extra=None):
    """Start the sealed child for indicator `name` (its file `file` stays reachable), send it the
    header and `payload`, and return `read(child, channel)`; the child is stopped and its scratch
    folder removed whatever happens."""
    scratch = tempfile.mkdtemp(prefix="transferbench-score-")
    channel_read, channel_write = os.pipe()
    header = {"parent": os.getpid(), "seal": seal, "scratch": scratch, "channel": channel_write, "name": name,
              "hide": _hidden_folders(hidden) if seal else [],
              # the package's code, the indicator's own file and the scratch folder stay visible inside
              # hidden folders (`hidden` may name a folder that holds them, e.g. a results folder in /tmp)
              "expose": [*_code_folders(), scratch, *filter(None, [file])], **(extra or {})}
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8",
           **{k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")}}
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-B", "-m", "transferbench.scoring.sandbox_child"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=scratch, env=env, pass_fds=(channel_write,),
            start_new_session=True)  # its own process group, out of the terminal's Ctrl-C
    finally:
        os.close(channel_write)
    try:
        with contextlib.suppress(BrokenPipeError):  # the child ended early: the channel says why
            child.stdin.write(json.dumps(header).encode() + b"\n" + payload)
        child.stdin.close()
        return read(child, channel_read)
    finally:
        _stop(child)
        os.close(channel_read)
        shutil.rmtree(scratch, ignore_errors=True)


def _first_message(child, messages: "_Channel", name: str, limit: float | None, doing: str, when: str) -> dict:
    """The child's first message, unless it is none within `limit` s (it did not `doing`), the end
    of the stream (it ended `when`), the machine refusing to seal, or the plugin's one error line."""
    message = messages.next(limit)
    if message is None:
        raise TransferbenchError(f"indicator {name!r}: its scoring process did not {doing} within {limit:g} s")
    if message is _END:
        raise TransferbenchError(f"indicator {name!r}: its scoring process ended {when} ({_end(child)})")
    if set(message) == {"unsealable"} and isinstance(message["unsealable"], str):
        raise _Unsealable(message["unsealable"][:300])
    if set(message) == {"error"} and isinstance(message["error"], str):
        raise TransferbenchError(_one_line(message["error"]))
    return message


def _answers(child, channel: int, name: str, pairs, time_limit: float | None) -> list[float]:
    """Read the child's channel strictly: `{"ready": ...}`, then `{"pair": i, "value": float}` for
    i = 0..n-1 (or one `{"pair": i, "error": line}`), then `{"end": n}` and nothing more; anything else
    (a NaN, a string, a missing or extra message, a line too long) is one error line."""
    messages = _Channel(child, channel, name)
    startup = None if time_limit is None else max(time_limit, STARTUP_LIMIT)
    message = _first_message(child, messages, name, startup, "start", "before scoring")
    if set(message) != {"ready"}:
        raise _malformed(name, "no ready message")
    values: list[float] = []
    for index, (source, target) in enumerate(pairs):
        where = f"indicator {name!r} on pair {source.name} -> {target.name}"
        message = messages.next(time_limit)
        if message is None:
            raise TransferbenchError(f"{where} exceeded the time limit of {time_limit:g} s")
        if message is _END:
            raise TransferbenchError(f"{where} ended the scoring process ({_end(child)})")
        if type(message.get("pair")) is not int or message["pair"] != index:
            raise _malformed(name, f"expected the answer for pair {index}")
        if set(message) == {"pair", "error"} and isinstance(message["error"], str):
            raise TransferbenchError(_one_line(message["error"]))
        value = message.get("value")
        if set(message) != {"pair", "value"} or type(value) is not float or not math.isfinite(value):
            raise _malformed(name, f"pair {index} did not get one finite float")
        values.append(value)
    if messages.next(time_limit) != {"end": len(pairs)} or messages.buffer:
        raise _malformed(name, "a message after the last pair")
    return values


_END = object()  # the channel's end of stream


class _Channel:
    """The child's channel, read a message at a time with a deadline, while the child's output is
    relayed to this process's stderr (so no process the plugin started can hold this one's stdout)."""

    def __init__(self, child, channel: int, name: str):
        self.channel, self.output, self.name = channel, child.stdout.fileno(), name
        os.set_blocking(self.output, False)
        self.buffer, self.open = b"", {channel, self.output}

    def next(self, limit: float | None):
        """The next message (a dict), `_END` at the end of the stream, or None after `limit` s."""
        deadline = None if limit is None else time.monotonic() + limit
        while b"\n" not in self.buffer:
            if self.channel not in self.open:
                if self.buffer:
                    raise _malformed(self.name, "a partial last line")
                return _END
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            for stream in select.select(list(self.open), [], [], remaining)[0]:
                chunk = os.read(stream, 1 << 16)
                if not chunk:
                    self.open.discard(stream)
                elif stream == self.output:
                    _relay(chunk)
                else:
                    self.buffer += chunk
            if len(self.buffer) > MAX_MESSAGE and b"\n" not in self.buffer[:MAX_MESSAGE]:
                raise _malformed(self.name, "a line too long")
        line, _, self.buffer = self.buffer.partition(b"\n")

        def reject(constant):
            raise ValueError(constant)

        try:
            message = json.loads(line, parse_constant=reject)
        except ValueError:
            raise _malformed(self.name, "not one JSON document per line") from None
        if not isinstance(message, dict):
            raise _malformed(self.name, "not a JSON object")
        return message


def _relay(chunk: bytes) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(chunk.decode("utf-8", "replace"))
        sys.stderr.flush()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:2000]


def _malformed(name: str, why: str) -> TransferbenchError:
    return TransferbenchError(f"indicator {name!r}: its scoring process sent a malformed answer ({why}); "
                              "scores are accepted only as one finite float per pair")


def _end(child) -> str:
    status = child.wait()
    if status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"


def _stop(child) -> None:
    """SIGKILL the child's process group (the sealed child's end also ends its PID namespace, so
    a grandchild that left the group with setsid ends too), and reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        child.kill()
    child.wait()
    with contextlib.suppress(Exception):
        child.stdout.close()

