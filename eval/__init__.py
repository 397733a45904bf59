"""The evaluation harness: the team's QA set, BEIR benchmarks, reports and comparisons (``rag eval``),
the performance benchmarks (``eval.bench``: ``rag bench``), fine-tuning the encoder on labelled sets
(``eval.tune``: ``rag tune``), the load test, sweeps and encoder variants.

May import ``core``, ``corpus``, ``embeddings`` and ``rag``; never ``api``: a running service is measured
from outside, by starting ``rag serve`` as a subprocess (``eval.live_server``) and talking HTTP to it.
One percentile and latency summary (``eval.metrics``), one text-table renderer and one machine description
(``eval.report``) serve every report here.
"""
