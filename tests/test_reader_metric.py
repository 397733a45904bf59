"""The reader's measures and pure parts, without a model: the official SQuAD 2.0 metric on hand-made cases, the
"no answer" threshold, the article split (and QNLI following it), answer positions in windows, length-grouped
batches, and the post-processing shared with the service (rag/answer/reader.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eval.errors import EvalDataError
from eval.reader.batches import length_batches
from eval.reader.features import token_span
from eval.reader.predict import Prediction, answers_at, choose_threshold
from eval.reader.qnli import QnliPair, assign_articles, load_qnli, training_pairs
from eval.reader.squad import (
    Answer,
    Question,
    exact_score,
    f1_score,
    load_squad,
    normalize_answer,
    question_scores,
    split_by_article,
    summary,
    validation_titles,
)
from rag.answer.reader import ReaderSettings, Span, Window, best_span, decide, passage_spans

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SQUAD = DATASETS / "squad2-dev-train.json"
QNLI = DATASETS / "qnli-dev.tsv"


def question(qid: str, *answers: str, title: str = "T", context: str = "ctx", text: str = "q?") -> Question:
    return Question(qid, text, context, title, tuple(Answer(a, 0) for a in answers), not answers)


# ------------------------------------------------------------------------------------ the official metric


def test_normalisation_drops_case_punctuation_articles_and_extra_spaces():
    assert normalize_answer("The  Cat!") == "cat"
    assert normalize_answer("an apple, a day; THE end.") == "apple day end"
    assert normalize_answer("Theory of anthems") == "theory of anthems"  # articles only as whole words
    assert normalize_answer("U.S.A.") == "usa"
    assert normalize_answer("  ") == ""


def test_exact_and_f1_on_hand_made_pairs():
    assert exact_score("The Eiffel Tower", "eiffel tower.") == 1
    assert exact_score("Eiffel Tower", "Tower") == 0
    assert f1_score("Eiffel Tower", "Tower") == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # precision 1, recall 1/2
    assert f1_score("w x y z", "y z v") == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert f1_score("a b c d", "c d e") == pytest.approx(2 / 3)  # "a" is an article: gold is "b c d"
    assert f1_score("cat cat dog", "cat dog dog") == pytest.approx(2 / 3)  # tokens counted with multiplicity
    assert f1_score("Paris", "London") == 0.0
    assert f1_score("", "") == 1.0 and f1_score("Paris", "") == 0.0 and f1_score("", "Paris") == 0.0


def test_best_score_over_gold_answers_and_unanswerable_scoring():
    q = question("1", "October 1973", "October", "1973")
    assert question_scores(q, "1973") == (1, 1.0)  # matches the third gold answer exactly
    exact, f1 = question_scores(q, "in October")  # "in" is no article: F1 2/3 against "October", 1/2 against the first
    assert exact == 0 and f1 == pytest.approx(2 / 3)
    assert question_scores(question("2"), "") == (1, 1.0)  # unanswerable, empty prediction
    assert question_scores(question("3"), "1973") == (0, 0.0)  # unanswerable, any text scores 0
    assert question_scores(q, "") == (0, 0.0)  # answerable, abstaining scores 0


def test_summary_has_the_official_keys_and_figures():
    questions = [question("a", "Paris"), question("b", "blue whale"), question("c"), question("d")]
    preds = {"a": "paris", "b": "whale", "c": "", "d": "something"}  # "c" right to abstain, "d" wrong to answer
    out = summary(questions, preds)
    assert set(out) == {"exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total"}
    assert out["total"] == 4 and out["HasAns_total"] == 2 and out["NoAns_total"] == 2
    assert out["exact"] == pytest.approx(50.0)  # a and c
    assert out["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert out["NoAns_exact"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert summary(questions, {})["NoAns_exact"] == 100.0  # no prediction counts as ""


def test_threshold_maximises_f1_over_margins():
    questions = [question("a", "Paris"), question("b", "Rome"), question("c"), question("d")]
    found = [Prediction("a", "Paris", 5.0), Prediction("b", "Rome", 1.0), Prediction("c", "Oslo", 3.0), Prediction("d", "x", -2.0)]
    choice = choose_threshold(questions, found)
    # Abstaining everywhere scores 2/4 (c, d); answering above 4: a too (3/4); above 2: c goes wrong (2/4); above 0: b
    # right again (3/4); answering all: d wrong (2/4). Of the two best, the higher threshold, midway between 5 and 3.
    assert choice.figures["f1"] == pytest.approx(75.0)
    assert choice.threshold == pytest.approx(4.0)
    assert answers_at(found, choice.threshold) == {"a": "Paris", "b": "", "c": "", "d": ""}
    none = choose_threshold(questions, [Prediction(q.id, "", float("-inf")) for q in questions])
    assert none.figures["f1"] == pytest.approx(50.0)


# ------------------------------------------------------------------------------------ the article split


def test_split_rule_holds_out_every_sixth_sorted_article():
    titles = [f"article-{i:02d}" for i in range(30)]
    assert validation_titles(reversed(titles)) == tuple(titles[i] for i in (2, 8, 14, 20, 26))
    questions = [question(f"{t}-{n}", title=t) for t in titles for n in range(3)]
    split = split_by_article(questions)
    assert {q.title for q in split.train}.isdisjoint(q.title for q in split.validation)
    assert len(split.train) + len(split.validation) == len(questions) and len(split.validation) == 15


def test_qnli_pairs_follow_their_article_by_question_or_sentence():
    squad = [
        question("1", "x", title="Rhine", text="How long is the Rhine?", context="The Rhine is 1,230 km long. It flows north."),
        question("2", "y", title="Oxygen", text="What is O2?", context="Oxygen is an element. It is vital."),
    ]
    pairs = [
        QnliPair("0", "How long is  the Rhine?", "anything", True),  # by question (spacing and case aside)
        QnliPair("1", "Unrelated?", "It is vital.", False),  # by sentence inside a paragraph
        QnliPair("2", "Who?", "Not in any paragraph.", False),
    ]
    assert [p.title for p in assign_articles(pairs, squad)] == ["Rhine", "Oxygen", None]
    assert [p.index for p in training_pairs(pairs, squad, ["Oxygen"])] == ["0", "2"]  # unmatched pairs train


@pytest.mark.skipif(not SQUAD.is_file() or not QNLI.is_file(), reason="the shared datasets are not on this machine")
def test_the_real_files_split_by_article_and_qnli_follows():
    questions = load_squad(SQUAD)
    split = split_by_article(questions)
    assert split.validation_titles == ("Black_Death", "Force", "Imperialism", "Pharmacy", "Steam_engine")
    assert {q.title for q in split.train}.isdisjoint({q.title for q in split.validation})
    assert len(questions) == 10258 and 1000 < len(split.validation) < 2500
    held_questions = {" ".join(q.question.split()).lower() for q in split.validation}
    kept = training_pairs(load_qnli(QNLI), questions, split.validation_titles)
    assert kept and not any(" ".join(p.question.split()).lower() in held_questions for p in kept)


def test_loaders_refuse_bad_files_in_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"title": "t"}]}))
    with pytest.raises(EvalDataError, match="lacks a field"):
        load_squad(bad)
    with pytest.raises(EvalDataError, match="no such file"):
        load_squad(tmp_path / "missing.json")
    (tmp_path / "q.tsv").write_text("a\tb\n")
    with pytest.raises(EvalDataError, match="not a QNLI file"):
        load_qnli(tmp_path / "q.tsv")


# ------------------------------------------------------------------------------------ windows and batches


def offsets(*spans) -> np.ndarray:
    return np.array(spans, dtype=np.int64).reshape(-1, 2)


def test_answer_token_positions_inside_and_outside_a_window():
    # [CLS] q [SEP] "The"(0,3) "Rhine"(4,9) "flows"(10,15) [SEP]
    window = offsets((-1, -1), (-1, -1), (-1, -1), (0, 3), (4, 9), (10, 15), (-1, -1))
    assert token_span(window, 4, 9) == (4, 4)
    assert token_span(window, 4, 15) == (4, 5)
    assert token_span(window, 5, 8) == (4, 4)  # a span inside a word maps to the word
    assert token_span(window, 10, 20) == (0, 0)  # runs past the window: "no answer" here
    assert token_span(offsets((-1, -1), (30, 34), (-1, -1)), 4, 9) == (0, 0)


def test_length_batches_cover_every_window_once_grouped_and_seeded():
    lengths = list(np.random.default_rng(1).integers(20, 256, size=203))
    batches = length_batches(lengths, 8, seed=0, epoch=0, bucket_batches=5)
    assert sorted(i for b in batches for i in b) == list(range(203))
    assert all(len(b) <= 8 for b in batches)
    assert all([lengths[i] for i in b] == sorted(lengths[i] for i in b) for b in batches)
    assert batches == length_batches(lengths, 8, seed=0, epoch=0, bucket_batches=5)
    assert batches != length_batches(lengths, 8, seed=0, epoch=1, bucket_batches=5)


# ------------------------------------------------------------------------------------ post-processing (rag/answer/reader.py)


def window(passage: int, spans) -> Window:
    o = offsets(*spans)
    return Window(passage, np.zeros(len(o), dtype=np.int64), np.zeros(len(o), dtype=np.int64), o)


def test_best_span_stays_in_the_passage_ordered_and_short():
    o = offsets((-1, -1), (-1, -1), (0, 3), (4, 9), (10, 15), (16, 20), (-1, -1))
    start = np.array([9.0, 8.0, 2.5, 1.0, 3.0, 0.0, 9.0])  # [CLS], the question and [SEP] score highest: never spans
    end = np.array([9.0, 8.0, 0.0, 5.0, 0.5, 0.0, 9.0])
    # The best pair overall, start at token 4 and end at token 3 (8.0), runs backwards; tokens 2..3 score 7.5.
    assert best_span(start, end, o) == (7.5, 0, 9)
    assert best_span(start, end, o, max_answer_tokens=1) == (6.0, 4, 9)
    assert best_span(start, end, offsets((-1, -1), (-1, -1))) is None


def test_passage_spans_take_the_best_window_and_the_lowest_null():
    settings = ReaderSettings()
    windows = [window(0, [(-1, -1), (0, 4), (5, 9)]), window(0, [(-1, -1), (5, 9), (10, 14)]), window(1, [(-1, -1), (0, 3)])]
    logits = [
        (np.array([2.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0])),  # null 3, best span 0-4 scores 2
        (np.array([0.5, 0.0, 3.0]), np.array([0.0, 0.0, 4.0])),  # null 0.5, best span 10-14 scores 7
        (np.array([0.0, 1.0]), np.array([0.0, 1.0])),
    ]
    passages = ["abcd efgh ijkl", "xyz"]
    spans = passage_spans(passages, windows, logits, settings)
    assert spans[0] == Span(0, 10, 14, "ijkl", 7.0, 0.5)
    assert spans[1].text == "xyz" and passages[1][spans[1].start : spans[1].end] == spans[1].text


def test_decision_takes_the_largest_margin_over_its_own_passage():
    confident = Span(1, 0, 3, "yes", 8.0, 2.0)  # margin 6
    higher_but_unsure = Span(0, 0, 3, "no!", 10.0, 12.0)  # higher span score, but its passage says "no answer"
    assert decide([higher_but_unsure, confident, None], threshold=0.0) is confident
    assert decide([higher_but_unsure, confident], threshold=6.5) is None
    assert decide([None], threshold=-100.0) is None


def test_window_settings_refuse_a_stride_that_leaves_no_room():
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="stride"):
        ReaderSettings(max_length=128, stride=120)
    assert ReaderSettings(max_length=128, stride=32).question_tokens == 64
    assert ReaderSettings(max_length=64, stride=32).question_tokens == 28


def test_windows_cover_the_passage_with_offsets_into_it():
    """The service's windowing with the bundled tokenizer: every passage token lies in some window, offsets point
    into the passage, windows keep to the length limit and a long question is cut, not refused."""
    from tokenizers import Tokenizer

    from embeddings.model_folder import model_path
    from rag.answer.reader import configure, encode_windows, window_tokenizers

    settings = ReaderSettings(max_length=64, stride=16)
    tokenizer, raw = window_tokenizers(Tokenizer.from_file(str(model_path() / "tokenizer.json")))
    configure(tokenizer, settings)
    passage = " ".join(f"Word{i} of the Rhine, 1,230 km long." for i in range(40))
    for question in ("How long is the Rhine?", "very " * 200 + "long question?"):
        windows = encode_windows(tokenizer, raw, question, [passage, ""], settings)
        assert {w.passage for w in windows} == {0, 1} and all(len(w.ids) <= 64 for w in windows)
        spans = np.concatenate([w.offsets[w.offsets[:, 0] >= 0] for w in windows if w.passage == 0])
        assert spans.min() >= 0 and spans.max() <= len(passage)
        assert {(int(a), int(b)) for a, b in spans} == set(raw.encode(passage, add_special_tokens=False).offsets)
        assert sum(1 for w in windows if w.passage == 0) > 1
