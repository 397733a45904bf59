"""Retrieval-augmented question answering over encyclopedia articles: chunking, indexing, retrieval, answers,
and the core commands (index, add, documents, search, ask).

It may import `core/`, `corpus/` and `embeddings/`, never `api/` or `eval/`: the commands those packages add
to `rag` are named in `rag/commands.py` as strings and imported only when run.
"""

__version__ = "0.1.0"
