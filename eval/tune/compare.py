"""Size and question-embedding speed of a tuned model beside the bundled one (same process, interleaved rounds).

    python -m eval.tune.compare --model models/scifact --data ../shared/datasets/scifact --qrels artifacts/tune/heldout.tsv

Prints, for each model, the size of its weights, its parameter count and the time to embed one
question at a time (as the service does) over the questions of the qrels file: median and p95
milliseconds. Rounds alternate between the models so that a busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path


def weights(folder: Path) -> tuple[int, int]:
    """Bytes of the weight files and the number of parameters in them."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    params = 0
    for file in files:
        with safe_open(str(file), framework="np") as f:
            params += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return sum(f.stat().st_size for f in files), params


def main(argv: list[str] | None = None) -> None:
    from embeddings.minilm import MiniLMEncoder
    from embeddings.model_folder import model_path
    from eval.datasets import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="A folder written by rag tune.")
    parser.add_argument("--data", type=Path, required=True, help="A BEIR folder whose questions are embedded.")
    parser.add_argument("--qrels", type=Path, default=None, help="Embed the questions of this qrels file (default: the split's).")
    parser.add_argument("--split", default="train")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data, args.split, qrels_file=args.qrels)
    questions = [dataset.queries[q] for q in sorted(dataset.qrels)]
    encoders = {"bundled": MiniLMEncoder(), "tuned": MiniLMEncoder(model_dir=args.model)}
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for encoder in encoders.values():
        encoder.embed_batch(questions[:2])  # load and warm up outside the timing
    for _ in range(args.rounds):
        for name, encoder in encoders.items():
            for question in questions:
                start = time.perf_counter()
                encoder.embed_batch([question])
                times[name].append((time.perf_counter() - start) * 1000)
    for name, encoder in encoders.items():
        size, params = weights(encoder.source if name == "tuned" else model_path())
        ms = sorted(times[name])
        print(
            f"{name}: {encoder.name}, weights {size:,} bytes, {params:,} parameters, dim {encoder.dim}; "
            f"one question: median {statistics.median(ms):.1f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.1f} ms ({len(ms)} embeddings)"
        )


if __name__ == "__main__":
    main()
