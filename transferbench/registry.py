"""One small generic registry for every kind of plugin (indicators, backbones, ...).

After lm-evaluation-harness's `lm_eval/api/registry.py`: register with a decorator or a lazy
"module:attr" string, check the base class on lookup, suggest close names for unknown ones.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterator, TypeVar

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


class Registry(Generic[T]):
    """Maps names to classes (or lazy "module:attr" targets) that subclass `base`."""

    def __init__(self, kind: str, base: type[T]):
        self.kind = kind
        self.base = base
        self._entries: dict[str, type[T] | str] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: `@indicators.register("my_indicator")`."""

        def decorate(cls: type[T]) -> type[T]:
            self.add(name, cls)
            return cls

        return decorate

    def add(self, name: str, target: type[T] | str) -> None:
        existing = self._entries.get(name)
        if isinstance(existing, str) and not isinstance(target, str):
            # a lazy "module:attr" entry is replaced only by the class it names
            same = f"{target.__module__}:{target.__qualname__}" == existing
        else:
            same = existing is None or existing is target
        if not same:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({existing!r} and {target!r})")
        self._entries[name] = target
        if not isinstance(target, str):
            target.registered_name = name  # type: ignore[attr-defined]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> type[T]:
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}")
        target = self._entries[name]
        if isinstance(target, str):
            target = import_target(target)  # type: ignore[assignment]
            self._entries[name] = target
        if not (isinstance(target, type) and issubclass(target, self.base)):
            raise UnknownNameError(
                f"{self.kind} {name!r} points to {target!r}, which is not a subclass of {self.base.__name__}"
            )
        target.registered_name = name  # type: ignore[attr-defined]
        return target
