"""The distributed path: an index split into shards, built on Ray and searched and answered over all of
them. ``ray_build`` (``rag index --engine ray``: the sharded build's steps on a Ray cluster), ``search``
(each shard's best candidates, merged and fused exactly as one index would rank them), ``server`` (one
shard, served: what the ingress asks of a shard) and ``service`` (search and answers over every shard,
in this process or on other machines).

The sharded layout on disk and its build steps stay in ``rag.index`` (``shards``, ``shard_build``): they
are the index's format, which a one-machine build also writes and which the index room checks on load.

May import ``core``, ``corpus``, ``embeddings``, ``rag.text``, ``rag.index``, ``rag.search``,
``rag.answer`` and ``rag.faults``: shards reuse search and answers, and nothing below imports this room.
One import reaches up into the wiring and is allowed by name (tests/test_architecture.py): ``ray_build``
takes the encoder and build options from ``rag.service`` (``make_encoder``, ``build_options``,
``window_warning``) so that a Ray build embeds exactly as a local one.
"""
