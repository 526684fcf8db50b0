"""One small generic registry for every kind of plugin: indicators, backbones, executors, transfer
kinds and data sources.

After lm-evaluation-harness's `lm_eval/api/registry.py`: register with a decorator or a lazy
"module:attr" string, check the base class on lookup, suggest close names for unknown ones. Each
registry has its own entry-point group, scanned on first use (so installed packages add plugins
without any edit here), and `isolated(registry)` gives a test a private copy to register into.
The registries themselves live next to their base class (`indicator.INDICATORS`,
`backbone.BACKBONES`, `executors.EXECUTORS`, `protocol.TRANSFER_KINDS`,
`artifacts.ARTIFACTS`, `sources.SOURCES`); `ALL` lists them by kind.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata
from typing import Any, Callable, Generic, Iterator, TypeVar

from transferbench.errors import UnknownNameError

T = TypeVar("T")


def did_you_mean(name: str, candidates: list[str]) -> str:
    """A ' (did you mean ...?)' suffix with the closest candidates, or the full list."""
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    if close:
        return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
    return " (known: " + ", ".join(sorted(candidates)) + ")"


def import_target(target: str) -> object:
    """Import `"package.module:attr"` and return the attribute."""
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


# Every registry made, by kind, so tests and `transferbench` can list what kinds exist.
ALL: dict[str, "Registry[Any]"] = {}


class Registry(Generic[T]):
    """Maps names to plugins that are subclasses (or, for data-like plugins such as a packaged
    backbone, instances) of `base`, or to lazy "module:attr" targets naming one.

    `group`: the entry-point group scanned once, on first lookup, for installed plugins.
    `ordered`: `names()` keeps registration order (transfer kinds are reported in a fixed order)
    instead of sorting. `check(name, plugin)`: the plugin kind's contract, run on every class
    registered and on every lazy target when it is first loaded (it raises one clear error).
    """

    def __init__(self, kind: str, base: type, group: str | None = None, ordered: bool = False,
                 check: Callable[[str, Any], None] | None = None):
        self.kind = kind
        self.base = base
        self.group = group
        self.ordered = ordered
        self.check = check
        self._entries: dict[str, Any] = {}
        self._scanned = group is None
        ALL[kind] = self

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, names={self.names()!r})"

    def register(self, name: str) -> Callable[[Any], Any]:
        """Class decorator: `@indicators.register("my_indicator")`."""

        def decorate(cls):
            self.add(name, cls)
            return cls

        return decorate

    def add(self, name: str, target: Any) -> None:
        existing = self._entries.get(name)
        if isinstance(existing, str) and not isinstance(target, str):
            # a lazy "module:attr" entry is replaced only by the class it names
            same = f"{target.__module__}:{target.__qualname__}" == existing
        else:
            same = existing is None or existing is target or (isinstance(target, str) and existing == target)
        if not same:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({existing!r} and {target!r})")
        if isinstance(target, type) and self.check is not None:
            self.check(name, target)
        self._entries[name] = target
        if isinstance(target, type):
            target.registered_name = name  # type: ignore[attr-defined]

    def _scan_entry_points(self) -> None:
        """Register what installed packages declare in this registry's entry-point group (once);
        a name already registered keeps its entry."""
        if self._scanned:
            return
        self._scanned = True
        for entry in importlib.metadata.entry_points(group=self.group):
            if entry.name not in self._entries:
                self._entries[entry.name] = entry.value

    def names(self) -> list[str]:
        self._scan_entry_points()
        return list(self._entries) if self.ordered else sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._scan_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> T:
        if name not in self:
            raise UnknownNameError(f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}")
        target = self._entries[name]
        lazy = isinstance(target, str)
        if lazy:
            target = import_target(target)
        is_class = isinstance(target, type) and issubclass(target, self.base)
        if not (is_class or isinstance(target, self.base)):
            raise UnknownNameError(
                f"{self.kind} {name!r} points to {target!r}, which is not a {self.base.__name__}"
            )
        if is_class:
            target.registered_name = name
        if lazy:
            if self.check is not None:
                self.check(name, target)
            self._entries[name] = target  # loaded and checked once
        return target  # type: ignore[return-value]

    def items(self) -> list[tuple[str, T]]:
        """Every (name, plugin), loading the lazy ones."""
        return [(name, self.get(name)) for name in self.names()]


@contextlib.contextmanager
def isolated(*registries: Registry[Any]) -> Iterator[None]:
    """Within the block, registrations (and entry-point scans) change only private copies of
    `registries` (default: every registry); the originals come back afterwards. The test helper
    that replaces patching module globals::

        with isolated(INDICATORS):
            INDICATORS.add("mine", MyIndicator)
    """
    chosen = registries or tuple(ALL.values())
    saved = [(registry, dict(registry._entries), registry._scanned) for registry in chosen]
    try:
        yield
    finally:
        for registry, entries, scanned in saved:
            registry._entries = entries
            registry._scanned = scanned


@contextlib.contextmanager
def rescanned(*registries: Registry[Any]) -> Iterator[None]:
    """`isolated`, and the registries scan their entry-point groups again on next use (a test
    that installs a package mid-session)."""
    with isolated(*registries):
        for registry in registries or tuple(ALL.values()):
            registry._scanned = registry.group is None
        yield
