"""Search: the question's passages from one index. Dense (FAISS) and lexical (BM25) rankers behind one
protocol, a hybrid that fuses them (``retrieve``: :class:`Retriever`, :class:`SearchResult`), the fusion
rules (``fusion``), the search modes (``modes``) and the metadata filters (``filters``).

May import ``core``, ``corpus``, ``embeddings``, ``rag.text`` and ``rag.index`` (it reads a loaded
:class:`~rag.index.Index`); never ``rag.answer`` or ``rag.shards``: search knows nothing of answers, and
the sharded path reuses search, never the reverse. Nor the wiring at ``rag``'s top (service, settings,
cli, commands): the service hands a :class:`Retriever` its settings.
"""
