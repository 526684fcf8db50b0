"""Shards of a reference build: its finished store entries (prompts, probes, measured cells) packed
into folders a repository can hold, so a build that cannot finish in one sitting is committed and
continued in another session or on another machine (`reference build --shards`, `reference shards`).

A shard is `<shards folder>/<NNN>-<host>-<utc>/` holding `entries.zip` (the store's files byte for
byte, as `<stage>/<key>.pt`, deflated, with fixed timestamps) and `shard.json` (per entry its
artifact, address, stage, key, sha256 and size; the settings that key the entries; where, when and
for how long it ran). Importing checks every entry of every shard before it writes any into the
store; exporting packs the finished entries of the protocol's artifacts that no shard holds yet.

Over 400 lines because the shard is one on-disk format: what `export_shard` writes is what
`_read_manifest` and `Shard.check` accept, and status and the build record read it the same way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import platform
import re
import socket
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from transferbench.errors import TransferbenchError
from transferbench.pipeline.artifacts import ARTIFACTS, Address
from transferbench.reference.bundle import bundle_name
from transferbench.store import DOWNLOAD_FOLDERS, STAGES, atomic_write_many, create_cache_root, remove_leftovers, \
    working_folder, writing

SHARD_FORMAT = 1
MANIFEST = "shard.json"
ARCHIVE = "entries.zip"
# A zip member's time and system are fixed, so one set of entries always packs to the same bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_UNIX = 3
_TEMPORARY = ".shard-"  # a shard being written; renamed to its name when complete
_KEY = re.compile(r"[0-9a-f]{20}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The build settings that key a reference's store entries (`Benchmark.device_key`, the config) and
# the flag that sets each: a shard made with another value holds entries this build never asks for.
SETTING_FLAGS = {"device": "--device", "precision": "--precision", "train_attention": "--train-attention",
                 "eval_kernel": "--eval-kernel", "prompts_per_pass": "--prompts-per-pass"}


def default_folder(root: Path, suite: str, backbone: str) -> Path:
    """`<root>/shards/<suite>__<backbone>/`: beside the bundles of `root` (the shipped `reference/`
    folder of a checkout unless `--root`), one folder per bundle a build makes."""
    return Path(root) / "shards" / bundle_name(suite, backbone)


# ---- what a build asks for, and how it ran ---------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One store entry of a protocol artifact, as the planner keys it."""

    artifact: str
    address: Address
    stage: str
    key: str

    @property
    def member(self) -> str:
        return f"{self.stage}/{self.key}.pt"


def wanted_entries(planner, names: Iterable[str]) -> dict[tuple[str, str], Entry]:
    """(stage, key) -> `Entry` of every entry of `names` that `planner` (a `Benchmark`) builds, in
    its planning order; computing the keys loads each task's data (for its hash), not the model."""
    wanted: dict[tuple[str, str], Entry] = {}
    for name in names:
        stage = ARTIFACTS.get(name).stage
        for address in planner.addresses(name):
            key = planner.key(name, address)
            wanted.setdefault((stage, key), Entry(name, address, stage, key))
    return wanted


def build_setting(planner) -> dict[str, Any]:
    """What keys a build's entries besides the code: suite, backbone, seeds, prompt config, device
    kind, precision and kernels. Another value of any of them means other keys."""
    return {"suite": planner.suite.name, "backbone": planner.backbone_identity(), "seeds": list(planner.seeds),
            "config": planner.config.to_dict(), "device": planner.device.type, "precision": planner.precision.name,
            "train_attention": planner.train_attention, "eval_kernel": planner.eval_kernel,
            "prompts_per_pass": planner.prompts_per_pass}


def machine_record(planner) -> dict[str, Any]:
    """Where entries were computed: host, platform, CPU, accelerator, threads per unit, precision
    (with why), torch version and the checkout's git commit."""
    import torch

    from transferbench.manifest import git_commit
    from transferbench.model.precision import cpu_model

    device = str(planner.device)
    if planner.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(planner.device)})"
    return {"host": socket.gethostname(), "platform": platform.platform(), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "device": device, "unit_threads": planner.context.threads,
            "precision": planner.precision.record(), "torch": torch.__version__, "git": git_commit()}


def setting_difference(recorded: dict[str, Any], now: dict[str, Any]) -> str:
    """How a shard's recorded build setting differs from this build's, as a phrase naming the flags
    that would match it ('' when nothing recorded differs). The config's `bf16` follows the precision."""
    differs = [name for name in SETTING_FLAGS if recorded.get(name) != now[name]]
    parts = [" and ".join(f"{name} {recorded.get(name)}" for name in differs) + " where this build has "
             + " and ".join(str(now[name]) for name in differs) + " (give "
             + " ".join(f"{SETTING_FLAGS[name]} {recorded.get(name)}" for name in differs) + ")"] if differs else []

    def comparable(setting: dict[str, Any], name: str) -> Any:
        value = setting.get(name)
        return {k: v for k, v in value.items() if k != "bf16"} if name == "config" and isinstance(value, dict) else value

    parts += [f"another {name}" for name in ("suite", "backbone", "seeds", "config")
              if comparable(recorded, name) != comparable(now, name)]
    return "; ".join(parts)


# ---- shards on disk -------------------------------------------------------------------------------
def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def _valid_store_file(data: bytes) -> bool:
    """True when `data` is a whole store file: its first line is the sha256 of the rest (`ArtifactStore.save`)."""
    digest, _, payload = data.partition(b"\n")
    return hashlib.sha256(payload).hexdigest().encode() == digest


@dataclass
class Shard:
    """One shard folder and its manifest (`shard.json`), as read; `check` reads its entries."""

    folder: Path
    record: dict[str, Any]
    entries: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (stage, key) -> its row

    @property
    def id(self) -> str:
        return self.folder.name

    def where(self) -> str:
        """Where it ran, as a phrase: CPU, device and precision."""
        machine, setting = self.record["machine"], self.record["setting"]
        return f"{machine.get('cpu', '?')}, {machine.get('device', '?')}, {setting.get('precision', '?')}"

    def check(self) -> dict[tuple[str, str], bytes]:
        """(stage, key) -> the entry's store file, after checking every entry's sha256 against
        `shard.json` and its own checksum; anything amiss is one TransferbenchError naming it."""
        archive = self.folder / ARCHIVE
        advice = (f"restore the shard from the repository (git checkout -- {self.folder}) or delete the folder to "
                  "recompute its entries; nothing was imported")
        files = {}
        try:
            with zipfile.ZipFile(archive) as zipped:
                for (stage, key), row in self.entries.items():
                    member = f"{stage}/{key}.pt"
                    try:
                        data = zipped.read(member)
                    except KeyError:
                        raise TransferbenchError(f"{archive}: entry {member} listed in {MANIFEST} is missing; "
                                                 f"{advice}") from None
                    if hashlib.sha256(data).hexdigest() != row["sha256"]:
                        raise TransferbenchError(f"{archive}: entry {member} does not match its sha256 in {MANIFEST}; "
                                                 f"the shard is damaged: {advice}")
                    if not _valid_store_file(data):
                        raise TransferbenchError(f"{archive}: entry {member} is not a whole store file (its checksum "
                                                 f"line does not match it); {advice}")
                    files[stage, key] = data
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # unreadable, truncated, bad CRC
            raise TransferbenchError(f"{archive}: cannot be read ({exc}); {advice}") from None
        return files


def _read_manifest(folder: Path) -> Shard:
    path = folder / MANIFEST
    problem = ""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise TransferbenchError(f"{folder}: no {MANIFEST}, so not a shard; restore it from the repository or "
                                 "remove the folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TransferbenchError(f"{path}: not valid JSON ({exc}); restore the shard from the repository") from None
    stages = set(STAGES) - set(DOWNLOAD_FOLDERS)
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    if not isinstance(record, dict) or record.get("format") != SHARD_FORMAT:
        problem = f"not a format-{SHARD_FORMAT} shard manifest"
    elif not (isinstance(record.get("entries"), list) and isinstance(record.get("setting"), dict)
              and isinstance(record.get("machine"), dict)):
        problem = "no list of entries, setting or machine record"
    else:
        for index, row in enumerate(record["entries"]):
            # the stage and key become a path in the store: only a known stage and a hex key pass
            if not (isinstance(row, dict) and row.get("stage") in stages and isinstance(row.get("key"), str)
                    and _KEY.fullmatch(row["key"]) and isinstance(row.get("sha256"), str)
                    and _SHA256.fullmatch(row["sha256"])):
                problem = f"entry {index} is not a stage, a 20-digit hex key and a sha256"
                break
            entries[row["stage"], row["key"]] = row
    if problem:
        raise TransferbenchError(f"{path}: {problem}; restore the shard from the repository")
    return Shard(folder, record, entries)


def read_shards(folder: Path | None) -> list[Shard]:
    """The shards of `folder` (none when it does not exist), by name; their manifests are read and
    checked, their entries not yet (`Shard.check`)."""
    if folder is None or not Path(folder).is_dir():
        return []
    return [_read_manifest(path) for path in sorted(Path(folder).iterdir())
            if path.is_dir() and not path.name.startswith(".")]


# ---- import, export, status ------------------------------------------------------------------------
@dataclass
class ShardUse:
    """What one shard holds for a build: its entries this build asks for (`matching`), how many
    of them were written into the store (`imported`) and how many the store already held."""

    shard: Shard
    matching: int
    imported: int = 0
    present: int = 0

    def line(self, now: dict[str, Any]) -> str:
        """One line on the shard: what it gave this build, or why it gives nothing."""
        shard, total = self.shard, len(self.shard.entries)
        head = f"shard {shard.id} ({shard.where()}): "
        if total and not self.matching:
            differs = setting_difference(shard.record["setting"], now) or (
                "these settings, but other task data or code versions (the suite's data or transferbench changed since)")
            return head + f"none of its {total} entries is one this build needs: it ran with {differs}"
        done = f"; {self.imported} imported, {self.present} already in the cache" if self.imported or self.present else ""
        return head + f"{self.matching} of its {total} entries are this build's{done}"


def import_shards(planner, folder: Path | None, names: Iterable[str]) -> list[ShardUse]:
    """Write into `planner`'s store the entries of every shard in `folder` that its build asks for
    and the store lacks (or holds damaged). Every entry of every shard is checked first, so a
    damaged shard is one TransferbenchError and nothing is imported."""
    shards = read_shards(folder)
    if not shards:
        return []
    checked = [(shard, shard.check()) for shard in shards]
    wanted = wanted_entries(planner, names)
    store, uses = planner.store, []
    for shard, files in checked:
        use = ShardUse(shard, matching=sum(1 for key in files if key in wanted))
        write = {}
        for (stage, key), data in files.items():
            if (stage, key) not in wanted:
                continue
            path = store.path(stage, key)
            try:
                held = path.read_bytes()
            except FileNotFoundError:
                held = None
            if held is not None and _valid_store_file(held):
                use.present += 1
            else:
                write[path] = data
        if write:
            create_cache_root(store.root)
            atomic_write_many(write)
            use.imported = len(write)
        uses.append(use)
    planner.forget()  # entries read before the import are read again from the store
    return uses


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", socket.gethostname()).strip("-.")[:40] or "host"


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type, info.create_system, info.external_attr = zipfile.ZIP_DEFLATED, _UNIX, 0o644 << 16
            zipped.writestr(info, files[name], compresslevel=9)
    return buffer.getvalue()


def export_shard(planner, folder: Path, names: Iterable[str], *, wall_seconds: float | None = None) -> Shard | None:
    """Pack the finished entries of `names` in `planner`'s store that no shard of `folder` holds
    into a new shard; None when there is none. `wall_seconds`: how long the build that computed
    them ran in this session (None from a standalone export)."""
    folder = Path(folder)
    wanted = wanted_entries(planner, names)
    sharded = {key for shard in read_shards(folder) for key in shard.entries}
    files: dict[Entry, bytes] = {}
    stamps = []
    for stage_key, entry in wanted.items():
        if stage_key in sharded:
            continue
        path = planner.store.path(*stage_key)
        try:
            data, stamp = path.read_bytes(), path.stat().st_mtime
        except FileNotFoundError:
            continue
        if _valid_store_file(data):  # a damaged file is recomputed by the build, never shipped
            files[entry] = data
            stamps.append(stamp)
    if not files:
        return None
    now = time.time()
    counts: dict[str, int] = {}
    rows = []
    for entry, data in files.items():
        counts[entry.artifact] = counts.get(entry.artifact, 0) + 1
        rows.append({"artifact": entry.artifact, "task": entry.address.task, "seed": entry.address.seed,
                     "source": entry.address.source, "stage": entry.stage, "key": entry.key,
                     "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    record = {"format": SHARD_FORMAT, "created_utc": _utc(now), "wall_seconds": wall_seconds,
              "entries_first_utc": _utc(min(stamps)), "entries_last_utc": _utc(max(stamps)),
              "setting": build_setting(planner), "machine": machine_record(planner), "counts": counts, "entries": rows}
    archive = _zip({entry.member: data for entry, data in files.items()})
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    remove_leftovers(folder, _TEMPORARY)
    with working_folder(folder, _TEMPORARY) as staging, writing(folder):
        atomic_write_many({staging / ARCHIVE: archive, staging / MANIFEST: _manifest_bytes(record)})
        os.chmod(staging, 0o777 & ~_umask())
        index = 1 + max((int(p.name[:3]) for p in folder.iterdir() if p.name[:3].isdigit()), default=0)
        while True:  # the next free number: another exporter may take one between the listing and the rename
            target = folder / f"{index:03d}-{_host()}-{stamp}"
            try:
                if not target.exists():
                    os.rename(staging, target)
                    break
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            index += 1
    return _read_manifest(target)


def _manifest_bytes(record: dict[str, Any]) -> bytes:
    """`shard.json`: indented, with one line per entry (a big build's shard lists thousands)."""
    head = json.dumps({k: v for k, v in record.items() if k != "entries"}, indent=1)
    rows = ",\n".join("  " + json.dumps(row, separators=(",", ":")) for row in record["entries"])
    return (head[:-2] + ',\n "entries": [\n' + rows + "\n ]\n}\n").encode()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class ArtifactProgress(NamedTuple):
    """Of one artifact: entries the build needs, those in the store, in shards, and in either."""

    artifact: str
    total: int
    in_store: int
    in_shards: int
    done: int


def status(planner, folder: Path | None, names: Iterable[str]) -> tuple[list[ArtifactProgress], list[ShardUse]]:
    """Per artifact, how much of the build is done across the store and the shards of `folder`; and
    per shard, how many of its entries this build asks for. Reads only: nothing is checked or written."""
    names = list(names)
    wanted = wanted_entries(planner, names)
    shards = read_shards(folder)
    in_shards = {key for shard in shards for key in shard.entries if key in wanted}
    rows = []
    for name in names:
        keys = [key for key, entry in wanted.items() if entry.artifact == name]
        stored = {key for key in keys if planner.store.path(*key).exists()}
        sharded = {key for key in keys if key in in_shards}
        rows.append(ArtifactProgress(name, len(keys), len(stored), len(sharded), len(stored | sharded)))
    uses = [ShardUse(shard, matching=sum(1 for key in shard.entries if key in wanted)) for shard in shards]
    return rows, uses


def provenance(planner, folder: Path | None, names: Iterable[str]) -> list[dict[str, Any]]:
    """The build record of the shards a build's entries came from (bundle.json `build.shards`):
    per shard its id, where it ran, its precision, when, and how many of the bundle's entries are
    its (the store file is byte for byte the shard's); an entry that no shard holds is counted
    under the id None."""
    wanted = wanted_entries(planner, names)
    shards = read_shards(folder)
    counts: dict[str | None, int] = {}
    for stage_key in wanted:
        path = planner.store.path(*stage_key)
        if not path.exists():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        owner = next((shard.id for shard in shards if shard.entries.get(stage_key, {}).get("sha256") == digest), None)
        counts[owner] = counts.get(owner, 0) + 1
    records = []
    for shard in shards:
        if shard.id in counts:
            machine = shard.record.get("machine", {})
            records.append({"id": shard.id, "entries": counts[shard.id], "created_utc": shard.record.get("created_utc"),
                            "wall_seconds": shard.record.get("wall_seconds"),
                            "machine": {k: machine.get(k) for k in ("host", "platform", "cpu", "device", "unit_threads",
                                                                    "torch", "git")},
                            "precision": machine.get("precision")})
    if None in counts:
        records.append({"id": None, "entries": counts[None]})
    return records


# ---- a build with shards ---------------------------------------------------------------------------
@contextlib.contextmanager
def sharded_build(planner, folder: Path | None, names: Iterable[str], console) -> Iterator[None]:
    """Import the shards of `folder` into `planner`'s store (one line per shard), run the block,
    then export what it finished into a new shard, also when the block is interrupted (Ctrl-C,
    SIGTERM, an error): the export comes first, then the interruption goes on; an export that
    fails then is one line and does not hide it. `folder` None: no shards."""
    if folder is None:
        yield
        return
    names, started, now = list(names), time.perf_counter(), build_setting(planner)
    uses = import_shards(planner, folder, names)
    for use in uses:
        console.print(use.line(now), highlight=False, soft_wrap=True)
    if not uses:
        console.print(f"no shards in {folder} yet; finished entries are exported there", highlight=False, soft_wrap=True)

    def export() -> None:
        shard = export_shard(planner, folder, names, wall_seconds=round(time.perf_counter() - started, 1))
        if shard is not None:
            console.print(f"exported {len(shard.entries)} finished entries to shard {shard.folder} (commit it to "
                          "continue the build elsewhere)", highlight=False, soft_wrap=True)

    try:
        yield
    except BaseException:
        try:
            export()
        except Exception as exc:  # the interruption is what the user must see
            console.print(f"could not export the finished entries to a shard ({exc}); they stay in the cache: "
                          "`transferbench reference shards export` with the same settings exports them",
                          highlight=False, soft_wrap=True)
        raise
    export()
