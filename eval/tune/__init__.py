"""``rag tune``: fine-tune the bundled encoder on labelled questions (a BEIR folder or a question set over a
corpus) with the harness's loaders and measures, validate on a part it does not train on, and write a model
folder with a model card. Modules: ``config`` (the knobs and the report), ``data`` (labelled sets, split,
pairs with BM25 hard negatives), ``train`` (the training and its publish), ``card`` (the model card), ``cli``.

May import ``core``, ``corpus``, ``embeddings``, ``rag`` and the rest of ``eval``; never ``api``. The service
reads what it needs of a tuned model folder through ``embeddings.model_folder``, never through this package.
"""
