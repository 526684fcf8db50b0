"""Reading a YAML file and turning a pydantic validation error into one line that names the file
and the field (with a did-you-mean for misspelt fields): shared by task, suite and run-config files.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from transferbench.errors import TransferbenchError
from transferbench.registry import did_you_mean
from transferbench.tasks.sources import SOURCES

def field_name(loc: tuple) -> str:
    parts = []
    for i, part in enumerate(loc):
        # skip pydantic's discriminator tag ("source", "pypi", "sha256") and validator names
        if i > 0 and loc[i - 1] == "source" and part in SOURCES:
            continue
        if isinstance(part, str) and "[" in part:
            continue
        parts.append(str(part))
    return ".".join(parts)


def one_line(where: str, exc: ValidationError, model: type[BaseModel], count_models: bool = True) -> str:
    # An unknown field usually explains a "missing" one (a typo), so report it first.
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    field = field_name(err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        message = "required field is missing"
    elif err["type"] == "extra_forbidden":
        known = known_fields(model, err["loc"])
        message = "unknown field" + (did_you_mean(str(err["loc"][-1]), known) if known else "")
    elif err["type"] == "union_tag_invalid":
        message = "source 'type' must be one of " + ", ".join(repr(name) for name in SOURCES.names())
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message += f" (got {err['input']!r})"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    if message.startswith("field '"):
        return f"{where}: {message}{suffix}"
    if not field:
        return f"{where}: {message}{suffix}"
    return f"{where}: field '{field}': {message}{suffix}".replace("\n", " ")


def known_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    current: Any = model
    for i, part in enumerate(loc[:-1]):
        if part == "source":
            tag = loc[i + 1] if i + 1 < len(loc) else None
            current = SOURCES.get(tag) if isinstance(tag, str) and tag in SOURCES else None
            break
        field = current.model_fields.get(part) if isinstance(current, type) else None
        options = (field.annotation, *typing.get_args(field.annotation)) if field else ()
        current = next((t for t in options if isinstance(t, type) and issubclass(t, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


# Bounds of a task, suite or run-config file: far above any real one (the shipped files are a few
# KiB), low enough that a file cannot exhaust memory or time. Aliases are counted as the nodes they
# stand for, so nested anchors (a "billion laughs" file of a few hundred bytes) are refused on load
# instead of expanding into billions of values when validated.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64


class _SettingsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than MAX_YAML_DEPTH as it composes (its
    composer recurses once per level)."""

    def __init__(self, stream: str, where: str):
        super().__init__(stream)
        self.where = where
        self.depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise TransferbenchError(f"{self.where}: nested more than {MAX_YAML_DEPTH} levels deep; "
                                         "is it the right file?")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_nodes(root: yaml.Node, where: str) -> int:
    """How many nodes `root` stands for with every alias expanded, stopping past MAX_YAML_NODES
    (computed once per node, so the count of a deeply aliased file costs its size, not its expansion)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        if not children_done:
            if id(node) in sizes:
                continue
            if id(node) in open_nodes:
                raise TransferbenchError(f"{where}: a YAML alias refers to a node that contains it; remove the cycle")
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        open_nodes.discard(id(node))
        sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
        if sizes[id(node)] > MAX_YAML_NODES:
            raise TransferbenchError(
                f"{where}: more than {MAX_YAML_NODES} values once its YAML aliases (*name) are expanded; "
                "write the values out or use fewer nested aliases")
    return sizes[id(root)]


def read_yaml(path: Path, where: str) -> dict:
    """The mapping in a task, suite or run-config YAML file; any problem (unreadable, too large, not
    UTF-8, invalid YAML, too many values after alias expansion, not a mapping) is one line naming
    the file."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise TransferbenchError(f"{where}: cannot read file ({exc.strerror or exc})") from None
    if len(raw) > MAX_YAML_BYTES:
        raise TransferbenchError(f"{where}: larger than {MAX_YAML_BYTES >> 20} MiB, too large for a settings file; "
                                 "is it the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise TransferbenchError(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line}); "
                                 "save it as UTF-8") from None
    loader = None
    try:
        loader = _SettingsLoader(text, where)  # its reader already refuses control characters
        node = loader.get_single_node()
        if node is not None:
            _expanded_nodes(node, where)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TransferbenchError(f"{where}: invalid YAML{line}: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise TransferbenchError(f"{where}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data
