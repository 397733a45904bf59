"""Retrieval-augmented question answering over encyclopedia articles: chunking, indexing, retrieval, answers,
and the core commands (index, add, documents, search, ask).

One room (sub-package) per job of the pipeline, each importing only the rooms before it:
``text`` (chunks, tokens, units, BM25 analysis, words) <- ``index`` (the index on disk) <- ``search``
(passages from one index) <- ``answer`` (cited answers or abstentions) <- ``shards`` (the distributed
path). At the top stays the wiring that assembles them, which no room imports: ``service``,
``settings`` (with ``origins``), ``payloads`` (the JSON bodies every interface shares), ``cli``,
``commands``, ``remote`` and ``documents``; and ``faults`` (test hooks), which every room may import.
The rules are a table in tests/test_architecture.py (``ROOMS``).

It may import `core/`, `corpus/` and `embeddings/`, never `api/` or `eval/`: the commands those packages add
to `rag` are named in `rag/commands.py` as strings and imported only when run.
"""

__version__ = "0.1.0"
