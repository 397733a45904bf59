"""The ``rag`` command as a user runs it: index, search --json, and one-line errors (fake encoder for speed,
and one test of index and search with the real model)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from corpus import DEFAULT_CORPUS_DIR
from conftest import RAG_BIN, SMALL_CORPUS, RagRun, build_fake_index, model_env, rag_env, run_rag, write_files

INDEX_LINE = re.compile(
    r"^indexed (?P<articles>\d+) articles? into (?P<chunks>\d+) chunks "
    r"\(embedded (?P<embedded>\d+), cached (?P<cached>\d+)\) in (?P<seconds>\d+\.\d) s -> (?P<dir>\S+) "
    r"\[(?P<kind>flat|hnsw), build (?P<build>\S+)\] from (?P<bundled>the bundled corpus )?(?P<corpus>\S+)(?: \(.*\))?$"
)


def assert_one_line_error(run: RagRun, *needles: str) -> str:
    assert run.returncode != 0, run
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_index_then_reindex_then_search(tmp_path: Path, rag_cli, small_corpus):
    first = rag_cli(["index"], RAG_CORPUS_DIR=small_corpus)
    assert first.returncode == 0, first.stderr
    m = INDEX_LINE.match(first.stdout.strip())
    assert m, first.stdout
    assert int(m["articles"]) == 3
    chunks = int(m["chunks"])
    assert chunks >= 8
    assert (int(m["embedded"]), int(m["cached"])) == (chunks, 0)
    assert float(m["seconds"]) >= 0
    assert m["dir"] == str(tmp_path / "index")
    assert m["corpus"] == str(small_corpus.resolve())  # which folder was read is never left to guess
    assert (tmp_path / "index").is_symlink()

    second = rag_cli(["index"], RAG_CORPUS_DIR=small_corpus)
    assert second.returncode == 0, second.stderr
    m2 = INDEX_LINE.match(second.stdout.strip())
    assert m2 and "embedded 0" in second.stdout
    assert (int(m2["chunks"]), int(m2["cached"])) == (chunks, chunks)
    assert m2["build"] != m["build"]

    search = rag_cli(["search", "How many termites does an aardvark eat?", "--json", "-k", "3"])
    assert search.returncode == 0, search.stderr
    # what the wait is for goes to stderr, one line; stdout stays the JSON a script reads
    assert search.stderr.splitlines() == [f"loading the model fake/hashing-64 and the index {tmp_path / 'index'} ({chunks} passages) ..."]
    payload = search.json()
    assert set(payload) == {"query", "results"}
    assert payload["query"] == "How many termites does an aardvark eat?"
    assert len(payload["results"]) == 3
    for result in payload["results"]:
        assert {"passage_id", "title", "section", "url", "text", "score"} <= set(result)
        assert isinstance(result["section"], list) and all(isinstance(s, str) for s in result["section"])
        assert result["section"][0] == result["title"]
        assert isinstance(result["score"], float)
        assert isinstance(result["passage_id"], str) and result["text"]
    top = payload["results"][0]
    assert top["title"] == "Aardvarks" and top["url"] == "/wiki/aardvarks"
    assert top["section"] == ["Aardvarks", "Diet"]
    assert "termites" in top["text"]
    scores = [r["score"] for r in payload["results"]]
    assert scores == sorted(scores, reverse=True)


# ------------------------------------------------------------------------ one-shot commands, run side by side

BAD_YAML = "---\ntitle: [unclosed\n---\n# Broken\n\nBody.\n"

CASES = {
    # name: (args, extra env, setup), each in its own folder; checked by the tests below
    "search-text": (["search", "gothic cathedral windows", "--mode", "bm25", "-k", "1"], {}, "index"),
    "search-tag": (["search", "gothic cathedral windows", "--json", "--tag", "VEHICLES"], {}, "index"),
    "search-no-match": (["search", "gothic", "--json", "--category", "Cooking"], {}, "index"),
    "index-bundled": (["index"], {"RAG_MAX_TOKENS": "1000", "RAG_OVERLAP_TOKENS": "32"}, None),
    "skip-bad": (["index", "--skip-bad"], {"RAG_CORPUS_DIR": "{tmp}/broken"}, "broken"),
    "no-index": (["search", "satellite"], {}, None),
    "no-index-json": (["search", "satellite", "--json", "--mode", "bm25"], {}, None),
    "bad-mode": (["search", "satellite", "--mode", "telepathy"], {}, "index"),
    "k-zero": (["search", "satellite", "-k", "0"], {}, "index"),
    "empty-query": (["search", "   "], {}, "index"),
    "corpus-missing": (["index"], {"RAG_CORPUS_DIR": "{tmp}/no-such-corpus"}, None),
    "bad-yaml": (["index"], {"RAG_CORPUS_DIR": "{tmp}/broken"}, "broken"),
    "foreign-index-dir": (["index", "--index-dir", "{tmp}/foreign"], {"RAG_CORPUS_DIR": "{tmp}/corpus"}, "foreign"),
    "bad-setting": (["index"], {"RAG_CORPUS_DIR": "{tmp}/corpus", "RAG_MAX_TOKENS": "5"}, None),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[RagRun, Path]]:
    """Every case in its own folder, all processes started at once (each is mostly start-up time)."""
    procs = {}
    for name, (args, extra, setup) in CASES.items():
        tmp = tmp_path_factory.mktemp(name)
        write_files(tmp / "corpus", SMALL_CORPUS)
        if setup == "index":
            build_fake_index(tmp, tmp / "corpus")
        elif setup == "broken":
            write_files(tmp / "broken", {**SMALL_CORPUS, "broken.md": BAD_YAML})
        elif setup == "foreign":
            write_files(tmp / "foreign", {"keep-me.txt": "not an index"})
        fill = lambda value: value.replace("{tmp}", str(tmp))  # noqa: E731
        env = rag_env(tmp, **{k: fill(v) for k, v in extra.items()})
        procs[name] = (
            subprocess.Popen(
                [str(RAG_BIN), *map(fill, args)], env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ),
            tmp,
        )
    out = {}
    for name, (proc, tmp) in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        out[name] = (RagRun(proc.returncode, stdout, stderr.replace(str(tmp), "{tmp}")), tmp)
    return out


@pytest.mark.parametrize(
    "case, needles",
    [
        ("no-index", ["no index at {tmp}/index", "rag index"]),
        ("no-index-json", ["no index at"]),
        ("bad-mode", ["telepathy", "hybrid, dense, bm25"]),
        ("k-zero", []),
        ("empty-query", ["query is empty"]),
        ("corpus-missing", ["{tmp}/no-such-corpus", "no such file or folder"]),
        ("bad-yaml", ["broken.md", "invalid YAML front matter"]),
        ("foreign-index-dir", ["{tmp}/foreign", "not an index link"]),
        ("bad-setting", ["max_tokens", "RAG_MAX_TOKENS"]),
    ],
)
def test_errors_are_one_line_without_traceback(runs, case, needles):
    run, _ = runs[case]
    assert_one_line_error(run, *needles)
    assert run.stdout == ""


@pytest.mark.parametrize("case", ["bad-mode", "k-zero"])
def test_usage_errors_are_not_internal_errors(runs, case):
    run, _ = runs[case]
    assert "internal error" not in run.stderr
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and "rag --help" in run.stderr


def test_user_errors_exit_with_their_codes(runs):
    codes = {name: run.returncode for name, (run, _) in runs.items()}
    assert codes["no-index"] == 1
    assert codes["corpus-missing"] == 1
    assert codes["bad-yaml"] == 1
    assert codes["foreign-index-dir"] == 2  # ConfigError
    assert codes["bad-setting"] == 2
    assert codes["empty-query"] == 2  # QueryError


def test_refused_index_dir_is_left_untouched(runs):
    _, tmp = runs["foreign-index-dir"]
    assert sorted(p.name for p in (tmp / "foreign").iterdir()) == ["keep-me.txt"]
    assert not (tmp / "foreign.builds").exists()


def test_failed_index_publishes_nothing(runs):
    for case in ("corpus-missing", "bad-yaml", "bad-setting"):
        _, tmp = runs[case]
        assert not (tmp / "index").exists(), case


def test_search_text_output(runs):
    run, _ = runs["search-text"]
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("1. Cathedrals > Gothic style\n")
    assert "Stained glass" in run.stdout
    assert "2. " not in run.stdout  # -k 1


def test_search_filters(runs):
    tagged, _ = runs["search-tag"]
    assert tagged.returncode == 0, tagged.stderr
    assert {r["title"] for r in tagged.json()["results"]} == {"Bicycles"}
    nothing, _ = runs["search-no-match"]
    assert nothing.returncode == 2 and nothing.stdout == ""  # a usage error, like every QueryError
    loading, error = nothing.stderr.splitlines()  # the filter is checked against the loaded index
    assert loading.startswith("loading the model")
    assert error == (
        "error: no document matches the filter category 'cooking'; "
        "the values that exist are: 'Animals', 'Architecture', 'Transport'"
    )


def test_index_names_the_bundled_corpus_and_warns_about_a_cap_the_model_cannot_reach(runs):
    run, _ = runs["index-bundled"]
    assert run.returncode == 0, run.stderr
    m = INDEX_LINE.match(run.stdout.strip())
    assert m and m["bundled"] and m["corpus"] == str(DEFAULT_CORPUS_DIR.resolve()), run.stdout
    assert run.stdout.strip().endswith("(--corpus DIR or RAG_CORPUS_DIR=DIR to index another)")
    assert run.stderr.splitlines() == [
        "warning: RAG_MAX_TOKENS=1000 is above what the model reads: fake/hashing-64 takes at most 256 word pieces per "
        "passage, so chunks stop there (about 256 cl100k tokens or fewer, breadcrumb included); a cap of at most 256 "
        "has an effect"
    ]


def test_skip_bad_skips_with_a_warning(runs):
    run, tmp = runs["skip-bad"]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    warnings = run.stderr.strip().splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: skipped ") and "broken.md" in warnings[0] and "invalid YAML" in warnings[0]
    assert INDEX_LINE.match(run.stdout.strip())["articles"] == "3"
    assert (tmp / "index").is_symlink()


# ------------------------------------------------------------------------ with the real model, as a user runs it

PARAPHRASE = "Which event kicked off the competition between Moscow and Washington to reach orbit?"


@pytest.mark.model
def test_index_and_search_use_the_bundled_model(tmp_path: Path, bundled_index, small_corpus):
    """``rag index`` and ``rag search`` without RAG_ENCODER: the index is the model's, and so are the scores."""
    from corpus import DEFAULT_CORPUS_DIR
    from rag.text.chunking import embed_text
    from rag.index import load_index

    corpus = write_files(tmp_path / "four", SMALL_CORPUS)
    shutil.copy(DEFAULT_CORPUS_DIR / "space-diplomacy.md", corpus / "space-diplomacy.md")
    (tmp_path / "cache").mkdir()
    shutil.copy(bundled_index.cache_path, tmp_path / "cache" / "embeddings.sqlite")  # the big article is embedded already
    env = model_env(tmp_path, RAG_CORPUS_DIR=corpus)
    # the search runs on the session's real-model index while the new one is built (both load the model)
    search = subprocess.Popen(
        [str(RAG_BIN), "search", PARAPHRASE, "--json", "--mode", "dense", "-k", "3", "--index-dir", str(bundled_index.index_dir)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    built = run_rag(["index"], env, cwd=tmp_path, timeout=300)
    stdout, stderr = search.communicate(timeout=300)

    assert built.returncode == 0, built.stderr
    m = INDEX_LINE.match(built.stdout.strip())
    assert m and int(m["articles"]) == 4 and int(m["cached"]) >= 10, built.stdout  # at least the big article's
    assert int(m["embedded"]) + int(m["cached"]) == int(m["chunks"])
    encoder = bundled_index.encoder
    index = load_index(tmp_path / "index", encoder)  # refuses an index of another model or dimension
    assert index.manifest["model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2" and index.vectors.dim == 384
    # the stored vectors are the model's vectors of the chunks
    for row in (0, len(index) - 1):
        expected = encoder.embed_batch([embed_text(index.chunks[row])])[0]
        assert float(index.vectors.vectors([row])[0] @ expected) > 0.999

    assert search.returncode == 0, stderr
    assert "all-MiniLM-L6-v2 (onnx)" in stderr  # the torch index's questions are encoded by the same model as ONNX
    results = json.loads(stdout)["results"]
    assert len(results) == 3
    assert results[0]["section"][-1] == "The Cold War Era and the Emergence of Space Diplomacy"
    served = load_index(bundled_index.index_dir, encoder)
    query = encoder.embed_batch([PARAPHRASE])[0]
    for r in results:  # each dense score is the model's cosine of question and passage
        chunk = served.chunks[served.row_of[r["passage_id"]]]
        assert r["dense_score"] == pytest.approx(float(encoder.embed_batch([embed_text(chunk)])[0] @ query), abs=1e-3)


def test_version_is_the_installed_distributions(rag_cli):
    from importlib.metadata import version

    import rag

    run = rag_cli(["--version"])
    assert run.returncode == 0 and run.stderr == ""
    assert run.stdout == f"rag {rag.__version__}\n" and rag.__version__ == version("space-diplomacy-rag")
