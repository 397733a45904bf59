"""The evaluation harness: the team's QA set, BEIR benchmarks, reports and comparisons (``rag eval``),
the performance benchmarks (``eval.bench``: ``rag bench``), fine-tuning the encoder on labelled sets
(``eval.tune``: ``rag tune``), sweeps and encoder variants.

Grouped by job: the harness stays at this package's top (question sets in ``eval/data/``; ``qa``, ``beir``,
``answerability``, ``calibration``, ``sweep``, ``encoder_variants`` and ``carve`` with their shared parts
``askers``, ``datasets``, ``trec``, ``metrics``, ``report``, ``live_server``, and ``cli`` for ``rag eval``);
every performance benchmark is in ``eval.bench``, which now also holds the ones that used to stand loose
here (``ray_bench`` -> ``bench/ray_build``, ``ray_serve_bench`` -> ``bench/ray_serve``, ``shard_memory_bench``
-> ``bench/shard_memory``, ``loadtest`` -> ``bench/loadtest``: figures, never pass/fail, run as
``python -m eval.bench.<name>`` or through ``rag bench ray``); training the encoder is ``eval.tune``. The
harness was left flat: its modules share the askers and datasets, and a sub-package would only lengthen
their imports.

May import ``core``, ``corpus``, ``embeddings`` and ``rag``; never ``api``: a running service is measured
from outside, by starting ``rag serve`` as a subprocess (``eval.live_server``) and talking HTTP to it.
One percentile and latency summary (``eval.metrics``), one text-table renderer and one machine description
(``eval.report``) serve every report here.
"""
