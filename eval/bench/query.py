"""The query path in-process: encode + search, and a whole cited answer, over the bundled article."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from eval.bench.workloads import questions
from eval.metrics import summary_ms


def bench_query(backends: list[str], encoders: dict, settings, tmp: Path, repeats: int, log) -> tuple[dict, dict]:
    """Encode + search, and a whole answer, for the product's questions over the bundled article.

    The index is built once per backend (its own vectors) and opened memory-mapped, as the server does.
    """
    from corpus.loader import DEFAULT_CORPUS_DIR, load_corpus
    from embeddings import get_encoder
    from embeddings.cache import EmbeddingCache
    from rag.index import build_index, load_index
    from rag.service import open_answer_service

    qs = questions()
    result, index_dirs = {}, {}
    for backend in backends:
        encoder = encoders.get(backend)
        if encoder is None:
            encoder = get_encoder("minilm", threads=settings.threads, backend=backend, cache_dir=settings.cache_dir)
            encoder.warm_up()
        index_dir = tmp / f"query-{backend}" / "index"
        cache = EmbeddingCache(tmp / f"query-{backend}" / "embeddings.sqlite")
        try:
            build_index(load_corpus(DEFAULT_CORPUS_DIR), index_dir, encoder, cache=cache, progress=False)
        finally:
            cache.close()
        index_dirs[backend] = index_dir
        service = open_answer_service(settings, load_index(index_dir, encoder, mmap=True), encoder)
        retriever = service.retriever
        for q in qs[:5]:
            service.ask(q)
        encode_search, encode_only, answers, parts = [], [], [], []
        for q in qs * repeats:
            # alternated per question, so that load from elsewhere falls on both alike
            t0 = time.perf_counter()
            vector = retriever.encode(q)
            t1 = time.perf_counter()
            retriever.search(q, k=5, query_vector=vector)
            t2 = time.perf_counter()
            answer = service.ask(q, top_k=5)
            t3 = time.perf_counter()
            encode_only.append(t1 - t0)
            encode_search.append(t2 - t0)
            answers.append(t3 - t2)
            parts.append(answer.timings_ms)
        result[backend] = {
            "questions": len(qs),
            "chunks": len(service.index),
            "encode_ms": summary_ms(encode_only),
            "encode_search_ms": summary_ms(encode_search),
            "answer_ms": summary_ms(answers),
            "answer_parts_p50_ms": {k: round(statistics.median(p[k] for p in parts), 2) for k in parts[0]},
        }
        log(
            f"  {backend:<10} encode+search p50 {result[backend]['encode_search_ms']['p50']} ms, "
            f"answer p50 {result[backend]['answer_ms']['p50']} ms"
        )
    return result, index_dirs
