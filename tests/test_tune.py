"""`rag tune`: pairs and splits (fast, no model), the model fingerprint in the index, and one real tiny tuning run."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import RAG_BIN, rag_env, run_rag, wait_for_pause
from eval.datasets import load_dataset
from core.errors import ConfigError, IndexFormatError
from rag.text.lexical import LexicalIndex
from eval.tune.data import LabelledSet, build_pairs, load_beir_set, load_qa_set, split_queries, write_qrels

# ------------------------------------------------------------------------------------ data

DOCS = {
    "aard": "The aardvark digs burrows at night and eats termites and ants.",
    "ants": "Ants live in colonies; aardvarks and anteaters eat them.",
    "bike": "A bicycle has two wheels, pedals, a chain and brakes.",
    "brakes": "Disc brakes stop a bicycle better in the rain than rim brakes.",
    "volc": "A volcano erupts lava, ash and gases from the mantle.",
    "glac": "Glaciers are rivers of ice that carve valleys in mountains.",
    "lava": "Lava flows cool into basalt; a volcano may erupt for years.",
    "moon": "The Moon orbits the Earth and causes the tides of the sea.",
}
QUERIES = {
    "q1": "what does the aardvark eat",
    "q2": "how do bicycle brakes work",
    "q3": "what comes out of a volcano",
    "q4": "why does the sea have tides",
    "q5": "what carves mountain valleys",
    "q6": "animals that eat ants",
}
# q1: two relevant documents and one judged non-relevant (never a negative either).
QRELS = {
    "q1": {"aard": 1, "ants": 1, "bike": 0},
    "q2": {"brakes": 2},
    "q3": {"volc": 1, "lava": 0},
    "q4": {"moon": 1},
    "q5": {"glac": 1},
    "q6": {"ants": 1, "aard": 1},
}


def labelled(qrels=QRELS) -> LabelledSet:
    # "lava" has two passages, so the pair must pick the better one for the question.
    passages = [(d, t) for d, t in DOCS.items()] + [("lava", "Basalt columns form where lava from a volcano cooled.")]
    return LabelledSet(
        name="tiny",
        queries={q: QUERIES[q] for q in qrels},
        qrels=qrels,
        passages=tuple(t for _, t in passages),
        passage_doc=tuple(d for d, _ in passages),
    )


def test_split_is_seeded_disjoint_and_independent_of_order():
    ids = [f"q{i}" for i in range(100)]
    rest, part = split_queries(ids, 0.2, seed=3)
    assert len(part) == 20 and len(rest) == 80 and not set(rest) & set(part)
    assert split_queries(list(reversed(ids)), 0.2, seed=3) == (rest, part)
    assert split_queries(ids, 0.2, seed=4)[1] != part
    assert split_queries(ids, 0.0)[1] == []
    assert split_queries(["a", "b"], 0.1) == (["a"], ["b"]) or split_queries(["a", "b"], 0.1) == (["b"], ["a"])


def test_pairs_come_from_relevant_documents_and_negatives_were_never_judged():
    data = labelled()
    pairs = build_pairs(data, list(QRELS), LexicalIndex.build(list(data.passages)), negatives=True)
    expected = sorted((q, d) for q, docs in QRELS.items() for d, r in docs.items() if r > 0)
    assert sorted((p.query_id, p.positive_doc) for p in pairs) == expected
    for p in pairs:
        assert p.query == QUERIES[p.query_id]
        assert p.positive in [t for t, d in zip(data.passages, data.passage_doc) if d == p.positive_doc]
        assert p.negative is not None and p.negative_doc not in QRELS[p.query_id]
        assert p.negative in [t for t, d in zip(data.passages, data.passage_doc) if d == p.negative_doc]
    # The same seed gives the same negatives.
    again = build_pairs(data, list(QRELS), LexicalIndex.build(list(data.passages)), negatives=True)
    assert again == pairs
    no_negatives = build_pairs(data, list(QRELS), None, negatives=False)
    assert [p.negative for p in no_negatives] == [None] * len(expected)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(QUERIES)),
        st.dictionaries(st.sampled_from(sorted(DOCS)), st.integers(0, 2), min_size=1, max_size=7),
        min_size=1,
    ).filter(lambda q: all(any(r > 0 for r in docs.values()) for docs in q.values()))
)
def test_no_judged_document_is_ever_a_negative(qrels):
    data = labelled(qrels)
    for p in build_pairs(data, list(qrels), LexicalIndex.build(list(data.passages)), negatives=True, seed=7):
        assert p.positive_doc in qrels[p.query_id] and qrels[p.query_id][p.positive_doc] > 0
        assert p.negative_doc is None or p.negative_doc not in qrels[p.query_id]


class CountingModel:
    """A stand-in for a SentenceTransformer in validation: hashing vectors, and a count of the texts it embeds."""

    def __init__(self):
        from embeddings.fake import HashingEncoder

        self.encoder, self.embedded = HashingEncoder(), 0

    def encode(self, texts, **kwargs):
        self.embedded += len(texts)
        return self.encoder.embed_batch(list(texts))


def test_validation_embeds_the_pool_once_per_epoch_and_sweeps_the_fusion_weight_on_it():
    from eval.tune.config import ALPHAS
    from eval.tune.train import PoolEvaluator
    from eval.tune.data import validation_pool

    data = labelled()
    lexical = LexicalIndex.build(list(data.passages))
    dev = ["q1", "q3", "q4"]
    pool = validation_pool(data, dev, lexical, depth=3)
    evaluator = PoolEvaluator(data, dev, pool, {q: lexical.scores(data.queries[q])[pool] for q in dev}, alpha=0.5)
    model = CountingModel()
    logged = evaluator(model, epoch=1.0, steps=4)
    assert model.embedded == len(pool) + len(dev)  # one pass: the sweep reuses the epoch's embeddings
    assert set(logged) == {"dev_hybrid_ndcg@10", "dev_dense_ndcg@10"}  # what the trainer logs and picks the epoch by
    (sweep,) = evaluator.sweeps
    assert list(sweep) == list(ALPHAS) and all(0 <= v <= 1 for v in sweep.values())
    assert sweep[0.5] == logged["dev_hybrid_ndcg@10"] == evaluator.history[0]["hybrid_ndcg@10"]
    assert evaluator.history[0]["epoch"] == 1.0


def write_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    filler = " ".join(f"Sentence {i} of the survey repeats plain words about weather and rivers." for i in range(40))
    corpus = [{"_id": d, "title": d.title(), "text": t} for d, t in DOCS.items()]
    corpus.append({"_id": "long", "title": "Survey", "text": filler + " At its end the survey describes the zeppelin airship."})
    (root / "corpus.jsonl").write_text("".join(json.dumps(c) + "\n" for c in corpus))
    queries = {**QUERIES, "q7": "zeppelin airship"}
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    lines = [f"{q}\t{d}\t{r}" for q, docs in {**QRELS, "q7": {"long": 1}}.items() for d, r in docs.items()]
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n")
    return root


def test_beir_set_is_chunked_like_the_index_and_pairs_pick_the_matching_passage(tmp_path):
    data = load_beir_set(write_beir(tmp_path / "ds"), "train")
    assert set(data.queries) == set(QUERIES) | {"q7"}
    assert data.passage_doc.count("long") > 1  # split like the index splits it
    assert data.passages[0] == "Aard\n" + DOCS["aard"]  # the breadcrumb, then the text: what the index embeds
    (pair,) = build_pairs(data, ["q7"], LexicalIndex.build(list(data.passages)))
    assert "zeppelin" in pair.positive  # the passage of the long document that answers the question


def test_qrels_file_selects_queries_for_tuning_and_for_eval(tmp_path, rag_cli):
    root = write_beir(tmp_path / "ds")
    qrels = load_dataset(root, "train").qrels
    part = write_qrels(tmp_path / "part.tsv", qrels, ["q2", "q7"])
    assert set(load_beir_set(root, qrels_file=part).queries) == {"q2", "q7"}
    result = rag_cli(["eval", "beir", "--data", str(root), "--qrels", str(part), "--run-out", str(tmp_path / "p.run")])
    assert result.returncode == 0, result.stderr
    assert "part]" in result.stdout and ": 2 queries" in result.stdout
    assert {line.split()[0] for line in (tmp_path / "p.run").read_text().splitlines()} == {"q2", "q7"}


def test_question_set_format_uses_gold_sections_of_the_corpus():
    from eval.qa import DEFAULT_QUESTIONS

    data = load_qa_set(DEFAULT_QUESTIONS, Path("corpus/data"))
    assert len(data.queries) >= 50
    docs = set(data.passage_doc)
    assert all(set(rel) <= docs for rel in data.qrels.values())
    pairs = build_pairs(data, sorted(data.queries)[:20], LexicalIndex.build(list(data.passages)))
    assert pairs and all(p.negative_doc not in data.qrels[p.query_id] for p in pairs)


# ------------------------------------------------------------------------------ fingerprints


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    """A copy of the bundled model with one setting changed: another model as far as its fingerprint goes."""
    from embeddings.minilm import model_path

    folder = tmp_path_factory.mktemp("models") / "other"
    shutil.copytree(model_path(), folder, ignore=shutil.ignore_patterns("onnx", "openvino"))
    config = json.loads((folder / "config.json").read_text())
    config["layer_norm_eps"] = 1.1e-12
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_index_built_with_another_model_is_refused_naming_both(other_model, tmp_path):
    from embeddings.minilm import MODEL_NAME, MiniLMEncoder
    from rag.index import check_model

    bundled, tuned = MiniLMEncoder(), MiniLMEncoder(model_dir=other_model)
    assert bundled.fingerprint != tuned.fingerprint and tuned.name.startswith("tuned/other@")
    manifest = {"model": {"name": bundled.name, "fingerprint": bundled.fingerprint, "dim": 384}}
    with pytest.raises(IndexFormatError) as refused:
        check_model(manifest, tuned)
    assert MODEL_NAME in str(refused.value) and tuned.name in str(refused.value)
    check_model(manifest, bundled)
    # The same weights in another folder (moved, or with its card edited) are the same model.
    moved = tmp_path / "moved"
    shutil.copytree(other_model, moved)
    (moved / "README.md").write_text("edited card")
    check_model({"model": {"name": tuned.name, "fingerprint": tuned.fingerprint, "dim": 384}}, MiniLMEncoder(model_dir=moved))
    # Vectors of two models never share cache entries or ONNX exports.
    assert bundled.cache_key != tuned.cache_key
    assert tuned.export_args()["key"] == f"tuned-{tuned.fingerprint[:16]}" and bundled.export_args() == {}


def test_onnx_export_of_another_model_is_not_reused(other_model, tmp_path):
    """A complete, undamaged export is taken for its own model only: the fingerprint alone tells them apart."""
    from core.files import file_table
    from embeddings.minilm import model_fingerprint, model_path
    from embeddings.onnx import EXPORT_META, EXPORT_VERSION, FP32_FILE, export_dir, quant_recipe, read_export

    recipe, tuned, bundled = quant_recipe(), model_fingerprint(other_model), model_fingerprint(model_path())
    folder = export_dir(tmp_path, f"tuned-{tuned[:16]}")
    (folder / "onnx").mkdir(parents=True)
    for name in (FP32_FILE, recipe.file_name):
        (folder / name).write_bytes(b"weights of " + name.encode())
    meta = {
        "export_version": EXPORT_VERSION,
        "model_fingerprint": tuned,
        "int8_file": recipe.file_name,
        "quantization": {"reduce_range": recipe.reduce_range, "fp32_after_gelu": recipe.keep_after_gelu},
        "files": file_table(folder),
    }
    (folder / EXPORT_META).write_text(json.dumps(meta))
    assert tuned != bundled
    assert read_export(folder, recipe, fingerprint=tuned) == meta
    assert read_export(folder, recipe, fingerprint=bundled) is None


def test_model_path_that_is_not_a_model_is_one_line(rag_cli, tmp_path):
    result = rag_cli(["search", "aardvark"], RAG_ENCODER="minilm", RAG_MODEL_PATH=str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no model folder at" in result.stderr and "rag tune" in result.stderr
    with pytest.raises(ConfigError, match="not a sentence-transformers model folder"):
        from embeddings.minilm import MiniLMEncoder

        MiniLMEncoder(model_dir=tmp_path)


# ------------------------------------------------------------------------ a real tiny run


def tune_args(data: Path, output: Path) -> list[str]:
    return ["tune", "--data", str(data), "--output", str(output), "--batch-size", "4", "--max-steps", "2", "--dev-fraction", "0.3"]


def _default_signals() -> None:
    # A terminal delivers Ctrl-C; a test run started in the background inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_tuning_paused(tmp: Path) -> tuple[subprocess.Popen, Path]:
    """A tiny ``rag tune`` that pauses once everything is written, just before the publish."""
    data, output = write_beir(tmp / "ds"), tmp / "models" / "tiny"
    env = rag_env(tmp, RAG_ENCODER="minilm", RAG_FAULT_PAUSE="tune-written:600")  # long enough for the slower of the two runs
    proc = subprocess.Popen(
        [str(RAG_BIN), *tune_args(data, output)], env=env, cwd=tmp, stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals
    )
    return proc, output


@pytest.mark.model
@pytest.mark.slow
def test_interrupted_tuning_leaves_no_model(tmp_path):
    """Ctrl-C (SIGINT) and SIGTERM, each sent to its own tuning run paused after writing everything
    beside the destination: exit 130 and nothing left behind. The two runs go side by side."""
    runs = {signum: _start_tuning_paused(tmp_path / signum.name) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for signum, (proc, output) in runs.items():
            wait_for_pause(proc, "tune-written", timeout=300)
            # Everything is written, in a folder beside the destination; the destination does not exist yet.
            assert not output.exists() and list(output.parent.glob(".tiny.tmp-*")), signum.name
        for signum, (proc, _) in runs.items():
            proc.send_signal(signum)
        for signum, (proc, _) in runs.items():
            assert proc.wait(timeout=120) == 130, signum.name
    finally:
        for proc, _ in runs.values():
            proc.kill()
            proc.wait()
    for signum, (_, output) in runs.items():
        assert not output.exists(), signum.name
        assert list(output.parent.iterdir()) == [], signum.name  # nothing half-written left behind


@pytest.mark.model
@pytest.mark.slow
def test_tiny_tuning_writes_a_model_with_its_card_and_indexes_refuse_other_models(tmp_path):
    from embeddings.minilm import model_fingerprint

    data, output = write_beir(tmp_path / "ds"), tmp_path / "models" / "tiny"
    env = rag_env(tmp_path, RAG_ENCODER="minilm")
    result = run_rag(tune_args(data, output), env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "tuning" in result.stderr and "loss=" in result.stderr  # the progress bar shows the loss
    assert "validation nDCG@10 (2 questions)" in result.stdout

    meta = json.loads((output / "rag-tune.json").read_text())
    assert meta["fingerprint"] == model_fingerprint(output) != meta["base_fingerprint"]
    # Validation holds out q4 and q6: the pool is their relevant passages (moon, aard, ants); BM25's best add none.
    assert meta["sizes"] == {"train_questions": 5, "pairs": 6, "validation_questions": 2, "validation_pool": 3}
    assert set(meta["validation"]["base"]) == set(meta["validation"]["tuned"]) == {"hybrid_ndcg@10", "dense_ndcg@10"}
    assert meta["validation"]["alpha"] in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    sweep = meta["validation"]["alpha_sweep"]
    assert len(sweep) == 7 and sweep[str(meta["validation"]["alpha"])] == max(sweep.values())
    assert sweep["0.5"] == meta["validation"]["tuned"]["hybrid_ndcg@10"]  # the sweep was measured on the kept model
    assert meta["cpu_seconds"] > 0 and len(meta["machine"]["load_average"]) == 3
    card = (output / "README.md").read_text()
    assert "sentence-transformers/all-MiniLM-L6-v2" in card and meta["fingerprint"][:16] in card and "| hybrid |" in card

    # Refused again without --overwrite; the model stays.
    again = run_rag(tune_args(data, output), env, cwd=tmp_path, timeout=600)
    assert again.returncode == 2 and "already exists" in again.stderr

    # An index built with the tuned model is refused by the bundled model, naming both.
    corpus = data / "corpus.jsonl"
    built = run_rag(["index", "--corpus", str(corpus), "--model", str(output)], env, cwd=tmp_path, timeout=600)
    assert built.returncode == 0, built.stderr
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["model"]["fingerprint"] == meta["fingerprint"]
    found = run_rag(["search", "zeppelin airship", "--json", "--model", str(output)], env, cwd=tmp_path, timeout=600)
    assert found.returncode == 0, found.stderr
    assert "exporting" not in found.stderr  # rag index exported the tuned model's question encoder, not the bundled one's
    assert found.json()["results"][0]["article"] == "long"
    refused = run_rag(["search", "zeppelin airship"], env, cwd=tmp_path, timeout=600)
    assert refused.returncode == 1
    assert "sentence-transformers/all-MiniLM-L6-v2" in refused.stderr and "tuned/tiny@" in refused.stderr


def test_learning_curve_subsets_are_nested_and_within_the_pair_budget():
    from eval.tune.train import first_questions

    data = labelled()
    small, large = first_questions(data, list(QRELS), 3, seed=0), first_questions(data, list(QRELS), 5, seed=0)
    assert set(small) <= set(large) <= set(QRELS)
    assert sum(len(data.relevant(q)) for q in small) <= 3 and sum(len(data.relevant(q)) for q in large) <= 5
    assert len(large) > len(small)


def test_tuned_models_fusion_weight_is_used_unless_rag_alpha_is_set(tmp_path, monkeypatch):
    from rag.settings import load_settings

    monkeypatch.delenv("RAG_ALPHA", raising=False)
    (tmp_path / "rag-tune.json").write_text(json.dumps({"validation": {"alpha": 0.9}}))
    assert load_settings(model_path=tmp_path).alpha == 0.9
    assert load_settings(model_path=tmp_path, alpha=0.4).alpha == 0.4
    monkeypatch.setenv("RAG_ALPHA", "0.6")
    assert load_settings(model_path=tmp_path).alpha == 0.6
    monkeypatch.delenv("RAG_ALPHA")
    assert load_settings().alpha == 0.5  # the bundled model keeps the default
