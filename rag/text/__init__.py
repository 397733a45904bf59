"""Text as every stage of the pipeline reads it: articles cut into chunks with breadcrumbs and offsets
(``chunking``), token counts (``tokens``), sentences and answer units (``units``), the BM25 analyser and
the bm25s index over a list of texts (``lexical``), and plain and content words (``words``).

Pure functions and plain data over text; the room every other room of ``rag`` stands on.

May import ``core``, ``corpus`` and ``embeddings``, and the rest of this room; nothing else of ``rag``
(not the index, search, answer or shards rooms, nor the wiring at ``rag``'s top).

Why these modules are here and not in ``rag/index/``: the index writes chunks, units and BM25 terms,
but search (``Chunk``), the answer steps (``analyze``, ``content_words``) and the HTTP chat (``count_tokens``)
read them too, and none of those should need the index's build code to count a token. ``lexical`` belongs
to two rooms at once (the analyser that every room applies, and the BM25 index that the index room saves
and search scores); it is kept whole because the index and its analyser must not drift apart: an index is
queried with the very ``BM25Params`` it was built with.
"""
