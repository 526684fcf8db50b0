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
from transferbench.sources import SOURCES

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


def read_yaml(path: Path, where: str) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TransferbenchError(f"{where}: cannot read file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TransferbenchError(f"{where}: invalid YAML{line}: {problem}") from None
    if not isinstance(data, dict):
        raise TransferbenchError(f"{where}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data
