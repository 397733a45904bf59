"""What the benchmarks measure: SciFact abstracts when the dataset is there, else synthetic passages;
synthetic articles shaped like the bundled one; the product's own questions."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import typer

DEFAULT_DATA = Path("../shared/datasets/scifact")
QA_FILE = Path(__file__).resolve().parents[1] / "data" / "qa.jsonl"


@dataclass(frozen=True)
class Workload:
    """Passages to embed and a corpus file to index (the same documents)."""

    name: str
    passages: list[str]
    corpus_file: Path  # a BEIR-style corpus.jsonl of the same documents


_SYLLABLES = "ka lo mi ne ru sa te vo zi da pe lu ma no ri so ta ve xi ga bo de fi ha".split()


def _vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def _sentence(rng: random.Random, words: list[str]) -> str:
    body = " ".join(rng.choice(words) for _ in range(rng.randint(8, 22)))
    return body[0].upper() + body[1:] + "."


def synthetic_articles(n: int, seed: int = 0) -> dict[str, str]:
    """``n`` deterministic markdown articles shaped like the bundled one: front matter, four to six
    sections of two or three paragraphs, about a thousand words each."""
    rng = random.Random(seed)
    words = _vocabulary(rng)
    files = {}
    for i in range(n):
        title = f"{rng.choice(words).capitalize()} {rng.choice(words)} {i}"
        parts = [f"---\ntitle: {title}\nslug: article-{i:05d}\nurl: /wiki/article-{i:05d}\ntags: [{rng.choice(words)}]\n---\n\n# {title}\n"]
        for s in range(rng.randint(4, 6)):
            parts.append(f"\n## {rng.choice(words).capitalize()} {s}\n")
            for _ in range(rng.randint(2, 3)):
                parts.append("\n" + " ".join(_sentence(rng, words) for _ in range(rng.randint(4, 6))) + "\n")
        files[f"article-{i:05d}.md"] = "".join(parts)
    return files


def load_workload(data: Path | None, docs: int, tmp: Path) -> Workload:
    """The first ``docs`` SciFact abstracts (title + text) when the dataset is there, else synthetic passages."""
    candidates = [data] if data else [DEFAULT_DATA, Path(__file__).resolve().parents[3] / "shared" / "datasets" / "scifact"]
    corpus_file = tmp / "workload" / "corpus.jsonl"
    corpus_file.parent.mkdir(parents=True, exist_ok=True)
    for root in candidates:
        source = root / "corpus.jsonl" if root.is_dir() else root
        if source.is_file():
            lines, passages = [], []
            with source.open(encoding="utf-8") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    lines.append(line if line.endswith("\n") else line + "\n")
                    passages.append(f"{record.get('title', '')} {record.get('text', '')}".strip())
                    if len(passages) >= docs:
                        break
            corpus_file.write_text("".join(lines), encoding="utf-8")
            return Workload(f"scifact (first {len(passages)} abstracts of {source})", passages, corpus_file)
    if data:
        raise typer.BadParameter(f"{data}: no corpus.jsonl there", param_hint="--data")
    rng = random.Random(1)
    words = _vocabulary(rng)
    passages = [" ".join(_sentence(rng, words) for _ in range(rng.randint(6, 12))) for _ in range(docs)]
    with corpus_file.open("w", encoding="utf-8") as handle:
        for i, text in enumerate(passages):
            handle.write(json.dumps({"_id": f"s{i}", "title": "", "text": text}) + "\n")
    return Workload(f"synthetic ({docs} passages; SciFact not found)", passages, corpus_file)


def questions() -> list[str]:
    """The product's own question set (eval/data/qa.jsonl): answerable and off-topic questions."""
    with QA_FILE.open(encoding="utf-8") as handle:
        return [json.loads(line)["question"] for line in handle if line.strip()]
