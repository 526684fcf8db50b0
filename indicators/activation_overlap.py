"""Overlapping rate of activated neurons (ON), Su et al. (NAACL 2022): `activation_overlap` reads
the [MASK] position as the paper; `activation_overlap_readout` reads where the backbone's verbalizer
reads its output (docs/indicators.md, "Read-out-aware neuron indicators")."""

from __future__ import annotations

import numpy as np

from transferbench.pipeline.artifacts import READOUTS
from transferbench.scoring.indicator import Indicator


def overlap_rate(active_a: np.ndarray, active_b: np.ndarray) -> float:
    """ON = |b1 AND b2| / sqrt(|b1| * |b2|): the cosine of two binary activation vectors.

    Su et al., "On Transferability of Prompt Tuning for Natural Language Processing", NAACL 2022,
    Sec. 5.2 (b = 1[a > 0] over the FFN neurons of the chosen layers, concatenated).
    """
    a = np.asarray(active_a, dtype=bool).ravel()
    b = np.asarray(active_b, dtype=bool).ravel()
    denominator = np.sqrt(float(a.sum()) * float(b.sum()))
    return float(np.logical_and(a, b).sum() / denominator) if denominator else 0.0


def parse_layers(layers: str, num_layers: int) -> list[int]:
    """`"all"` or a 1-based inclusive window like `"1-3"` or `"4"` -> 0-based layer indices."""
    if layers == "all":
        return list(range(num_layers))
    first, _, last = str(layers).partition("-")
    start, end = int(first), int(last or first)
    if not 1 <= start <= end <= num_layers:
        raise ValueError(f"layers {layers!r} is outside 1-{num_layers}")
    return list(range(start - 1, end))


def check_readout(readout: str) -> str:
    """`readout` if it names where a neuron artifact reads (`artifacts.READOUTS`), else ValueError."""
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {readout!r}")
    return readout


class ActivationOverlap(Indicator):
    """ON between the binarised FFN activations at the [MASK] position of the two prompts.

    `inputs="prompt"` (the paper): the prompt alone is fed; `inputs="task"`: activations are
    averaged over the task's dev inputs before binarising. `layers`: `"all"` or a 1-based window
    such as `"1-3"` (the paper's windows on 12 layers: 1-3, 4-6, 7-9, 10-12). With several seeds,
    ON is averaged over the seed pairs with equal seeds. It reads the [MASK] position, as the
    paper; `activation_overlap_readout` (`ActivationOverlapReadout`) reads where the verbalizer does.
    """

    requires = ("mask_activations", "mask_activations_task")
    kind = "neuron"
    description = "overlapping rate of activated FFN neurons at [MASK] (Su et al. 2022)"
    # Where the activations are read (`artifacts.READOUTS`); a parameter of the _readout subclass
    # only, so this class's parameters, and the manifests of its results, stay as they were.
    readout = "mask"

    def __init__(self, layers: str = "all", inputs: str = "prompt"):
        if inputs not in ("prompt", "task"):
            raise ValueError(f"inputs must be 'prompt' or 'task', got {inputs!r}")
        if layers != "all" and not all(part.isdigit() for part in str(layers).split("-", 1)):
            raise ValueError(f"layers must be 'all' or a 1-based window like '1-3', got {layers!r}")
        self.layers = str(layers)
        self.inputs = inputs
        # Declare only the artifact this variant reads, so the others are never computed.
        self.requires = (self._artifact(),)

    def _artifact(self) -> str:
        stem = "mask_activations" if self.readout == "mask" else "readout_activations"
        return stem if self.inputs == "prompt" else f"{stem}_task"

    def score(self, source, target) -> float:
        artifact = self._artifact()
        per_seed_a, per_seed_b = getattr(source, artifact), getattr(target, artifact)
        window = parse_layers(self.layers, per_seed_a[0].shape[0])
        rates = [overlap_rate(a[window] > 0, b[window] > 0) for a, b in zip(per_seed_a, per_seed_b)]
        return float(np.mean(rates))


class ActivationOverlapReadout(ActivationOverlap):
    """`activation_overlap` read where the backbone's verbalizer reads its output
    (`readout="verbalizer"`, `readout_activations`): the [MASK] position on a masked LM, as the
    paper; on a backbone whose cosine verbalizer reads mean-pooled outputs, the activations
    averaged over the input's positions before binarising (our adaptation). `readout="mask"` reads
    [MASK] whatever the backbone (= `activation_overlap`)."""

    requires = ("readout_activations", "readout_activations_task")
    description = "ON read where the verbalizer reads: [MASK] on an MLM, else the mean over positions (ours)"

    def __init__(self, layers: str = "all", inputs: str = "prompt", readout: str = "verbalizer"):
        self.readout = check_readout(readout)
        super().__init__(layers, inputs)
