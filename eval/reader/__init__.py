"""``rag train-reader`` and ``rag eval squad``: train a reader (the bundled encoder with a span head) on SQuAD 2.0,
validate it on held-out articles, export it to int8 ONNX with a model card, and measure an exported reader with
the official SQuAD 2.0 measures. Modules: ``squad`` (records, metric, article split), ``qnli`` (auxiliary pairs
split by the same articles), ``features`` (training windows), ``batches`` (length-grouped batches), ``config``,
``checkpoint`` (resumable runs), ``predict`` (predictions and the "no answer" threshold), ``train``, ``export``,
``card``, ``cli``.

May import ``core``, ``corpus``, ``embeddings``, ``rag`` and the rest of ``eval``; never ``api``. The windowing and
post-processing come from ``rag.answer.reader``, the runtime the service uses, so the measured path is the served one.
"""
