"""The performance benchmarks (``rag bench``, ``rag bench scale``), a package along their parts:

* ``workloads``: the passages, corpora and questions measured (SciFact abstracts or synthetic text);
* ``children``: each build in a fresh process, with its own CPU time and peak memory;
* ``memory``: what a process holds, read from /proc (RSS, PSS, mapped index files);
* ``indexing``: encoder throughput, full builds and re-indexing after one edit;
* ``query``: the query path in-process; ``load``: HTTP load against a real ``rag serve``;
* ``coldstart``: ``rag search`` and ``rag ask`` started from the shell; ``scale``: the vector store at growing sizes;
* ``report``: the goals' ratios and the printed tables; ``cli``: the commands;
* ``ray_build``, ``ray_serve``, ``shard_memory``: the scale-out figures (``rag bench ray`` runs them, each as
  ``python -m eval.bench.<name>``); ``loadtest``: concurrent clients against a running server, with a
  reload mid-run.

Figures, never pass/fail. May import ``core``, ``corpus``, ``embeddings``, ``rag`` and the rest of ``eval``
(percentile and summaries from ``eval.metrics``, tables and the machine description from ``eval.report``);
never ``api``: the HTTP figures come from a ``rag serve`` subprocess (``eval.live_server``).
"""
