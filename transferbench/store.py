"""The artifact store: content-addressed, atomically written cache of every pipeline stage.

Each artifact is keyed by a hash of everything that produced it (backbone, task version and data
hash, hyperparameters, seed, the stage's code version). A file is written to a temporary name and
renamed into place, so a killed run never leaves a half-written artifact under a real key; a file
that fails its checksum is reported, removed and recomputed.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import json
import os
import shutil
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping


from transferbench.errors import TransferbenchError

try:
    import fcntl
except ImportError:  # Windows: no locks, so leftovers are never removed automatically
    fcntl = None  # type: ignore[assignment]


# Every folder the cache holds: the store's stages (each artifact declaration in
# `transferbench.pipeline.artifacts` names one of them, checked when it is declared; tests/test_store.py
# checks that every stage here is some artifact's) plus the downloads and unpacked models.
# `cache --clear` accepts only these names, so no user text ever becomes a path to delete.
DOWNLOAD_FOLDERS = ("downloads", "models")
STAGES = ("prompts", "transfer", "skill_neurons", "activations", "text_embedding", "pair_outputs", "probe",
          *DOWNLOAD_FOLDERS)


def cache_root() -> Path:
    """`$TRANSFERBENCH_CACHE`, else `~/.cache/transferbench`."""
    root = os.environ.get("TRANSFERBENCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "transferbench"


# The file that marks a folder as transferbench's cache: a CACHEDIR.TAG (https://bford.info/cachedir/,
# which backup tools also honour) naming transferbench. `cache --clear` deletes only in a marked
# folder, so $TRANSFERBENCH_CACHE pointing at a user's own folder that happens to hold a `downloads/`
# never costs them a file. It is written when transferbench creates the cache folder (or first writes
# into an empty one); a folder that already held anything is never marked behind the user's back.
CACHE_MARKER = "CACHEDIR.TAG"
CACHE_MARKER_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                     "# This folder is transferbench's artifact cache; `transferbench cache --clear STAGE` empties a stage.\n")


def _unused_folder(root: Path) -> bool:
    """True when `root` does not exist or holds nothing but empty folders (such as a stage folder
    left by a run that stopped before writing): transferbench may make it its cache and mark it."""
    try:
        return all(entry.is_dir() and not entry.is_symlink() and not any(entry.iterdir()) for entry in root.iterdir())
    except FileNotFoundError:
        return True
    except OSError:  # a file, or unreadable: not ours to mark
        return False


def create_cache_root(root: Path | None = None) -> Path:
    """The cache folder `root` (default `cache_root()`), created, and marked as transferbench's cache
    when it did not exist or held nothing yet; called wherever transferbench is about to write into
    the cache."""
    root = Path(root) if root is not None else cache_root()
    if _unused_folder(root):
        with writing(root):
            root.mkdir(parents=True, exist_ok=True)
            mark_cache_root(root)
    return root


def mark_cache_root(root: Path) -> None:
    """Write the marker of transferbench's cache into `root` (`transferbench cache --mark`)."""
    atomic_write_bytes(root / CACHE_MARKER, CACHE_MARKER_TEXT.encode())


def is_marked_cache(root: Path) -> bool:
    """True when `root` carries transferbench's cache marker."""
    try:
        with open(root / CACHE_MARKER, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.startswith(CACHE_MARKER_TEXT.split("\n")[0].encode()) and b"transferbench" in head


def content_key(inputs: dict[str, Any]) -> str:
    """Stable sha256 (first 20 hex digits) of a JSON-serialisable description of an artifact."""
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


# The file system refusing a write: full disk or quota, read-only or forbidden folder, a file where a
# folder should be. The user's machine, not a bug: `writing` turns these into one line.
_REFUSED_WRITES = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST}

# `check_writable` refuses to start computing with less free space than this under the cache.
MIN_FREE_BYTES = 16 * 2**20


@contextlib.contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Turn the file system refusing a write under `folder` into one TransferbenchError naming the
    path and the reason (other OSErrors pass unchanged)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _REFUSED_WRITES:
            raise
        raise TransferbenchError(
            f"cannot write {exc.filename or folder}: {exc.strerror or exc}; free space or use a writable folder "
            "(TRANSFERBENCH_CACHE for the cache); files written before are kept"
        ) from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename."""
    atomic_write_many({path: data})


def _temporary_prefix(path: Path, pid: int | str = "") -> str:
    """`.NAME.HOST-PID.`: a temporary file beside `path` names its writer, so a later write can
    tell one left by a killed process (`_remove_dead_temporaries`) from one still being written."""
    return f".{path.name}.{socket.gethostname()}-{pid}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to someone else
        return True
    return True


def _remove_dead_temporaries(path: Path) -> None:
    """Delete the temporary files beside `path` that a process of this host left when it died
    mid-write (SIGKILL skips every cleanup); those of live processes, and of other hosts sharing
    the folder, are left alone."""
    prefix = _temporary_prefix(path)
    for tmp in path.parent.glob(glob.escape(prefix) + "*.tmp"):
        pid = tmp.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def atomic_write_many(files: Mapping[Path, bytes]) -> None:
    """Write several files all or none: each goes to a temporary file beside it first, and only
    when every one is written and synced are they renamed into place (renames need no space), so
    a full disk or a refused folder leaves every existing file as it was. Temporary files of an
    earlier writer of the same file that was killed mid-write are removed first."""
    staged: list[tuple[str, Path]] = []
    umask = os.umask(0)
    os.umask(umask)
    try:
        for path, data in files.items():
            with writing(path.parent):
                path.parent.mkdir(parents=True, exist_ok=True)
                _remove_dead_temporaries(path)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path, os.getpid()) + ".",
                                           suffix=".tmp")
                staged.append((tmp, path))
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        for tmp, path in staged:
            with writing(path.parent):
                os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


# A working folder younger than this is never removed as a leftover: it may be in the instant
# between its creation and its lock.
LEFTOVER_GRACE_SECONDS = 60.0


@contextlib.contextmanager
def working_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A new private folder `parent/<prefix>XXXX`, deleted on exit, and locked (`flock`) while this
    process lives: the kernel drops the lock when the process dies, even by SIGKILL, so a later
    run tells a leftover (`remove_leftovers`) from a folder another live run is filling."""
    with writing(parent):
        parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    handle = os.open(folder, os.O_RDONLY)
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield folder
    finally:
        os.close(handle)
        shutil.rmtree(folder, ignore_errors=True)


def remove_leftovers(parent: Path, prefix: str) -> list[Path]:
    """Delete the `working_folder`s under `parent` whose process died (unlocked, older than
    `LEFTOVER_GRACE_SECONDS`); returns them. Folders of live processes are left alone."""
    removed = []
    if fcntl is None or not parent.is_dir():
        return removed
    for folder in sorted(parent.glob(f"{prefix}*")):
        try:
            if folder.is_symlink() or not folder.is_dir():
                continue
            if time.time() - folder.stat().st_mtime < LEFTOVER_GRACE_SECONDS:
                continue
            handle = os.open(folder, os.O_RDONLY)
        except OSError:  # removed meanwhile
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # locked: a live process is using it
            os.close(handle)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(handle)
    return removed


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
            import torch  # imported on first use: `transferbench run` prints its first line before torch loads

            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except FileNotFoundError:  # removed by another process since the check above
            return None
        except Exception as exc:  # any unreadable file is recomputed, never trusted
            warnings.warn(f"corrupt cache file {path} ({exc}); recomputing it", stacklevel=2)
            path.unlink(missing_ok=True)
            return None

    def save(self, stage: str, key: str, artifact: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        import torch

        torch.save(artifact, buffer)
        payload = buffer.getvalue()
        digest = hashlib.sha256(payload).hexdigest().encode()
        create_cache_root(self.root)
        atomic_write_bytes(self.path(stage, key), digest + b"\n" + payload)

    def check_writable(self, stage: str) -> None:
        """Fail with one line, before anything is computed, if new artifacts of `stage` cannot be
        stored: the folder cannot be created or written (read-only cache), or the disk under it
        has less than `MIN_FREE_BYTES` free."""
        folder = self.root / stage
        unused = _unused_folder(self.root)
        with writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".writable.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
            free = shutil.disk_usage(folder).free
            if free < MIN_FREE_BYTES:
                raise OSError(errno.ENOSPC, f"only {free // 1024} KiB free (at least {MIN_FREE_BYTES >> 20} MiB "
                                            "needed to store new artifacts)", str(folder))
            if unused:  # marked only once it can take artifacts: a refused cache is left without a file
                mark_cache_root(self.root)

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
        that is a real directory directly inside the (resolved) cache root, and for a root without
        the cache marker (`CACHE_MARKER`)."""
        if stage not in STAGES:
            raise TransferbenchError(
                f"no cache stage {stage!r}: --clear takes one of {', '.join(STAGES)}; nothing was deleted"
            )
        if not is_marked_cache(self.root):
            raise TransferbenchError(
                f"{self.root} has no transferbench cache marker ({CACHE_MARKER}), so it may be a folder of yours "
                "(is TRANSFERBENCH_CACHE right?); nothing was deleted. If it is transferbench's cache (one made "
                "before the marker existed), run `transferbench cache --mark` once, then clear again")
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
        folder = self.check_clearable(stage)
        count = sum(1 for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder)
        return count
