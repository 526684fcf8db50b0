"""The artifact store: content-addressed, atomically written cache of every pipeline stage.

Each artifact is keyed by a hash of everything that produced it (backbone, task version and data
hash, hyperparameters, seed, the stage's code version). A file is written to a temporary name and
renamed into place, so a killed run never leaves a half-written artifact under a real key; a file
that fails its checksum is reported, removed and recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from transferbench.errors import TransferbenchError


# Every folder the cache holds: the store's stages plus the downloads and unpacked models.
# `cache --clear` accepts only these names, so no user text ever becomes a path to delete.
STAGES = ("prompts", "transfer", "skill_neurons", "activations", "text_embedding", "pair_outputs", "probe",
          "downloads", "models")


def cache_root() -> Path:
    """`$TRANSFERBENCH_CACHE`, else `~/.cache/transferbench`."""
    root = os.environ.get("TRANSFERBENCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "transferbench"


def content_key(inputs: dict[str, Any]) -> str:
    """Stable sha256 (first 20 hex digits) of a JSON-serialisable description of an artifact."""
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactStore:
    """Tensors-and-metadata artifacts under `<root>/<stage>/<key>.pt`, each with a checksum."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_root()

    @staticmethod
    def key(stage: str, inputs: dict[str, Any]) -> str:
        return content_key({"stage": stage, **inputs})

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.pt"

    def load(self, stage: str, key: str) -> dict[str, Any] | None:
        """The artifact, or None if absent; a corrupt file is removed with a warning."""
        path = self.path(stage, key)
        if not path.exists():
            return None
        try:
            raw = path.read_bytes()
            digest, _, payload = raw.partition(b"\n")
            if hashlib.sha256(payload).hexdigest().encode() != digest:
                raise ValueError("checksum mismatch")
            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except FileNotFoundError:  # removed by another process since the check above
            return None
        except Exception as exc:  # any unreadable file is recomputed, never trusted
            warnings.warn(f"corrupt cache file {path} ({exc}); recomputing it", stacklevel=2)
            path.unlink(missing_ok=True)
            return None

    def save(self, stage: str, key: str, artifact: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(artifact, buffer)
        payload = buffer.getvalue()
        digest = hashlib.sha256(payload).hexdigest().encode()
        atomic_write_bytes(self.path(stage, key), digest + b"\n" + payload)

    def summary(self) -> list[tuple[str, int, int]]:
        """(stage, number of artifacts, bytes) for every stage folder in the store."""
        rows = []
        if self.root.is_dir():
            for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
                files = [f for f in folder.rglob("*") if f.is_file()]
                rows.append((folder.name, len(files), sum(f.stat().st_size for f in files)))
        return rows

    def check_clearable(self, stage: str) -> Path:
        """The folder `clear(stage)` would delete; raises for anything but a known stage folder
        that is a real directory directly inside the (resolved) cache root."""
        if stage not in STAGES:
            raise TransferbenchError(
                f"no cache stage {stage!r}: --clear takes one of {', '.join(STAGES)}; nothing was deleted"
            )
        folder = self.root / stage
        if not folder.is_dir():
            present = ", ".join(name for name, _, _ in self.summary()) or "none"
            raise TransferbenchError(f"no cache stage {stage!r} in {self.root} (stages present: {present})")
        if folder.is_symlink() or folder.resolve().parent != self.root.resolve():
            raise TransferbenchError(
                f"cache stage folder {folder} is a link to {folder.resolve()}, outside the cache; "
                "refusing to delete it (remove the link yourself)"
            )
        return folder

    def clear(self, stage: str) -> int:
        """Delete every artifact of one stage; returns how many files were removed.

        Only a name in `STAGES` is accepted, and only a real folder directly inside the cache root
        is deleted: `..`, absolute paths and symbolic links are refused before anything is touched.
        """
        import shutil

        folder = self.check_clearable(stage)
        count = sum(1 for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder)
        return count
