"""The index on disk: build it atomically, load it with every check, describe it in a manifest.

Layout. ``INDEX_DIR`` is a symbolic link to one complete build inside the sibling folder
``INDEX_DIR.builds/``::

    .rag-index -> .rag-index.builds/20261127T101500-1a2b3c
    .rag-index.builds/
        .lock                       held by the one build that may run at a time
        20261127T101500-1a2b3c/     manifest.json, chunks.jsonl, articles.json, vectors.faiss, bm25/
        20261127T111500-4d5e6f.tmp/ a build in progress (or killed: removed by the next build)

A build killed at any moment leaves the previous index intact and readers never see half an index.

Modules, one job each: ``format`` (file names, manifest checks, term tables), ``reuse`` (what an
unchanged article lends the next build: chunks, answer units with vectors and terms, the word table),
``publish`` (build lock, stale builds, atomic swap of the link), ``build`` (:func:`build_index` as
its steps) and ``load`` (the :class:`Index` class and :func:`load_index`). Sharded builds: ``shards``
(the sharded layout and BM25 statistics summed over shards) and ``shard_build`` (a build split into S shards;
``rag/shards/ray_build.py`` runs its steps on a Ray cluster). The sharded layout lives here, not in
``rag/shards/``, because it is the index's format: the index room writes and checks it, on one machine too.

May import: ``core``, ``corpus``, ``embeddings``, the text room ``rag.text`` (chunks, units, BM25 terms,
content words) and ``rag.faults``; never ``api`` or ``eval``, nor the rooms that read an index
(``rag.search``, ``rag.answer``, ``rag.shards``), nor ``rag``'s wiring (service, settings, cli).
"""

from rag.index.build import BuildReport, build_index, lexical_text
from rag.index.format import FORMAT, FORMAT_VERSION, MANIFEST, TermTable, read_manifest, verify_files
from rag.index.load import Index, check_model, load_index
from rag.index.publish import BuildLock, builds_dir

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "BuildLock",
    "BuildReport",
    "Index",
    "TermTable",
    "build_index",
    "builds_dir",
    "check_model",
    "lexical_text",
    "load_index",
    "read_manifest",
    "verify_files",
]
