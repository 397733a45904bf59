"""Answers: the service that takes a question to a cited, extractive answer or an honest abstention.

Modules along the answer path: ``question`` (what a question asks for), ``answerability`` (whether the
evidence answers it), ``candidates`` (answer units scored against the question), ``unit_cache`` (what the
steps read of each unit), ``judge`` (the answerability check on one passage), ``compose`` (which units to
quote, numbered citations), ``abstention`` (why the service gives no answer), ``markers`` (citation
markers a reader would take for ours), ``reader`` (the trained reading model: the span of a passage that
answers, or none; onnxruntime, no torch), ``config`` (:class:`AnswerConfig`) and ``service``
(:class:`AnswerService`, the steps in order).

May import ``core``, ``corpus``, ``embeddings``, ``rag.text``, ``rag.index`` and ``rag.search`` (an answer
starts from a search), and ``rag.faults`` (test hooks); never ``rag.shards`` (the sharded path reuses the
answer service, not the reverse) nor the wiring at ``rag``'s top (service, settings, cli, commands).
"""
