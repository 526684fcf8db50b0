"""Provenance of a result: what configuration, code, packages and data produced it."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from transferbench import __version__

PACKAGES = ("torch", "transformers", "datasets", "numpy", "scipy", "pandas", "evaluate", "tokenizers")


def git_commit() -> dict[str, Any]:
    """The commit of the transferbench checkout (and whether it had local changes), if any."""
    folder = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"transferbench": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def build_manifest(config: dict[str, Any], data: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest every result file carries: config, seeds (inside config), versions, data, git."""
    return {
        "config": config,
        "data": data,
        "versions": package_versions(),
        "git": git_commit(),
        "command": " ".join(["transferbench", *sys.argv[1:]]),
        "platform": platform.platform(),
        **(extra or {}),
    }
